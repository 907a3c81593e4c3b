"""Octree point-cloud coding: the classical path (G-PCC-class, no model) and the enhancement layer
whose contexts see the neural reconstruction.

    blob = encode_points(points, e)                       # classical, grid step 2**(e/16)
    points = decode_points(blob)                          # leaf cell centres
    coarse = decode_points(blob, max_level=4)             # progressive: any prefix of the levels
    blob, e, q = encode_min_quality(points, 30.0)         # the coarsest grid meeting a D1-PSNR floor
                                                          # (cell centres smoothed where that is better)
    blob, e = encode_max_bytes(points, 64)                # the finest grid within 64 bytes, unmeasured
    blob = encode_points(points, e, prior=neural_points)  # enhancement: same frame as ``points``

See ``coder`` (stream layout), ``context`` (what a probability depends on) and ``tables`` (the
shipped integer tables and how they were counted).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from squeeze3d.codec.octree import coder
from squeeze3d.codec.octree.coder import MAX_DEPTH, Grid, exponent_for, step_of
from squeeze3d.codec.octree.tables import table

__all__ = ["MAX_DEPTH", "Grid", "best_reconstruction", "decode_points", "encode_max_bytes", "encode_min_quality", "encode_points", "exponent_for",
           "reconstruct", "step_of", "exponent_range"]


def _table(prior) -> np.ndarray:
    return table("classical" if prior is None else "neural")


def encode_points(points: np.ndarray, e: int, prior: np.ndarray | None = None, trimmed: bool = True,
                  smooth: bool = False) -> bytes:
    """``trimmed=False``: skip the tail cut (~2 bytes larger; for fast size comparisons); ``smooth``:
    the decoder smooths the cell centres (``coder.smoothed``; the same bytes, one header bit)."""
    return coder.encode(points, e, _table(prior), prior, trimmed, smooth)


def decode_points(blob: bytes, prior: np.ndarray | None = None, max_level: int | None = None) -> np.ndarray:
    return coder.decode(blob, _table(prior), prior, max_level)


def reconstruct(points: np.ndarray, e: int, smooth: bool = False) -> np.ndarray:
    """What the decoder will return for ``points`` on grid ``e`` (without coding)."""
    grid, cells = Grid.fit(points, e, smooth)
    return grid.to_points(cells)


def best_reconstruction(points: np.ndarray, e: int, quality: Callable[[np.ndarray, np.ndarray], float],
                        smooth: bool = True) -> tuple[float, bool]:
    """``(quality, smoothed)`` of grid ``e``'s decode, smoothed or not, whichever measures better
    (``smooth=False``: never smoothed). The two files have the same size."""
    grid, cells = Grid.fit(points, e)  # one fit serves both decodes: they differ only in the flag
    plain = float(quality(points, grid.to_points(cells)))
    if not smooth:
        return plain, False
    grid.smooth = True
    sm = float(quality(points, grid.to_points(cells)))
    return (sm, True) if sm > plain else (plain, False)


def exponent_range(points: np.ndarray, max_bits: int = 16) -> tuple[int, int]:
    """Grid exponents from the coarsest useful grid (2 cells along the longest side) to ``max_bits``
    bits along it, clamped to what the octree can hold."""
    p = np.asarray(points, np.float64)
    side = float((p.max(axis=0) - p.min(axis=0)).max()) if len(p) else 0.0
    if not side > 0:
        return 0, 0  # a single point (or all duplicates): any grid holds it in one cell
    coarse = exponent_for(side)
    fine = exponent_for(side / (2.0 ** max_bits - 1))
    while math.ceil(side / step_of(fine)) >= 2 ** MAX_DEPTH:
        fine += 1
    return fine, coarse


TAIL_BYTES = 8
"""At most what the range coder's tail cut saves (its flush: two 32-bit words)."""


def encode_max_bytes(points: np.ndarray, budget: int, prior: np.ndarray | None = None, max_bits: int = 16,
                     smooth: bool = True) -> tuple[bytes, int] | None:
    """The finest grid whose (tail-cut) stream takes at most ``budget`` bytes, chosen by size alone:
    nothing is decoded or measured (the gate-off file). ``smooth`` sets the decoder's smoothing bit.
    Returns ``(blob, e)``, or None when even the coarsest grid does not fit."""
    fine, coarse = exponent_range(points, max_bits)
    sizes: dict[int, int] = {}

    def size(e: int) -> int:  # untrimmed: the tail cut decodes a few times; it only makes a stream shorter
        if e not in sizes:
            sizes[e] = len(encode_points(points, e, prior, trimmed=False, smooth=smooth))
        return sizes[e]

    cut: dict[int, bytes] = {}

    def trimmed(e: int) -> bytes:
        if e not in cut:
            cut[e] = encode_points(points, e, prior, trimmed=True, smooth=smooth)
        return cut[e]

    if size(coarse) > budget and len(trimmed(coarse)) > budget:
        return None
    # from the coarse end one bit (16 steps) at a time: a small budget is a coarse grid, and the
    # finest grids are the slowest to code; then bisect within the last bit
    # (invariant, sizes falling as the grid coarsens: size(hi) fits, size(lo) does not)
    hi, lo = coarse, coarse
    while lo > fine:
        lo = max(fine, hi - 16)
        if size(lo) > budget:
            break
        hi = lo
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if size(mid) <= budget:
            hi = mid
        else:
            lo = mid
    # the tail cut saves a few bytes, and sizes are not strictly monotone: a slightly finer grid may fit
    best = (trimmed(hi), hi)
    for e in range(hi - 1, max(fine, hi - 3) - 1, -1):
        if size(e) <= budget + TAIL_BYTES:  # only a stream the cut could bring within the budget
            blob = trimmed(e)
            if len(blob) <= budget:
                best = (blob, e)
    return best


def encode_min_quality(points: np.ndarray, floor_db: float, quality: Callable[[np.ndarray, np.ndarray], float],
                       prior: np.ndarray | None = None, max_bits: int = 16,
                       smooth: bool = True) -> tuple[bytes, int, float]:
    """The coarsest grid whose decode reaches ``floor_db`` (``quality(reference, test)``), by
    bisection over the grid exponent (quality falls as the grid coarsens); the finest grid's coding
    if none does. Each grid's decode is smoothed when that measures better (``smooth=False``: never).
    Returns ``(blob, e, quality)``."""
    fine, coarse = exponent_range(points, max_bits)
    memo: dict[int, tuple[float, bool]] = {}

    def q(e: int) -> float:
        if e not in memo:
            memo[e] = best_reconstruction(points, e, quality, smooth)
        return memo[e][0]

    def code(e: int, trimmed: bool = True) -> bytes:
        return encode_points(points, e, prior, trimmed, smooth=memo[e][1])

    if q(fine) < floor_db:
        return code(fine), fine, q(fine)
    # the tail cut costs a few decodes: sizes are compared untrimmed, the winner is trimmed
    lo, hi = fine, coarse  # invariant: q(lo) >= floor
    if q(hi) >= floor_db:
        lo = hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if q(mid) >= floor_db:
            lo = mid
        else:
            hi = mid
    # neither quality nor size is strictly monotone in the step: of the grids near the bisection's
    # that meet the floor, keep the smallest file
    best = None
    for e in range(max(fine, lo - 3), min(lo + 4, coarse) + 1):
        if q(e) >= floor_db:
            blob = code(e, trimmed=False)
            if best is None or len(blob) < len(best[0]):
                best = (blob, e, q(e))
    blob, e, qe = best
    return coder.trim(blob, _table(prior), prior), e, qe
