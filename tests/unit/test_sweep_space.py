"""Search spaces: the shipped pointnet_lion space sweeps the set-aware loss weights next to d_C and
λ_gram, and a trial's sampled values become training-config overrides that resolve."""

from pathlib import Path

import pytest

from squeeze3d.config import ConfigError, resolve, to_dict, train_config_for_pair
from squeeze3d.train.sweep import SearchSpace, trial_overrides

ROOT = Path(__file__).resolve().parents[2]


def test_pointnet_lion_space_has_loss_axes_and_trials_resolve():
    space = SearchSpace.from_yaml(ROOT / "tuning" / "pointnet_lion.yaml")
    assert set(space.loss) == {"lambda_output", "lambda_gen"}
    assert space.loss["lambda_output"] == ("choice", [0.0, 1.0])
    base = train_config_for_pair("pointnet_lion", extra=space.base)
    cfg = resolve([to_dict(base), trial_overrides({"d_code": 64, "lambda_gram": 1e-4, "loss.lambda_output": 1.0,
                                                   "loss.lambda_gen": 0.01})])
    assert (cfg.mapping.d_code, cfg.loss.lambda_gram, cfg.loss.lambda_output, cfg.loss.lambda_gen) == \
        (64, 1e-4, 1.0, 0.01)
    assert cfg.mapping.code_bound == "tanh" and cfg.loss.code_noise_bits == 8


def test_unknown_loss_axis_is_refused(tmp_path):
    bad = tmp_path / "s.yaml"
    bad.write_text("space:\n  d_code: {choice: [8]}\n  lambda_gram: {loguniform: [1e-4, 1e-2]}\n"
                   "  loss:\n    lambda_typo: {choice: [1.0]}\n")
    with pytest.raises(ConfigError, match="space.loss.lambda_typo must be a LossConfig field"):
        SearchSpace.from_yaml(bad)
