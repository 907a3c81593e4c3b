"""Deep residual MLP (paper App. A.1, point clouds).

flatten → Linear → LayerNorm, whose output is kept as a *global* residual; then ``depth`` hidden
layers (Linear → GELU → Dropout); the global residual is re-added after the first hidden layer and a
*local* residual spans every block of 4 hidden layers; → Linear.
"""

from __future__ import annotations

import torch
from torch import nn

LOCAL_EVERY = 4


class DeepResidualMLP(nn.Module):
    def __init__(self, d_in: int, d_out: int, hidden: int, depth: int, dropout: float):
        super().__init__()
        self.fc_in = nn.Linear(d_in, hidden)
        self.ln_in = nn.LayerNorm(hidden)
        self.hidden = nn.ModuleList(
            nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Dropout(dropout)) for _ in range(depth))
        self.fc_out = nn.Linear(hidden, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.ln_in(self.fc_in(x.flatten(1)))
        h, block_in = g, g
        for i, layer in enumerate(self.hidden):
            h = layer(h)
            if i == 0:
                h = h + g
            if (i + 1) % LOCAL_EVERY == 0:
                h = h + block_in
                block_in = h
        return self.fc_out(h)
