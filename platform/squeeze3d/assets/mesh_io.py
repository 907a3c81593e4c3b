"""Mesh files in and out for the ``mesh`` asset kind, through trimesh: OBJ (+ MTL + texture images),
GLB/GLTF and PLY in; GLB (default), OBJ and PLY out. Everything becomes a ``meshdata.Mesh`` with
per-vertex sRGB colours.

Reading:
- textures are baked to vertex colours by sampling the image at each vertex's UV (trimesh's
  ``TextureVisuals.to_color``); face colours become vertex colours by giving each face its own three
  vertices (colour borders stay exact); an uncoloured mesh is neutral grey (``meshdata.Mesh``);
- files are loaded with ``process=False``: vertices are neither merged nor reordered, so a file
  written here reads back with the same arrays;
- colours are taken as stored (glTF's COLOR_0 is linear by the spec, but trimesh and most tools
  write display values there; we do as trimesh does and apply no transfer function);
- the file's size for compression ratios (``file_bytes``) includes the sidecar files it references:
  an OBJ's MTL files and their texture images, a GLTF's external buffers and images (the paper's
  definition: OBJ + MTL + texture bytes).

What is refused (``MeshFileError``, one line naming the file, nothing written):
- a missing MTL or texture file referenced by an OBJ/MTL, or a missing GLTF buffer/image (a silent
  fallback to grey would compress the wrong colours);
- no faces (a point cloud), empty meshes, NaN/Inf vertices, faces indexing missing vertices, meshes
  whose faces are all degenerate (``meshdata.check``);
- **non-manifold edges** (an edge shared by three or more faces, counted on the file's own vertex
  indices): such a surface has no consistent inside and outside, so the signed distance and the
  occupancy that the mesh kind's models are trained on (``meshdata.winding_number``) are undefined
  there, and surface normals flip arbitrarily across the edge.

What is tolerated (it breaks neither rendering, sampling, Draco nor the metrics): open boundaries and
holes, several components, inconsistent winding (the renderer shades both sides), non-manifold
*vertices* (two surfaces touching at one vertex), unreferenced vertices, and faces that repeat a
vertex index (dropped: they have no area).
"""

from __future__ import annotations

import io as _io
import json
import shlex
from pathlib import Path

import numpy as np

from squeeze3d.io import InputError, check_input_file, max_points
from squeeze3d.meshdata import Mesh, MeshError, check

INPUT_EXTS = (".obj", ".glb", ".gltf", ".ply")
OUTPUT_EXTS = (".glb", ".obj", ".ply")


class MeshFileError(InputError):
    """A mesh file that cannot be read, or holds a mesh the codec refuses (module docstring)."""


# ------------------------------------------------------------------------------------ sidecar files


def _obj_sidecars(p: Path) -> list[Path]:
    """MTL files named by ``mtllib`` and the images their ``map_*`` lines name; all must exist."""
    out: list[Path] = []
    text = p.read_text(errors="replace")
    for line in text.splitlines():
        if not line.startswith("mtllib"):
            continue
        for name in line[len("mtllib"):].split():  # several MTLs may follow one keyword
            mtl = (p.parent / name)
            if not mtl.is_file():
                raise MeshFileError(f"{p}: material library {name!r} (mtllib) does not exist next to it")
            out.append(mtl)
            out += _mtl_textures(mtl, p)
    return out


def _mtl_textures(mtl: Path, obj: Path) -> list[Path]:
    out = []
    for line in mtl.read_text(errors="replace").splitlines():
        s = line.strip()
        if not s.lower().startswith(("map_", "bump", "disp", "norm")):
            continue
        try:
            parts = shlex.split(s, posix=True)
        except ValueError:
            parts = s.split()
        if len(parts) < 2:
            continue
        name = parts[-1]  # options (-s 1 1 1, -bm 0.5, ...) come before the file name
        tex = mtl.parent / name
        if not tex.is_file():
            raise MeshFileError(f"{obj}: texture file {name!r} ({parts[0]} in {mtl.name}) does not exist")
        out.append(tex)
    return list(dict.fromkeys(out))


def _gltf_sidecars(p: Path) -> list[Path]:
    try:
        doc = json.loads(p.read_text())
    except (ValueError, UnicodeDecodeError):
        raise MeshFileError(f"{p}: not a readable GLTF file (invalid JSON)") from None
    out = []
    for key in ("buffers", "images"):
        for item in doc.get(key, []) if isinstance(doc, dict) else []:
            uri = item.get("uri") if isinstance(item, dict) else None
            if not uri or uri.startswith("data:"):
                continue
            f = p.parent / uri
            if not f.is_file():
                raise MeshFileError(f"{p}: referenced {key[:-1]} file {uri!r} does not exist")
            out.append(f)
    return out


# ------------------------------------------------------------------------------------ reading


def validate(mesh: Mesh, what: str = "mesh") -> Mesh:
    """``meshdata.check`` plus this kind's rules (module docstring): repeated-index faces dropped,
    non-manifold edges refused, colours clipped to [0, 1]. Returns the cleaned mesh."""
    if len(mesh.vertices) > max_points():
        raise MeshFileError(f"{what}: {len(mesh.vertices)} vertices exceed the limit of {max_points()} "
                            "(set SQUEEZE3D_MAX_POINTS to raise it)")
    check(mesh, what)
    f = mesh.faces
    keep = (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])
    if not keep.all():
        mesh = Mesh(mesh.vertices, f[keep], mesh.colors)
        check(mesh, what)
    f = mesh.faces
    edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    bad = int((counts > 2).sum())
    if bad:
        raise MeshFileError(f"{what}: non-manifold mesh: {bad} edge(s) are shared by more than two faces "
                            "(no consistent inside/outside); repair it (e.g. split those edges) first")
    if mesh.colors.min() < 0 or mesh.colors.max() > 1:
        mesh = Mesh(mesh.vertices, mesh.faces, np.clip(mesh.colors, 0.0, 1.0))
    return mesh


def _colours(geom) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vertices, faces, colours [V, 3] float32 or empty) of one trimesh geometry."""
    v = np.asarray(geom.vertices, np.float64)
    f = np.asarray(geom.faces, np.int64)
    vis = geom.visual
    kind = getattr(vis, "kind", None)
    if kind == "texture":
        vis = vis.to_color()  # samples the image (or the material colour) at each vertex's UV
        kind = vis.kind
    if kind == "face":
        fc = np.asarray(vis.face_colors)[:, :3].astype(np.float32) / 255.0
        return v[f].reshape(-1, 3), np.arange(3 * len(f), dtype=np.int64).reshape(-1, 3), np.repeat(fc, 3, axis=0)
    if kind == "vertex":
        return v, f, np.asarray(vis.vertex_colors)[:, :3].astype(np.float32) / 255.0
    return v, f, np.zeros((0, 3), np.float32)


def _to_mesh(loaded, p: Path) -> Mesh:
    import trimesh

    if isinstance(loaded, trimesh.Scene):
        geoms = loaded.dump(concatenate=False) if loaded.geometry else []
    else:
        geoms = [loaded]
    meshes = [g for g in geoms if isinstance(g, trimesh.Trimesh)]
    if not meshes:
        what = "a point cloud" if any(isinstance(g, trimesh.PointCloud) for g in geoms) else "no geometry"
        raise MeshFileError(f"{p}: no faces in the file ({what}); the mesh kind needs a triangle mesh")
    vs, fs, cs, off = [], [], [], 0
    coloured = any(getattr(m.visual, "kind", None) is not None for m in meshes)
    for m in meshes:
        v, f, c = _colours(m)
        if coloured and len(c) == 0:
            c = np.full((len(v), 3), 0.7, np.float32)  # one uncoloured part among coloured ones
        vs.append(v)
        fs.append(f + off)
        cs.append(c)
        off += len(v)
    v = np.concatenate(vs)
    if not np.isfinite(v).all():
        # checked before the float32 cast so overflowing doubles are reported, not silently inf
        raise MeshFileError(f"{p}: {int((~np.isfinite(v)).any(axis=1).sum())} vertices are NaN or infinite")
    return Mesh(v.astype(np.float32), np.concatenate(fs), np.concatenate(cs))


def read_mesh(path: str | Path) -> tuple[Mesh, int]:
    """One mesh file → ``(validated Mesh in the file's frame, file bytes incl. sidecars)``."""
    import trimesh

    p = check_input_file(path, INPUT_EXTS, " for a mesh")
    ext = p.suffix.lower()
    sidecars = _obj_sidecars(p) if ext == ".obj" else _gltf_sidecars(p) if ext == ".gltf" else []
    try:
        loaded = trimesh.load(str(p), file_type=ext[1:], process=False)
    except MeshFileError:
        raise
    except Exception as e:  # noqa: BLE001 - parsers raise many types; report one line, not a traceback
        msg = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise MeshFileError(f"{p}: not a readable {ext[1:].upper()} mesh ({msg})") from None
    try:
        mesh = validate(_to_mesh(loaded, p), str(p))
    except MeshError as e:
        raise MeshFileError(str(e)) from None
    return mesh, p.stat().st_size + sum(s.stat().st_size for s in dict.fromkeys(sidecars))


# ------------------------------------------------------------------------------------ writing


def _rgba(mesh: Mesh) -> np.ndarray:
    c = np.clip(np.round(mesh.colors * 255.0), 0, 255).astype(np.uint8)
    return np.concatenate([c, np.full((len(c), 1), 255, np.uint8)], axis=1)


def encode_mesh(mesh: Mesh, fmt: str) -> bytes:
    """``glb`` (vertex colours as COLOR_0, 8 bits), ``obj`` (vertex colours as ``v x y z r g b``
    floats, no MTL: a common OBJ extension that trimesh, MeshLab and Blender read) or ``ply`` (binary,
    8-bit vertex colours) bytes."""
    import trimesh

    fmt = fmt.lower().lstrip(".")
    if fmt == "obj":
        buf = _io.StringIO()
        buf.write(f"# squeeze3d mesh: {mesh.num_vertices} vertices, {mesh.num_faces} faces; v x y z r g b\n")
        vc = np.concatenate([mesh.vertices.astype(np.float64), mesh.colors.astype(np.float64)], axis=1)
        # 9 significant digits round-trip float32 positions exactly
        np.savetxt(buf, vc, fmt="v %.9g %.9g %.9g %.6f %.6f %.6f")
        np.savetxt(buf, mesh.faces + 1, fmt="f %d %d %d")
        return buf.getvalue().encode()
    if fmt not in ("glb", "ply"):
        raise InputError(f"unsupported output format {fmt!r} for a mesh; use one of "
                         f"{', '.join(e[1:] for e in OUTPUT_EXTS)}")
    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, vertex_colors=_rgba(mesh), process=False)
    return tm.export(file_type=fmt)


def glb_bytes(mesh: Mesh) -> int:
    """Size of the raw GLB (the evaluation's uncompressed file baseline)."""
    return len(encode_mesh(mesh, "glb"))
