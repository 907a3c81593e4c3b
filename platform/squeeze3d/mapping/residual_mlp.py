"""Residual MLP (paper App. A.1, meshes).

flatten → Linear → LayerNorm → GELU → Dropout → Linear (+ residual from the first Linear)
→ LayerNorm → GELU → Dropout → Linear.
"""

from __future__ import annotations

import torch
from torch import nn


class ResidualMLP(nn.Module):
    def __init__(self, d_in: int, d_out: int, hidden: int, dropout: float):
        super().__init__()
        self.fc_in = nn.Linear(d_in, hidden)
        self.ln1 = nn.LayerNorm(hidden)
        self.fc_mid = nn.Linear(hidden, hidden)
        self.ln2 = nn.LayerNorm(hidden)
        self.fc_out = nn.Linear(hidden, d_out)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h0 = self.fc_in(x.flatten(1))
        h = self.drop(self.act(self.ln1(h0)))
        h = self.fc_mid(h) + h0
        h = self.drop(self.act(self.ln2(h)))
        return self.fc_out(h)
