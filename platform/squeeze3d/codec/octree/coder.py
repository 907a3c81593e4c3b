"""The octree geometry coder: a point cloud on a grid of the encoder's choosing → a few bytes.

Stream layout (all of it is the payload of a ``.sq3d`` layer)::

    depth        u8        octree levels D (the grid is 2**D cells a side), 0..MAX_DEPTH; bit 7
                           (``SMOOTH_FLAG``): the decoder moves each decoded cell centre toward its
                           occupied neighbours (``smoothed``). Streams without it decode as before
    step         i16       grid step = 2 ** (e / 16), e the stored integer (exact, see ``step_of``)
    origin       3 × zigzag varint   grid origin in steps: a point of cell q sits at (q + origin) * step
    occupancy    rest      one range-coded stream (``constriction``): level 0 → D, per level 8
                           passes (one per child index) over the occupied nodes in key order;
                           the coder's 32-bit words big-endian, the tail cut to the shortest
                           prefix that still decodes when the decoder pads it with 0xFF bytes
                           (``trim``: the range coder's flush costs ~0.3 byte instead of ~2)

Every probability comes from an integer table (``tables.py``, 16-bit) indexed by an integer context
(``context.py``), so the decoder's arithmetic sees bit-identical models on any machine, thread
count or batch. Decoding stops after any level on request (``max_level``): each level is a valid,
coarser cloud of cell centres (progressive decode). The leaves decode to one point per occupied cell
(the input's exact duplicates on the grid merge).

The decoder-side smoothing: a cell centre sits up to half a cell off the surface it samples; moving
it ``SMOOTH_WEIGHT`` of the way toward the mean of its occupied 26-neighbours (a discrete Laplacian
step) pulls it toward the local surface. Measured on the real-object train split (``jobs/
bench_codec.py``, docs/benchmarks.md): the same D1-PSNR from a coarser grid, so fewer bytes at equal
quality. The encoder decides per file (``encode_min_quality`` measures both) and says so in the
stream; the neighbour search is on integer cells, so every decoder finds the same neighbours.
"""

from __future__ import annotations

import math
import struct

import numpy as np

from squeeze3d.codec import varint
from squeeze3d.codec.octree.context import (
    NEIGHBOURS_26,
    LevelContexts,
    NeuralPrior,
    children_of,
    keys,
    lookup,
)
from squeeze3d.codec.rangecoding import bernoulli, padded_words, shortest_prefix, to_bytes
from squeeze3d.errors import ContainerError

MAX_DEPTH = 21  # 2**21 cells a side; keys stay in int64 (3 × 23 bits)
MAX_NODES = 1 << 22  # a corrupted stream must not explode memory before the CRC-free payload fails

# 2 ** (i / 16) as exact float64 literals: no pow() whose last bit could differ between C libraries
_STEP_FRAC = tuple(float.fromhex(h) for h in (
    "0x1.0000000000000p+0", "0x1.0b5586cf9890fp+0", "0x1.172b83c7d517bp+0", "0x1.2387a6e756238p+0",
    "0x1.306fe0a31b715p+0", "0x1.3dea64c123422p+0", "0x1.4bfdad5362a27p+0", "0x1.5ab07dd485429p+0",
    "0x1.6a09e667f3bcdp+0", "0x1.7a11473eb0187p+0", "0x1.8ace5422aa0dbp+0", "0x1.9c49182a3f090p+0",
    "0x1.ae89f995ad3adp+0", "0x1.c199bdd85529cp+0", "0x1.d5818dcfba487p+0", "0x1.ea4afa2a490dap+0"))
_HEAD = struct.Struct("<Bh")
SMOOTH_FLAG = 0x80
SMOOTH_WEIGHT = 0.4
"""How far toward the occupied neighbours' mean a smoothed cell centre moves (0.2-0.5 measured on
the train split; 0.3-0.5 tie, 0.4 gave the fewest mean bytes at 30 and 35 dB)."""


def smoothed(cells: np.ndarray, level: int, weight: float = SMOOTH_WEIGHT) -> np.ndarray:
    """Integer cells ``[N, 3]`` of one level → float cell coordinates moved ``weight`` of the way to the
    mean of their occupied 26-neighbours (isolated cells stay where they are)."""
    cells = np.asarray(cells, np.int64)
    sk = np.sort(keys(cells, level))
    acc = np.zeros(cells.shape, np.float64)
    n = np.zeros(len(cells), np.float64)
    for off in NEIGHBOURS_26:
        hit = (lookup(sk, keys(cells + off, level)) >= 0).astype(np.float64)
        acc += hit[:, None] * off
        n += hit
    return cells + weight * acc / np.maximum(n, 1.0)[:, None]


def step_of(e: int) -> float:
    """Grid step for the stored exponent: 2 ** (e / 16), computed exactly (a power of two times a
    tabulated constant)."""
    return math.ldexp(_STEP_FRAC[e % 16], e // 16)


def exponent_for(step: float) -> int:
    """The stored exponent whose step is the largest not above ``step``."""
    e = math.floor(16 * math.log2(step))
    while step_of(e + 1) <= step:
        e += 1
    while step_of(e) > step:
        e -= 1
    return e


class Grid:
    """A cubic grid: ``depth`` levels, step ``2 ** (e / 16)``, integer origin (in steps) at the
    cloud's lowest cell on each axis. (An origin stored in eighths of the cube saved 2-3 header bytes
    but cost 5-6 bytes at 30-35 dB: the contexts were counted on clouds touching the cube's low faces.)"""

    def __init__(self, e: int, origin: tuple[int, int, int], depth: int, smooth: bool = False):
        if not -32768 <= e <= 32767:
            raise ValueError(f"grid step exponent {e} out of range")
        self.e, self.depth, self.smooth = int(e), int(depth), bool(smooth)
        self.origin = tuple(int(o) for o in origin)
        self.step = step_of(self.e)

    @classmethod
    def fit(cls, points: np.ndarray, e: int, smooth: bool = False) -> tuple[Grid, np.ndarray]:
        """The grid of step exponent ``e`` that holds ``points``, and their unique cells (sorted);
        ``smooth``: its decode smooths the cell centres."""
        step = step_of(e)
        q = np.round(np.asarray(points, np.float64) / step)
        if not np.all(np.isfinite(q)) or np.abs(q).max() > 2 ** 52:
            raise ValueError("points do not fit a grid of this step")
        q = q.astype(np.int64)
        origin = q.min(axis=0)
        q -= origin
        depth = max(int(q.max()).bit_length(), 0) if len(q) else 0
        if depth > MAX_DEPTH:
            raise ValueError(f"a grid of step 2^({e}/16) needs {depth} levels (at most {MAX_DEPTH})")
        return cls(e, tuple(int(v) for v in origin), depth, smooth), np.unique(q, axis=0)

    def header(self) -> bytes:
        return _HEAD.pack(self.depth | (SMOOTH_FLAG if self.smooth else 0), self.e) + b"".join(varint.encode(varint.zigzag(o)) for o in self.origin)

    @classmethod
    def parse(cls, data: bytes) -> tuple[Grid, int]:
        if len(data) < _HEAD.size:
            raise ContainerError("octree stream: truncated grid header")
        depth, e = _HEAD.unpack_from(data, 0)
        smooth, depth = bool(depth & SMOOTH_FLAG), depth & ~SMOOTH_FLAG
        if depth > MAX_DEPTH:
            raise ContainerError(f"octree stream: {depth} levels (at most {MAX_DEPTH}): corrupted")
        pos = _HEAD.size
        origin = []
        for _ in range(3):
            z, pos = varint.decode(data, pos, "octree stream: the grid origin")
            origin.append(varint.unzigzag(z))
        return cls(e, tuple(origin), depth, smooth), pos

    def to_points(self, cells: np.ndarray, level: int | None = None) -> np.ndarray:
        """Cell centres (float32, the grid's frame) of integer cells at ``level`` (default: leaves),
        smoothed when the grid says so."""
        level = self.depth if level is None else level
        size = 1 << (self.depth - level)
        c = smoothed(cells, level) if self.smooth else np.asarray(cells, np.float64)
        c = c * size + (size - 1) / 2.0 + np.asarray(self.origin, np.float64)
        return (c * self.step).astype(np.float32)

    def prior_cells(self, points: np.ndarray | None) -> np.ndarray | None:
        """Points (the grid's frame) → their integer cells at the leaves (may fall outside)."""
        if points is None:
            return None
        return np.floor(np.asarray(points, np.float64) / self.step + 0.5).astype(np.int64) \
            - np.asarray(self.origin, np.int64)


def _probabilities(table: np.ndarray, ctx: np.ndarray) -> np.ndarray:
    return table[ctx].astype(np.float64) / 65536.0  # exact: 16-bit integers over a power of two


def coded_bits(depth: int, cells: np.ndarray, prior: NeuralPrior):
    """Every coded occupancy bit of the octree of ``cells``, in stream order: yields ``(contexts,
    bits)`` per pass. Shared by the encoder and the table fit (``fit.py``)."""
    cells = np.asarray(cells, np.int64)
    kvec = np.array([[(k >> 2) & 1, (k >> 1) & 1, k & 1] for k in range(8)], np.int64)
    nodes = np.zeros((1, 3), np.int64)
    parents = 1
    for level in range(depth):
        lc = LevelContexts(nodes, level, parents, prior)
        below = np.unique(keys(cells >> (depth - level - 1), level + 1))
        ch = (2 * nodes[:, None, :] + kvec[None]).reshape(-1, 3)
        truth = (lookup(below, keys(ch, level + 1)) >= 0).reshape(-1, 8).astype(np.int8)
        occ = np.zeros_like(truth)
        for k in range(8):
            ctx, coded = lc.pass_contexts(k, occ)
            if coded.any():
                yield ctx[coded], truth[coded, k]
            occ[:, k] = truth[:, k]
        parents = len(nodes)
        nodes = _sorted(children_of(nodes, occ), level + 1)


def encode_cells(grid: Grid, cells: np.ndarray, table: np.ndarray, prior_points: np.ndarray | None = None) -> bytes:
    """Occupied leaf cells (unique, inside the grid) → the stream (header + occupancy)."""
    import constriction

    enc = constriction.stream.queue.RangeEncoder()
    model = bernoulli()
    prior = NeuralPrior(grid.prior_cells(prior_points), grid.depth)
    for ctx, bits in coded_bits(grid.depth, cells, prior):
        enc.encode(bits.astype(np.int32), model, _probabilities(table, ctx))
    return grid.header() + to_bytes(enc.get_compressed())


def trim(blob: bytes, table: np.ndarray, prior_points: np.ndarray | None = None) -> bytes:
    """The shortest prefix of ``blob`` that decodes to the same cells (each cut verified by decoding
    it as the decoder will: padded with 0xFF)."""
    grid, _ = Grid.parse(blob)
    prior = NeuralPrior(grid.prior_cells(prior_points), grid.depth)  # shared by the decodes below
    _, want, _ = decode_cells(blob, table, prior=prior)

    def decodes_same(cut: bytes) -> bool:
        got = decode_cells(cut, table, prior=prior)[1]
        return got.shape == want.shape and np.array_equal(got, want)

    return shortest_prefix(blob, decodes_same, keep=len(grid.header()))


def _sorted(cells: np.ndarray, level: int) -> np.ndarray:
    return cells[np.argsort(keys(cells, level), kind="stable")]


def decode_cells(data: bytes, table: np.ndarray, prior_points: np.ndarray | None = None,
                 max_level: int | None = None, prior: NeuralPrior | None = None) -> tuple[Grid, np.ndarray, int]:
    """The stream → (grid, occupied cells at the last decoded level, that level). ``max_level``: stop
    after that many levels (progressive decode; default: all)."""
    import constriction

    grid, pos = Grid.parse(data)
    body = data[pos:]
    dec = constriction.stream.queue.RangeDecoder(padded_words(body))  # the tail ``trim`` cut, restored
    model = bernoulli()
    if prior is None or prior.depth != grid.depth:
        prior = NeuralPrior(grid.prior_cells(prior_points), grid.depth)
    last = grid.depth if max_level is None else max(0, min(int(max_level), grid.depth))
    nodes = np.zeros((1, 3), np.int64)
    parents = 1
    for level in range(last):
        lc = LevelContexts(nodes, level, parents, prior)
        occ = np.zeros((len(nodes), 8), np.int8)
        for k in range(8):
            ctx, coded = lc.pass_contexts(k, occ)
            bit = np.ones(len(nodes), np.int8)
            n = int(coded.sum())
            if n:
                try:
                    bit[coded] = dec.decode(model, _probabilities(table, ctx[coded])).astype(np.int8)
                except (ValueError, RuntimeError, AssertionError) as e:  # constriction: invalid data
                    raise ContainerError(f"octree stream: corrupted occupancy ({e})") from None
            occ[:, k] = bit
        parents = len(nodes)
        nodes = _sorted(children_of(nodes, occ), level + 1)
        if len(nodes) > MAX_NODES:
            raise ContainerError("octree stream: corrupted (more occupied cells than any file can hold)")
    return grid, nodes, last


def encode(points: np.ndarray, e: int, table: np.ndarray, prior_points: np.ndarray | None = None,
           trimmed: bool = True, smooth: bool = False) -> bytes:
    grid, cells = Grid.fit(points, e, smooth)
    blob = encode_cells(grid, cells, table, prior_points)
    return trim(blob, table, prior_points) if trimmed else blob


def decode(data: bytes, table: np.ndarray, prior_points: np.ndarray | None = None,
           max_level: int | None = None) -> np.ndarray:
    """The stream → points (float32): leaf cell centres, or cell centres of ``max_level``."""
    grid, cells, level = decode_cells(data, table, prior_points, max_level)
    return grid.to_points(cells, level)
