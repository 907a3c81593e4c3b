"""Counting the octree coder's contexts on training clouds (the tables' recipe: ``jobs/fit_octree_tables.py``)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from squeeze3d.codec.octree.coder import Grid, coded_bits, exponent_for
from squeeze3d.codec.octree.context import N_CONTEXTS, NeuralPrior


def grid_exponents(points: np.ndarray, bits: Iterable[float]) -> list[int]:
    """Grid exponents whose step is the cloud's longest side / (2**b - 1) for each ``b``."""
    p = np.asarray(points, np.float64)
    side = float((p.max(axis=0) - p.min(axis=0)).max())
    return [exponent_for(side / (2.0 ** b - 1)) for b in bits if side > 0]


def count(clouds: Iterable[tuple[np.ndarray, np.ndarray | None]], bits: Iterable[float],
          counts: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Add the coded bits of each ``(points, prior_points or None)`` at each grid resolution ``bits``
    to per-context counts ``(n0, n1)`` (int64, ``N_CONTEXTS`` each)."""
    n0, n1 = counts or (np.zeros(N_CONTEXTS, np.int64), np.zeros(N_CONTEXTS, np.int64))
    bits = list(bits)
    for points, prior in clouds:
        ctxs, vals = [], []
        for e in grid_exponents(points, bits):
            grid, cells = Grid.fit(points, e)
            pr = NeuralPrior(grid.prior_cells(prior), grid.depth)
            for ctx, b in coded_bits(grid.depth, cells, pr):
                ctxs.append(ctx)
                vals.append(b)
        if not ctxs:
            continue
        c, v = np.concatenate(ctxs), np.concatenate(vals).astype(np.int64)
        n1 += np.bincount(c, weights=v, minlength=N_CONTEXTS).astype(np.int64)
        n0 += np.bincount(c, weights=1 - v, minlength=N_CONTEXTS).astype(np.int64)
    return n0, n1
