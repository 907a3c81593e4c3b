"""The ``nerfmae`` pair through the platform, no pair-specific code outside the pair: Ray Data build
of (z_E, z_G) grids-pairs → dataset validation → Ray Train fit of the 3D conv U-Net mapping → MLflow
registry (render-PSNR end-task metrics on validation and on held-out corpus objects)."""

import json

import pytest
import torch

from squeeze3d import registry
from squeeze3d.config import train_config_for_pair
from squeeze3d.mapping import code_shape
from squeeze3d.synth.build import build_dataset
from squeeze3d.synth.validate import validate_dataset
from squeeze3d.train.data import open_training_data
from squeeze3d.train.run import run_training

pytestmark = [pytest.mark.slow, pytest.mark.integration]

SMALL = dict(shard_rows=16, generator_workers=1, encoder_workers=1, generator_batch_size=8,
             encoder_batch_size=8, cpus_per_worker=0.5)


def test_build_train_register_nerfmae(ray_session, tmp_path, monkeypatch):
    monkeypatch.setenv("SQUEEZE3D_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = tmp_path / "ds"
    s = build_dataset("nerfmae", num_samples=32, output=str(out), seed=3, log=lambda m: None, **SMALL)
    assert (s.rows, s.shards) == (32, 2)
    rep = validate_dataset(str(out))
    assert rep.ok, rep.describe()
    man = json.loads((out / "manifest.json").read_text())
    assert man["pair"] == "nerfmae"

    datasets, info = open_training_data(str(out), "nerfmae")
    row = datasets["train"].take(1)[0]
    assert row["z_e"].shape == row["z_g"].shape == (32, 8, 8, 8)
    # z_E = E(G(z_G)) is close to, but not the same as, z_G (one autoencoder round trip apart)
    z_e, z_g = torch.tensor(row["z_e"]), torch.tensor(row["z_g"])
    assert 0 < float(((z_e - z_g) ** 2).mean()) < float((z_g ** 2).mean())

    cfg = train_config_for_pair("nerfmae", sets=["optim.epochs=2", "optim.batch_size=8"])
    assert cfg.mapping.arch == "unet3d" and code_shape(cfg.mapping, (32, 8, 8, 8)) == (24, 2, 2, 2)
    res = run_training(cfg, datasets, info, workers=1, heldout_rows=2, endtask_rows=4, log=lambda m: None)
    m = res.metrics
    for k in ("train_mse", "val_mse", "d_eff", "kappa", "val_psnr", "val_ms_ssim", "test_psnr", "test_ms_ssim"):
        assert k in m, (k, sorted(m))
    assert 5 < m["test_psnr"] < 60 and 0 < m["test_ms_ssim"] <= 1
    assert res.model_version == "1" and res.promoted
    champ = registry.champion("nerfmae")
    assert champ.tags["encoder_hash"] == info["encoder_hash"] == man["encoder"]["weights_hash"]
    assert float(champ.tags["test_psnr"]) == pytest.approx(m["test_psnr"], abs=1e-3)  # tags keep 4 decimals
    ck = registry.load_mapping(None, "nerfmae")
    assert ck.weights_hash == res.extra["weights_hash"]
