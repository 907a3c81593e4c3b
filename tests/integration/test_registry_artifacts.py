"""Registry artifacts go to the state folder's artifact root whatever the working directory (issue
31.2): MLflow's ``set_tracking_uri`` exports ``MLFLOW_TRACKING_URI``, which used to make the project
take its own local store for a user's server and leave ``./mlruns`` in the folder a command ran from.
A registered version whose artifacts are gone is one line, exit 2, naming the version and how to
register again: no traceback, no empty model folder."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.integration


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """A state folder, and a working directory that is neither it nor a checkout."""
    monkeypatch.setenv("SQUEEZE3D_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cwd = tmp_path / "work"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return tmp_path / "state", cwd


def test_experiments_and_registrations_write_under_the_state_folder_only(elsewhere):
    import mlflow

    from squeeze3d.codec.compressor import clear_cache
    from squeeze3d.tracking import experiment_id
    from squeeze3d.train.champion import register_shipped

    state, cwd = elsewhere
    exp = mlflow.get_experiment(experiment_id("squeeze3d-test-experiment"))
    assert exp.artifact_location == (state / "mlartifacts").resolve().as_uri()
    assert "MLFLOW_TRACKING_URI" not in os.environ  # the user's choice stays unset
    clear_cache()
    register_shipped("pointnet_lion", log=lambda m: None)
    assert list(cwd.iterdir()) == []  # no ./mlruns here
    assert any((state / "mlartifacts").rglob("config.json"))
    clear_cache()


def test_a_version_whose_artifacts_are_gone_is_one_line_and_leaves_no_folder(elsewhere, tmp_path):
    from squeeze3d.codec.compressor import clear_cache
    from squeeze3d.train.champion import register_shipped

    state, cwd = elsewhere
    clear_cache()
    register_shipped("pointnet_lion", log=lambda m: None)
    clear_cache()
    shutil.rmtree(state / "mlartifacts")  # deleted by hand, or a disk cleaned up
    np.save(cwd / "c.npy", np.random.default_rng(0).normal(size=(3000, 3)).astype(np.float32))
    env = {**os.environ, "SQUEEZE3D_NO_SERVER": "1"}
    r = subprocess.run([sys.executable, "-m", "squeeze3d", "compress", "c.npy", "-o", "c.sq3d", "--pair",
                        "pointnet_lion"], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "squeeze3d-pointnet_lion version 1" in lines[0] and "artifacts are missing" in lines[0], lines[0]
    assert "--register-shipped pointnet_lion" in lines[0], lines[0]
    assert not (state / "models").exists() and not (cwd / "c.sq3d").exists()
