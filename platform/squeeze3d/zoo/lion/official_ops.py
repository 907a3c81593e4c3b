"""PVCNN's point/voxel operators in pure torch (LION ships them as CUDA extensions).

Each function reproduces the semantics of the kernel LION calls, channel-first as there
(``coords [B, 3, N]``, ``features [B, C, N]``), so the official weights see the same inputs:

- ``furthest_point_sample``: starts at index 0, distances start at 1e10, the first farthest point
  wins ties (the CUDA reduction's order is not specified; ties need exactly equal float distances);
- ``ball_query``: the first ``k`` points *in index order* with squared distance < r², padded with
  the first one found; a centre with no neighbour gets index 0 everywhere (the kernel's zero init);
- ``avg_voxelize``: per-voxel mean of the points' features, flat index x·r² + y·r + z;
- ``trilinear_devoxelize``: trilinear read at the (continuous, clamped) voxel coordinates;
- ``three_nn_interpolate``: inverse-squared-distance weights over the 3 nearest centres, distances
  clamped to [1e-10, 1e10] as in the kernel.

Everything runs on the device of its inputs (CPU or GPU, same code). These are slower than the CUDA
kernels (ball query and 3-NN build dense [B, M, N] distance matrices) but need no compilation.
"""

from __future__ import annotations

import torch


def furthest_point_sample(coords: torch.Tensor, m: int) -> torch.Tensor:
    """``coords [B, 3, N]`` -> indices ``[B, m]`` (long) of iterative farthest point sampling."""
    b, _, n = coords.shape
    idx = torch.zeros(b, m, dtype=torch.long, device=coords.device)
    dist = torch.full((b, n), 1e10, dtype=coords.dtype, device=coords.device)
    last = torch.zeros(b, dtype=torch.long, device=coords.device)
    rows = torch.arange(b, device=coords.device)
    for j in range(1, m):
        centre = coords[rows, :, last]  # [B, 3]
        d = ((coords - centre[:, :, None]) ** 2).sum(1)
        dist = torch.minimum(dist, d)
        last = dist.argmax(1)
        idx[:, j] = last
    return idx


def gather_points(features: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``features [B, C, N]``, ``idx [B, M]`` -> ``[B, C, M]``."""
    return torch.gather(features, 2, idx[:, None, :].expand(-1, features.shape[1], -1))


def square_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a [B, 3, M]``, ``b [B, 3, N]`` -> ``[B, M, N]`` squared distances (difference form, so
    that in-radius tests agree with the kernel's per-coordinate arithmetic)."""
    return ((a[:, :, :, None] - b[:, :, None, :]) ** 2).sum(1)


def ball_query(centres: torch.Tensor, points: torch.Tensor, radius: float, k: int) -> torch.Tensor:
    """``centres [B, 3, M]``, ``points [B, 3, N]`` -> neighbour indices ``[B, M, k]`` (long)."""
    n = points.shape[2]
    inside = square_distance(centres, points) < radius * radius
    order = torch.arange(n, device=points.device).expand_as(inside)
    cand = torch.where(inside, order, torch.full_like(order, n))
    k_eff = min(k, n)
    first_k = cand.topk(k_eff, dim=2, largest=False, sorted=True).values  # in index order
    if k_eff < k:
        first_k = torch.cat([first_k, first_k.new_full((*first_k.shape[:2], k - k_eff), n)], 2)
    first = first_k[:, :, :1]
    first_k = torch.where(first_k == n, first.expand_as(first_k), first_k)
    return torch.where(first_k == n, torch.zeros_like(first_k), first_k)


def grouping(features: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``features [B, C, N]``, ``idx [B, M, K]`` -> ``[B, C, M, K]``."""
    b, m, k = idx.shape
    return gather_points(features, idx.reshape(b, m * k)).reshape(b, features.shape[1], m, k)


def avg_voxelize(features: torch.Tensor, vox: torch.Tensor, r: int) -> torch.Tensor:
    """``features [B, C, N]``, integer voxel coords ``vox [B, 3, N]`` in [0, r) -> ``[B, C, r, r, r]``."""
    b, c, _ = features.shape
    flat = (vox[:, 0] * r * r + vox[:, 1] * r + vox[:, 2]).long()  # [B, N]
    sums = features.new_zeros(b, c, r ** 3).scatter_add_(2, flat[:, None, :].expand(-1, c, -1), features)
    counts = features.new_zeros(b, r ** 3).scatter_add_(1, flat, torch.ones_like(flat, dtype=features.dtype))
    return (sums / counts.clamp_min(1)[:, None, :]).reshape(b, c, r, r, r)


def trilinear_devoxelize(grid: torch.Tensor, coords: torch.Tensor, r: int) -> torch.Tensor:
    """``grid [B, C, r, r, r]``, continuous voxel coords ``coords [B, 3, N]`` in [0, r-1] -> ``[B, C, N]``.

    The upper corner is clamped to r-1: the kernel reuses the lower corner when the fractional part
    is 0, and a clamped corner only occurs then (coords are clamped to r-1), with weight 0."""
    b, c = grid.shape[:2]
    flat = grid.reshape(b, c, -1)
    lo = coords.floor()
    frac = coords - lo
    lo = lo.long()
    hi = (lo + 1).clamp_max(r - 1)
    out = 0
    for cx in (0, 1):
        x, wx = (hi[:, 0], frac[:, 0]) if cx else (lo[:, 0], 1 - frac[:, 0])
        for cy in (0, 1):
            y, wy = (hi[:, 1], frac[:, 1]) if cy else (lo[:, 1], 1 - frac[:, 1])
            for cz in (0, 1):
                z, wz = (hi[:, 2], frac[:, 2]) if cz else (lo[:, 2], 1 - frac[:, 2])
                idx = x * r * r + y * r + z
                out = out + gather_points(flat, idx) * (wx * wy * wz)[:, None, :]
    return out


def three_nn_interpolate(points: torch.Tensor, centres: torch.Tensor, centre_features: torch.Tensor
                         ) -> torch.Tensor:
    """Features at ``points [B, 3, N]`` from ``centre_features [B, C, M]`` at ``centres [B, 3, M]``."""
    d = square_distance(points, centres)  # [B, N, M]
    k = min(3, centres.shape[2])
    dist, idx = d.topk(k, dim=2, largest=False, sorted=True)
    inv = 1.0 / dist.clamp(1e-10, 1e10)
    w = inv / inv.sum(2, keepdim=True)  # = d1·d2 / (d0·d1 + d0·d2 + d1·d2) for the nearest, etc.
    b, n, _ = idx.shape
    gathered = gather_points(centre_features, idx.reshape(b, n * k)).reshape(b, -1, n, k)
    return (gathered * w[:, None]).sum(3)
