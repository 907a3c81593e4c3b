"""Occupancy contexts of the octree coder, computed identically by the encoder, the decoder and the
table fit.

The occupancy of level ``l + 1`` is coded in 8 passes, one per child index ``k`` (bit 2: x, bit 1: y,
bit 0: z), each over every occupied node of level ``l``. So when child ``k`` is coded, the decoder
knows the whole of level ``l`` and every child ``< k`` of every node. Per axis that makes the face
neighbours of a child either both known (the child sits on the + side: its sibling and the child of
the next node across the face have index ``k ^ bit < k``) or both unknown (then the parent level's
neighbours on either side stand in). The context of one child bit is, all integers:

- the child index ``k`` and, per axis, the state of its face neighbours (``AXIS_STATES`` = 216),
- how many of its siblings are occupied so far (0, 1, 2, 3+),
- the level: the top levels apart, then the branching factor so far (nodes of ``l`` / nodes of
  ``l - 1``), which tells a surface (≈ 4 children a node) from isolated points (≈ 1),
- the neural prior (``NEURAL_BINS``): how many points of the decoder's own neural reconstruction fall
  into the child's cell, relative to the average, and whether any falls next to it (0 without one).

Everything is integer arithmetic on integer grids, so contexts are bit-identical on any machine.
"""

from __future__ import annotations

import numpy as np

AXIS_STATES = 216  # 6 ** 3
SIB_BINS = 4
LEVEL_BINS = 16
NEURAL_BINS = 5
N_CONTEXTS = LEVEL_BINS * NEURAL_BINS * SIB_BINS * 8 * AXIS_STATES

_AXES = ((4, 0), (2, 1), (1, 2))  # (bit of k, coordinate column) for x, y, z
NEIGHBOURS_26 = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)
                           if (i, j, k) != (0, 0, 0)], np.int64)


def keys(cells: np.ndarray, bits: int) -> np.ndarray:
    """Integer cells ``[M, 3]`` with coordinates in ``[-1, 2**bits]`` → sortable int64 keys (shifted by
    one so that the neighbours of border cells have keys too)."""
    c = np.asarray(cells, np.int64) + 1
    w = bits + 2
    return (c[:, 0] << (2 * w)) | (c[:, 1] << w) | c[:, 2]


def lookup(sorted_keys: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Index of each query key in ``sorted_keys``, -1 where absent."""
    if len(sorted_keys) == 0:
        return np.full(len(query), -1, np.int64)
    i = np.searchsorted(sorted_keys, query)
    i = np.minimum(i, len(sorted_keys) - 1)
    return np.where(sorted_keys[i] == query, i, -1)


def level_bin(level: int, nodes: int, parent_nodes: int) -> int:
    """Levels 0-2 apart; below them four bins of the branching factor nodes / parent_nodes."""
    if level < 3:
        return level
    r4 = 4 * nodes // max(parent_nodes, 1)  # branching × 4, integer
    return 3 + min(12, max(0, r4 - 4))  # 1.0 → 3, 1.25 → 4, ..., ≥ 4.0 → 15


class NeuralPrior:
    """The decoder's neural reconstruction on the coder's grid: point counts per cell at any level."""

    def __init__(self, grid_points: np.ndarray | None, depth: int):
        self.depth = depth
        self._levels: dict[int, tuple] = {}
        if grid_points is None or len(grid_points) == 0:
            self.cells = None
            return
        q = np.asarray(grid_points, np.int64)
        inside = np.all((q >= 0) & (q < (1 << depth)), axis=1)
        self.cells = q[inside]

    def _level(self, level: int):
        """The prior's occupied cells at ``level`` (keys, point counts) and their 26-neighbourhood,
        computed once per level (the encoder's tail cut decodes the same stream several times)."""
        if level not in self._levels:
            nq = self.cells >> (self.depth - level)
            k, counts = np.unique(keys(nq, level), return_counts=True)
            uq = np.unique(nq, axis=0)
            dil = np.unique(keys((uq[:, None, :] + NEIGHBOURS_26[None]).reshape(-1, 3), level))
            self._levels[level] = (k, counts, dil)
        return self._levels[level]

    def bins(self, children: np.ndarray, level: int, parents: int) -> np.ndarray:
        """Neural bin of each child cell ``[M, 3]`` at ``level`` (the children's level); ``parents``:
        occupied nodes one level up (the average count per child is ~ n / (4 parents))."""
        if self.cells is None:
            return np.zeros(len(children), np.int64)
        k, counts, dil = self._level(level)
        ck = keys(children, level)
        i = lookup(k, ck)
        cnt = np.where(i >= 0, counts[np.maximum(i, 0)], 0).astype(np.int64)
        near = lookup(dil, ck) >= 0
        n = len(self.cells)
        a = cnt * max(parents, 1) * 4  # count relative to the average n / (4 parents), in integers
        out = np.where(near, 1, 0)
        out = np.where(cnt > 0, np.where(2 * a < n, 2, np.where(a < 2 * n, 3, 4)), out)
        return out.astype(np.int64)


class LevelContexts:
    """Contexts for coding the children of the occupied ``nodes`` (sorted by key) of one level."""

    def __init__(self, nodes: np.ndarray, level: int, parent_count: int, prior: NeuralPrior):
        self.nodes = nodes
        m = len(nodes)
        self.level = level
        nk = keys(nodes, level)
        # face neighbours of each node at this level: index or -1, per axis and side
        self.nb = {}
        for _, col in _AXES:
            for s in (-1, 1):
                off = np.zeros(3, np.int64)
                off[col] = s
                self.nb[col, s] = lookup(nk, keys(nodes + off, level))
        self.lbin = level_bin(level, m, parent_count)
        kvec = np.array([[(k >> 2) & 1, (k >> 1) & 1, k & 1] for k in range(8)], np.int64)
        children = (2 * nodes[:, None, :] + kvec[None]).reshape(-1, 3)
        self.neural = prior.bins(children, level + 1, m).reshape(m, 8)

    def pass_contexts(self, k: int, occ: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Context ids of child ``k`` of every node and a mask of the bits that must be coded (the last
        child of a node with no occupied child so far is known to be occupied). ``occ`` ``[M, 8]``
        int8: children ``< k`` filled in."""
        axis = np.zeros(len(self.nodes), np.int64)
        for bit, col in _AXES:
            if k & bit:
                sib = occ[:, k ^ bit].astype(np.int64)
                j = self.nb[col, 1]
                out = np.where(j >= 0, occ[np.maximum(j, 0), k ^ bit], 0).astype(np.int64)
                st = sib * 3 + np.where(j >= 0, 1 + out, 0)
            else:
                st = (self.nb[col, -1] >= 0).astype(np.int64) * 2 + (self.nb[col, 1] >= 0)
            axis = axis * 6 + st
        cnt = occ[:, :k].sum(axis=1).astype(np.int64) if k else np.zeros(len(self.nodes), np.int64)
        ctx = (((self.lbin * NEURAL_BINS + self.neural[:, k]) * SIB_BINS + np.minimum(cnt, 3)) * 8 + k) \
            * AXIS_STATES + axis
        coded = ~((k == 7) & (cnt == 0))
        return ctx, coded


def children_of(nodes: np.ndarray, occ: np.ndarray) -> np.ndarray:
    """Occupied children ``[M', 3]`` of ``nodes`` given their 8 occupancy bits, sorted by key."""
    kvec = np.array([[(k >> 2) & 1, (k >> 1) & 1, k & 1] for k in range(8)], np.int64)
    ch = (2 * nodes[:, None, :] + kvec[None])[occ.astype(bool)]
    return ch
