"""Point clouds from the real-object corpus, in the form training uses: area-weighted surface samples,
optionally augmented, normalised to the unit sphere exactly as the codec and the procedural corpus
do (``metrics.pointcloud.normalise_unit_sphere``: bounding-box centre, farthest point at radius 1).

Every random draw comes from ``numpy.random.default_rng([seed, key(id), view, stream])``: an
object's samples depend on its id, the seed and the view only, never on which other objects are in
the split or in what order they are processed."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from squeeze3d.realcorpus.index import load_index, select
from squeeze3d.realcorpus.meshes import face_areas, read_mesh_npz

_STREAM_AUGMENT, _STREAM_SAMPLE = 0, 1
POINTS_VERSION = 1


@dataclass(frozen=True)
class Augment:
    """Augmentations real assets need, applied to the mesh before sampling and normalisation."""

    rotate_up: bool = True
    """A uniform random turn about the up axis (z): real objects come in any heading."""
    tilt_deg: float = 0.0
    """Plus a tilt of up to this many degrees about a random horizontal axis (scans are rarely level)."""
    scale_range: tuple[float, float] | None = (0.7, 1.3)
    """Anisotropic scale: each axis by a factor drawn uniformly from this range (None: off)."""


def load_mesh(entry: dict | str, index: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(vertices float32 [V, 3] in metres, z up; faces int32 [F, 3])`` of an index entry (or an id)."""
    index = index if index is not None else load_index()
    if isinstance(entry, str):
        found = [o for o in index["objects"] if o["id"] == entry]
        if not found:
            from squeeze3d.errors import UserError

            raise UserError(f"no object {entry!r} in the corpus index at {index['root']}")
        entry = found[0]
    return read_mesh_npz(Path(index["root"]) / entry["file"])


def sample_points(mesh: tuple[np.ndarray, np.ndarray], n: int = 2048, seed=0) -> np.ndarray:
    """``n`` area-uniform surface samples ``[n, 3]`` float32 of ``(vertices, faces)``; ``seed`` is
    anything ``numpy.random.default_rng`` takes (an int, a list of ints, a Generator)."""
    v, f = mesh
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    areas = face_areas(v, f)
    face = rng.choice(len(areas), size=n, p=areas / areas.sum())
    u, w = rng.random(n), rng.random(n)
    flip = u + w > 1
    u[flip], w[flip] = 1 - u[flip], 1 - w[flip]
    t = np.asarray(v, np.float64)[f[face]]
    p = t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + w[:, None] * (t[:, 2] - t[:, 0])
    return p.astype(np.float32)


def augment_matrix(aug: Augment, rng: np.random.Generator) -> np.ndarray:
    """The 3x3 linear map of one augmentation draw (row vectors: ``p @ M``)."""
    m = np.eye(3)
    if aug.scale_range is not None:
        lo, hi = aug.scale_range
        m = m @ np.diag(rng.uniform(lo, hi, size=3))
    if aug.rotate_up:
        a = rng.uniform(0, 2 * np.pi)
        c, s = np.cos(a), np.sin(a)
        m = m @ np.array([[c, s, 0], [-s, c, 0], [0, 0, 1]])
    if aug.tilt_deg > 0:
        axis_a = rng.uniform(0, 2 * np.pi)
        axis = np.array([np.cos(axis_a), np.sin(axis_a), 0.0])
        ang = np.deg2rad(rng.uniform(0, aug.tilt_deg))
        k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        r = np.eye(3) + np.sin(ang) * k + (1 - np.cos(ang)) * (k @ k)  # Rodrigues, column form
        m = m @ r.T
    return m


def object_key(object_id: str) -> int:
    return int.from_bytes(hashlib.sha256(object_id.encode("utf-8")).digest()[:4], "big")


def object_views(mesh: tuple[np.ndarray, np.ndarray], object_id: str, n_points: int = 2048, views: int = 1,
                 seed: int = 0, augment: Augment | None = None) -> np.ndarray:
    """``[views, n_points, 3]`` float32: independent (augmented) samplings of one object, each
    normalised to the unit sphere."""
    import torch

    from squeeze3d.metrics.pointcloud import normalise_unit_sphere

    v, f = mesh
    key = object_key(object_id)
    out = np.empty((views, n_points, 3), np.float32)
    for k in range(views):
        vk = np.asarray(v, np.float64)
        if augment is not None:
            vk = vk @ augment_matrix(augment, np.random.default_rng([seed, key, k, _STREAM_AUGMENT]))
        out[k] = sample_points((vk, f), n_points, [seed, key, k, _STREAM_SAMPLE])
    return normalise_unit_sphere(torch.from_numpy(out))[0].numpy()


def _key(index: dict, split: str, n_points: int, views: int, seed: int, augment: Augment | None,
         sources, categories) -> str:
    ids = [(o["id"], o["file"], o["n_faces"]) for o in select(index, split, sources, categories)]
    spec = {"v": POINTS_VERSION, "split": split, "n": n_points, "views": views, "seed": seed,
            "augment": asdict(augment) if augment is not None else None, "objects": ids}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def point_cache(split: str, n_points: int = 2048, views: int = 1, seed: int = 0,
                augment: Augment | bool | None = None, sources=None, categories=None,
                root: str | Path | None = None, return_ids: bool = False, progress=None):
    """Surface samples of every object of ``split`` as float32 ``[M, views, n_points, 3]``, each view
    normalised to the unit sphere; objects in index (id) order. ``augment``: an ``Augment``, True for
    ``Augment()``, or None/False for none. Built once and cached as ``.npy`` in ``<corpus>/points/``
    under a key of all the arguments and the objects' ids. ``return_ids``: also return the ids."""
    if augment is True:
        augment = Augment()
    elif augment is False:
        augment = None
    index = load_index(root)
    entries = select(index, split, sources, categories)
    key = _key(index, split, n_points, views, seed, augment, sources, categories)
    cache = Path(index["root"]) / "points"
    path = cache / f"{split}_p{n_points}_v{views}_s{seed}_{key}.npy"
    ids = [o["id"] for o in entries]
    if path.exists():
        arr = np.load(path, allow_pickle=False)
    else:
        arr = np.empty((len(entries), views, n_points, 3), np.float32)
        for i, o in enumerate(entries):
            arr[i] = object_views(read_mesh_npz(Path(index["root"]) / o["file"]), o["id"], n_points, views,
                                  seed, augment)
            if progress is not None:
                progress(i + 1, len(entries))
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part.npy")
        np.save(tmp, arr)
        os.replace(tmp, path)
        path.with_suffix(".ids.json").write_text(json.dumps(ids) + "\n")
    return (arr, ids) if return_ids else arr
