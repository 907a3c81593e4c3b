"""Procedural radiance-field corpus: the corpus shapes (``corpora.points``) as coloured, partly
translucent (r, g, b, σ) voxel grids, the "real objects" of the ``nerfmae`` pair.

Grid convention (shared with ``metrics.volume`` and the codec): float32 ``[4, R, R, R]``, channels
(r, g, b, σ), axes (x, y, z) with z up, voxel centres at ``-1 + (k + 0.5)·2/R`` covering the cube
``[-1, 1]³``; rgb in [0, 1] (0 where σ = 0), σ ≥ 0 = density per *voxel length* (a ray crossing one
voxel keeps ``exp(-σ)`` of its light). Materials are defined per unit length of the cube and
converted, so an object looks the same at 32³ and 160³.

How a grid is made (deterministic from ``(seed, index, variation)``):
- geometry: the corpus builder's *parts* (boxes, rods, revolutions, ...; each watertight) for
  ``index`` — the same random stream as ``corpus_shapes.make_mesh``, without the boolean union: an inside
  test per part is exact, cheap and tells which part a voxel belongs to (its material);
- frame: the parts' bounding-box centre at the origin, the longest half-extent scaled to
  ``margin`` (the normalisation the pair records is this centre and scale);
- inside test: ray parity along z on a ``supersample``× finer grid (each triangle toggles the
  columns whose centre it covers, a cumulative sum gives inside/outside), then box-averaged down to
  R³, so thin legs keep a fractional density instead of vanishing;
- materials: per part a colour from a seeded palette (one hue family per object, accents per part)
  with a soft linear gradient, and either an opaque or a translucent density.
  ``variation`` re-draws colours and materials for the same geometry (0 = the canonical object).

Splits are the corpus's (by index: 80/10/10, balanced per category). Timing on this machine
(2 shared, contended cores, so upper bounds): about 40 ms per object at 32³ (supersample 2), about
10 s at 160³.
"""

from __future__ import annotations

import colorsys
import hashlib
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import trimesh

from squeeze3d.corpora import points as corpus
from squeeze3d.corpora import shapes as corpus_shapes

DEFAULT_SEED = corpus.DEFAULT_SEED
CATEGORIES = corpus.CATEGORIES
_STREAM_MATERIAL = 2  # corpus_shapes uses 0 (shape parameters) and 1 (surface samples)
# a ray exactly through a shared edge would toggle twice (or zero times): shift the ray lattice by an
# irrational fraction of a fine voxel, far below any feature size
_RAY_JITTER = (1.1e-4 * np.pi, 0.7e-4 * np.e)


@dataclass(frozen=True)
class GridConfig:
    resolution: int = 32
    """R: voxels per axis (NeRF-MAE itself uses 160)."""
    supersample: int = 2
    """Inside tests per voxel and axis (box-averaged): fractional density on thin parts."""
    margin: float = 0.9
    """The object's longest half-extent after normalisation (the cube is [-1, 1])."""
    translucent_prob: float = 0.25
    """Probability that a part is translucent rather than opaque."""
    sigma_opaque: tuple[float, float] = (300.0, 600.0)
    """Opaque density range per unit length of the cube (≈19–38 per voxel at 32³)."""
    sigma_translucent: tuple[float, float] = (5.0, 20.0)
    """Translucent density range per unit length (≈0.3–1.25 per voxel at 32³)."""
    gradient: float = 0.25
    """Amplitude of the per-part linear colour gradient across the object."""

    def __post_init__(self):
        if self.resolution < 4 or self.resolution % 4:
            raise ValueError(f"resolution must be a multiple of 4 and >= 4, got {self.resolution}")
        if self.supersample < 1:
            raise ValueError(f"supersample must be >= 1, got {self.supersample}")


@dataclass
class RadianceObject:
    index: int
    label: int
    grid: np.ndarray
    """``[4, R, R, R]`` float32 (r, g, b, σ)."""
    centre: np.ndarray
    """``[3]``: the object-frame point at the grid's origin."""
    scale: float
    """Object-frame length of one grid unit (grid coords = (p - centre) / scale)."""

    @property
    def category(self) -> str:
        return CATEGORIES[self.label]


def train_index(k: int) -> int:
    """The ``k``-th corpus index of the train split (train slots are the first 96 of every 120)."""
    n = len(CATEGORIES)
    return (int(k) // (8 * n)) * (10 * n) + int(k) % (8 * n)


def make_parts(seed: int, index: int) -> tuple[list[trimesh.Trimesh], int]:
    """The corpus builder's watertight parts of object ``index`` (before the boolean union)."""
    return corpus_shapes.make_parts(seed, index)


def parity_inside(vertices: np.ndarray, faces: np.ndarray, n: int) -> np.ndarray:
    """Inside test of a closed triangle mesh (vertices already in cube coordinates) on the ``n³``
    voxel centres of ``[-1, 1]³``: ``[n, n, n]`` bool, axes (x, y, z).

    Each triangle is rasterised over the z-rays (columns) whose (x, y) it covers; a hit toggles
    inside/outside for every centre above it, which a cumulative sum turns into the parity."""
    d = 2.0 / n
    tri = vertices[faces].astype(np.float64)  # [F, 3, 3]
    # pixel coordinates of the triangle corners in the ray lattice: ray (i, j) sits at (i, j)
    px = (tri[..., 0] + 1) / d - 0.5 - _RAY_JITTER[0]
    py = (tri[..., 1] + 1) / d - 0.5 - _RAY_JITTER[1]
    i0 = np.clip(np.ceil(px.min(1)), 0, n).astype(np.int64)
    i1 = np.clip(np.floor(px.max(1)), -1, n - 1).astype(np.int64)
    j0 = np.clip(np.ceil(py.min(1)), 0, n).astype(np.int64)
    j1 = np.clip(np.floor(py.max(1)), -1, n - 1).astype(np.int64)
    ni, nj = np.maximum(i1 - i0 + 1, 0), np.maximum(j1 - j0 + 1, 0)
    counts = ni * nj
    keep = counts > 0
    if not keep.any():
        return np.zeros((n, n, n), bool)
    f = np.repeat(np.flatnonzero(keep), counts[keep])  # one row per (triangle, candidate ray)
    start = np.repeat(np.cumsum(counts[keep]) - counts[keep], counts[keep])
    local = np.arange(len(f)) - start
    ci = i0[f] + local // nj[f]
    cj = j0[f] + local % nj[f]
    ax, ay, bx, by, cx, cy = px[f, 0], py[f, 0], px[f, 1], py[f, 1], px[f, 2], py[f, 2]
    det = (by - cy) * (ax - cx) + (cx - bx) * (ay - cy)
    ok = np.abs(det) > 1e-12  # triangles seen edge-on from the ray contribute no crossing
    det = np.where(ok, det, 1.0)
    w0 = ((by - cy) * (ci - cx) + (cx - bx) * (cj - cy)) / det
    w1 = ((cy - ay) * (ci - cx) + (ax - cx) * (cj - cy)) / det
    w2 = 1 - w0 - w1
    hit = ok & (w0 >= 0) & (w1 >= 0) & (w2 >= 0)
    z = w0 * tri[f, 0, 2] + w1 * tri[f, 1, 2] + w2 * tri[f, 2, 2]
    k = np.clip(np.floor((z + 1) / d - 0.5) + 1, 0, n).astype(np.int64)  # first centre above the hit
    toggles = np.zeros((n, n, n + 1), np.int32)
    np.add.at(toggles, (ci[hit], cj[hit], k[hit]), 1)
    return (np.cumsum(toggles[..., :n], axis=2) % 2).astype(bool)


def _palette(rng: np.random.Generator, n_parts: int) -> np.ndarray:
    """``[n_parts, 3]`` colours: one hue family per object, a few parts get an accent hue."""
    base_h = rng.random()
    cols = []
    for _ in range(n_parts):
        h = (base_h + (rng.uniform(0.3, 0.7) if rng.random() < 0.3 else rng.normal(0, 0.04))) % 1.0
        s, v = rng.uniform(0.35, 0.95), rng.uniform(0.35, 0.95)
        cols.append(colorsys.hsv_to_rgb(h, s, v))
    return np.asarray(cols, np.float64)


def voxelise(parts: list[trimesh.Trimesh], rng: np.random.Generator, cfg: GridConfig
             ) -> tuple[np.ndarray, np.ndarray, float]:
    """Parts (object frame) -> ``([4, R, R, R]`` grid, centre, scale); materials drawn from ``rng``."""
    verts = np.concatenate([p.vertices for p in parts])
    lo, hi = verts.min(0), verts.max(0)
    centre = (lo + hi) / 2
    scale = float((hi - lo).max() / 2 / cfg.margin)
    r, ss = cfg.resolution, cfg.supersample
    n = r * ss
    colours = _palette(rng, len(parts))
    translucent = rng.random(len(parts)) < cfg.translucent_prob
    lo_s = np.where(translucent, cfg.sigma_translucent[0], cfg.sigma_opaque[0])
    hi_s = np.where(translucent, cfg.sigma_translucent[1], cfg.sigma_opaque[1])
    sigma_world = rng.uniform(lo_s, hi_s)
    grad_dir = rng.normal(size=(len(parts), 3))
    grad_dir /= np.linalg.norm(grad_dir, axis=1, keepdims=True)
    # later parts win where parts overlap (labels: 0 = empty)
    label = np.zeros((n, n, n), np.int16)
    for p_idx, part in enumerate(parts):
        inside = parity_inside((part.vertices - centre) / scale, part.faces, n)
        label[inside] = p_idx + 1
    # per fine voxel: density (per fine-voxel length) and colour, then box-average to R³
    sigma_tab = np.concatenate([[0.0], sigma_world * (2.0 / n)])
    sig_f = sigma_tab[label]
    c = (np.arange(n) + 0.5) * (2.0 / n) - 1
    xyz = np.stack(np.meshgrid(c, c, c, indexing="ij"), 0)  # [3, n, n, n]
    rgb_f = np.zeros((3, n, n, n))
    for p_idx in range(len(parts)):
        m = label == p_idx + 1
        if not m.any():
            continue
        shade = 1 + cfg.gradient * np.tensordot(grad_dir[p_idx], xyz[:, m], axes=1)
        rgb_f[:, m] = np.clip(colours[p_idx][:, None] * shade[None], 0, 1)

    def pool(a: np.ndarray) -> np.ndarray:
        return a.reshape(*a.shape[:-3], r, ss, r, ss, r, ss).mean(axis=(-5, -3, -1))

    # densities add along a ray, so a voxel's density is the fine densities' mean times ss (its
    # length is ss fine voxels); colour is density-weighted, as emission-absorption integrates it
    sig = pool(sig_f) * ss
    wsum = pool(sig_f)
    rgb = np.where(wsum > 0, pool(rgb_f * sig_f) / np.maximum(wsum, 1e-12), 0.0)
    grid = np.concatenate([rgb, sig[None]], 0).astype(np.float32)
    return grid, centre.astype(np.float32), scale


def make_grid(seed: int, index: int, cfg: GridConfig | None = None, variation: int = 0) -> RadianceObject:
    """Corpus object ``index`` as a radiance grid; ``variation`` re-draws colours and materials."""
    cfg = cfg or GridConfig()
    parts, label = make_parts(seed, index)
    rng = np.random.default_rng([int(seed), int(index), _STREAM_MATERIAL, int(variation)])
    grid, centre, scale = voxelise(parts, rng, cfg)
    return RadianceObject(index=int(index), label=label, grid=grid, centre=centre, scale=scale)


def cache_dir() -> Path:
    """``$SQUEEZE3D_CACHE/radiance`` (default ``~/.cache/squeeze3d/radiance``); never committed."""
    return Path(os.environ.get("SQUEEZE3D_CACHE", Path.home() / ".cache" / "squeeze3d")) / "radiance"


def build_grid_cache(count: int, cfg: GridConfig | None = None, seed: int = DEFAULT_SEED,
                     directory: str | Path | None = None,
                     progress: Callable[[int, int], None] | None = None) -> dict[str, np.ndarray]:
    """Grids of objects ``0..count-1`` (canonical variation), generated once and cached as ``.npz``
    (written atomically). Returns ``grids [count, 4, R, R, R]`` float16, ``labels``, ``splits``
    (0 train, 1 val, 2 test), ``centres``, ``scales``."""
    cfg = cfg or GridConfig()
    directory = Path(directory) if directory is not None else cache_dir()
    key = hashlib.sha256(f"v1|{seed}|{count}|{sorted(asdict(cfg).items())}".encode()).hexdigest()[:12]
    path = directory / f"radiance_s{seed}_n{count}_r{cfg.resolution}_{key}.npz"
    if path.exists():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    r = cfg.resolution
    grids = np.zeros((count, 4, r, r, r), np.float16)
    labels = np.zeros(count, np.int64)
    centres = np.zeros((count, 3), np.float32)
    scales = np.zeros(count, np.float32)
    for i in range(count):
        obj = make_grid(seed, i, cfg)
        grids[i], labels[i], centres[i], scales[i] = obj.grid, obj.label, obj.centre, obj.scale
        if progress is not None:
            progress(i + 1, count)
    splits = np.array([corpus.SPLITS.index(corpus.split_of(i)) for i in range(count)], np.int64)
    out = {"grids": grids, "labels": labels, "splits": splits, "centres": centres, "scales": scales}
    directory.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **out)
    os.replace(tmp, path)  # atomic: a half-written cache is never read
    return out
