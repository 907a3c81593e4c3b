"""Procedural shape corpus: the "real objects" the mini zoo is trained and evaluated on (the corpus API).

The shapes themselves (categories, primitives, per-category builders, ``make_parts`` / ``make_mesh``)
are ``corpus_shapes``'s; this module turns them into data: surface samples normalised to the unit
sphere (``make_shape``, ``resample``), the train/val/test split, and the cached point arrays training
reads (``build_point_cache``). ``CATEGORIES`` and ``category_of`` are re-exported here as part of that
API. PNG grids of the corpus are ``corpus_plots``'s.

Everything is deterministic from ``(seed, index)``:
- ``category_of(index) = index % len(CATEGORIES)`` (balanced by construction),
- ``split_of(index)``: slot ``(index // len(CATEGORIES)) % 10`` -> 0..7 train, 8 val, 9 test, so
  splits are fixed by index and every split is balanced across categories,
- the shape parameters and the surface samples come from ``numpy.random.default_rng([seed, index, stream])``
  (``corpus_shapes.object_rng``; shape and samples never share a stream).

Axes: z is up; shapes are built at roughly unit scale, then the sampled points are normalised to the
unit sphere (bounding-box centre, farthest point at radius 1) and the centre and scale are kept.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from squeeze3d.corpora.shapes import CATEGORIES, STREAM_SAMPLE, make_mesh, object_rng
from squeeze3d.corpora.shapes import category_of as category_of  # re-exported: part of the corpus API

SPLITS = ("train", "val", "test")
DEFAULT_SEED = 0


def split_of(index: int) -> str:
    slot = (int(index) // len(CATEGORIES)) % 10
    return "train" if slot < 8 else ("val" if slot == 8 else "test")


def split_indices(split: str, count: int) -> np.ndarray:
    """The corpus indices in ``range(count)`` that belong to ``split``."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return np.array([i for i in range(count) if split_of(i) == split], dtype=np.int64)


# ----------------------------------------------------------------------------------------------
# objects as normalised surface samples, and the cached point arrays


@dataclass
class Shape:
    """One corpus object."""

    index: int
    label: int
    """Index into ``CATEGORIES``."""
    mesh: trimesh.Trimesh
    """In the object's own frame (not normalised)."""
    points: np.ndarray
    """``[N, 3]`` float32 surface samples, normalised to the unit sphere."""
    centre: np.ndarray
    """``[3]``: bounding-box centre of the raw samples (points = (raw - centre) / scale)."""
    scale: float

    @property
    def category(self) -> str:
        return CATEGORIES[self.label]


def sample_surface(mesh: trimesh.Trimesh, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` area-uniform surface samples ``[n, 3]`` float32 (our own sampler: fully seeded)."""
    tri = mesh.triangles
    areas = mesh.area_faces
    face = rng.choice(len(areas), size=n, p=areas / areas.sum())
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    t = tri[face]
    p = t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])
    return p.astype(np.float32)


def normalise(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """numpy view of ``metrics.pointcloud.normalise_unit_sphere`` (same definition)."""
    import torch

    from squeeze3d.metrics.pointcloud import normalise_unit_sphere

    p, c, s = normalise_unit_sphere(torch.from_numpy(np.asarray(points, np.float32))[None])
    return p[0].numpy(), c[0].numpy(), float(s[0])


def make_shape(seed: int, index: int, num_points: int = 2048, sample_stream: int = 0) -> Shape:
    """Corpus object ``index``: mesh, label and ``num_points`` normalised surface points.

    ``sample_stream`` picks an independent surface sampling of the same object (0 is the canonical
    one; 1, 2, ... are used for the resampling floor)."""
    mesh, label = make_mesh(seed, index)
    raw = sample_surface(mesh, num_points, object_rng(seed, index, STREAM_SAMPLE + 1000 * int(sample_stream)))
    pts, centre, scale = normalise(raw)
    return Shape(index=int(index), label=label, mesh=mesh, points=pts, centre=centre, scale=scale)


def resample(shape: Shape, num_points: int, stream: int, seed: int = DEFAULT_SEED) -> np.ndarray:
    """An independent surface sampling of ``shape`` in the *same* normalised frame as ``shape.points``."""
    raw = sample_surface(shape.mesh, num_points, object_rng(seed, shape.index, STREAM_SAMPLE + 1000 * int(stream)))
    return ((raw - shape.centre) / shape.scale).astype(np.float32)


def corpus_cache_dir() -> Path:
    """Where cached point arrays live (not committed): ``$SQUEEZE3D_CACHE`` or ``~/.cache/squeeze3d``."""
    return Path(os.environ.get("SQUEEZE3D_CACHE", Path.home() / ".cache" / "squeeze3d")) / "corpus"


def build_point_cache(count: int, num_points: int = 2048, seed: int = DEFAULT_SEED,
                      cache_dir: str | Path | None = None, streams: int = 1,
                      progress: Callable[[int, int], None] | None = None) -> dict[str, np.ndarray]:
    """Points of objects ``0..count-1`` as arrays, generated once and cached as ``.npz``.

    Returns ``points [count, streams, num_points, 3]`` (stream 0 = ``make_shape``'s sampling, the
    others independent re-samplings in the same frame), ``labels [count]``, ``centres``, ``scales``,
    ``splits`` (0 train, 1 val, 2 test)."""
    cache_dir = Path(cache_dir) if cache_dir is not None else corpus_cache_dir()
    key = hashlib.sha256(f"v1|{seed}|{count}|{num_points}|{streams}".encode()).hexdigest()[:12]
    path = cache_dir / f"corpus_s{seed}_n{count}_p{num_points}_r{streams}_{key}.npz"
    if path.exists():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    pts = np.zeros((count, streams, num_points, 3), np.float32)
    labels = np.zeros(count, np.int64)
    centres = np.zeros((count, 3), np.float32)
    scales = np.zeros(count, np.float32)
    for i in range(count):
        shape = make_shape(seed, i, num_points)
        pts[i, 0], labels[i], centres[i], scales[i] = shape.points, shape.label, shape.centre, shape.scale
        for s in range(1, streams):
            pts[i, s] = resample(shape, num_points, s, seed)
        if progress is not None:
            progress(i + 1, count)
    splits = np.array([SPLITS.index(split_of(i)) for i in range(count)], np.int64)
    out = {"points": pts, "labels": labels, "centres": centres, "scales": scales, "splits": splits}
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **out)
    os.replace(tmp, path)  # atomic: a half-written cache is never read
    return out
