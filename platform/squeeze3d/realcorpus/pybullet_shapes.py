"""The 1,000 random closed shapes of ``pybullet_data/random_urdfs/<n>/<n>.obj`` (pybullet's wheel):
convex-part blobs, useful as shape variety without categories. The URDF's mesh scale is applied; no
up axis exists, so the file's axes are kept (URDF is z up)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from squeeze3d.realcorpus.meshes import MeshRejected, load_obj_bytes
from squeeze3d.realcorpus.objects import RawObject

SHAPES_DIR = "pybullet_data/random_urdfs"


def _licence(raw: Path) -> str:
    for meta in sorted(raw.glob("pybullet-*.dist-info/METADATA")):
        m = re.search(r"^License:\s*(.+)$", meta.read_text(errors="replace"), re.M)
        if m:
            return m.group(1).strip()
    return "unknown"


def _scale(urdf: Path) -> np.ndarray:
    if urdf.exists():
        m = re.search(r'<mesh[^>]*scale="([^"]+)"', urdf.read_text(errors="replace"))
        if m:
            s = [float(x) for x in m.group(1).split()]
            if len(s) == 3:
                return np.asarray(s)
    return np.ones(3)


def objects(raw_dir: str | Path) -> Iterator[RawObject]:
    raw = Path(raw_dir)
    licence = _licence(raw)
    root = raw / SHAPES_DIR
    dirs = sorted((d for d in root.iterdir() if d.is_dir()), key=lambda d: (len(d.name), d.name)) if root.exists() else []
    for d in dirs:
        obj = d / f"{d.name}.obj"
        if not obj.exists():
            continue

        def load(obj=obj, urdf=d / f"{d.name}.urdf") -> tuple[np.ndarray, np.ndarray]:
            v, f = load_obj_bytes(obj.read_bytes())
            if not len(v):
                raise MeshRejected("no vertices")
            return v * _scale(urdf), f

        yield RawObject(
            id=f"pybullet/random_urdfs/{d.name}",
            source="pybullet",
            name=f"random shape {d.name}",
            category="random",
            licence=licence,
            creator="Bullet Physics (pybullet_data)",
            origin=f"{SHAPES_DIR}/{d.name}/{obj.name}",
            load=load,
        )
