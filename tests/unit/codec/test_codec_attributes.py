"""Issue 29: per-point colour and intensity are kept in every mode or refused in one line, and the
classical path keeps every input point. Coloured PLY, PCD ``rgb`` and LAS RGB + intensity round-trip
through the CLI (neural rung, default floor, ``--min-quality 40``), come back in PLY, PCD and LAS, and
per-point data no mode keeps (normals) are refused unless ``--drop-attributes``."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from squeeze3d.cli import main
from squeeze3d.codec import attributes as A
from squeeze3d.codec.container import ContainerError, read_container, unpack
from squeeze3d.io import read_asset

PAIR = "debug"  # 256-point resample


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from squeeze3d.config import train_config_for_pair
    from squeeze3d.mapping import build_mapping
    from squeeze3d.mapping.checkpoint import save_checkpoint
    from squeeze3d.pairs import get_pair

    cfg = train_config_for_pair(PAIR)
    torch.manual_seed(0)
    p = get_pair(PAIR)
    f_e, f_d = build_mapping(cfg.mapping, p.z_e_shape, p.z_g_shape)
    return str(save_checkpoint(tmp_path_factory.mktemp("ck") / "m", f_e, f_d, cfg))


def _cloud(n, seed=0):
    """A sphere-ish cloud with a smooth colour ramp and an intensity ramp, off the origin."""
    rng = np.random.default_rng(seed)
    p = rng.normal(size=(n, 3))
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    p = p * [2.0, 1.0, 0.7]
    colour = np.clip((p / [2.0, 1.0, 0.7] * 0.5 + 0.5) * 255, 0, 255).astype(np.uint8)
    intensity = (p[:, 2] * 1000 + 30000).astype(np.uint16)
    return (p + [10.0, -3.0, 1.0]).astype(np.float32), colour, intensity


def _write_ply(path, pts, colour, normals=False):
    props = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")] + ([("nx", "<f4"), ("ny", "<f4"), ("nz", "<f4")] if normals
                                                             else []) + [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    rec = np.zeros(len(pts), np.dtype(props))
    rec["x"], rec["y"], rec["z"] = pts.T
    rec["red"], rec["green"], rec["blue"] = colour.T
    if normals:
        rec["nx"] = 1.0
    kinds = {"<f4": "float", "u1": "uchar"}
    head = (f"ply\nformat binary_little_endian 1.0\nelement vertex {len(pts)}\n"
            + "".join(f"property {kinds[t]} {n}\n" for n, t in props) + "end_header\n")
    path.write_bytes(head.encode() + rec.tobytes())
    return path


def _write_pcd(path, pts, colour):
    from pypcd4 import PointCloud

    rgb = PointCloud.encode_rgb(colour)
    PointCloud.from_xyzrgb_points(np.c_[pts, rgb.astype(np.float32)]).save(path)
    return path


def _write_las(path, pts, colour, intensity):
    import laspy

    header = laspy.LasHeader(point_format=3, version="1.2")
    header.scales, header.offsets = [1e-4] * 3, [10.0, -3.0, 1.0]
    las = laspy.LasData(header)
    las.x, las.y, las.z = pts[:, 0], pts[:, 1], pts[:, 2]
    c16 = colour.astype(np.uint16) * 257  # 8-bit colour stored full-scale, as scanners write it
    las.red, las.green, las.blue = c16[:, 0], c16[:, 1], c16[:, 2]
    las.intensity = intensity
    las.write(str(path))
    return path


def _run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _inputs(d, n=3000):
    pts, col, inten = _cloud(n)
    return {
        "ply": (_write_ply(d / "c.ply", pts, col), ("colour",)),
        "pcd": (_write_pcd(d / "c.pcd", pts, col), ("colour",)),
        "las": (_write_las(d / "c.las", pts, col, inten), ("colour", "intensity")),
    }, (pts, col, inten)


def test_readers_keep_colour_and_intensity(tmp_path):
    files, (pts, col, inten) = _inputs(tmp_path)
    for fmt, (path, names) in files.items():
        a = read_asset(path, 256)
        assert tuple(a.attributes) == names and a.unkept == () and len(a.cloud) == len(pts), fmt
        assert np.array_equal(a.attributes["colour"], col), fmt
        assert len(a.points) == 256  # the neural resample; the cloud keeps every point
    assert np.array_equal(read_asset(files["las"][0]).attributes["intensity"], inten)


@pytest.mark.parametrize("fmt", ["ply", "pcd", "las"])
@pytest.mark.parametrize("quality", ["off", "30", "40"])
def test_round_trip_keeps_attributes_in_every_mode(tmp_path, ckpt, capsys, fmt, quality):
    files, (pts, col, inten) = _inputs(tmp_path)
    src, names = files[fmt]
    sq = tmp_path / "c.sq3d"
    rc, out, err = _run(capsys, "compress", src, "-o", sq, "--pair", PAIR, "--model", ckpt, "--min-quality", quality,
                        "--effort", "0")
    assert rc == 0, err
    c = read_container(sq)
    assert c.attributes == names and c.version == 3
    line = out.strip()
    assert "colour Y-PSNR" in line or "colour exact" in line
    if c.codec == "neural":  # the neural rung: the pair's resample, colours transferred to it
        assert quality == "off" and "256-point resample" in line and c.attr_payload
    else:  # the classical path: every input point, colours in Draco's own attribute
        assert "every input point (3000)" in line and not c.attr_payload
        assert "D1-PSNR" in line and "vs the input" in line
    for out_fmt in ("ply", "pcd", "las"):
        dst = tmp_path / f"back.{out_fmt}"
        rc, out, err = _run(capsys, "decompress", sq, "-o", dst, "--model", ckpt)
        assert rc == 0, err
        back = read_asset(dst)
        assert tuple(back.attributes) == names, (out_fmt, back.attributes.keys())
        n = 256 if c.codec == "neural" else len(pts)
        assert len(back.cloud) == n
        q = A.attribute_psnr(pts, {"colour": col, "intensity": inten}, back.cloud, back.attributes)
        if c.codec == "fallback":  # Draco keeps colours exactly; the metric sees the geometry's quantisation
            assert q["colour"] > 30
            if "intensity" in names:
                assert q["intensity"] > 50
        else:
            assert np.isfinite(q["colour"])


def test_unkept_data_refused_in_one_line_unless_dropped(tmp_path, ckpt, capsys):
    pts, col, _ = _cloud(1000)
    src = _write_ply(tmp_path / "n.ply", pts, col, normals=True)
    sq = tmp_path / "n.sq3d"
    for quality in ("off", "30", "40"):
        rc, out, err = _run(capsys, "compress", src, "-o", sq, "--pair", PAIR, "--model", ckpt, "--min-quality", quality)
        assert rc == 2 and len(err.strip().splitlines()) == 1
        assert "normals" in err and "--drop-attributes" in err and not sq.exists()
    rc, out, err = _run(capsys, "compress", src, "-o", sq, "--pair", PAIR, "--model", ckpt, "--drop-attributes")
    assert rc == 0 and "dropped by --drop-attributes: normals, colour (RGB)" in out
    c = read_container(sq)
    # geometry only: no attribute section (a neural or Draco file keeps version 2's layout byte for
    # byte; the octree fallback is version 3 for its layer, without attributes)
    assert c.attributes == () and not c.attr_payload and (c.version == 2 or c.coder == "octree")
    rc, _, err = _run(capsys, "decompress", sq, "-o", tmp_path / "n_back.ply", "--model", ckpt)
    assert rc == 0 and read_asset(tmp_path / "n_back.ply").attributes == {}


def test_output_format_that_cannot_hold_intensity_is_refused(tmp_path, ckpt, capsys):
    files, _ = _inputs(tmp_path, 500)
    sq = tmp_path / "l.sq3d"
    assert _run(capsys, "compress", files["las"][0], "-o", sq, "--pair", PAIR, "--model", ckpt)[0] == 0
    rc, _, err = _run(capsys, "decompress", sq, "-o", tmp_path / "l.obj", "--model", ckpt)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "intensity" in err and "--drop-attributes" in err
    assert not (tmp_path / "l.obj").exists()
    rc, _, err = _run(capsys, "decompress", sq, "-o", tmp_path / "l.obj", "--model", ckpt, "--drop-attributes")
    assert rc == 0 and (tmp_path / "l.obj").is_file()


def test_inspect_shows_the_attributes(tmp_path, ckpt, capsys):
    files, _ = _inputs(tmp_path, 500)
    sq = tmp_path / "p.sq3d"
    assert _run(capsys, "compress", files["las"][0], "-o", sq, "--pair", PAIR, "--model", ckpt,
                "--min-quality", "off", "--effort", "0")[0] == 0
    rc, out, _ = _run(capsys, "inspect", sq, "--json")
    info = json.loads(out)
    assert rc == 0 and info["format_version"] == 3 and info["attributes"] == "colour, intensity"
    assert info["attribute_coding"].startswith("transferred to the decoded points")


def test_20000_points_at_40db_decode_to_their_own_points(tmp_path, ckpt):
    """Through ``python -m squeeze3d``, as a user runs it."""
    rng = np.random.default_rng(3)
    pts = rng.normal(size=(20000, 3)).astype(np.float32) * [3.0, 1.0, 0.5]
    src, sq, back = tmp_path / "big.npy", tmp_path / "big.sq3d", tmp_path / "big.ply"
    np.save(src, pts)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SQUEEZE3D_NO_SERVER": "1"}
    run = [sys.executable, "-m", "squeeze3d"]
    r = subprocess.run(run + ["compress", str(src), "-o", str(sq), "--pair", PAIR, "--model", ckpt,
                              "--min-quality", "40"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    line = r.stdout.strip()
    assert "fallback" in line
    d1 = float(line.split("D1-PSNR ")[1].split(" dB")[0])
    assert d1 >= 40.0
    r = subprocess.run(run + ["decompress", str(sq), "-o", str(back)], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    got = read_asset(back).cloud
    assert f"{len(got)} points" in r.stdout
    # the default classical path (the octree) codes every input point on its grid: the file decodes to
    # one point per occupied cell of all 20,000 points (the points sharing a cell merged), more
    # than the pair's 2,048-point resample occupies on that grid
    from squeeze3d.codec import octree

    c = read_container(sq)
    assert c.coder == "octree"
    grid, _ = octree.Grid.parse(c.payload)
    assert len(got) == len(octree.Grid.fit(pts, grid.e)[1]) > len(octree.Grid.fit(pts[:2048], grid.e)[1])
    assert (f"one point per occupied grid cell ({len(got)} cells from {len(pts)} input points)" if len(got) < len(pts)
            else f"every input point ({len(got)})") in line, line
    # Draco keeps every point, less exact duplicates on its grid (a handful for a Gaussian blob)
    r = subprocess.run(run + ["compress", str(src), "-o", str(sq), "--pair", PAIR, "--model", ckpt, "--force",
                              "--min-quality", "40", "--classical", "draco"], capture_output=True, text=True,
                       env=env, timeout=300)
    assert r.returncode == 0 and ("every input point" in r.stdout or "one point per occupied grid cell" in r.stdout), \
        r.stdout + r.stderr
    r = subprocess.run(run + ["decompress", str(sq), "-o", str(back), "--force"], capture_output=True, text=True,
                       env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert 19_900 < len(read_asset(back).cloud) <= 20_000


def test_attribute_layer_round_trip_and_damage():
    pts, col, inten = _cloud(2000, seed=5)
    attrs = {"colour": col, "intensity": inten}
    # a classical coder whose decoded points are the input's own, in its own order: exact up to 8 bits
    order = np.random.default_rng(1).permutation(len(pts))
    blob, info = A.encode_for_points(pts[order], pts, attrs, exact=True)
    back = A.decode_for_points(blob, pts[order] * 2.0 + 1.0, ("colour", "intensity"))  # any frame
    assert info["anchors"] == len(pts)
    assert np.abs(back["colour"].astype(int) - col[order]).max() <= 3
    assert np.abs(back["intensity"].astype(int) - inten[order]).max() <= 8
    # a coarse decode: a smaller payload for a lower floor, never below the floor it could meet
    dec = pts[::8] + np.random.default_rng(2).normal(scale=0.01, size=(250, 3))
    small, lo = A.encode_for_points(dec, pts, attrs, 25.0)
    large, hi = A.encode_for_points(dec, pts, attrs, 40.0)
    assert len(small) <= len(large) and hi["psnr"] >= lo["psnr"] >= min(25.0, hi["psnr"])
    got = A.decode_for_points(small, dec, ("colour", "intensity"))
    assert abs(A.attribute_psnr(pts, attrs, dec, got)["colour"] - lo["psnr"]) < 1e-6
    for bad in (small[:-1], b"", b"\xff\xff\xff\xff\xff\xff"):
        with pytest.raises(ContainerError):
            A.decode_for_points(bad, dec, ("colour", "intensity"))


def test_container_v3_round_trip_and_strictness(tmp_path, ckpt):
    from squeeze3d.codec.compressor import get_codec
    from squeeze3d.codec.decompress import decompress_bytes

    pts, col, inten = _cloud(600)
    res = get_codec(PAIR, ckpt).compress_asset(pts, min_quality=None, effort=0,
                                               attributes={"colour": col, "intensity": inten})
    c = unpack(res.data)
    assert c.attributes == ("colour", "intensity") and c.version == 3
    assert res.attribute_psnr and np.isfinite(res.attribute_psnr["colour"])
    d = decompress_bytes(res.data, model=ckpt)
    assert d.attributes["colour"].shape == (256, 3) and d.attributes["intensity"].shape == (256,)
    # a flipped bit anywhere is caught; an unknown attribute bit names itself
    data = bytearray(res.data)
    data[7] ^= 0x80
    with pytest.raises(ContainerError):
        unpack(bytes(data))
    # geometry-only compressions stay version 2 (older builds read them)
    plain = get_codec(PAIR, ckpt).compress_asset(pts, min_quality=None, effort=0)
    assert unpack(plain.data).version == 2 and unpack(plain.data).attributes == ()


def test_evaluation_reports_colour_beside_d1(tmp_path, ckpt):
    from squeeze3d.codec.evaluate import evaluate

    d = tmp_path / "in"
    d.mkdir()
    pts, col, _ = _cloud(800)
    _write_ply(d / "c.ply", pts, col)
    rep = evaluate(pair=PAIR, model=ckpt, input_dir=d, limit=1, out_dir=tmp_path / "ev", min_quality=30.0,
                   previews=False, effort=0, log=lambda m: None)
    assert "colour Y-PSNR dB" in rep.markdown and "D1-PSNR dB" in rep.markdown
    gated = [o for o in rep.objects if o["method"].startswith("sq3d") and "@" not in o["method"]]
    assert gated and all(np.isfinite(o["colour_y_psnr"]) for o in gated)
    assert all(np.isnan(o["colour_y_psnr"]) for o in rep.objects if o["method"].startswith("draco-"))


def test_python_api_keeps_and_returns_attributes(tmp_path, ckpt):
    import squeeze3d

    pts, col, _ = _cloud(1000)
    data = squeeze3d.compress(pts, pair=PAIR, model=ckpt, min_quality=40.0, attributes={"colour": col})
    back, attrs = squeeze3d.decompress(data, model=ckpt, attributes=True)
    assert len(back) == len(pts) and attrs["colour"].shape == (len(pts), 3)
    src = _write_ply(tmp_path / "n.ply", pts, col, normals=True)
    with pytest.raises(squeeze3d.errors.UserError, match="--drop-attributes"):
        squeeze3d.compress(src, pair=PAIR, model=ckpt)
    plain = squeeze3d.compress(src, pair=PAIR, model=ckpt, drop_attributes=True, min_quality=None)
    assert unpack(plain).attributes == ()
