"""The official repository's variant: one MLP whose middle activation is the code.

z_E → [Linear → GELU] × depth → Linear → code → [Linear → GELU] × depth → Linear → z_G.
The two halves are returned as separate modules (the sender only needs the first).
"""

from __future__ import annotations

from torch import nn


def _stack(d_in: int, d_out: int, hidden: int, depth: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten(1)]
    width = d_in
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout)]
        width = hidden
    layers.append(nn.Linear(width, d_out))
    return nn.Sequential(*layers)


def official_halves(d_e: int, d_code: int, d_g: int, hidden: int, depth: int, dropout: float
                    ) -> tuple[nn.Module, nn.Module]:
    return _stack(d_e, d_code, hidden, depth, dropout), _stack(d_code, d_g, hidden, depth, dropout)
