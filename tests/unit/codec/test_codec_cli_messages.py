"""Issue 26.8's small CLI defects: a directory's error lines name each file once; `-o` naming the input
is refused for what it is (not "pass --force", which then failed "must end in .sq3d"); decompressing a
version-1 file that names a registry version, with no registry configured, says so in one line and
does not create an empty mlflow.db."""

import os

import numpy as np
import pytest

from squeeze3d.cli import main
from squeeze3d.codec.container import Container, pack
from squeeze3d.codec.quantise import quantise
from squeeze3d.io import write_points


def _run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("SQUEEZE3D_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("SQUEEZE3D_NO_SERVER", "1")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path / "state"


def test_directory_error_lines_name_each_file_once(state, tmp_path, capsys):
    d = tmp_path / "in"
    d.mkdir()
    (d / "a.sq3d").write_bytes(b"not a container")
    (d / "b.sq3d").write_bytes(b"SQ3D" + b"\0" * 10)
    rc, _, err = _run(capsys, "decompress", d, "-o", tmp_path / "out")
    assert rc == 2
    lines = [ln for ln in err.splitlines() if ln.startswith("squeeze3d: error:") and ".sq3d" in ln]
    assert len(lines) == 2, err
    for name, line in zip(("a.sq3d", "b.sq3d"), lines):
        assert line.count(str(d / name)) == 1, line


def test_output_equal_to_input_is_refused_as_such(state, tmp_path, capsys):
    src = tmp_path / "c.ply"
    write_points(src, np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32))
    before = src.read_bytes()
    for extra in ([], ["--force"]):
        rc, _, err = _run(capsys, "compress", src, "-o", src, "--pair", "debug", *extra)
        assert rc == 2 and err.strip() == f"squeeze3d: error: {src}: the output must end in .sq3d", err
    sq = tmp_path / "c.sq3d"
    sq.write_bytes(b"x")
    for extra in ([], ["--force"]):
        rc, _, err = _run(capsys, "compress", sq, "-o", sq, "--pair", "debug", *extra)
        assert rc == 2 and "output would overwrite the input" in err and "--force" not in err, err
        rc, _, err = _run(capsys, "decompress", tmp_path / "c.ply", "-o", tmp_path / "c.ply", *extra)
        assert rc == 2 and "output would overwrite the input" in err and "--force" not in err, err
    assert src.read_bytes() == before and sq.read_bytes() == b"x"


def test_version_1_file_without_a_registry_creates_no_database(state, tmp_path, capsys):
    code = np.random.default_rng(0).normal(size=(8,)).astype(np.float32)
    c = Container(pair="debug", codec="neural", model_version=3, model_hash="0123456789abcdef", num_points=256,
                  code_shape=(8,), dtype="int8", quant="per_vector", draco_bits=0, centre=(0.0, 0.0, 0.0),
                  scale=1.0, payload=quantise(code, "int8", "per_vector"), version=1)
    f = tmp_path / "old.sq3d"
    f.write_bytes(pack(c))
    rc, _, err = _run(capsys, "decompress", f, "-o", tmp_path / "old.ply")
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert "version 3 of squeeze3d-debug needs a model registry" in err and "MLFLOW_TRACKING_URI" in err
    assert not (state / "mlflow.db").exists() and not (tmp_path / "old.ply").exists()
    assert not os.path.exists("mlflow.db")


# --- issue 31.8 ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """Random debug-pair mapping weights in the real checkpoint format."""
    import torch

    from squeeze3d.config import train_config_for_pair
    from squeeze3d.mapping import build_mapping
    from squeeze3d.mapping.checkpoint import save_checkpoint
    from squeeze3d.pairs import get_pair

    cfg = train_config_for_pair("debug")
    torch.manual_seed(0)
    p = get_pair("debug")
    f_e, f_d = build_mapping(cfg.mapping, p.z_e_shape, p.z_g_shape)
    return str(save_checkpoint(tmp_path_factory.mktemp("ck") / "m", f_e, f_d, cfg))


def test_a_bad_input_is_one_stderr_line_not_the_model_line_first(state, tmp_path, capsys):
    """The default model's "squeeze3d: model: ..." line used to precede every input error."""
    src = tmp_path / "tiny.npy"
    np.save(src, np.random.default_rng(0).normal(size=(3000, 3)) * 1e-30)
    rc, out, err = _run(capsys, "compress", src, "-o", tmp_path / "t.sq3d", "--pair", "pointnet_lion")
    assert rc == 2 and err.strip().splitlines() == [err.strip()], err
    assert "too small for float32" in err and not (tmp_path / "t.sq3d").exists()


def test_a_tiny_cloud_decodes_at_its_own_scale(state, tmp_path, capsys, ckpt):
    """A scale clamped at 1e-12 made a 1e-15 cloud decode ~1000x too large (1e-30: 1e17x)."""
    pts = np.random.default_rng(0).normal(size=(3000, 3)) * 1e-15
    src, sq, back = tmp_path / "t.npy", tmp_path / "t.sq3d", tmp_path / "t.npz"
    np.save(src, pts)
    assert _run(capsys, "compress", src, "-o", sq, "--pair", "debug", "--model", ckpt, "--min-quality", "off")[0] == 0
    assert _run(capsys, "decompress", sq, "-o", back, "--model", ckpt)[0] == 0
    radius = np.abs(np.load(back)["points"]).max()
    assert 1e-17 < radius < 1e-13, radius


def test_an_empty_ply_is_one_line_without_a_numpy_warning(state, tmp_path, capsys):
    src = tmp_path / "empty.ply"
    src.write_text("ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\nproperty float y\n"
                   "property float z\nend_header\n")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a numpy warning would be a third and fourth stderr line
        rc, _, err = _run(capsys, "compress", src, "-o", tmp_path / "e.sq3d", "--pair", "pointnet_lion")
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "empty" in err, err


def test_fallback_summary_counts_decoded_points_and_inspect_sizes_add_up(state, tmp_path, capsys, ckpt):
    """The classical path merges the duplicates of a cloud: the summary said "2048-point resample" for a
    file that decodes to ~1,200 points; inspect said payload_bytes > total_bytes for own-frame files."""
    import json

    u = np.random.default_rng(1).normal(size=(1213, 3))
    src, sq, back = tmp_path / "dup.npy", tmp_path / "dup.sq3d", tmp_path / "dup.ply"
    np.save(src, np.concatenate([u, u, u]))  # every point three times
    rc, out, err = _run(capsys, "compress", src, "-o", sq, "--pair", "debug", "--model", ckpt, "--min-quality", "50")
    assert rc == 0 and "fallback" in out, out + err
    rc, out2, _ = _run(capsys, "decompress", sq, "-o", back)
    n = int(out2.split(": ", 1)[1].split(" points", 1)[0])
    assert n < 2048 and f"decodes to one point per occupied grid cell ({n} cells from 3639 input points)" in out, out
    rc, js, _ = _run(capsys, "inspect", sq, "--json")
    info = json.loads(js)
    assert info["own_frame"] and info["payload_bytes"] < info["total_bytes"] == sq.stat().st_size, info
    # the same with Draco, whose own-frame files elide its 11-byte prefix
    rc, out, err = _run(capsys, "compress", src, "-o", sq, "--pair", "debug", "--model", ckpt, "--min-quality", "50",
                        "--classical", "draco", "--force")
    assert rc == 0 and "fallback Draco" in out, out + err
    rc, js, _ = _run(capsys, "inspect", sq, "--json")
    info = json.loads(js)
    assert info["own_frame"] and info["payload_bytes"] < info["total_bytes"] == sq.stat().st_size, info


def test_inspect_into_a_closed_pipe_exits_quietly(tmp_path):
    import subprocess
    import sys

    from squeeze3d.codec.container import DRACO_PREFIX

    c = Container(pair="debug", codec="fallback", model_version=None, model_hash="00000000", num_points=0,
                  code_shape=(), dtype="none", quant="none", draco_bits=7, centre=(0.0, 0.0, 0.0), scale=1.0,
                  payload=DRACO_PREFIX + b"\x00" * 40, version=2, own_frame=True)
    f = tmp_path / "f.sq3d"
    f.write_bytes(pack(c))
    env = {**os.environ, "SQUEEZE3D_NO_SERVER": "1"}
    p = subprocess.Popen([sys.executable, "-m", "squeeze3d", "inspect", str(f)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env)
    p.stdout.close()  # `| head -1` that has read its line: nobody reads the rest
    with p.stderr:
        err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 0 and err == "", err
