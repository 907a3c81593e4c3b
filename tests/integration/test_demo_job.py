"""`make demo`'s own code path: `jobs/demo.py` on the default pair with its champion recipe, at a tiny
size. The README's first command once broke while every other test stayed green, because no test ran
the demo's own configuration (the recipe's nested code prefixes against the demo's smaller d_C)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from squeeze3d.demo import demo_train_config

ROOT = Path(__file__).resolve().parents[2]


def test_demo_config_resolves_for_every_d_code(tmp_path):
    """The demo's defaults, and the smaller codes a user may ask for, give a valid config whose nested
    prefixes end at the demo's code size."""
    for d_code in (128, 32, 5, None):
        cfg = demo_train_config("pointnet_lion", epochs=1, d_code=d_code, out_dir=tmp_path,
                                recipes_dir=ROOT / "jobs" / "recipes")
        assert cfg.optim.optimizer == "adamw" and cfg.optim.epochs == 1
        if d_code:
            assert cfg.mapping.d_code == d_code
            assert cfg.mapping.code_prefixes[-1] == d_code
            assert all(p <= d_code for p in cfg.mapping.code_prefixes)
    # the champion recipe is what the demo shortens: its nested prefixes that fit, and its loss
    cfg = demo_train_config("pointnet_lion", epochs=1, d_code=128, out_dir=tmp_path,
                            recipes_dir=ROOT / "jobs" / "recipes")
    assert cfg.mapping.code_prefixes == [32, 64, 128] and cfg.loss.lambda_output == 1.0


@pytest.mark.integration
@pytest.mark.slow
def test_demo_job_default_pair_tiny(tmp_path):
    env = {**os.environ, "SQUEEZE3D_STATE_DIR": str(tmp_path / "state"), "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("RAY_ADDRESS", None)
    r = subprocess.run([sys.executable, "jobs/demo.py", "--samples", "64", "--epochs", "1", "--eval", "2",
                        "--d-code", "32", "--out", str(tmp_path / "demo")],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    assert "Traceback" not in out
    for stage in ("Ray Data: building 64 pointnet_lion latent pairs", "Ray Train: fitting F_E/F_D",
                  "MLflow registry: champion lookup", "codec: compressing 2 held-out shapes"):
        assert stage in out, (stage, out[-3000:])
    assert "Next:" in out and (tmp_path / "demo" / "eval").is_dir()


def test_demo_job_bad_setting_fails_fast_in_one_line(tmp_path):
    """A combination the config refuses stops before any build, in one line, exit 2."""
    env = {**os.environ, "SQUEEZE3D_STATE_DIR": str(tmp_path / "state")}
    env.pop("MLFLOW_TRACKING_URI", None)
    r = subprocess.run([sys.executable, "jobs/demo.py", "--epochs", "0", "--out",
                        str(tmp_path / "demo")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    assert "optim.epochs must be >= 1" in r.stdout + r.stderr
    assert not (tmp_path / "demo" / "data").exists()
