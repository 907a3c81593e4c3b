"""A 2-trial Ray Tune sweep (Tune over Train) on the debug pair registers the better trial."""

from pathlib import Path

import pytest
import ray

from squeeze3d import registry
from squeeze3d.config import train_config_for_pair
from squeeze3d.synth.in_process import synthesise
from squeeze3d.train.sweep import SearchSpace, run_sweep

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def test_two_trial_sweep_registers_best(ray_session, tmp_path, monkeypatch):
    monkeypatch.setenv("SQUEEZE3D_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    ze, zg, _ = synthesise("debug", list(range(400)))
    rows = [{"z_e": ze[i].numpy(), "z_g": zg[i].numpy()} for i in range(400)]
    datasets = {"train": ray.data.from_items(rows[:320]), "val": ray.data.from_items(rows[320:])}
    space = SearchSpace.from_yaml(ROOT / "tuning" / "debug.yaml")
    cfg = train_config_for_pair("debug", extra=space.base)
    out = run_sweep(cfg, space, datasets, {"uri": "memory://", "manifest_hash": "m"}, out_dir=tmp_path,
                    log=lambda s: None)
    assert len(out.table) == 2
    done = [t for t in out.table if t["status"] == "done"]
    assert done, out.table
    best = max(done, key=lambda t: t["val_d1_psnr"])
    assert out.best["trial"] == best["trial"]
    champ = registry.champion("debug")
    assert champ is not None and champ.version == out.model_version and out.promoted
    assert float(champ.tags["objective_value"]) == pytest.approx(best["val_d1_psnr"])
    assert champ.tags["d_code"] == str(best["d_code"]) and champ.tags["sweep_run_id"] == out.parent_run_id
    # every trial is an MLflow run nested under the sweep's run
    from mlflow import MlflowClient

    from squeeze3d.tracking import tracking_uri

    client = MlflowClient(tracking_uri=tracking_uri())
    exp = client.get_experiment_by_name("squeeze3d-debug")
    children = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{out.parent_run_id}'")
    assert len(children) == 2
    assert out.plot is not None and out.plot.stat().st_size > 0
    # the registered weights load
    assert registry.load_mapping(None, "debug").code_shape == (int(best["d_code"]),)


def test_search_space_errors(tmp_path):
    from squeeze3d.config import ConfigError

    bad = tmp_path / "s.yaml"
    bad.write_text("space:\n  d_code: {choice: [8]}\n")
    with pytest.raises(ConfigError, match="lambda_gram"):
        SearchSpace.from_yaml(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        SearchSpace.from_yaml(tmp_path / "none.yaml")


def test_search_space_grid_for_the_d_code_ablation(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("space:\n  d_code: {grid: [8, 16, 32]}\n  lambda_gram: {loguniform: [1.0e-4, 1.0e-2]}\n"
                 "tune: {num_samples: 1}\n")
    space = SearchSpace.from_yaml(p)
    assert space.d_code_grid and space.d_code == [8, 16, 32] and space.num_samples == 1
    p.write_text("space:\n  d_code: {choice: [8]}\n  lambda_gram: {loguniform: [1.0e-4, 1.0e-2]}\n")
    assert not SearchSpace.from_yaml(p).d_code_grid


def test_nerfmae_sweep_varies_the_unet_code_size(ray_session, tmp_path, monkeypatch):
    """`space.mapping` axes (code_channels × bottleneck levels) reach the trials: each trial's code
    has the sampled size, and the table's and the registry's d_code count the code values."""
    monkeypatch.setenv("SQUEEZE3D_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    ze, zg, _ = synthesise("nerfmae", list(range(24)))
    rows = [{"z_e": ze[i].numpy(), "z_g": zg[i].numpy()} for i in range(24)]
    datasets = {"train": ray.data.from_items(rows[:16]), "val": ray.data.from_items(rows[16:])}
    p = tmp_path / "s.yaml"
    p.write_text("space:\n  mapping:\n    code_channels: {grid: [4, 8]}\n    unet_channels: {grid: [[16]]}\n"
                 "  lambda_gram: {loguniform: [1.0e-4, 1.0e-2]}\n"
                 "tune: {num_samples: 1, grace_period: 1}\n"
                 "base:\n  mapping: {code_bound: tanh, dropout: 0.0}\n  loss: {gram_variant: official}\n"
                 "  optim: {optimizer: adamw, epochs: 1, batch_size: 8}\n")
    space = SearchSpace.from_yaml(p)
    cfg = train_config_for_pair("nerfmae", extra=space.base)
    out = run_sweep(cfg, space, datasets, {"uri": "memory://", "manifest_hash": "m"}, out_dir=tmp_path,
                    heldout_rows=2, endtask_rows=2, log=lambda s: None)
    assert sorted(t["d_code"] for t in out.table) == [4 * 64, 8 * 64]  # 8³ z grid, one level: 4³ code grid
    assert sorted(t["mapping.code_channels"] for t in out.table) == [4, 8]
    champ = registry.champion("nerfmae")
    assert champ is not None and champ.tags["d_code"] == str(out.best["d_code"])
    ck = registry.load_mapping(None, "nerfmae")
    assert ck.code_shape == (out.best["mapping.code_channels"], 4, 4, 4)
