"""Reading 3D assets into point arrays and writing point clouds, for the codec and the evaluation.

Inputs (through trimesh and numpy): PLY, OBJ, OFF, STL, GLB/GLTF meshes (sampled area-uniformly to
the requested number of points with a seeded generator) or point clouds (a PLY/OBJ without faces,
NPY, NPZ with a ``points`` array or a single array; ``allow_pickle`` is always off; PCD, XYZ, PTS,
LAS and LAZ through ``squeeze3d.cloud_io``). Clouds larger than the requested count are
reduced to a seeded random subset.

Every input is validated before anything is written: a missing file, an unsupported extension, an
empty mesh, NaN/Inf coordinates, fewer than 3 points, a degenerate shape (all points on one point or
one line; a mesh with zero surface area) and inputs over the size limits raise ``InputError`` (a
``UserError``: the CLI prints one line and exits 2).

Outputs (``write_points``, in ``squeeze3d.io_write``, re-exported here): ``.ply`` (binary point cloud), ``.npz`` (``points`` float32), ``.obj``
(``v`` lines) or ``.pcd`` (binary, float32 x y z), always written to a temporary sibling and renamed, so a reader never sees half a file.
Radiance-field grids (NeRF-MAE ``.npz``, ``.npy``) are read and written by
``squeeze3d.assets.radiance_field``, which reuses the limits and ``atomic_write_bytes`` here.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from squeeze3d.errors import InputError  # noqa: F401 - re-exported: the readers' error type
from squeeze3d.io_write import (  # noqa: F401 - re-exported: callers import the writers from here
    KEEPS,
    OUTPUT_EXTS,
    atomic_write_bytes,
    check_output_path,
    current_umask,
    encode_points,
    write_points,
)
from squeeze3d.limits import max_input_bytes, max_points  # noqa: F401 - re-exported

MESH_EXTS = (".ply", ".obj", ".off", ".stl", ".glb", ".gltf")
ARRAY_EXTS = (".npy", ".npz")
CLOUD_EXTS = (".pcd", ".xyz", ".pts", ".las", ".laz")  # squeeze3d.cloud_io
INPUT_EXTS = MESH_EXTS + ARRAY_EXTS + CLOUD_EXTS
MIN_POINTS = 3




@dataclass
class Asset:
    points: np.ndarray
    """``[N, 3]`` float32 in the file's own frame: the mesh samples or the (subsampled) cloud."""
    kind: str
    """``mesh`` or ``points``."""
    path: Path | None = None
    file_bytes: int | None = None
    source_count: int = 0
    """Vertices (meshes) or points (clouds) in the file."""
    mesh: object | None = None
    """The ``trimesh.Trimesh`` for meshes (lets callers draw an independent second sampling)."""
    cloud: np.ndarray | None = None
    """Clouds: every point the file holds (``points`` is its seeded subset), float64; meshes: None."""
    attributes: dict = field(default_factory=dict)
    """Per-point attributes the codec keeps (``squeeze3d.codec.attributes``), aligned with ``cloud``."""
    unkept: tuple[str, ...] = ()
    """Per-point data the file holds that no mode keeps (normals, labels, ...): compress refuses to
    drop them unless told to (``--drop-attributes``)."""

    @property
    def data(self) -> np.ndarray:
        """The asset as the codec's handlers pass it around (``squeeze3d.assets``): the points."""
        return self.points


def check_points(points: np.ndarray, what: str = "input") -> np.ndarray:
    """Validate a cloud: ``[N, 3]`` numeric, finite, ≥ 3 points, spanning at least a plane."""
    a = np.asarray(points)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.dtype.kind not in "fiu":
        raise InputError(f"{what}: expected numeric coordinates, got dtype {a.dtype}")
    if a.ndim != 2 or a.shape[1] != 3:
        raise InputError(f"{what}: expected an array of shape [N, 3], got {list(a.shape)}")
    if len(a) < MIN_POINTS:
        raise InputError(f"{what}: {len(a)} point(s); at least {MIN_POINTS} are needed")
    if len(a) > max_points():
        raise InputError(f"{what}: {len(a)} points exceed the limit of {max_points()} "
                         "(set SQUEEZE3D_MAX_POINTS to raise it)")
    a = a.astype(np.float64)
    bad = ~np.isfinite(a).all(axis=1)
    if bad.any():
        raise InputError(f"{what}: {int(bad.sum())} point(s) have NaN or Inf coordinates")
    extent = a.max(axis=0) - a.min(axis=0)
    size = float(np.linalg.norm(extent))
    centred = a - a.mean(axis=0)
    # rank of the cloud: singular values relative to its size (1e-9: float noise on a line/point)
    sv = np.linalg.svd(centred[:: max(1, len(a) // 100_000)], compute_uv=False)
    if size == 0 or (sv > 1e-9 * max(sv[0], 1e-300)).sum() < 2:
        raise InputError(f"{what}: degenerate shape (all points {'coincide' if size == 0 else 'lie on a line'}); "
                         "nothing to compress")
    # the codec works on float32 clouds: below these sizes the shape is not carried (squared point
    # spacings underflow, or the points collapse onto the float32 grid at their distance from 0)
    reach = float(np.abs(a).max())
    if size < _MIN_EXTENT or size < 4 * _F32_EPS * reach:
        raise InputError(f"{what}: the cloud spans {size:.3g} units{f' at coordinates up to {reach:.3g}' if size >= _MIN_EXTENT else ''}, "
                         f"too small for float32 to carry its shape; rescale it (e.g. to metres or millimetres)")
    return a.astype(np.float32)


_F32_EPS = float(np.finfo(np.float32).eps)
# 1e3 × sqrt(float32's smallest normal) ≈ 1.1e-16: squared distances down to a thousandth of the
# cloud's size stay normal float32 numbers (distances and quality are measured on squares)
_MIN_EXTENT = 1e3 * float(np.sqrt(np.finfo(np.float32).tiny))


def sample_mesh(mesh, n: int, seed: int = 0) -> np.ndarray:
    """``n`` area-uniform surface samples ``[n, 3]`` float32 from ``numpy.random.default_rng(seed)``."""
    tri = np.asarray(mesh.triangles, dtype=np.float64)
    areas = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    total = float(areas.sum())
    if not np.isfinite(total) or total <= 0:
        raise InputError("degenerate mesh: zero surface area (all faces are flat slivers or points)")
    rng = np.random.default_rng(seed)
    face = rng.choice(len(areas), size=n, p=areas / total)
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    t = tri[face]
    return (t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])).astype(np.float32)


def _subsample(points: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    if n is None or len(points) <= n:
        return points
    idx = np.sort(np.random.default_rng(seed).choice(len(points), size=n, replace=False))
    return points[idx]


def _npz_array(path: Path, extra: dict | None = None) -> np.ndarray:
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n[:-4] for n in zf.namelist() if n.endswith(".npy")]
            key = "points" if "points" in names else (names[0] if len(names) == 1 else None)
            if key is None:
                raise InputError(f"{path}: NPZ holds {names or 'no arrays'}; expected a 'points' array or exactly one")
            with zf.open(key + ".npy") as f:
                version = np.lib.format.read_magic(f)
                read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                        else np.lib.format.read_array_header_2_0)
                shape = read(f)[0]  # header only: the size check comes before loading
        if shape and shape[0] > max_points():
            raise InputError(f"{path}: {shape[0]} points exceed the limit of {max_points()} "
                             "(set SQUEEZE3D_MAX_POINTS to raise it)")
        with np.load(path, allow_pickle=False) as z:
            if extra is not None:  # as encode_points writes them
                extra["attributes"] = {k: z[k] for k in ("colour", "intensity") if k in z.files}
                extra["unkept"] = tuple(n for n in names if n not in (key, "colour", "intensity"))
            return z[key]
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as e:
        raise InputError(f"{path}: not a readable NPZ file ({_why_unreadable(e)})") from None


def _npy_array(path: Path) -> np.ndarray:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise InputError(f"{path}: not a readable NPY file ({_why_unreadable(e)})") from None
    if arr.ndim >= 1 and arr.shape[0] > max_points():
        raise InputError(f"{path}: {arr.shape[0]} points exceed the limit of {max_points()} "
                         "(set SQUEEZE3D_MAX_POINTS to raise it)")
    return np.array(arr)


def _why_unreadable(e: BaseException, fmt: str = "") -> str:
    """What is wrong with the file, in the user's terms: the parsers' own exceptions (IndexError from
    a short vertex list, KeyError of a missing PLY element, a struct error) name their internals."""
    text = str(e).lower()
    if isinstance(e, (EOFError, IndexError)) or any(w in text for w in ("truncat", "unexpected end", "too short",
                                                                      "buffer is smaller", "not enough")):
        return "the file ends early: it is truncated or its header promises more data than it holds"
    if isinstance(e, UnicodeDecodeError):
        return f"it is not text where the {fmt or 'file'} format expects text (a binary or corrupt file?)"
    if isinstance(e, KeyError):
        return f"a part every {fmt or 'such'} file needs is missing (e.g. the vertex list); it is malformed"
    if isinstance(e, zipfile.BadZipFile):
        return "it is not a zip archive, which every NPZ file is: truncated, or another format renamed"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror.lower()
    if "pickle" in text:
        return "it holds Python objects (pickled data), which are never loaded"
    return f"its header or data is malformed; check that it opens in a 3D viewer, or export it again{' as ' + fmt if fmt else ''}"


_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
              "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
              "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}


def _fast_ply_points(path: Path, columns: dict | None = None) -> np.ndarray | None:
    """A PLY point cloud (one ``vertex`` element of scalar properties with x, y, z; no faces) read with
    numpy alone, or None to let trimesh read it: importing trimesh costs ~0.7 s, more than compressing
    one cloud. Anything unusual (faces, list properties, other elements) returns None."""
    with open(path, "rb") as f:
        head = f.read(4096)
        end = head.find(b"end_header")
        if not head.startswith(b"ply") or end < 0:
            return None
        nl = head.find(b"\n", end)
        if nl < 0:
            return None
        try:
            lines = head[:end].decode("ascii").splitlines()
        except UnicodeDecodeError:
            return None
        fmt, count, props, elements = None, 0, [], []
        for ln in lines[1:]:
            w = ln.split()
            if not w or w[0] in ("comment", "obj_info"):
                continue
            if w[0] == "format" and len(w) >= 2:
                fmt = w[1]
            elif w[0] == "element" and len(w) == 3:
                elements.append(w[1])
                count = int(w[2]) if w[2].isdigit() else -1
            elif w[0] == "property" and len(w) == 3 and elements == ["vertex"] and w[1] in _PLY_TYPES:
                props.append((w[2], _PLY_TYPES[w[1]]))
            else:
                return None
        names = [n for n, _ in props]
        if elements != ["vertex"] or count < 0 or not {"x", "y", "z"} <= set(names) or len(set(names)) != len(names):
            return None
        f.seek(nl + 1)
        if fmt in ("binary_little_endian", "binary_big_endian"):
            order = "<" if fmt == "binary_little_endian" else ">"
            dt = np.dtype([(n, order + t) for n, t in props])
            if count > max_points():
                return None  # the generic path reports the limit
            buf = f.read(dt.itemsize * count)
            if len(buf) < dt.itemsize * count:
                raise InputError(f"{path}: not a readable PLY file (the file ends early: its header promises "
                                 f"{count} points, the data holds {len(buf) // max(dt.itemsize, 1)})")
            if len(f.read(dt.itemsize)) == dt.itemsize:  # fixed-size records: more data than the count
                raise InputError(f"{path}: not a readable PLY file (its header promises {count} points, the data "
                                 f"hold more: a damaged header would drop the rest)")
            rec = np.frombuffer(buf, dtype=dt, count=count)
        elif fmt == "ascii":
            if count == 0:
                return np.zeros((0, 3))  # numpy warns about reading no rows: say "empty" ourselves
            try:
                rows = [ln for ln in f.read().decode("ascii").splitlines() if ln.strip()]
                table = np.loadtxt(rows[:count], dtype=np.float64, ndmin=2)
            except (ValueError, UnicodeDecodeError):
                return None
            if len(rows) > count and table.shape == (count, len(props)):
                raise InputError(f"{path}: not a readable PLY file (its header promises {count} points, the data "
                                 f"hold {len(rows)} lines: a damaged header would drop the rest)")
            if table.shape != (count, len(props)):
                return None  # short or ragged: trimesh's path decides what to say
            if columns is not None:
                columns.update({n: table[:, i] for i, n in enumerate(names) if n not in "xyz"})
            return table[:, [names.index(k) for k in "xyz"]]
        else:
            return None
    if columns is not None:
        columns.update({n: np.asarray(rec[n]) for n in names if n not in "xyz"})
    return np.stack([rec["x"], rec["y"], rec["z"]], axis=1).astype(np.float64)


_PLY_COLOUR = ("red", "green", "blue")
_PLY_NORMALS = ("nx", "ny", "nz")


def _ply_attributes(columns: dict) -> tuple[dict, tuple[str, ...]]:
    """A PLY cloud's vertex properties besides x y z → (attributes kept, names of those not kept)."""
    attrs, unkept = {}, []
    if set(_PLY_COLOUR) <= set(columns):
        rgb = np.stack([np.asarray(columns[k], np.float64) for k in _PLY_COLOUR], 1)
        if rgb.max(initial=0) > 255:  # 16-bit colour properties: their high bytes
            rgb = np.floor(rgb / 256.0)
        attrs["colour"] = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    for k in ("intensity", "scalar_intensity"):
        if k in columns:
            v = np.asarray(columns[k], np.float64)
            if (v >= 0).all() and (v <= 65535).all() and (v == np.rint(v)).all():
                attrs["intensity"] = v.astype(np.uint16)
            else:
                unkept.append("intensity (values that are not whole numbers 0..65535)")
            break
    if set(_PLY_NORMALS) & set(columns):
        unkept.append("normals")
    for k, v in columns.items():
        if k in _PLY_COLOUR + _PLY_NORMALS + ("intensity", "scalar_intensity"):
            continue
        if k in ("alpha", "a") and (np.asarray(v) == 255).all():
            continue  # opaque: nothing lost
        unkept.append(k)
    return attrs, tuple(unkept)


def _load_geometry(path: Path, extra: dict | None = None):
    """→ ("mesh", Trimesh) or ("points", ndarray); ``extra`` gets ``attributes`` and ``unkept``."""
    if path.suffix.lower() == ".ply":
        columns: dict = {}
        pts = _fast_ply_points(path, columns)
        if pts is not None and extra is not None:
            extra["attributes"], extra["unkept"] = _ply_attributes(columns)
        if pts is not None:
            if len(pts) == 0:
                raise InputError(f"{path}: empty mesh (no vertices, no faces)")
            return "points", pts
    import trimesh

    try:
        loaded = trimesh.load(str(path), file_type=path.suffix.lower()[1:], process=False)
    except Exception as e:  # noqa: BLE001 - trimesh raises many types on malformed files
        fmt = path.suffix.lower()[1:].upper()
        raise InputError(f"{path}: not a readable {fmt} file ({_why_unreadable(e, fmt)})") from None
    if isinstance(loaded, trimesh.Scene):
        geoms = list(loaded.dump()) if loaded.geometry else []
        meshes = [g for g in geoms if isinstance(g, trimesh.Trimesh) and len(g.faces)]
        if meshes:
            return "mesh", trimesh.util.concatenate(meshes)
        clouds = [np.asarray(g.vertices) for g in geoms if len(getattr(g, "vertices", []))]
        if clouds:
            return "points", np.concatenate(clouds)
        raise InputError(f"{path}: the file contains no geometry (empty scene)")
    if isinstance(loaded, trimesh.Trimesh) and len(loaded.faces):
        if extra is not None and _varied_colours(loaded):
            extra["unkept"] = ("colour (the mesh's vertex or face colours: a mesh is sampled as bare points)",)
        return "mesh", loaded
    verts = np.asarray(getattr(loaded, "vertices", np.zeros((0, 3))))
    if len(verts) == 0:
        raise InputError(f"{path}: empty mesh (no vertices, no faces)")
    colors = np.asarray(getattr(loaded, "colors", np.zeros((0, 4))))
    if extra is not None and colors.ndim == 2 and len(colors) == len(verts) and colors.shape[1] >= 3:
        if len(np.unique(colors[:, :3], axis=0)) > 1:
            extra["attributes"] = {"colour": np.asarray(colors[:, :3], np.uint8)}
    return "points", verts


def _varied_colours(mesh) -> bool:
    """Does a mesh carry colours that vary (not trimesh's one default colour)?"""
    visual = getattr(mesh, "visual", None)
    kind = getattr(visual, "kind", None)
    if kind == "texture":
        return True
    if kind in ("vertex", "face"):
        c = np.asarray(visual.vertex_colors if kind == "vertex" else visual.face_colors)
        return len(c) > 0 and len(np.unique(c[:, :3], axis=0)) > 1
    return False


def check_input_file(path: str | Path, exts, what: str = "") -> Path:
    """``path`` as a ``Path`` if it is an existing, non-empty regular file with one of ``exts`` and
    within the input size limit; else InputError."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if not p.is_file():
        raise InputError(f"{p}: not a regular file")
    ext = p.suffix.lower()
    if ext not in exts:
        raise InputError(f"{p}: unsupported format {ext or '(no extension)'!r}{what}; supported: {', '.join(exts)}")
    size = p.stat().st_size
    if size == 0:
        raise InputError(f"{p}: empty file")
    if size > max_input_bytes():
        raise InputError(f"{p}: {size} bytes exceed the input limit of {max_input_bytes()} "
                         "(set SQUEEZE3D_MAX_INPUT_BYTES to raise it)")
    return p


def read_asset(path: str | Path, num_points: int | None = None, seed: int = 0) -> Asset:
    """Read one file as points: meshes sampled to ``num_points`` (required for meshes), clouds
    subsampled to at most ``num_points``. Same (file, num_points, seed) → same points."""
    p = check_input_file(path, INPUT_EXTS)
    ext, size = p.suffix.lower(), p.stat().st_size
    extra: dict = {}
    if ext == ".npy":
        kind, geom = "points", _npy_array(p)
    elif ext == ".npz":
        kind, geom = "points", _npz_array(p, extra)
    elif ext in CLOUD_EXTS:
        from squeeze3d.cloud_io import read_cloud_attributes

        geom, extra["attributes"], extra["unkept"] = read_cloud_attributes(p)
        kind = "points"
    else:
        kind, geom = _load_geometry(p, extra)
        verts = np.asarray(geom.vertices if kind == "mesh" else geom)
        if verts.ndim != 2 or verts.shape[1] != 3 or verts.dtype.kind not in "fiu":
            # a parser that read a broken vertex list hands back a ragged or 1-column array
            raise InputError(f"{p}: not a readable {ext[1:].upper()} file (its vertices are not x, y, z "
                             "triples: the file is malformed or truncated)")
    if kind == "mesh":
        verts = check_points(np.asarray(geom.vertices), f"{p} (mesh vertices)")
        del verts
        if num_points is None:
            raise ValueError("num_points is required to sample a mesh")
        try:
            pts = sample_mesh(geom, num_points, seed)
        except InputError as e:
            raise InputError(f"{p}: {e}") from None
        return Asset(check_points(pts, str(p)), "mesh", p, size, len(geom.vertices), geom,
                     unkept=tuple(extra.get("unkept", ())))
    from squeeze3d.point_attributes import check as check_attributes

    cloud = check_points(geom, str(p))
    attrs = extra.get("attributes", {})
    if len(cloud) != len(np.asarray(geom).reshape(-1, 3)):
        attrs = {}  # check_points dropped rows: cannot happen for finite clouds, but never misalign
    attrs = check_attributes(attrs, len(cloud), str(p))
    return Asset(check_points(_subsample(cloud, num_points, seed), str(p)), "points", p, size, len(cloud),
                 cloud=cloud, attributes=attrs, unkept=tuple(extra.get("unkept", ())))


def list_inputs(directory: str | Path, exts: tuple[str, ...] = INPUT_EXTS) -> list[Path]:
    """Files with one of ``exts`` (default: the point-cloud inputs) directly in ``directory``, sorted by name."""
    d = Path(directory)
    if not d.is_dir():
        raise InputError(f"{d}: not a directory")
    return sorted(f for f in d.iterdir() if f.is_file() and f.suffix.lower() in exts)
