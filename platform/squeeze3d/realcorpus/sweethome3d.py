"""Sweet Home 3D furniture catalogues (Debian ``sweethome3d-furniture``): ``.sh3f`` zip files, each
holding OBJ+MTL models and ``PluginFurnitureCatalog.properties`` (per model ``id#N``, ``name#N``,
``category#N``, ``tags#N``, ``creator#N``, ``model#N``, ``width#N``/``depth#N``/``height#N`` in cm,
optional ``modelRotation#N``) and a ``LICENSE.TXT`` per pack.

Each model is placed as Sweet Home 3D places it: rotate by ``modelRotation`` (3x3, row-major,
p' = R p), then scale its bounding box to width (x), height (y), depth (z); the file is y up. Then
centimetres -> metres and y up -> z up (``meshes.Y_UP_TO_Z_UP``)."""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from squeeze3d.realcorpus.meshes import Y_UP_TO_Z_UP, MeshRejected, load_obj_bytes
from squeeze3d.realcorpus.objects import RawObject
from squeeze3d.realcorpus.properties import parse_properties

FURNITURE_DIR = "usr/share/sweethome3d/furniture"
CATALOG = "PluginFurnitureCatalog.properties"


def pack_licence(text: str) -> str:
    """SPDX-like short name of a pack's ``LICENSE.TXT`` (the full text stays in the raw cache)."""
    t = " ".join(text.split())
    if re.search(r"Creative Commons Zero|CC0|Public Domain\) license", t, re.I):
        return "CC0-1.0"
    m = re.search(r"Creative Commons Attribution (\d\.\d)( United States| Unported)?", t, re.I)
    if m:
        suffix = "-US" if (m.group(2) or "").strip().lower() == "united states" else ""
        return f"CC-BY-{m.group(1)}{suffix}"
    return "see LICENSE.TXT"


def _numbers(s: str, n: int) -> np.ndarray:
    vals = [float(x) for x in s.replace(",", " ").split()]
    if len(vals) != n:
        raise MeshRejected(f"expected {n} numbers, got {len(vals)}: {s[:60]!r}")
    return np.asarray(vals, np.float64)


def place(vertices: np.ndarray, width: float, depth: float, height: float,
          rotation: np.ndarray | None = None) -> np.ndarray:
    """Catalogue placement: rotate, scale the bounding box to (width, height, depth) cm along
    (x, y, z), centre on x/z with the bottom at y = 0, then metres and z up."""
    v = np.asarray(vertices, np.float64)
    if rotation is not None:
        v = v @ np.asarray(rotation, np.float64).reshape(3, 3).T
    lo, hi = v.min(0), v.max(0)
    ext = hi - lo
    target = np.array([width, height, depth], np.float64)
    if not np.all(target > 0):
        raise MeshRejected(f"catalogue size not positive: {target.tolist()}")
    # a flat model (a rug, a picture) keeps zero thickness along its flat axis
    s = np.where(ext > 1e-9, target / np.where(ext > 1e-9, ext, 1.0), 1.0)
    centre = np.array([(lo[0] + hi[0]) / 2, lo[1], (lo[2] + hi[2]) / 2])
    v = (v - centre) * s / 100.0
    return v @ Y_UP_TO_Z_UP.T


def _pack_objects(path: Path) -> Iterator[RawObject]:
    pack = path.stem
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        props = parse_properties(z.read(CATALOG))
        licence = pack_licence(z.read("LICENSE.TXT").decode("latin-1")) if "LICENSE.TXT" in names else "unknown"
    nums = sorted(int(k.split("#", 1)[1]) for k in props if k.startswith("id#") and k.split("#", 1)[1].isdigit())
    for n in nums:
        def g(key: str, default: str = "", n=n) -> str:
            return props.get(f"{key}#{n}", default)

        model = g("model").lstrip("/")
        model_id = g("id") or f"{pack}#{n}"

        def load(path=path, model=model, n=n, g=g) -> tuple[np.ndarray, np.ndarray]:
            if not model.lower().endswith(".obj"):
                raise MeshRejected(f"model is not an OBJ: {model!r}")
            with zipfile.ZipFile(path) as z:
                if model not in z.namelist():
                    raise MeshRejected(f"model {model!r} missing from {path.name}")
                data = z.read(model)
            v, f = load_obj_bytes(data)
            try:
                w, d, h = (float(g(k)) for k in ("width", "depth", "height"))
            except ValueError as e:
                raise MeshRejected(f"catalogue size not a number: {e}") from e
            rot = _numbers(g("modelRotation"), 9) if g("modelRotation") else None
            return place(v, w, d, h, rot), f

        yield RawObject(
            id=f"sweethome3d/{pack}/{model_id}",
            source="sweethome3d",
            name=g("name"),
            category=g("category").lower() or "unknown",
            tags=[t.strip() for t in g("tags").split(",") if t.strip()],
            licence=licence,
            creator=g("creator"),
            origin=f"{path.name}:{model}",
            load=load,
        )


def objects(raw_dir: str | Path) -> Iterator[RawObject]:
    """Every catalogue entry of every pack under ``raw_dir`` (the unpacked package)."""
    packs = sorted((Path(raw_dir) / FURNITURE_DIR).glob("*.sh3f"))
    for p in packs:
        yield from _pack_objects(p)
