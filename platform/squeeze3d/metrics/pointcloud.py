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

import numpy as np
import torch


def _nn_sq(a: torch.Tensor, b: torch.Tensor, chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared nearest-neighbour distances a->b ``[B, N]`` and b->a ``[B, M]``.

    The neighbours are *picked* in float32 (``|a|² - 2a·b + |b|²`` by one batched matmul per chunk of
    ``chunk`` rows, which stays in cache: 3x faster than float64 ``cdist`` at 2048 points), and
    their distances are then *recomputed* in float64 from the coordinates, so tiny distances (40+ dB
    reconstructions) keep full precision. The float32 pick can only differ from the exact one between
    neighbours whose squared distances agree to ~1e-7, which changes the result by less than that."""
    a32, b32 = a.float(), b.float()
    bb = (b32 * b32).sum(-1)[:, None, :]
    bt = b32.transpose(1, 2)
    a_idx, b_best, b_idx = [], None, None
    for s in range(0, a.shape[1], chunk):
        x = a32[:, s:s + chunk]
        d = torch.baddbmm(bb, x, bt, alpha=-2) + (x * x).sum(-1, keepdim=True)
        a_idx.append(d.argmin(dim=2))
        m, j = d.min(dim=1)
        if b_best is None:
            b_best, b_idx = m, j
        else:
            better = m < b_best
            b_best, b_idx = torch.where(better, m, b_best), torch.where(better, j + s, b_idx)
    ia = torch.cat(a_idx, dim=1)
    a64, b64 = a.double(), b.double()
    a2b = (a64 - torch.gather(b64, 1, ia[..., None].expand(-1, -1, 3))).pow(2).sum(-1)
    b2a = (b64 - torch.gather(a64, 1, b_idx[..., None].expand(-1, -1, 3))).pow(2).sum(-1)
    return a2b, b2a


def chamfer(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a2b, b2a = _nn_sq(a, b)
    return (a2b.mean(dim=1) + b2a.mean(dim=1)).float()


def d1_psnr(reference: torch.Tensor, test: torch.Tensor) -> torch.Tensor:
    return _d1_from_nn(reference, *_nn_sq(reference, test))


def _d1_from_nn(reference: torch.Tensor, a2b: torch.Tensor, b2a: torch.Tensor) -> torch.Tensor:
    """D1-PSNR ``[B]`` from the squared NN distances of either search (the definition above)."""
    mse = torch.maximum(a2b.mean(dim=1), b2a.mean(dim=1)).clamp_min(1e-20)
    peak = (reference.amax(dim=1) - reference.amin(dim=1)).double().norm(dim=-1)
    return (10.0 * torch.log10(peak.pow(2) / mse)).float()


_KDTREE = False


def use_kdtree(on: bool = True) -> None:
    """Measure single pairs (``d1_psnr_pair``) with scipy kd-trees instead of the matmul search:
    ~4 ms instead of ~14 ms per 2048-point pair, after a one-off ~0.25 s import. Worth it for a
    directory of files (the codec's batch mode turns it on), not for one file. The distances are
    the same either way (tested)."""
    global _KDTREE
    _KDTREE = bool(on)


def _nn_sq_kdtree(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from scipy.spatial import cKDTree

    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return cKDTree(b64).query(a64)[0] ** 2, cKDTree(a64).query(b64)[0] ** 2


def d1_psnr_pair(reference: np.ndarray, test: np.ndarray) -> float:
    """D1-PSNR of one ``[N, 3]`` cloud against one reference (numpy in, float out)."""
    # D1 is translation-invariant; centring on the reference first (in float64) keeps the float32
    # matmul search exact far from the origin (|a|²+|b|²-2ab cancels catastrophically at |a| ~ 100)
    ref64 = np.asarray(reference, np.float64)
    centre = (ref64.max(axis=0) + ref64.min(axis=0)) / 2 if len(ref64) else 0.0
    ref = (ref64 - centre).astype(np.float32)
    tst = (np.asarray(test, np.float64) - centre).astype(np.float32)
    r = torch.from_numpy(ref)[None]
    if not _KDTREE and len(ref) * len(tst) <= 1 << 23:  # larger pairs (full scans): the matmul search's memory grows as N·M
        return float(d1_psnr(r, torch.from_numpy(tst)[None])[0])
    a2b, b2a = _nn_sq_kdtree(ref, tst)
    return float(_d1_from_nn(r, torch.from_numpy(a2b)[None], torch.from_numpy(b2a)[None])[0])


def normalise_unit_sphere(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Centre on the bounding-box centre and scale so the farthest point is at radius 1.

    Returns ``(normalised [B,N,3], centre [B,3], scale [B])``; ``denormalise`` inverts it.
    """
    centre = (points.amax(dim=1) + points.amin(dim=1)) / 2
    centred = points - centre[:, None, :]
    # the floor only keeps a single-point cloud finite; a fixed 1e-12 silently rescaled tiny clouds
    # (their decode came back orders of magnitude too large): the inputs' checks refuse those instead
    scale = centred.norm(dim=-1).amax(dim=1).clamp_min(torch.finfo(points.dtype).tiny)
    return centred / scale[:, None, None], centre, scale


def denormalise(points: torch.Tensor, centre: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return points * scale[:, None, None] + centre[:, None, :]
