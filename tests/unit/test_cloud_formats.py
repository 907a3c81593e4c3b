"""Scanner and point-cloud-tool formats (PCD ascii/binary/binary_compressed, XYZ, PTS, LAS, LAZ): files
written by the formats' own libraries are read to the same points, round-trip through the CLI
(compress, then decompress to .pcd), and a damaged file is one line, exit 2, nothing written."""

import numpy as np
import pytest
import torch

from squeeze3d.cli import main
from squeeze3d.io import InputError, read_asset

PAIR = "debug"
PTS = np.random.default_rng(7).normal(size=(600, 3)).astype(np.float32) * [2.0, 1.0, 0.5] + [10.0, -3.0, 1.0]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """Random mapping weights in the real checkpoint format (no training needed here)."""
    from squeeze3d.config import train_config_for_pair
    from squeeze3d.mapping import build_mapping
    from squeeze3d.mapping.checkpoint import save_checkpoint
    from squeeze3d.pairs import get_pair

    cfg = train_config_for_pair(PAIR)
    torch.manual_seed(0)
    p = get_pair(PAIR)
    f_e, f_d = build_mapping(cfg.mapping, p.z_e_shape, p.z_g_shape)
    return str(save_checkpoint(tmp_path_factory.mktemp("ck") / "m", f_e, f_d, cfg))


def _write_pcd(path, pts, encoding):
    from pypcd4 import Encoding, PointCloud

    PointCloud.from_xyz_points(pts).save(path, encoding=Encoding(encoding))


def _write_las(path, pts):
    import laspy

    header = laspy.LasHeader(point_format=3, version="1.2")
    header.scales, header.offsets = [1e-4] * 3, [10.0, -3.0, 1.0]  # LAS stores scaled integers
    las = laspy.LasData(header)
    las.x, las.y, las.z = pts[:, 0], pts[:, 1], pts[:, 2]
    las.write(str(path))  # .laz: compressed by the lazrs backend


def _write(kind, d):
    """A file of format ``kind`` holding PTS, as the format's own tools write it; returns (path, atol)."""
    if kind.startswith("pcd-"):
        p = d / f"cloud-{kind[4:]}.pcd"
        _write_pcd(p, PTS, kind[4:])
        return p, 1e-6 if kind == "pcd-ascii" else 0.0  # ascii: 10 decimals
    if kind == "xyz":
        p = d / "cloud.xyz"
        np.savetxt(p, PTS, fmt="%.9g", header="x y z")  # '# x y z' comment line
        return p, 0.0
    if kind == "xyz-comma":
        p = d / "cloud-comma.xyz"
        np.savetxt(p, np.c_[PTS, np.full(len(PTS), 7.0)], fmt="%.9g", delimiter=",")  # x,y,z,intensity
        return p, 0.0
    if kind == "pts":
        p = d / "cloud.pts"  # Leica: count line, then x y z intensity r g b
        rows = "".join(f"{x:.9g} {y:.9g} {z:.9g} -1200 12 200 40\n" for x, y, z in PTS.tolist())
        p.write_text(f"{len(PTS)}\n{rows}")
        return p, 0.0
    p = d / f"cloud.{kind}"
    _write_las(p, PTS)
    return p, 0.6e-4  # the LAS scale is 1e-4


KINDS = ["pcd-ascii", "pcd-binary", "pcd-binary_compressed", "xyz", "xyz-comma", "pts", "las", "laz"]


@pytest.mark.parametrize("kind", KINDS)
def test_formats_read_the_points_the_file_holds(tmp_path, kind):
    p, atol = _write(kind, tmp_path)
    a = read_asset(p)
    assert a.kind == "points" and a.source_count == len(PTS)
    np.testing.assert_allclose(a.points, PTS, rtol=0, atol=atol + 1e-5 * np.abs(PTS).max())
    sub = read_asset(p, 256, seed=0)
    assert sub.points.shape == (256, 3)


@pytest.mark.parametrize("kind", KINDS)
def test_cli_round_trip_to_pcd(tmp_path, kind, ckpt, capsys):
    from pypcd4 import PointCloud

    src, _ = _write(kind, tmp_path)
    sq, pcd, ply = tmp_path / "c.sq3d", tmp_path / "back.pcd", tmp_path / "back.ply"
    argv = ["compress", str(src), "-o", str(sq), "--pair", PAIR, "--model", ckpt, "--min-quality", "off"]
    if kind in ("xyz-comma", "pts"):  # columns after x y z (intensity, colour) are not read: refused, not dropped
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "--drop-attributes" in err and "columns after x y z" in err
        assert not sq.exists()
        argv.append("--drop-attributes")
    assert main(argv) == 0
    assert main(["decompress", str(sq), "-o", str(pcd), "--model", ckpt]) == 0
    assert main(["decompress", str(sq), "-o", str(ply), "--model", ckpt]) == 0
    capsys.readouterr()
    back = PointCloud.from_path(pcd)  # PCL's format, read by another library
    assert back.fields == ("x", "y", "z") and back.points == 256
    xyz = back.numpy(("x", "y", "z"))
    assert np.array_equal(xyz, read_asset(ply).points)  # the same decode, written as PCD
    # the cloud comes back in the file's own frame (the debug pair's random model: only roughly)
    assert np.abs(xyz.mean(0) - PTS.mean(0)).max() < 2.0


def _damaged(kind, d):
    p, _ = _write(kind, d)
    data = p.read_bytes()
    if kind == "pcd-binary":
        return p, data[:-12 * 10 - 5]  # cut inside the point data
    if kind == "pcd-binary_compressed":
        return p, data[:-40]
    if kind == "pcd-ascii":
        return p, data.replace(b"POINTS 600", b"POINTS 900")  # header promises more than it holds
    if kind in ("xyz", "xyz-comma"):
        return p, data + b"1.0 2.0 oops\n"
    if kind == "pts":
        return p, data[: len(data) // 2]
    return p, data[: len(data) - 301]  # las, laz: truncated point records


@pytest.mark.parametrize("kind", KINDS + ["garbage-pcd", "garbage-las", "no-xyz-pcd"])
def test_damaged_files_are_one_line_exit_2_nothing_written(tmp_path, kind, ckpt, capsys):
    src = tmp_path / "src"
    src.mkdir()
    if kind == "garbage-pcd":
        p, data = src / "noise.pcd", bytes(range(256)) * 4
    elif kind == "garbage-las":
        p, data = src / "noise.las", b"LASF" + bytes(range(256)) * 4
    elif kind == "no-xyz-pcd":
        p, data = src / "intensity.pcd", (b"VERSION 0.7\nFIELDS intensity\nSIZE 4\nTYPE F\nCOUNT 1\nWIDTH 3\n"
                                          b"HEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS 3\nDATA ascii\n1\n2\n3\n")
    else:
        p, data = _damaged(kind, src)
    p.write_bytes(data)
    out = tmp_path / "out" / "c.sq3d"
    rc = main(["compress", str(p), "-o", str(out), "--pair", PAIR, "--model", ckpt, "--min-quality", "off"])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and p.name in err, err
    for internal in ("Traceback", "ValidationError", "pydantic", "LazrsError", "multiple of element size"):
        assert internal not in err, err
    assert not out.exists() and not (out.parent.exists() and any(out.parent.iterdir()))


def test_pcd_nan_points_are_dropped_and_size_checked_before_loading(tmp_path, monkeypatch):
    organised = PTS.copy()
    organised[::3] = np.nan  # PCL's "no measurement" in an organised cloud
    _write_pcd(tmp_path / "o.pcd", organised, "binary")
    a = read_asset(tmp_path / "o.pcd")
    assert a.source_count == len(PTS) - len(PTS[::3]) and np.isfinite(a.points).all()
    # a header promising more points than the limit is refused before its data are read
    monkeypatch.setenv("SQUEEZE3D_MAX_POINTS", "500")
    with pytest.raises(InputError, match="exceed the limit"):
        read_asset(tmp_path / "o.pcd")
    _write_las(tmp_path / "big.laz", PTS)
    with pytest.raises(InputError, match="exceed the limit"):
        read_asset(tmp_path / "big.laz")


def _lower_count(kind, d):
    """A file of ``kind`` whose header declares 500 points while its data hold all 600 (issue 31.4)."""
    import struct

    from squeeze3d.io import encode_points

    if kind == "pcd-binary":
        p, _ = _write(kind, d)
        return p, p.read_bytes().replace(b"WIDTH 600", b"WIDTH 500").replace(b"POINTS 600", b"POINTS 500")
    if kind in ("ply-binary", "ply-ascii"):
        p = d / f"{kind}.ply"
        if kind == "ply-binary":
            data = encode_points(PTS, "ply")
        else:
            rows = "".join(f"{x:.9g} {y:.9g} {z:.9g}\n" for x, y, z in PTS.tolist())
            data = (f"ply\nformat ascii 1.0\nelement vertex {len(PTS)}\nproperty float x\nproperty float y\n"
                    f"property float z\nend_header\n{rows}").encode()
        return p, data.replace(b"vertex 600", b"vertex 500")
    import laspy

    ext, fmt, version = {"las": ("las", 3, "1.2"), "laz": ("laz", 3, "1.2"), "las-1.4": ("las", 6, "1.4"),
                         "laz-1.4": ("laz", 6, "1.4")}[kind]
    p = d / f"cloud-{fmt}.{ext}"
    header = laspy.LasHeader(point_format=fmt, version=version)
    header.scales, header.offsets = [1e-4] * 3, [10.0, -3.0, 1.0]
    las = laspy.LasData(header)
    las.x, las.y, las.z = PTS[:, 0], PTS[:, 1], PTS[:, 2]
    las.write(str(p))
    data = bytearray(p.read_bytes())
    struct.pack_into("<I", data, 107, 500 if fmt < 6 else 0)  # the legacy count (0 for formats 6+)
    if version == "1.4":
        struct.pack_into("<Q", data, 247, 500)
    return p, bytes(data)


@pytest.mark.parametrize("kind", ["pcd-binary", "las", "laz", "las-1.4", "laz-1.4", "ply-binary", "ply-ascii"])
def test_a_header_count_below_the_data_is_refused_not_truncated(tmp_path, kind, ckpt, capsys):
    p, data = _lower_count(kind, tmp_path)
    p.write_bytes(data)
    with pytest.raises(InputError, match=r"promises 500 points, the data hold (600|more)"):
        read_asset(p)
    out = tmp_path / "c.sq3d"
    rc = main(["compress", str(p), "-o", str(out), "--pair", PAIR, "--model", ckpt, "--min-quality", "off"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and p.name in err, err
    assert not out.exists()


def test_pcd_compressed_size_error_names_the_unpacked_size(tmp_path):
    import struct

    p = tmp_path / "c.pcd"
    _write_pcd(p, np.tile(PTS[:10], (60, 1)).astype(np.float32), "binary_compressed")  # pypcd4 stores
    # incompressible data as plain binary: repeats make the block compress
    data = bytearray(p.read_bytes())
    at = data.index(b"DATA binary_compressed\n") + len(b"DATA binary_compressed\n")
    struct.pack_into("<I", data, at + 4, 36000)  # the uncompressed size field
    p.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"says it unpacks to 36000 bytes; 600 points need 7200"):
        read_asset(p)
