"""Writing: files atomically (``atomic_write_bytes``: a temporary sibling, fsync, rename, the mode a
plain ``open`` would give) and point clouds (``write_points``: ``.ply``, ``.npz``, ``.obj``, ``.pcd``,
``.las``). Re-exported by ``squeeze3d.io``, the readers' module, which is where callers import them."""

from __future__ import annotations

import io as _io
import os
import tempfile
from pathlib import Path

import numpy as np

from squeeze3d.errors import InputError

OUTPUT_EXTS = (".ply", ".npz", ".obj", ".pcd", ".las")


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (``/proc/self/status``); else by
    the set-and-restore dance (briefly racy with other threads creating files)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes, *, overwrite: bool = True, mode: int | None = None) -> Path:
    """Write to a temporary file in the same directory, fsync, then rename over ``path``.

    The file gets the mode a plain ``open(path, "w")`` would give it: ``0o666 & ~umask`` for a new
    file, the old file's permission bits when it replaces one (mkstemp's 0600 would make a shared
    output unreadable to everyone else). ``overwrite=False``: refuse (``FileExistsError``) if ``path``
    exists, checked atomically at the rename (``os.link`` fails on an existing name). ``mode``: these
    permission bits instead (0o600 for a private file: it is never readable by others, not even
    between the write and the rename)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if mode is None:
        try:
            mode = p.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o666 & ~current_umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, p)
        else:
            try:
                os.link(tmp, p)  # FileExistsError if something appeared there meanwhile
            except FileExistsError:
                raise
            except OSError:  # a file system without hard links: check, then rename (a small race)
                if os.path.lexists(p):
                    raise FileExistsError(17, "File exists", str(p)) from None
                os.replace(tmp, p)
            else:
                os.unlink(tmp)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return p


def check_output_path(path: str | Path) -> Path:
    p = Path(path)
    if p.suffix.lower() not in OUTPUT_EXTS:
        raise InputError(f"{p}: unsupported output format {p.suffix or '(no extension)'!r}; "
                         f"use one of {', '.join(OUTPUT_EXTS)}")
    if p.is_dir():
        raise InputError(f"{p}: is a directory")
    return p


KEEPS = {"ply": ("colour", "intensity"), "npz": ("colour", "intensity"), "pcd": ("colour", "intensity"),
         "las": ("colour", "intensity"), "obj": ("colour",)}
"""Which per-point attributes each output format writes (OBJ: colour as ``v x y z r g b``)."""


def encode_points(points: np.ndarray, fmt: str, attributes: dict | None = None) -> bytes:
    """Serialise ``[N, 3]`` points (and their ``attributes``: colour uint8 [N, 3], intensity uint16
    [N]) as ``ply`` | ``npz`` | ``obj`` | ``pcd`` | ``las`` bytes. An attribute the format cannot
    hold (intensity in OBJ) is an ``InputError``: the caller decides to drop it, never this."""
    pts = np.ascontiguousarray(points, dtype=np.float32)
    fmt = fmt.lower().lstrip(".")
    attrs = {k: v for k, v in (attributes or {}).items() if v is not None}
    lost = [k for k in attrs if fmt in KEEPS and k not in KEEPS[fmt]]
    if lost:
        raise InputError(f".{fmt} cannot hold the decoded {', '.join(lost)}; write .ply, .pcd, .las or .npz, "
                         "or pass --drop-attributes")
    if fmt == "ply":
        props = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
        if "colour" in attrs:
            props += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
        if "intensity" in attrs:
            props += [("intensity", "<u2")]
        rec = np.empty(len(pts), dtype=np.dtype(props))
        rec["x"], rec["y"], rec["z"] = pts[:, 0], pts[:, 1], pts[:, 2]
        if "colour" in attrs:
            rec["red"], rec["green"], rec["blue"] = attrs["colour"][:, 0], attrs["colour"][:, 1], attrs["colour"][:, 2]
        if "intensity" in attrs:
            rec["intensity"] = attrs["intensity"]
        types = {"<f4": "float", "u1": "uchar", "<u2": "ushort"}
        header = (f"ply\nformat binary_little_endian 1.0\nelement vertex {len(pts)}\n"
                  + "".join(f"property {types[t]} {n}\n" for n, t in props) + "end_header\n").encode("ascii")
        return header + rec.tobytes()
    if fmt == "npz":
        buf = _io.BytesIO()
        np.savez(buf, points=pts, **attrs)
        return buf.getvalue()
    if fmt == "pcd":
        from squeeze3d.cloud_io import encode_pcd

        return encode_pcd(pts, attrs)
    if fmt == "las":
        from squeeze3d.cloud_io import encode_las

        return encode_las(pts, attrs)
    if fmt == "obj":
        if "colour" in attrs:
            rgb = (attrs["colour"] / 255.0).tolist()
            return "".join(f"v {x:.9g} {y:.9g} {z:.9g} {r:.6g} {g:.6g} {b:.6g}\n"
                           for (x, y, z), (r, g, b) in zip(pts.tolist(), rgb)).encode("ascii")
        return "".join(f"v {x:.9g} {y:.9g} {z:.9g}\n" for x, y, z in pts.tolist()).encode("ascii")
    raise InputError(f"unsupported output format {fmt!r}; use one of {', '.join(OUTPUT_EXTS)}")


def write_points(path: str | Path, points: np.ndarray, attributes: dict | None = None) -> Path:
    """Write a point cloud; the format follows the extension (.ply, .npz, .obj, .pcd, .las). Atomic."""
    p = check_output_path(path)
    return atomic_write_bytes(p, encode_points(points, p.suffix, attributes))
