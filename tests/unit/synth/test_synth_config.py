"""The builder's settings: dataclass defaults < the pair's ``<pair>.yaml`` < explicit overrides. The
registered pairs' defaults ship in the package, so they hold wherever the command runs; a
``./datasets/<pair>.yaml`` of the working directory wins over them."""

from __future__ import annotations

from pathlib import Path

import pytest

import squeeze3d
from squeeze3d.synth.build import BuildConfigError, defaults_file, load_defaults, resolve_config

SHIPPED = Path(squeeze3d.__file__).parent / "data" / "datasets"


def test_shipped_defaults_hold_outside_any_checkout(tmp_path, monkeypatch):
    monkeypatch.delenv("SQUEEZE3D_DATASETS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert defaults_file("debug") == SHIPPED / "debug.yaml"
    cfg = resolve_config("debug")
    assert (cfg.generator_batch_size, cfg.shard_rows, cfg.output) == (1024, 2048, ".state/data/debug")
    # every registered pair with shipped defaults loads without unknown keys
    for f in sorted(SHIPPED.glob("*.yaml")):
        assert load_defaults(f.stem), f


def test_the_working_directorys_datasets_win_then_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("SQUEEZE3D_DATASETS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "debug.yaml").write_text("build:\n  shard_rows: 7\n")
    assert resolve_config("debug").shard_rows == 7
    assert resolve_config("debug", shard_rows=9).shard_rows == 9  # explicit beats the file
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "debug.yaml").write_text("shard_rows: 5\n")
    monkeypatch.setenv("SQUEEZE3D_DATASETS_DIR", str(mine))
    assert resolve_config("debug").shard_rows == 5


def test_an_explicit_folder_is_the_only_place_looked_at(tmp_path):
    assert defaults_file("debug", tmp_path / "none") is None
    assert resolve_config("debug", tmp_path / "none").shard_rows == 1024  # the dataclass default
    (tmp_path / "debug.yaml").write_text("build:\n  no_such_key: 1\n")
    with pytest.raises(BuildConfigError, match="no_such_key"):
        load_defaults("debug", tmp_path)
