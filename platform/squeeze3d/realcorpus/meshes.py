"""Triangle meshes of the real-object corpus: checks, the common frame, and the ``.npz`` files.

Every object is stored in the procedural corpus's frame (``squeeze3d.corpora.points``: z up), in metres,
as ``vertices`` float32 ``[V, 3]`` and ``faces`` int32 ``[F, 3]`` in one ``.npz`` (no pickle)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

# The corpus keeps objects up to this many faces: larger ones are scenes or scans whose sampling
# would dominate the conversion time, not objects.
MAX_FACES = 2_000_000
MAX_EXTENT_M = 5_000.0  # bigger than any ship or building: a stray vertex far away

# (x, y, z) with y up -> (x, -z, y) with z up: a +90 degree turn about x, so "front" (+z in
# Sweet Home 3D and AC3D) becomes -y and handedness is kept.
Y_UP_TO_Z_UP = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], np.float64)


class MeshRejected(Exception):
    """An object that is not kept in the corpus; the message is the reason recorded in the index."""


def triangulate_fan(polys: list[list[int]]) -> np.ndarray:
    """Triangles ``[F, 3]`` from polygons given as vertex index lists (fans; < 3 vertices dropped)."""
    tris = [(p[0], p[k], p[k + 1]) for p in polys for k in range(1, len(p) - 1)]
    return np.asarray(tris, np.int64).reshape(-1, 3)


def clean(vertices, faces) -> tuple[np.ndarray, np.ndarray]:
    """Checked float32/int32 arrays: faces repeating a vertex are dropped (no area), unused vertices
    removed. Raises ``MeshRejected`` with the reason for anything the corpus does not keep."""
    v = np.asarray(vertices, np.float64).reshape(-1, 3)
    f = np.asarray(faces, np.int64).reshape(-1, 3)
    if not len(f):
        raise MeshRejected("no faces")
    if f.min() < 0 or f.max() >= len(v):
        raise MeshRejected("faces index missing vertices")
    if not np.isfinite(v).all():
        raise MeshRejected("non-finite vertices")
    f = f[(f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])]
    if not len(f):
        raise MeshRejected("all faces degenerate")
    if len(f) > MAX_FACES:
        raise MeshRejected(f"{len(f)} faces > {MAX_FACES}")
    used = np.unique(f)
    remap = np.full(len(v), -1, np.int64)
    remap[used] = np.arange(len(used))
    v, f = v[used], remap[f]
    ext = v.max(0) - v.min(0)
    if ext.max() > MAX_EXTENT_M:
        raise MeshRejected(f"extent {ext.max():.0f} m > {MAX_EXTENT_M:.0f} m")
    if face_areas(v, f).sum() <= 1e-12 * max(ext.max(), 1e-12) ** 2:
        raise MeshRejected("zero surface area")
    # a single plane (sprites: lights, flares, smoke puffs, placeholder quads) is no object's surface
    sv = np.linalg.svd(v - v.mean(0), compute_uv=False)
    if sv[2] <= 1e-6 * sv[0]:
        raise MeshRejected("flat: all vertices in one plane")
    return v.astype(np.float32), f.astype(np.int32)


def face_areas(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    t = np.asarray(v, np.float64)[f]
    return 0.5 * np.linalg.norm(np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]), axis=1)


def save_mesh(path: str | Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    """Atomic write (temporary sibling, then rename): a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez(buf, vertices=np.asarray(vertices, np.float32), faces=np.asarray(faces, np.int32))
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, path)


def read_mesh_npz(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return z["vertices"], z["faces"]


def load_obj_bytes(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Geometry of an OBJ file (all groups and parts concatenated; materials and textures skipped)."""
    import trimesh

    try:
        m = trimesh.load(io.BytesIO(data), file_type="obj", force="mesh", process=False, skip_materials=True)
    except Exception as e:  # noqa: BLE001 - any parser failure is a rejected object, with its reason
        raise MeshRejected(f"OBJ not readable: {type(e).__name__}: {e}".splitlines()[0][:200]) from e
    if not isinstance(m, trimesh.Trimesh) or not len(getattr(m, "faces", ())):
        raise MeshRejected("no faces")
    return np.asarray(m.vertices, np.float64), np.asarray(m.faces, np.int64)
