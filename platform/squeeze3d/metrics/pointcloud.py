"""Point-cloud distances and the normalisation used by point-cloud pairs.

Definitions (documented because papers differ):
- Chamfer distance: mean over A of the squared distance to the nearest point of B, plus the same
  from B to A (squared L2, sum of the two directions).
- D1-PSNR (MPEG p2point): mse = max(mean_a min_b ||a-b||², mean_b min_a ||a-b||²) (the symmetric,
  worse direction) and PSNR = 10·log10(peak² / mse) with peak = the diagonal of the *reference*
  cloud's axis-aligned bounding box.
All functions take batched ``[B, N, 3]`` / ``[B, M, 3]`` tensors and return ``[B]``.
"""

from __future__ import annotations

import torch


def _nn_sq(a: torch.Tensor, b: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared nearest-neighbour distances a->b ``[B, N]`` and b->a ``[B, M]``, chunked over N so
    large clouds do not materialise a huge N×M matrix at once."""
    a2b = []
    b2a = None
    for s in range(0, a.shape[1], chunk):
        d = torch.cdist(a[:, s:s + chunk].double(), b.double()).pow(2)  # double: tiny distances at 40+ dB
        a2b.append(d.amin(dim=2))
        m = d.amin(dim=1)
        b2a = m if b2a is None else torch.minimum(b2a, m)
    return torch.cat(a2b, dim=1), b2a


def chamfer(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a2b, b2a = _nn_sq(a, b)
    return (a2b.mean(dim=1) + b2a.mean(dim=1)).float()


def d1_psnr(reference: torch.Tensor, test: torch.Tensor) -> torch.Tensor:
    a2b, b2a = _nn_sq(reference, test)
    mse = torch.maximum(a2b.mean(dim=1), b2a.mean(dim=1)).clamp_min(1e-20)
    peak = (reference.amax(dim=1) - reference.amin(dim=1)).double().norm(dim=-1)
    return (10.0 * torch.log10(peak.pow(2) / mse)).float()


def normalise_unit_sphere(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Centre on the bounding-box centre and scale so the farthest point is at radius 1.

    Returns ``(normalised [B,N,3], centre [B,3], scale [B])``; ``denormalise`` inverts it.
    """
    centre = (points.amax(dim=1) + points.amin(dim=1)) / 2
    centred = points - centre[:, None, :]
    scale = centred.norm(dim=-1).amax(dim=1).clamp_min(1e-12)
    return centred / scale[:, None, None], centre, scale


def denormalise(points: torch.Tensor, centre: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return points * scale[:, None, None] + centre[:, None, :]
