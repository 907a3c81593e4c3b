"""The codec CLI and users' files: no silent overwrite (--force / --skip-existing), output-name clashes
refused before anything is written, umask modes, errors in the file's terms, the wrong-model hint, the
ratio's wording, and a compress with a checkpoint path that imports neither mlflow nor Ray."""

import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest
import torch
import trimesh

from squeeze3d.cli import main
from squeeze3d.io import atomic_write_bytes

PAIR = "debug"
COMMON = ["--pair", PAIR, "--min-quality", "off"]


def _ckpt(path, seed):
    """Random mapping weights in the real checkpoint format (no training needed for these tests)."""
    from squeeze3d.config import train_config_for_pair
    from squeeze3d.mapping import build_mapping
    from squeeze3d.mapping.checkpoint import save_checkpoint
    from squeeze3d.pairs import get_pair

    cfg = train_config_for_pair(PAIR)
    torch.manual_seed(seed)
    p = get_pair(PAIR)
    f_e, f_d = build_mapping(cfg.mapping, p.z_e_shape, p.z_g_shape)
    return str(save_checkpoint(path, f_e, f_d, cfg))


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    d = tmp_path_factory.mktemp("ck")
    return _ckpt(d / "a", 0), _ckpt(d / "b", 1)


@pytest.fixture
def inputs(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    m = trimesh.creation.capsule(height=2.0, radius=0.6)
    m.export(d / "shape.obj")
    m.export(d / "other.ply")
    return d


def _run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_single_file_refuses_overwrite_unless_forced(ckpts, inputs, tmp_path, capsys):
    out = tmp_path / "o" / "c.sq3d"
    rc, stdout, _ = _run(capsys, "compress", inputs / "shape.obj", "-o", out, "--model", ckpts[0], *COMMON)
    assert rc == 0 and out.is_file()
    # the ratio says what it is measured against and what the codec keeps
    assert "smaller than the 256 points kept (xyz f32: 3072 bytes)" in stdout and "256-point resample" in stdout
    before = out.read_bytes()
    out.write_bytes(b"user's own file")
    rc, _, err = _run(capsys, "compress", inputs / "shape.obj", "-o", out, "--model", ckpts[0], *COMMON)
    assert rc == 2 and "already exists" in err and "--force" in err and len(err.strip().splitlines()) == 1
    assert out.read_bytes() == b"user's own file"
    rc, stdout, _ = _run(capsys, "compress", inputs / "shape.obj", "-o", out, "--model", ckpts[0], *COMMON,
                         "--skip-existing")
    assert rc == 0 and "skipped" in stdout and out.read_bytes() == b"user's own file"
    rc, _, _ = _run(capsys, "compress", inputs / "shape.obj", "-o", out, "--model", ckpts[0], *COMMON, "--force")
    assert rc == 0 and out.read_bytes() == before
    # decompress likewise
    ply = tmp_path / "o" / "c.ply"
    ply.write_bytes(b"keep me")
    rc, _, err = _run(capsys, "decompress", out, "-o", ply, "--model", ckpts[0])
    assert rc == 2 and "--force" in err and ply.read_bytes() == b"keep me"
    rc, _, _ = _run(capsys, "decompress", out, "-o", ply, "--model", ckpts[0], "--force")
    assert rc == 0 and ply.read_bytes().startswith(b"ply")


def test_directory_clash_refused_before_writing(ckpts, inputs, tmp_path, capsys):
    trimesh.creation.box().export(inputs / "shape.ply")  # shape.obj and shape.ply → shape.sq3d
    dst = tmp_path / "out"
    rc, _, err = _run(capsys, "compress", inputs, "-o", dst, "--model", ckpts[0], *COMMON)
    assert rc == 2 and "shape.obj, shape.ply -> shape.sq3d" in err and "nothing was written" in err
    assert not dst.exists() or not any(dst.iterdir())


def test_directory_existing_outputs_and_resume(ckpts, inputs, tmp_path, capsys):
    dst = tmp_path / "out"
    dst.mkdir()
    (dst / "other.sq3d").write_bytes(b"done earlier")
    rc, _, err = _run(capsys, "compress", inputs, "-o", dst, "--model", ckpts[0], *COMMON)
    assert rc == 2 and "1 of 2 outputs already exist" in err and "--skip-existing" in err
    assert sorted(p.name for p in dst.iterdir()) == ["other.sq3d"]
    rc, stdout, err = _run(capsys, "compress", inputs, "-o", dst, "--model", ckpts[0], *COMMON, "--skip-existing")
    assert rc == 0 and "skipping 1 of 2" in err and "shape.sq3d" in stdout and "other" not in stdout
    assert (dst / "other.sq3d").read_bytes() == b"done earlier" and (dst / "shape.sq3d").is_file()
    rc, stdout, _ = _run(capsys, "compress", inputs, "-o", dst, "--model", ckpts[0], *COMMON, "--skip-existing")
    assert rc == 0 and "nothing to do" in stdout
    rc, _, _ = _run(capsys, "compress", inputs, "-o", dst, "--model", ckpts[0], *COMMON, "--force")
    assert rc == 0 and (dst / "other.sq3d").read_bytes()[:2] != b"do"


def test_output_modes_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        p = atomic_write_bytes(tmp_path / "a.bin", b"x")
        assert stat.S_IMODE(p.stat().st_mode) == 0o644
        os.chmod(p, 0o664)
        atomic_write_bytes(p, b"y")  # replacing keeps the file's own mode
        assert stat.S_IMODE(p.stat().st_mode) == 0o664 and p.read_bytes() == b"y"
        os.umask(0o077)
        q = atomic_write_bytes(tmp_path / "b.bin", b"x")
        assert stat.S_IMODE(q.stat().st_mode) == 0o600
        with pytest.raises(FileExistsError):
            atomic_write_bytes(p, b"z", overwrite=False)
        assert p.read_bytes() == b"y"
        assert not [f for f in tmp_path.iterdir() if f.name.endswith(".tmp")]
    finally:
        os.umask(old)


def test_bad_files_are_described_not_leaked(ckpts, tmp_path, capsys):
    cases = {
        "noise.ply": os.urandom(200),
        "cut.ply": b"ply\nformat binary_little_endian 1.0\nelement vertex 1000\nproperty float x\n"
                   b"property float y\nproperty float z\nelement face 10\nproperty list uchar int vertex_indices\n"
                   b"end_header\n" + b"\0" * 40,
        "cut.obj": b"v 1 2 3\nv 4 5 6\nv 7 8",
        "bad.npz": b"not a zip",
        "text.npy": b"hello",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        rc, _, err = _run(capsys, "compress", tmp_path / name, "-o", tmp_path / f"{name}.sq3d", "--model",
                          ckpts[0], *COMMON)
        assert rc == 2, name
        line = err.strip()
        assert len(line.splitlines()) == 1 and name in line, err
        for internal in ("IndexError", "KeyError", "list index", "struct.error", "Traceback", "ValueError"):
            assert internal not in line, (name, line)
        assert not (tmp_path / f"{name}.sq3d").exists()


def test_wrong_model_hint_names_the_writer(ckpts, inputs, tmp_path, capsys):
    out = tmp_path / "c.sq3d"
    assert _run(capsys, "compress", inputs / "shape.obj", "-o", out, "--model", ckpts[0], *COMMON)[0] == 0
    from squeeze3d.codec.container import read_container

    h = read_container(out).model_hash
    rc, _, err = _run(capsys, "decompress", out, "-o", tmp_path / "o.ply", "--model", ckpts[1])
    assert rc == 2 and f"written by a checkpoint given by path (weights hash {h})" in err
    assert "--model PATH" in err and "pass --model 1" not in err
    rc, _, err = _run(capsys, "decompress", out, "-o", tmp_path / "o.ply")
    assert rc == 2 and h in err and "--model PATH" in err
    assert not (tmp_path / "o.ply").exists()


def test_help_documents_ratio_and_flags(capsys):
    with pytest.raises(SystemExit):
        main(["compress", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "input file bytes / .sq3d bytes" in text and "2048 points" in text and "kept points' raw bytes" in text
    assert "--drop-attributes" in text
    assert "--force" in text and "--skip-existing" in text


def test_compress_with_a_checkpoint_path_is_light(ckpts, inputs, tmp_path):
    """No mlflow, no Ray, no database when the model is given by path."""
    state = tmp_path / "state"
    code = (
        "import sys, json\n"
        "from squeeze3d.cli import main\n"
        f"rc = main(['compress', {str(inputs / 'shape.obj')!r}, '-o', {str(tmp_path / 'c.sq3d')!r}, '--model', "
        f"{ckpts[0]!r}, '--pair', 'debug', '--min-quality', 'off'])\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'mlflow', 'ray', 'sqlalchemy', 'alembic'})\n"
        "print(json.dumps([rc, heavy]))\n")
    env = {**os.environ, "SQUEEZE3D_STATE_DIR": str(state)}
    env.pop("MLFLOW_TRACKING_URI", None)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rc, heavy = json.loads(r.stdout.strip().splitlines()[-1])
    assert rc == 0 and heavy == []
    assert not state.exists()  # no state folder, so no mlflow.db
    assert np.frombuffer((tmp_path / "c.sq3d").read_bytes()[:4], np.uint8).size == 4


def test_fast_ply_reader_matches_trimesh(tmp_path):
    """PLY point clouds are read without importing trimesh; same points as trimesh reads."""
    from squeeze3d.io import _fast_ply_points, read_asset, write_points

    pts = np.random.default_rng(3).normal(size=(500, 3)).astype(np.float32)
    binary = write_points(tmp_path / "b.ply", pts)
    cloud = trimesh.PointCloud(pts.astype(np.float64))
    cloud.export(tmp_path / "a.ply", encoding="ascii")
    for p in (binary, tmp_path / "a.ply"):
        fast = _fast_ply_points(p)
        assert fast is not None and np.allclose(fast, np.asarray(trimesh.load(p).vertices), atol=1e-6), p
        assert np.allclose(read_asset(p).points, fast, atol=1e-6)
    # a mesh (faces) is left to trimesh and sampled as before
    trimesh.creation.box().export(tmp_path / "m.ply")
    assert _fast_ply_points(tmp_path / "m.ply") is None and read_asset(tmp_path / "m.ply", 64).kind == "mesh"
    # a binary cloud cut short says so
    (tmp_path / "cut.ply").write_bytes(binary.read_bytes()[:-100])
    from squeeze3d.io import InputError

    with pytest.raises(InputError, match="ends early"):
        read_asset(tmp_path / "cut.ply")
    r = subprocess.run([sys.executable, "-c", "import sys; from squeeze3d.io import read_asset; "
                        f"read_asset({str(binary)!r}, 256); print('trimesh' in sys.modules)"],
                       capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "False", r.stderr


def test_shipped_model_file_decompresses_without_a_model_flag(tmp_path, capsys, monkeypatch):
    """A file the shipped model wrote (no registry) finds that model by its hash at decompress."""
    from squeeze3d.io import write_points

    monkeypatch.setenv("SQUEEZE3D_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    pts = np.random.default_rng(0).normal(size=(2048, 3)).astype(np.float32)
    src = write_points(tmp_path / "c.ply", pts / np.linalg.norm(pts, axis=1, keepdims=True))
    rc, out, err = _run(capsys, "compress", src, "-o", tmp_path / "c.sq3d", "--pair", "pointnet_lion",
                        "--min-quality", "off")
    assert rc == 0 and "neural" in out, err
    rc, out, err = _run(capsys, "decompress", tmp_path / "c.sq3d", "-o", tmp_path / "d.ply")
    assert rc == 0, err
    assert "neural" in out and (tmp_path / "d.ply").is_file()
    assert not (tmp_path / "state").exists()


def test_directory_in_parallel_threads_writes_what_single_files_do(ckpts, tmp_path, capsys):
    """--jobs 2 runs files in two threads; every output is byte-identical to its single-file compress
    (gate on), lines come in input order, and the torch thread count is restored."""
    d = tmp_path / "in"
    d.mkdir()
    for i in range(6):
        trimesh.creation.capsule(height=1.0 + 0.3 * i, radius=0.4 + 0.05 * i).export(d / f"s{i}.ply")
    threads = torch.get_num_threads()
    gate = ["--pair", PAIR, "--model", ckpts[0], "--min-quality", "25"]
    rc, out, err = _run(capsys, "compress", d, "-o", tmp_path / "par", "--jobs", "2", *gate)
    assert rc == 0, err
    assert torch.get_num_threads() == threads
    assert [ln.split(" -> ")[0].rsplit("/", 1)[-1] for ln in out.strip().splitlines()] == [f"s{i}.ply" for i in range(6)]
    # Byte-identical is what the same computation guarantees: the same process and the same torch
    # thread count. --jobs runs the first file on this process's threads and the rest on one thread each;
    # a single-file compress on another thread count may round the code differently in the last bit (a
    # many-core CPU's default vs 1), so each single file runs on the thread count its --jobs twin had.
    for i in range(6):
        torch.set_num_threads(threads if i == 0 else 1)
        try:
            rc, _, err = _run(capsys, "compress", d / f"s{i}.ply", "-o", tmp_path / f"one{i}.sq3d", *gate)
        finally:
            torch.set_num_threads(threads)
        assert rc == 0, err
        assert (tmp_path / "par" / f"s{i}.sq3d").read_bytes() == (tmp_path / f"one{i}.sq3d").read_bytes(), i


def test_jobs_refused_for_a_generator_that_cannot_decode_in_threads():
    from types import SimpleNamespace

    from squeeze3d.codec.cli_batch import jobs_for
    from squeeze3d.errors import UserError

    codec = SimpleNamespace(generator=SimpleNamespace(thread_safe=False), pair=SimpleNamespace(name="p"))
    assert jobs_for(codec, SimpleNamespace(jobs=None)) == 1
    with pytest.raises(UserError, match="cannot decode in parallel threads"):
        jobs_for(codec, SimpleNamespace(jobs=2))
    with pytest.raises(UserError, match="at least 1"):
        jobs_for(SimpleNamespace(generator=SimpleNamespace(thread_safe=True)), SimpleNamespace(jobs=0))


def test_inspect_reads_a_header_without_torch(ckpts, inputs, tmp_path, capsys):
    rc, _, err = _run(capsys, "compress", inputs / "shape.obj", "-o", tmp_path / "c.sq3d", "--model", ckpts[0], *COMMON)
    assert rc == 0, err
    r = subprocess.run([sys.executable, "-c", "import sys; from squeeze3d.cli import main; "
                        f"rc = main(['inspect', {str(tmp_path / 'c.sq3d')!r}, '--no-server']); "
                        "print(rc, 'torch' in sys.modules)"], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip().splitlines()[-1] == "0 False", r.stderr


def test_directory_decompress_writes_each_and_names_a_bad_file(ckpts, inputs, tmp_path, capsys):
    rc, _, err = _run(capsys, "compress", inputs, "-o", tmp_path / "c", "--model", ckpts[0], *COMMON)
    assert rc == 0, err
    (tmp_path / "c" / "broken.sq3d").write_bytes(b"not a container")
    rc, out, err = _run(capsys, "decompress", tmp_path / "c", "-o", tmp_path / "d", "--model", ckpts[0], "--jobs", "2")
    assert rc == 2 and "broken.sq3d" in err and "1 of 3 files failed" in err
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["other.ply", "shape.ply"]
    assert out.count(" -> ") == 2
