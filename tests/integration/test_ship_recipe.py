"""A champion recipe end to end (``jobs/ship_champion.py --recipe``, ``train.champion.ship``) at a tiny
size: a fine-tune recipe (``train.init_from``, as ``jobs/recipes/pointnet_lion_rate.yaml``) builds its
pairs with Ray Data, fits from the start checkpoint with Ray Train, registers, and exports; ``--set``
and ``--export-dir`` reach the run; a recipe whose start is missing is refused before any pair is built."""

import json

import pytest
import yaml

from squeeze3d.config import train_config_for_pair
from squeeze3d.errors import UserError
from squeeze3d.mapping import build_mapping
from squeeze3d.mapping.checkpoint import load_checkpoint, save_checkpoint
from squeeze3d.pairs import get_pair
from squeeze3d.train.champion import ship

pytestmark = [pytest.mark.slow, pytest.mark.integration]

TANH = {"code_bound": "tanh"}


def _recipe(tmp_path, start, name="r.yaml"):
    doc = {"pair": "debug",
           "build": {"num_samples": 48, "output": str(tmp_path / "ds"), "seed": 2, "shard_rows": 16,
                     "generator_workers": 1, "encoder_workers": 1, "cpus_per_worker": 0.5},
           "train": {"init_from": str(start), "mapping": TANH,
                     "loss": {"code_noise_bits": 8, "lambda_rate": 1.0e-3}, "optim": {"epochs": 1, "batch_size": 16}},
           "export": {"dir": str(tmp_path / "recipe_dir"), "fp16": True}}
    p = tmp_path / name
    p.write_text(yaml.safe_dump(doc))
    return p


def test_a_fine_tune_recipe_builds_fits_from_its_start_and_exports(ray_session, tmp_path, monkeypatch):
    monkeypatch.setenv("SQUEEZE3D_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    pair = get_pair("debug")
    cfg = train_config_for_pair("debug", sets=["mapping.code_bound=tanh", "loss.code_noise_bits=8"])
    f_e, f_d = build_mapping(cfg.mapping, pair.z_e_shape, pair.z_g_shape)
    start = save_checkpoint(tmp_path / "start", f_e, f_d, cfg)

    missing = _recipe(tmp_path, tmp_path / "nowhere", "missing.yaml")
    with pytest.raises(UserError, match="is not a mapping checkpoint"):
        ship(missing, log=lambda m: None)
    assert not (tmp_path / "ds").exists()  # refused before building

    out = tmp_path / "out"
    s = ship(_recipe(tmp_path, start), sets=["optim.lr_start=2e-4"], export_dir=out, log=lambda m: None)
    assert s["rows"]["total"] == 48 and "val_rate" in s["metrics"]
    ck = load_checkpoint(out)  # the exported copy verifies against its own hash
    tc = ck.config
    assert tc.loss.lambda_rate == 1.0e-3 and tc.optim.lr_start == 2e-4 and tc.init_from.endswith("start")
    assert ck.weights_hash != load_checkpoint(start).weights_hash  # trained from the start, not copied
    assert json.loads((out / "ship_summary.json").read_text())["pair"] == "debug"
    assert not (tmp_path / "recipe_dir").exists()  # --export-dir replaced the recipe's
