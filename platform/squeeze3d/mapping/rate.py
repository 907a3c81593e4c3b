"""The rate term of training: how many bits a bounded code costs, differentiably.

A fixed-range code is stored as k-bit levels (``codec.quantise``) and range-coded with a prior
fitted on training codes (``codec.code_prior``): its bytes are Σ_i −log2 P_i(level_i). Training for
rate needs that number with a gradient. ``LevelRate`` keeps a running histogram of every code
dimension's levels over the training batches (an exponential moving average of counts, started at
one count per level so no level is ever free or impossible) and prices a code by interpolating the
level costs −log2 P linearly at its exact position between two levels (soft-to-hard: the cost of the
code as the noise of quantisation-aware training would round it, on average). Its gradient moves codes
toward levels that are already frequent, so the distribution sharpens and the fitted prior codes it
in fewer bits; the distortion term pulls the other way; ``loss.lambda_rate`` sets the exchange rate.

The histogram is state, not a parameter: it is estimated, not optimised (its own maximum-likelihood
fit *is* the counting), each data-parallel worker keeps its own, and a resumed run starts it afresh
(a few hundred steps bring it back: ``DECAY``).
"""

from __future__ import annotations

import torch

DECAY = 0.99
"""Weight of the past in the running histogram per step (an effective window of ~100 batches)."""


class LevelRate:
    """Running per-dimension histogram of k-bit levels of codes in [-1, 1]; ``rate(code)`` → bits."""

    def __init__(self, d: int, bits: int, device: torch.device | str = "cpu", decay: float = DECAY):
        if not 1 <= int(bits) <= 16:
            raise ValueError(f"the rate term prices 1..16-bit levels, got {bits}")
        self.levels = 1 << int(bits)
        self.step = 2.0 / (self.levels - 1)
        self.decay = float(decay)
        self.counts = torch.ones(int(d), self.levels, device=device, dtype=torch.float64)

    def costs(self) -> torch.Tensor:
        """``[d, 2^k]`` bits of each level under the current histogram (float32, no gradient)."""
        p = self.counts / self.counts.sum(dim=1, keepdim=True)
        return (-torch.log2(p)).float()

    @torch.no_grad()
    def update(self, code: torch.Tensor) -> None:
        """Add the levels of a batch of codes ``[B, d]`` to the running histogram."""
        q = torch.round((code.detach().flatten(1).clamp(-1, 1) + 1) / self.step).long()
        batch = torch.zeros_like(self.counts).scatter_add_(
            1, q.T.contiguous(), torch.ones(q.T.shape, dtype=self.counts.dtype, device=q.device))
        self.counts.mul_(self.decay).add_(batch)

    def __call__(self, code: torch.Tensor, update: bool = True) -> torch.Tensor:
        """Bits of each code ``[B, d]`` → ``[B]``: level costs interpolated at the code's position
        (differentiable in the code). ``update``: first add the batch to the histogram (training)."""
        c = code.flatten(1)
        if c.shape[1] != self.counts.shape[0]:
            raise ValueError(f"codes of {c.shape[1]} numbers, rate model of {self.counts.shape[0]}")
        if update:
            self.update(c)
        return interpolated_bits(c, self.costs().to(c.device))


def interpolated_bits(code: torch.Tensor, costs: torch.Tensor) -> torch.Tensor:
    """Codes ``[B, k]`` in [-1, 1] priced by the level costs ``[d ≥ k, 2^bits]`` of their first ``k``
    dimensions, interpolated linearly between the two levels around each number → bits ``[B]``.
    Differentiable in the code; exact at the levels. Shared by the training rate term and test-time
    refinement (which prices with the model's code prior: ``CodePrior.level_costs``)."""
    c = code.flatten(1)
    levels = costs.shape[1]
    t = (c.clamp(-1, 1) + 1) * ((levels - 1) / 2.0)  # position in level units, 0 .. 2^k − 1
    j = t.detach().floor().clamp(0, levels - 2).long()
    w = t - j
    cost = costs[:c.shape[1]].to(c.device, c.dtype).unsqueeze(0).expand(c.shape[0], -1, -1)
    lo = cost.gather(2, j.unsqueeze(2)).squeeze(2)
    hi = cost.gather(2, j.unsqueeze(2) + 1).squeeze(2)
    return ((1 - w) * lo + w * hi).sum(dim=1)
