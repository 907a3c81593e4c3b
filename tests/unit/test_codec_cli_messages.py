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
