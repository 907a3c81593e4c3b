"""Ray Train fit of the mapping networks: metrics, MLflow run + registration, worker kill → resume."""

import os
import signal
import threading
import time
from pathlib import Path

import pytest
import ray

from squeeze3d import registry
from squeeze3d.config import train_config_for_pair
from squeeze3d.synth.in_process import synthesise
from squeeze3d.train.ray_train import build_trainer
from squeeze3d.train.run import run_training

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def debug_datasets(ray_session):
    ze, zg, _ = synthesise("debug", list(range(600)))
    rows = [{"z_e": ze[i].numpy(), "z_g": zg[i].numpy()} for i in range(600)]
    return {"train": ray.data.from_items(rows[:500]), "val": ray.data.from_items(rows[500:])}


def _train_worker_pids() -> list[int]:
    """Ray titles worker processes after their actor class (``ray::RayTrainWorker...``)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            except OSError:
                continue
            if cmd.startswith("ray::RayTrainWorker"):
                pids.append(int(d.name))
    return pids


def _registered_checkpoints(run_dir: Path) -> list:
    import json

    snap = run_dir / "checkpoint_manager_snapshot.json"
    try:
        return json.loads(snap.read_text()).get("checkpoint_results", [])
    except (OSError, ValueError):  # not written yet, or caught mid-write
        return []


INFO = {"uri": "memory://debug", "manifest_hash": "m" * 64, "encoder_hash": "e" * 64, "generator_hash": "g" * 64}


def test_ray_train_fit_logs_and_registers(debug_datasets, tmp_path, monkeypatch):
    monkeypatch.setenv("SQUEEZE3D_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = train_config_for_pair("debug", sets=["optim.epochs=3"])
    out = run_training(cfg, debug_datasets, INFO, workers=1, log=lambda s: None)
    m = out.metrics
    assert m["epoch"] == 2
    for k in ("train_mse", "val_mse", "train_gram", "d_eff", "kappa", "lr", "val_chamfer", "val_d1_psnr"):
        assert k in m, k
    assert out.model_version == "1" and out.promoted
    champ = registry.champion("debug")
    assert champ.tags["dataset_manifest_hash"] == "m" * 64 and champ.tags["d_code"] == "8"
    assert champ.tags["weights_hash"] == out.extra["weights_hash"]
    # per-epoch metrics reached MLflow from rank 0
    from mlflow import MlflowClient

    from squeeze3d.tracking import tracking_uri

    hist = MlflowClient(tracking_uri=tracking_uri()).get_metric_history(out.mlflow_run_id, "val_mse")
    assert sorted(h.step for h in hist) == [0, 1, 2]
    ck = registry.load_mapping(None, "debug")
    assert ck.weights_hash == out.extra["weights_hash"]


def test_worker_kill_resumes_from_checkpoint(debug_datasets, tmp_path, monkeypatch):
    monkeypatch.setenv("SQUEEZE3D_STATE_DIR", str(tmp_path))
    epochs = 30  # long enough that the controller registers a checkpoint well before the end
    cfg = train_config_for_pair("debug", sets=[f"optim.epochs={epochs}"])
    trainer = build_trainer(cfg, debug_datasets, workers=1, storage_path=str(tmp_path / "results"),
                            name="killme", max_failures=1, loop_config={"endtask_rows": 0})
    result: dict = {}
    th = threading.Thread(target=lambda: result.setdefault("r", trainer.fit()), daemon=True)
    th.start()
    run_dir = tmp_path / "results" / "killme"
    deadline = time.time() + 300
    # Train V2's controller polls workers for reports: a checkpoint folder can exist before the
    # controller has registered it. Its checkpoint manager's snapshot is the controller's own record.
    while not _registered_checkpoints(run_dir):
        assert time.time() < deadline and th.is_alive(), "no checkpoint was registered"
        time.sleep(0.2)
    pids = _train_worker_pids()
    assert pids, "no live Ray Train worker to kill"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    th.join(timeout=600)
    assert not th.is_alive()
    metrics = result["r"].metrics
    assert metrics["epoch"] == epochs - 1  # the same final epoch count as an uninterrupted run
    assert metrics["resumed_from_epoch"] >= 0  # the restarted worker continued from a checkpoint
