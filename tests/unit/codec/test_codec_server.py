"""`squeeze3d serve`: single-file commands run in the warm server with the client's working directory,
umask and output; the bytes are those of a cold run; a client under other settings, or a server that
has gone idle, means the command runs in its own process."""

import os
import stat
import subprocess
import sys
import time

import numpy as np
import pytest

from squeeze3d.io import write_points

PAIR = "debug"


def _ckpt(path):
    """Random mapping weights in the real checkpoint format."""
    import torch

    from squeeze3d.config import train_config_for_pair
    from squeeze3d.mapping import build_mapping
    from squeeze3d.mapping.checkpoint import save_checkpoint
    from squeeze3d.pairs import get_pair

    cfg, p = train_config_for_pair(PAIR), get_pair(PAIR)
    torch.manual_seed(0)
    return str(save_checkpoint(path, *build_mapping(cfg.mapping, p.z_e_shape, p.z_g_shape), cfg))


@pytest.fixture
def server(tmp_path):
    state = tmp_path / "state"
    env = {**os.environ, "SQUEEZE3D_STATE_DIR": str(state)}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("SQUEEZE3D_NO_SERVER", None)
    ckpt = _ckpt(tmp_path / "ck")
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "squeeze3d", "serve", "--pair", PAIR, "--idle-timeout", "60"],
                            env=env, stdout=log, stderr=log)
    sock = state / "run" / "codec.sock"
    for _ in range(600):
        if sock.exists() or proc.poll() is not None:
            break
        time.sleep(0.1)
    assert sock.exists(), (tmp_path / "server.log").read_text()
    yield env, ckpt, tmp_path / "server.log"
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def _cli(env, *argv, cwd=None, umask=None):
    pre = (lambda: os.umask(umask)) if umask is not None else None
    return subprocess.run([sys.executable, "-m", "squeeze3d", *map(str, argv)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300, preexec_fn=pre)


def test_served_commands_match_cold_ones(server, tmp_path):
    env, ckpt, log = server
    work = tmp_path / "work"
    work.mkdir()
    write_points(work / "c.ply", np.random.default_rng(0).normal(size=(256, 3)).astype(np.float32))
    common = ["--pair", PAIR, "--model", ckpt, "--min-quality", "20"]
    r = _cli(env, "compress", "c.ply", "-o", "served.sq3d", *common, cwd=work, umask=0o027)  # relative paths
    assert r.returncode == 0, r.stderr
    assert "c.ply -> served.sq3d" in r.stdout
    assert stat.S_IMODE((work / "served.sq3d").stat().st_mode) == 0o640  # the client's umask
    assert "compress rc=0" in log.read_text()
    cold = _cli({**env, "SQUEEZE3D_NO_SERVER": "1"}, "compress", "c.ply", "-o", "cold.sq3d", *common, cwd=work)
    assert cold.returncode == 0, cold.stderr
    assert (work / "served.sq3d").read_bytes() == (work / "cold.sq3d").read_bytes()
    r = _cli(env, "decompress", "served.sq3d", "-o", "back.ply", "--model", ckpt, cwd=work)
    assert r.returncode == 0 and (work / "back.ply").is_file(), r.stderr
    # errors come back as the cold command's one line and exit status
    (work / "bad.ply").write_text("not a ply")
    r = _cli(env, "compress", "bad.ply", "-o", "bad.sq3d", *common, cwd=work)
    assert r.returncode == 2 and r.stderr.startswith("squeeze3d: error:") and len(r.stderr.strip().splitlines()) == 1
    assert not (work / "bad.sq3d").exists()
    served = log.read_text().count("rc=")
    # other settings: the server refuses, the client runs the command itself
    other = {**env, "SQUEEZE3D_REGISTRY_TIMEOUT": "3"}
    r = _cli(other, "compress", "c.ply", "-o", "own.sq3d", *common, cwd=work)
    assert r.returncode == 0 and (work / "own.sq3d").read_bytes() == (work / "cold.sq3d").read_bytes()
    assert log.read_text().count("rc=") == served


def test_idle_server_exits_and_cold_commands_still_work(tmp_path):
    state = tmp_path / "state"
    env = {**os.environ, "SQUEEZE3D_STATE_DIR": str(state)}
    r = subprocess.run([sys.executable, "-m", "squeeze3d", "serve", "--pair", "", "--idle-timeout", "1"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "exiting" in r.stderr
    assert not (state / "run" / "codec.sock").exists()
    (state / "run" / "codec.sock").write_text("")  # a stale socket file: the client runs the command itself
    r = subprocess.run([sys.executable, "-m", "squeeze3d", "inspect", str(tmp_path / "missing.sq3d")], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "missing.sq3d" in r.stderr
