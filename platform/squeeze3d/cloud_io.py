"""Point-cloud files from scanners and point-cloud tools, read with the formats' own libraries:

- PCD (PCL's format: ``ascii``, ``binary`` and ``binary_compressed``) through ``pypcd4``; written
  too (``binary``, float32 x y z), which PCL, Open3D and CloudCompare read. Organised clouds mark
  missing measurements with NaN points, as PCL does; those points are dropped, as PCL's
  ``removeNaNFromPointCloud`` would.
- XYZ text (``x y z [more columns]`` per line, spaces/tabs or commas, ``#`` comments) and Leica PTS
  (a first line with the point count, then ``x y z [intensity r g b]`` lines; one scan per file)
  through ``numpy.loadtxt``.
- LAS and LAZ through ``laspy`` (LAZ decompressed by its ``lazrs`` backend); coordinates are the
  scaled, offset x, y, z in the file's own units.

``read_cloud`` reads x, y, z; ``read_cloud_attributes`` also reads the per-point attributes the codec
keeps (``squeeze3d.codec.attributes``): PCD ``rgb``/``rgba`` (packed) and ``intensity``, LAS/LAZ RGB
(16-bit values as their high bytes when they exceed 255) and intensity, and names every other
per-point field that carries data (normals, labels, LAS classification, GPS time, XYZ/PTS columns
after x y z) so that compress can refuse to drop them silently. Anything malformed (a bad header, a
point count that does not match the data in either direction, text that is not numbers, a wrong
signature) raises ``InputError``: one line naming the file, the
format and what is wrong. The size limits of ``squeeze3d.io`` apply before the data are loaded where
the header says how many points follow.
"""

from __future__ import annotations

import io as _io
import math
import struct
from pathlib import Path

import numpy as np

from squeeze3d.errors import InputError
from squeeze3d.limits import max_points


def _one_line(e: BaseException) -> str:
    """A library's exception as one short line (pydantic and lazrs messages span several)."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _too_many(path: Path, n: int) -> InputError:
    return InputError(f"{path}: {n} points exceed the limit of {max_points()} (set SQUEEZE3D_MAX_POINTS to raise it)")


def read_cloud(path: Path) -> np.ndarray:
    """``[N, 3]`` float64 coordinates of a PCD, XYZ, PTS, LAS or LAZ file; ``InputError`` if unreadable."""
    ext = path.suffix.lower()
    fmt = ext[1:].upper()
    reader = {".pcd": _read_pcd, ".xyz": _read_xyz, ".pts": _read_pts, ".las": _read_las, ".laz": _read_las}[ext]
    try:
        return reader(path)
    except InputError:
        raise
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a readable {fmt} file (it is not text where the format expects "
                         "text: a binary or corrupt file?)") from None
    except Exception as e:  # noqa: BLE001 - the libraries raise many types on malformed files
        raise InputError(f"{path}: not a readable {fmt} file ({_why(e)})") from None


def read_cloud_attributes(path: Path) -> tuple[np.ndarray, dict, tuple[str, ...]]:
    """``(points, attributes aligned with them, names of per-point fields that are not kept)``."""
    ext = path.suffix.lower()
    if ext not in (".pcd", ".las", ".laz"):
        pts = read_cloud(path)
        extra = _text_extra_columns(path, ext)
        return pts, {}, ((f"{ext[1:].upper()} columns after x y z (intensity, colour, ...)",) if extra else ())
    found: dict = {}
    reader = _read_pcd if ext == ".pcd" else _read_las
    fmt = ext[1:].upper()
    try:
        pts = reader(path, found)
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - as read_cloud
        raise InputError(f"{path}: not a readable {fmt} file ({_why(e)})") from None
    return pts, found.get("attributes", {}), tuple(found.get("unkept", ()))


def _text_extra_columns(path: Path, ext: str) -> bool:
    """Does an XYZ or PTS file have columns after x y z (on its first point line)?"""
    with open(path, encoding="utf-8", errors="replace") as f:
        if ext == ".pts":
            _first_data_line(f)
            f.readline()  # the count
        line = _first_data_line(f)
    return len(line.replace(",", " ").split()) > 3


def _why(e: BaseException) -> str:
    """What is wrong, in the user's terms, from the libraries' exceptions."""
    errors = getattr(e, "errors", None)
    if callable(errors) and type(e).__name__ == "ValidationError":  # pydantic, from pypcd4's header model
        keys = sorted({str(err["loc"][0]).upper() for err in errors() if err.get("loc")})
        return f"its header lacks or garbles {', '.join(keys) or 'entries'}"
    text = str(e).lower()
    if "buffer size" in text or "failed to fill" in text or "decompress" in text or isinstance(e, EOFError):
        return "the file ends early or its data are damaged: it is truncated or corrupt"
    return _one_line(e)


# ----------------------------------------------------------------------------------------- PCD


def _pcd_header(f) -> list[str]:
    """The header's lines (comments dropped) up to and including DATA; the file is left after it."""
    lines = []
    while True:
        raw = f.readline()
        if not raw:
            raise InputError(f"{f.name}: not a readable PCD file (no DATA line: the header is incomplete)")
        line = raw.decode("ascii").strip()
        if line and not line.startswith("#"):
            lines.append(line)
        if line.upper().startswith("DATA"):
            return lines
        if len(lines) > 16:  # PCL headers have 10 entries: this is not a PCD file
            raise InputError(f"{f.name}: not a readable PCD file (no DATA line within its header)")


def _pcd_attributes(cloud, keep: np.ndarray, found: dict) -> None:
    data = cloud.pc_data
    names = list(data.dtype.names or ())
    attrs, unkept = {}, []
    for key in ("rgb", "rgba"):
        if key in names:
            raw = np.ascontiguousarray(data[key][keep])
            packed = (raw.view(np.uint32) if raw.dtype.itemsize == 4 else raw.astype(np.uint32)).reshape(-1)
            attrs["colour"] = np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], 1).astype(np.uint8)
            break
    if "intensity" in names:
        v = np.asarray(data["intensity"][keep], np.float64).reshape(-1)
        if np.isfinite(v).all() and (v >= 0).all() and (v <= 65535).all() and (v == np.rint(v)).all():
            attrs["intensity"] = v.astype(np.uint16)
        else:
            unkept.append("intensity (values that are not whole numbers 0..65535)")
    if {"normal_x", "normal_y", "normal_z"} & set(names):
        unkept.append("normals")
    unkept += [n for n in names if n not in ("x", "y", "z", "rgb", "rgba", "intensity", "normal_x", "normal_y",
                                             "normal_z", "_") and not n.startswith("_")]
    found["attributes"], found["unkept"] = attrs, unkept


def _read_pcd(path: Path, found: dict | None = None) -> np.ndarray:
    from pypcd4 import Encoding, MetaData, PointCloud

    with open(path, "rb") as f:
        meta = MetaData.parse_header(_pcd_header(f))
        if not {"x", "y", "z"} <= set(meta.fields):
            raise InputError(f"{path}: PCD fields {' '.join(meta.fields)} have no x, y and z")
        if meta.points > max_points():
            raise _too_many(path, meta.points)
        if meta.data == Encoding.BINARY_COMPRESSED:
            # the sizes ahead of the LZF block: a wrong one means a damaged file (and a huge one
            # would make the decompressor reserve that much memory)
            sizes = f.read(8)
            if len(sizes) < 8:
                raise InputError(f"{path}: not a readable PCD file (the file ends early: it is truncated)")
            _, raw_size = struct.unpack("<II", sizes)
            if raw_size != meta.points * meta.build_dtype().itemsize:
                raise InputError(f"{path}: not a readable PCD file (its compressed block says it unpacks to "
                                 f"{raw_size} bytes; {meta.points} points need "
                                 f"{meta.points * meta.build_dtype().itemsize})")
        if meta.data == Encoding.BINARY:
            # fixed-size records: the bytes after the header say how many points the data hold
            held = (path.stat().st_size - f.tell()) // meta.build_dtype().itemsize
            if held > meta.points:
                raise InputError(f"{path}: not a readable PCD file (its header promises {meta.points} points, the "
                                 f"data hold {held}: a damaged header would drop the rest)")
        f.seek(0)
        cloud = PointCloud.from_fileobj(f)
    if len(cloud.pc_data) != meta.points:
        raise InputError(f"{path}: not a readable PCD file (its header promises {meta.points} points, "
                         f"the data hold {len(cloud.pc_data)}: truncated or damaged)")
    pts = np.asarray(cloud.numpy(("x", "y", "z")), dtype=np.float64).reshape(-1, 3)
    keep = ~np.isnan(pts).any(axis=1)  # PCL's marker of a missing measurement
    if found is not None:
        _pcd_attributes(cloud, keep, found)
    return pts[keep]


def encode_pcd(points: np.ndarray, attributes: dict | None = None) -> bytes:
    """``[N, 3]`` points as a binary PCD file (float32 x y z; colour as PCL's packed float ``rgb``,
    intensity as float32 ``intensity``)."""
    from pypcd4 import Encoding, PointCloud

    pts = np.ascontiguousarray(points, dtype=np.float32)
    attrs = attributes or {}
    buf = _io.BytesIO()
    if not attrs:
        PointCloud.from_xyz_points(pts).save(buf, encoding=Encoding.BINARY)
        return buf.getvalue()
    cols, fields, types = [pts[:, 0], pts[:, 1], pts[:, 2]], ["x", "y", "z"], [np.float32] * 3
    if "colour" in attrs:
        c = np.asarray(attrs["colour"], np.uint32)
        cols.append((c[:, 0] << 16 | c[:, 1] << 8 | c[:, 2]).astype(np.uint32).view(np.float32))
        fields.append("rgb")
        types.append(np.float32)
    if "intensity" in attrs:
        cols.append(np.asarray(attrs["intensity"], np.float32))
        fields.append("intensity")
        types.append(np.float32)
    PointCloud.from_points(cols, fields, types).save(buf, encoding=Encoding.BINARY)
    return buf.getvalue()


def encode_las(points: np.ndarray, attributes: dict | None = None) -> bytes:
    """``[N, 3]`` points as a LAS 1.2 file (point format 3 when there is colour, else 0): offsets at
    the bounding box's minimum, a power-of-ten scale of ~1e-9 of the cloud's extent; 8-bit colour written as
    16-bit (x·257, so 255 is full scale), intensity as is."""
    import laspy

    pts = np.asarray(points, np.float64)
    attrs = attributes or {}
    lo = pts.min(0)
    extent = float((pts.max(0) - lo).max()) or 1.0
    scale = 10.0 ** math.ceil(math.log10(extent / 1e9))  # ≤ 1e9 steps across: finer than float32, fits int32
    header = laspy.LasHeader(point_format=3 if "colour" in attrs else 0, version="1.2")
    header.offsets, header.scales = lo, [scale] * 3
    las = laspy.LasData(header)
    las.x, las.y, las.z = pts[:, 0], pts[:, 1], pts[:, 2]
    if "colour" in attrs:
        c = np.asarray(attrs["colour"], np.uint16) * 257
        las.red, las.green, las.blue = c[:, 0], c[:, 1], c[:, 2]
    if "intensity" in attrs:
        las.intensity = np.asarray(attrs["intensity"], np.uint16)
    buf = _io.BytesIO()
    las.write(buf)
    return buf.getvalue()


# ------------------------------------------------------------------------------------ XYZ, PTS


def _first_data_line(f) -> str:
    """The next line that is neither blank nor a ``#`` comment, without consuming it."""
    while True:
        pos = f.tell()
        line = f.readline()
        if not line:
            return ""
        if line.strip() and not line.lstrip().startswith("#"):
            f.seek(pos)
            return line


def _table(f, path: Path, fmt: str, max_rows: int | None = None) -> np.ndarray:
    line = _first_data_line(f)
    if not line:
        raise InputError(f"{path}: no points (the {fmt} file has no data lines)")
    delimiter = "," if "," in line else None  # CloudCompare and many exporters write commas
    try:
        table = np.loadtxt(f, dtype=np.float64, comments="#", delimiter=delimiter, usecols=(0, 1, 2), ndmin=2,
                           max_rows=max_rows)
    except ValueError as e:
        raise InputError(f"{path}: not a readable {fmt} file ({_one_line(e)}; expected lines of x y z numbers)"
                         ) from None
    return table


def _read_xyz(path: Path) -> np.ndarray:
    with open(path, encoding="utf-8") as f:
        return _table(f, path, "XYZ")


def _read_pts(path: Path) -> np.ndarray:
    with open(path, encoding="utf-8") as f:
        head = _first_data_line(f).split()
        if len(head) != 1 or not head[0].isdigit():
            raise InputError(f"{path}: not a readable PTS file (its first line must be the point count, "
                             f"got {' '.join(head)[:60]!r})")
        f.readline()
        count = int(head[0])
        if count > max_points():
            raise _too_many(path, count)
        table = _table(f, path, "PTS")
    if len(table) != count:
        raise InputError(f"{path}: not a readable PTS file (its first line promises {count} points, "
                         f"the file holds {len(table)}: truncated, or several scans in one file)")
    return table


# ------------------------------------------------------------------------------------ LAS, LAZ


def _check_las_vlr_count(path: Path) -> None:
    """laspy reads as many variable-length records as the header counts, even past the end of the file
    (a garbage count of 4 billion spins for hours): check that the file can hold them first. The
    count is at byte 100 of every LAS version's header; each record's own header is 54 bytes."""
    with open(path, "rb") as f:
        head = f.read(104)
    if len(head) < 104 or head[:4] != b"LASF":
        return  # laspy says what is wrong with the signature or the short header
    count = struct.unpack_from("<I", head, 100)[0]
    if count * 54 > path.stat().st_size:
        raise InputError(f"{path}: not a readable {path.suffix[1:].upper()} file (its header counts {count} "
                         "variable-length records, more than the file can hold: it is corrupt)")


_LAS_UNKEPT = {"classification": "classification", "gps_time": "GPS time", "user_data": "user data",
               "point_source_id": "point source id"}


def _las_attributes(las, found: dict) -> None:
    dims = set(las.point_format.dimension_names)
    attrs, unkept = {}, []
    if {"red", "green", "blue"} <= dims:
        rgb = np.stack([np.asarray(las.red), np.asarray(las.green), np.asarray(las.blue)], 1)
        if rgb.any():
            attrs["colour"] = (rgb >> 8 if rgb.max() > 255 else rgb).astype(np.uint8)
    if "intensity" in dims and np.asarray(las.intensity).any():
        attrs["intensity"] = np.asarray(las.intensity).astype(np.uint16)
    for dim, label in _LAS_UNKEPT.items():
        if dim in dims and np.asarray(las[dim]).any():
            unkept.append(label)
    unkept += [f"extra dimension {d}" for d in las.point_format.extra_dimension_names]
    found["attributes"], found["unkept"] = attrs, unkept


def _read_las(path: Path, found: dict | None = None) -> np.ndarray:
    import laspy

    _check_las_vlr_count(path)
    fmt = path.suffix[1:].upper()
    with laspy.open(str(path)) as reader:
        header = reader.header
        count = int(header.point_count)
        if count > max_points():
            raise _too_many(path, count)
        if fmt == "LAS":
            records = reader.read().points
            # point records are fixed-size: what lies between them and the extended records (LAS
            # 1.4) or the end of the file is how many the data hold
            end = int(header.start_of_first_evlr) if getattr(header, "number_of_evlrs", 0) else path.stat().st_size
            held = max(0, end - int(header.offset_to_point_data)) // header.point_format.size
    if fmt == "LAZ":
        records, more = _read_laz_and_one_more(path, count)
        held = count + 1 if more else len(records)
    if len(records) != count:
        raise InputError(f"{path}: not a readable {fmt} file (its header promises {count} "
                         f"points, the data hold {len(records)}: truncated or damaged)")
    if held > count:
        more = f"{held}" if fmt == "LAS" else "more"
        raise InputError(f"{path}: not a readable {fmt} file (its header promises {count} points, the data hold "
                         f"{more}: a damaged header would drop the rest)")
    if found is not None:
        _las_attributes(records, found)
    return np.stack([np.asarray(records.x), np.asarray(records.y), np.asarray(records.z)], axis=1).astype(np.float64)


def _read_laz_and_one_more(path: Path, count: int):
    """The ``count`` points a LAZ header declares, and whether its data hold one more. LAZ chunks carry
    no point count laspy exposes, so the header is read with ``count + 1``: decoding that extra point
    fails at the end of the last chunk's bytes unless the data really hold it. One decoding pass."""
    import laspy

    data = bytearray(path.read_bytes())
    if data[25] >= 4 and len(data) >= 255:  # LAS 1.4: the 64-bit count
        struct.pack_into("<Q", data, 247, count + 1)
    if struct.unpack_from("<I", data, 107)[0] == count and count + 1 < 2**32:  # the legacy 32-bit count
        struct.pack_into("<I", data, 107, count + 1)
    with laspy.open(_io.BytesIO(bytes(data))) as reader:
        records = reader.read_points(count)
        try:
            more = len(reader.read_points(1)) > 0
        except Exception:  # noqa: BLE001 - lazrs: "failed to fill whole buffer", the data end here
            more = False
    return records, more
