"""The console command, the core demo, and the repo layout not shadowing stdlib `platform`."""

import subprocess
import sys
from pathlib import Path

import torch

from squeeze3d.demo import run_core_demo
from squeeze3d.mapping.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "squeeze3d", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def test_stdlib_platform_not_shadowed_from_repo_root():
    r = subprocess.run([sys.executable, "-c", "import platform; print(platform.system())"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "Linux", r.stderr
    assert not (ROOT / "platform" / "__init__.py").exists()


def test_cli_pairs_lists_shapes():
    r = _cli("pairs")
    assert r.returncode == 0, r.stderr
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("debug "))
    assert "point_cloud" in line and " 32 " in line and " 16 " in line


def test_cli_config_errors_exit_2():
    r = _cli("config", "--pair", "nope")
    assert r.returncode == 2 and "registered pairs: " in r.stderr and "Traceback" not in r.stderr
    r = _cli("config", "--pair", "debug", "--set", "mapping.d_cod=4")
    assert r.returncode == 2 and "unknown key mapping.d_cod" in r.stderr
    r = _cli("config", "--pair", "debug", "--set", "mapping.d_code=4")
    assert r.returncode == 0 and "mapping.d_code = 4" in r.stdout


def test_core_demo_end_to_end(tmp_path):
    lines = []
    rep = run_core_demo("debug", n_train=256, n_val=64, n_test=8, epochs=3, out_dir=tmp_path, log=lines.append)
    assert rep.code_bytes_f16 == 16 and rep.raw_bytes == 256 * 3 * 4
    assert rep.d1_psnr > 0 and rep.chamfer >= 0
    ck = load_checkpoint(rep.checkpoint)
    assert ck.code_shape == (8,)
    assert torch.isfinite(torch.tensor(rep.final["val_mse"]))
    assert any("D1-PSNR" in ln for ln in lines)


def test_cli_registry_errors_exit_2(tmp_path):
    import os

    env = {**os.environ, "SQUEEZE3D_STATE_DIR": str(tmp_path)}
    env.pop("MLFLOW_TRACKING_URI", None)
    for args, msg in [(("registry", "best", "--pair", "nope"), "registered pairs: "),
                      (("registry", "best", "--pair", "debug"), "no champion for pair 'debug'")]:
        r = subprocess.run([sys.executable, "-m", "squeeze3d", *args], capture_output=True, text=True, cwd=ROOT,
                           env=env, timeout=120)
        assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr, r.stderr
