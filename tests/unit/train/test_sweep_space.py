"""Search spaces: the shipped pointnet_lion space sweeps the set-aware loss weights next to d_C and
λ_gram, and a trial's sampled values become training-config overrides that resolve."""

from pathlib import Path

import pytest

from squeeze3d.config import ConfigError, resolve, to_dict, train_config_for_pair
from squeeze3d.train.sweep import SearchSpace, trial_overrides

ROOT = Path(__file__).resolve().parents[3]


def test_pointnet_lion_space_has_loss_axes_and_trials_resolve():
    space = SearchSpace.from_yaml(ROOT / "tuning" / "pointnet_lion.yaml")
    assert set(space.loss) == {"lambda_output", "lambda_gen", "lambda_rate"}
    assert space.loss["lambda_output"] == ("choice", [0.0, 1.0])
    base = train_config_for_pair("pointnet_lion", extra=space.base)
    cfg = resolve([to_dict(base), trial_overrides({"d_code": 64, "lambda_gram": 1e-4, "loss.lambda_output": 1.0,
                                                   "loss.lambda_gen": 0.01, "loss.lambda_rate": 1e-3})])
    assert (cfg.mapping.d_code, cfg.loss.lambda_gram, cfg.loss.lambda_output, cfg.loss.lambda_gen,
            cfg.loss.lambda_rate) == (64, 1e-4, 1.0, 0.01, 1e-3)
    assert cfg.mapping.code_bound == "tanh" and cfg.loss.code_noise_bits == 8


def test_unknown_loss_axis_is_refused(tmp_path):
    bad = tmp_path / "s.yaml"
    bad.write_text("space:\n  d_code: {choice: [8]}\n  lambda_gram: {loguniform: [1e-4, 1e-2]}\n"
                   "  loss:\n    lambda_typo: {choice: [1.0]}\n")
    with pytest.raises(ConfigError, match="space.loss.lambda_typo must be a LossConfig field"):
        SearchSpace.from_yaml(bad)


def test_nerfmae_space_varies_the_unet_code_size_and_tags_code_values():
    """`make sweep PAIR=nerfmae` sweeps code_channels and the bottleneck resolution (unet levels);
    d_code in the table is the number of code values."""
    from squeeze3d.train.sweep import code_values

    space = SearchSpace.from_yaml(ROOT / "tuning" / "nerfmae.yaml")
    assert space.d_code == [] and set(space.mapping) == {"code_channels", "unet_channels"}
    params = space.param_space()
    assert "d_code" not in params and {"mapping.code_channels", "mapping.unet_channels"} <= set(params)
    base = train_config_for_pair("nerfmae", extra=space.base)
    sizes = set()
    for ch in space.mapping["code_channels"][1]:
        for levels in space.mapping["unet_channels"][1]:
            over = trial_overrides({"lambda_gram": 1e-3, "mapping.code_channels": ch, "mapping.unet_channels": levels})
            cfg = resolve([to_dict(base), over])
            assert cfg.mapping.code_channels == ch and cfg.mapping.unet_channels == levels
            sizes.add(code_values(cfg))
            assert code_values(cfg) == ch * (8 // 2 ** len(levels)) ** 3
    assert sorted(sizes) == [8, 24, 64, 192, 512, 1536]


def test_unknown_mapping_axis_is_refused(tmp_path):
    bad = tmp_path / "s.yaml"
    bad.write_text("space:\n  lambda_gram: {loguniform: [1e-4, 1e-2]}\n  mapping:\n    arch: {choice: [unet3d]}\n")
    with pytest.raises(ConfigError, match="space.mapping.arch must be a MappingConfig field"):
        SearchSpace.from_yaml(bad)


def test_the_sweep_table_shows_the_code_rate_when_a_trial_trained_for_it():
    from squeeze3d.train.sweep import format_table

    rows = [{"trial": "a", "d_code": 64, "lambda_gram": 1e-3, "loss.lambda_rate": 0.0, "epochs": 2,
             "val_d1_psnr": 28.1, "val_mse": 0.4, "val_rate": None, "d_eff": 9.0, "status": "done"},
            {"trial": "b", "d_code": 64, "lambda_gram": 1e-3, "loss.lambda_rate": 1e-3, "epochs": 2,
             "val_d1_psnr": 27.5, "val_mse": 0.5, "val_rate": 310.0, "d_eff": 6.0, "status": "done"}]
    head, a, b = format_table(rows, ["val_d1_psnr"]).splitlines()
    assert "loss.lambda_rate" in head and "val_rate" in head
    assert b.split()[head.split().index("val_rate")] == "310"
    plain = format_table([{**rows[0]}], ["val_d1_psnr"]).splitlines()[0]
    assert "val_rate" not in plain  # no trial priced its code: no empty column
