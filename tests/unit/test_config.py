"""Config: defaults per architecture, YAML + --set overrides, clear errors."""

import pytest

from squeeze3d.config import (
    ConfigError,
    MappingConfig,
    describe,
    field_docs,
    parse_sets,
    resolve,
    train_config_for_pair,
)


def test_resolution_order(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("mapping:\n  d_code: 12\noptim:\n  epochs: 7\n")
    cfg = train_config_for_pair("debug", y, ["optim.epochs=3", "loss.lambda_gram=1e-2"])
    assert cfg.mapping.d_code == 12  # YAML over the pair default (8)
    assert cfg.optim.epochs == 3  # --set over YAML
    assert cfg.loss.lambda_gram == pytest.approx(0.01)  # "1e-2" parsed as a number
    assert cfg.mapping.hidden == 64  # pair default over the architecture default


def test_architecture_defaults_follow_arch():
    cfg = resolve([{"mapping": {"arch": "official_mlp"}}])
    assert cfg.loss.gram_variant == "official"
    cfg = resolve([{"mapping": {"arch": "deep_residual_mlp"}}])
    assert (cfg.mapping.d_code, cfg.mapping.dropout, cfg.optim.lr_start, cfg.optim.lr_end) == (1024, 0.3, 1e-3, 1e-7)


@pytest.mark.parametrize("sets,msg", [
    (["mapping.widht=3"], "unknown key mapping.widht; valid keys here: arch, code_bound, code_channels"),
    (["nope=1"], "unknown key nope"),
    (["mapping.d_code=abc"], "mapping.d_code: expected an integer"),
    (["mapping.d_code=0"], "mapping.d_code must be >= 1"),
    (["mapping.arch=transformer"], "mapping.arch: 'transformer' is not one of"),
    (["loss.gram_variant=x"], "loss.gram_variant: 'x' is not one of paper, official"),
    (["optim.batch_size=1"], "batch_size must be >= 2"),
    (["mapping.unet_channels=4"], "expected a list"),
    (["mapping.d_code"], "--set expects KEY=VALUE"),
])
def test_bad_values_name_the_key(sets, msg):
    with pytest.raises(ConfigError) as e:
        train_config_for_pair("debug", sets=sets)
    assert msg in str(e.value)


def test_list_and_missing_file(tmp_path):
    assert parse_sets(["mapping.unet_channels=[8, 16]"]) == {"mapping": {"unet_channels": [8, 16]}}
    with pytest.raises(ConfigError, match="does not exist"):
        train_config_for_pair("debug", tmp_path / "missing.yaml")


def test_every_field_has_a_docstring():
    docs = field_docs(MappingConfig)
    assert "d_C" in docs["d_code"]
    text = describe(train_config_for_pair("debug"))
    for line in text.splitlines():
        assert line.split("# ", 1)[1].strip(), f"field without help: {line}"
