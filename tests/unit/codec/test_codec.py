"""The codec end to end on the debug pair with a tiny trained checkpoint: round trip (position and
size restored), model identity checks, the quality-gated Draco fallback, interpolation, batch mode,
evaluation, and bad inputs through the CLI (exit 2, one line, no traceback, nothing written)."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import trimesh

from squeeze3d.baselines import draco
from squeeze3d.cli import main
from squeeze3d.codec.compressor import compress_file, compress_points, get_codec
from squeeze3d.codec.container import ContainerError, read_container, unpack
from squeeze3d.codec.decompress import decompress_bytes, decompress_file
from squeeze3d.codec.interpolate import interpolate
from squeeze3d.errors import UserError
from squeeze3d.io import read_asset

PAIR = "debug"


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """A tiny trained debug checkpoint, and a second one whose weights differ by one number."""
    from squeeze3d.config import train_config_for_pair
    from squeeze3d.mapping.checkpoint import save_checkpoint
    from squeeze3d.synth.in_process import synthesise
    from squeeze3d.train.loop import TensorPairs, fit

    d = tmp_path_factory.mktemp("ck")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: thread hand-offs cost more than the maths on a busy machine
    try:
        z_e, z_g, _ = synthesise(PAIR, list(range(256)))
        cfg = train_config_for_pair(PAIR, sets=["optim.epochs=2"])
        r = fit(cfg, z_e.shape[1:], z_g.shape[1:], TensorPairs(z_e, z_g, 64))
    finally:
        torch.set_num_threads(threads)
    a = save_checkpoint(d / "a", r.f_e, r.f_d, cfg)
    with torch.no_grad():
        next(r.f_d.parameters()).view(-1)[0] += 0.5
    b = save_checkpoint(d / "b", r.f_e, r.f_d, cfg)
    return str(a), str(b)


@pytest.fixture(scope="module")
def mesh_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("in")
    m = trimesh.creation.capsule(height=2.0, radius=0.6)
    m.apply_scale(7.0)
    m.apply_translation((250.0, -40.0, 12.5))
    p = d / "capsule.obj"
    m.export(p)
    return p


def _bbox(points):
    lo, hi = points.min(0), points.max(0)
    return (lo + hi) / 2, np.linalg.norm(points - (lo + hi) / 2, axis=1).max()


def test_round_trip_restores_position_and_size(ckpts, mesh_file, tmp_path):
    res = compress_file(mesh_file, tmp_path / "c.sq3d", pair=PAIR, model=ckpts[0], min_quality=None)
    ref = res.asset.points
    centre, radius = _bbox(ref)
    c = read_container(tmp_path / "c.sq3d")
    assert c.codec == "neural" and c.pair == PAIR and c.num_points == 256
    # v2 keeps centre and scale in f16 when that moves the asset by <= 1e-3 of its size (else f32)
    assert np.allclose(c.centre, centre, atol=1e-3 * radius) and abs(c.scale - radius) < 1e-3 * radius
    for ext in ("ply", "npz", "obj"):
        out = decompress_file(tmp_path / "c.sq3d", tmp_path / f"o.{ext}", model=ckpts[0])
        assert out.points.shape == (256, 3)
        # exactly the generator's unit-sphere output mapped back with the stored centre and scale
        codec = get_codec(PAIR, ckpts[0])
        from squeeze3d.codec.quantise import dequantise

        unit = codec.decode(dequantise(c.payload, c.dtype, c.quant, c.code_shape)).numpy()
        assert np.allclose(out.points, unit * c.scale + np.asarray(c.centre), atol=1e-3)
        # and therefore in the input's place and size (the debug G outputs radius-1 clouds)
        out_centre, out_radius = _bbox(out.points)
        assert np.linalg.norm(out_centre - centre) < 0.3 * radius and 0.7 < out_radius / radius < 1.3
        assert np.allclose(read_asset(tmp_path / f"o.{ext}").points, out.points, atol=1e-4)


def test_dtypes_sizes_and_agreement(ckpts, mesh_file):
    pts = read_asset(mesh_file, 256).points
    outs = {}
    for dtype in ("f32", "f16", "int8"):
        r = compress_points(pts, pair=PAIR, model=ckpts[0], dtype=dtype, min_quality=None)
        outs[dtype] = (r.nbytes, decompress_bytes(r.data, model=ckpts[0]).points)
    d = unpack(compress_points(pts, pair=PAIR, model=ckpts[0], dtype="f32", min_quality=None).data).d_code
    assert outs["f32"][0] - outs["f16"][0] == 2 * d and outs["f16"][0] - outs["int8"][0] == d - 4
    size = np.ptp(pts, axis=0).max()
    for dtype in ("f16", "int8"):
        assert np.abs(outs[dtype][1] - outs["f32"][1]).max() < 0.05 * size, dtype


def test_model_mismatch_names_both_identities(ckpts, mesh_file, tmp_path):
    compress_file(mesh_file, tmp_path / "c.sq3d", pair=PAIR, model=ckpts[0], min_quality=None)
    ida, idb = get_codec(PAIR, ckpts[0]).identity, get_codec(PAIR, ckpts[1]).identity
    assert ida != idb
    with pytest.raises(ContainerError) as ei:
        decompress_file(tmp_path / "c.sq3d", tmp_path / "o.ply", model=ckpts[1])
    assert ida.split(":")[1][:8] in str(ei.value) and idb in str(ei.value)  # v2 files name the weights by hash prefix
    assert not (tmp_path / "o.ply").exists()
    # a file compressed from a checkpoint path needs that path to be named (no registry version)
    with pytest.raises(UserError, match="--model PATH"):
        decompress_file(tmp_path / "c.sq3d", tmp_path / "o.ply")


def test_quality_gate_falls_back_to_fewest_draco_bits(ckpts, mesh_file, tmp_path):
    pts = read_asset(mesh_file, 256).points
    neural = compress_points(pts, pair=PAIR, model=ckpts[0], min_quality=-100.0, classical="draco")
    assert not neural.fallback and neural.container.codec == "neural"
    floor = neural.neural_psnr + 10.0  # unreachable for the neural code → must fall back
    r = compress_points(pts, pair=PAIR, model=ckpts[0], min_quality=floor, classical="draco")
    assert r.fallback and r.container.codec == "fallback" and r.psnr >= floor
    bits = r.container.draco_bits
    unit = (pts - _bbox(pts)[0]) / _bbox(pts)[1]
    assert draco.psnr(unit, draco.decode_points(draco.encode_points(unit, bits - 1))) < floor
    # the receiver needs no model for a fallback file, and gets the original frame back
    dec = decompress_bytes(r.data)
    assert draco.psnr(pts, dec.points) >= floor - 0.05
    assert np.allclose(_bbox(dec.points)[0], _bbox(pts)[0], atol=0.1 * _bbox(pts)[1])


def test_interpolation_endpoints_match_decompression(ckpts, tmp_path):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(256, 3)) * (1, 2, 0.5)
    b = rng.normal(size=(256, 3)) * (3, 1, 1) + 5
    for name, pts in (("a", a), ("b", b)):
        (tmp_path / f"{name}.sq3d").write_bytes(
            compress_points(pts, pair=PAIR, model=ckpts[0], dtype="f16", min_quality=None).data)
    paths = interpolate(tmp_path / "a.sq3d", tmp_path / "b.sq3d", 4, tmp_path / "interp", model=ckpts[0])
    assert [p.name for p in paths] == [f"interp_{i:03d}.ply" for i in range(4)] + ["interpolation.png"]
    for src, out in (("a", paths[0]), ("b", paths[3])):
        want = decompress_file(tmp_path / f"{src}.sq3d", tmp_path / f"{src}.npz", model=ckpts[0]).points
        assert np.allclose(read_asset(out).points, want, atol=1e-4)
    assert paths[-1].stat().st_size > 1000


def test_cli_compress_decompress_inspect_and_batch(ckpts, mesh_file, tmp_path, capsys):
    out = tmp_path / "c.sq3d"
    assert main(["compress", str(mesh_file), "-o", str(out), "--pair", PAIR, "--model", ckpts[0],
                 "--min-quality", "off"]) == 0
    assert main(["decompress", str(out), "-o", str(tmp_path / "r.ply"), "--model", ckpts[0]]) == 0
    assert main(["inspect", str(out), "--json"]) == 0
    assert '"codec": "neural"' in capsys.readouterr().out
    batch = tmp_path / "batch"
    batch.mkdir()
    (batch / "one.obj").write_bytes(mesh_file.read_bytes())
    np.save(batch / "two.npy", np.random.default_rng(0).normal(size=(400, 3)))
    np.save(batch / "bad.npy", np.full((10, 3), np.nan))
    rc = main(["compress", str(batch), "-o", str(tmp_path / "outs"), "--pair", PAIR, "--model", ckpts[0]])
    err = capsys.readouterr().err
    assert rc == 2 and "bad.npy" in err and "1 of 3 files failed" in err
    assert sorted(p.name for p in (tmp_path / "outs").iterdir()) == ["one.sq3d", "two.sq3d"]


def test_eval_writes_table_csv_and_pngs(ckpts, mesh_file, tmp_path):
    from squeeze3d.codec.evaluate import evaluate

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "capsule.obj").write_bytes(mesh_file.read_bytes())
    trimesh.creation.box((1, 2, 3)).export(inputs / "box.stl")
    np.save(inputs / "cloud.npy", np.random.default_rng(0).normal(size=(300, 3)))
    # a floor the debug pair's neural code cannot reach (it decodes at ~12 dB): every object falls back
    rep = evaluate(pair=PAIR, model=ckpts[0], input_dir=inputs, out_dir=tmp_path / "eval", min_quality=45.0,
                   draco_bits=(14, 8, 4, 3), log=lambda m: None)
    methods = [r["method"] for r in rep.rows]
    for m in ("sq3d-f32", "sq3d-f16", "sq3d-int8-pervector", "sq3d-int8-pergroup", "sq3d+gate", "draco-14",
              "draco-3",
              "resample-floor"):
        assert m in methods
    gate = rep.row("sq3d+gate")
    assert gate["fallbacks"] == 3 == rep.fallbacks and gate["d1_psnr"] >= 45.0
    assert rep.row("resample-floor")["objects"] == 2  # meshes only: a cloud has no second sampling
    assert rep.row("draco-14")["d1_psnr"] > rep.row("draco-3")["d1_psnr"]
    assert rep.row("draco-14")["bytes"] > rep.row("draco-3")["bytes"]
    assert "| draco-4 |" in rep.markdown and rep.markdown_path.read_text() == rep.markdown
    assert rep.csv_path.read_text().startswith("method,objects,bytes")
    assert len(rep.previews) == 3 and all(p.stat().st_size > 1000 for p in rep.previews + [rep.rd_png])


# ------------------------------------------------------------------------------------- bad inputs


def _bad_cases(tmp_path, ckpts):
    """name → (argv, output path that must not exist afterwards)."""
    d = tmp_path
    np.save(d / "nan.npy", np.c_[np.random.default_rng(0).normal(size=(50, 2)), np.full(50, np.nan)])
    np.save(d / "one.npy", np.ones((1, 3)))
    np.save(d / "flat.npy", np.outer(np.arange(50.0), [1.0, 1.0, 0.0]))
    np.save(d / "big.npy", np.random.default_rng(0).normal(size=(3000, 3)))
    (d / "empty.obj").write_text("# empty\n")
    (d / "x.vtk").write_text("nope")
    trimesh.Trimesh([[0, 0, 0], [1, 1, 1], [2, 2, 2]], [[0, 1, 2]], process=False).export(d / "sliver.ply")
    common = ["--pair", PAIR, "--model", ckpts[0]]
    cases = {name: (["compress", str(d / src), "-o", str(d / f"{name}.sq3d"), *common], d / f"{name}.sq3d")
             for name, src in [("missing", "missing.ply"), ("nan", "nan.npy"), ("one", "one.npy"),
                               ("flat", "flat.npy"), ("big", "big.npy"), ("empty", "empty.obj"),
                               ("unsupported", "x.vtk"), ("sliver", "sliver.ply")]}
    cases["bad output ext"] = (["compress", str(d / "big.npy"), "-o", str(d / "o.ply"), *common], d / "o.ply")
    cases["unknown pair"] = (["compress", str(d / "big.npy"), "-o", str(d / "p.sq3d"), "--pair", "nosuch"],
                             d / "p.sq3d")
    cases["missing model"] = (["compress", str(d / "big.npy"), "-o", str(d / "m.sq3d"), "--pair", PAIR,
                               "--model", str(d / "no-model")], d / "m.sq3d")
    return cases


def test_bad_inputs_in_process(ckpts, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SQUEEZE3D_MAX_POINTS", "2000")
    for name, (argv, out) in _bad_cases(tmp_path, ckpts).items():
        assert main(argv) == 2, name
        err = capsys.readouterr().err
        assert err.startswith("squeeze3d: error:") and len(err.strip().splitlines()) == 1, (name, err)
        assert not out.exists(), name
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary file left behind"


@pytest.mark.slow
def test_bad_inputs_via_python_m_squeeze3d(ckpts, tmp_path):
    env = {**os.environ, "SQUEEZE3D_MAX_POINTS": "2000"}
    cases = _bad_cases(tmp_path, ckpts)
    good = tmp_path / "good.sq3d"
    (tmp_path / "good.npy").write_bytes(b"")
    np.save(tmp_path / "good.npy", np.random.default_rng(1).normal(size=(300, 3)))
    subprocess.run([sys.executable, "-m", "squeeze3d", "compress", str(tmp_path / "good.npy"), "-o", str(good),
                    "--pair", PAIR, "--model", ckpts[0], "--min-quality", "off"], check=True, env=env)
    cases["model mismatch"] = (["decompress", str(good), "-o", str(tmp_path / "mm.ply"), "--model", ckpts[1]],
                               tmp_path / "mm.ply")
    for name, (argv, out) in cases.items():
        r = subprocess.run([sys.executable, "-m", "squeeze3d", *argv], capture_output=True, text=True, env=env,
                           timeout=300)
        assert r.returncode == 2, (name, r.stderr)
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, (name, r.stderr)
        assert not out.exists(), name


def test_wrong_pair_in_a_valid_file_is_a_clear_error(ckpts):
    from dataclasses import replace

    from squeeze3d.codec.container import pack

    pts = np.random.default_rng(3).normal(size=(300, 3))
    c = unpack(compress_points(pts, pair=PAIR, model=ckpts[0], min_quality=None).data)
    with pytest.raises(UserError, match="no registered pair has"):  # v2 names pairs by a 2-byte tag
        decompress_bytes(pack(replace(c, pair="nosuch")), model=ckpts[0])
    with pytest.raises(UserError, match="trained for pair 'debug', not 'pointnet_lion'"):
        decompress_bytes(pack(replace(c, pair="pointnet_lion")), model=ckpts[0])
