"""Jobs take their flags from the library's config dataclass: one flag per field (a new field is a new
flag), and the parsed flags are overrides for the same loader the library uses."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from squeeze3d.config_flags import add_dataclass_flags, flag_name, flag_overrides
from squeeze3d.synth.build import BuildConfig, resolve_config

ROOT = Path(__file__).resolve().parents[2]


def _job(name: str):
    spec = importlib.util.spec_from_file_location(f"job_{name}", ROOT / "jobs" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _flags(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in parser._actions for s in a.option_strings}


def test_build_dataset_flags_cover_every_build_config_field():
    flags = _flags(_job("build_dataset").build_parser())
    for f in dataclasses.fields(BuildConfig):
        assert flag_name(f.name) in flags, f.name
        assert flags[flag_name(f.name)].dest == f.name
    # the job's own flags, beside the config's
    assert {"--overwrite", "--address", "--datasets-dir"} <= set(flags)


def test_parsed_flags_give_the_loaders_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./datasets: the shipped defaults
    job = _job("build_dataset")
    argv = ["--pair", "debug", "--num-samples", "300", "--output", str(tmp_path / "o"), "--seed", "4",
            "--shard-rows", "64", "--generator-workers", "2", "--encoder-workers", "3",
            "--generator-batch-size", "16", "--encoder-batch-size", "32", "--cpus-per-worker", "0.5",
            "--gpus-per-worker", "0", "--prompts", "p", "--samples-per-prompt", "2",
            "--generator-options", "{scale: 2}"]
    a = job.parse_args(argv)
    over = flag_overrides(a, BuildConfig)
    want = dict(num_samples=300, output=str(tmp_path / "o"), seed=4, shard_rows=64, generator_workers=2,
                encoder_workers=3, generator_batch_size=16, encoder_batch_size=32, cpus_per_worker=0.5,
                gpus_per_worker=0.0, prompts="p", samples_per_prompt=2, generator_options={"scale": 2})
    assert over == {"pair": "debug", **want}
    assert resolve_config(**over) == resolve_config("debug", **want)
    # unset flags are left to the loader's lower layers (the pair's YAML, the dataclass defaults)
    bare = flag_overrides(job.parse_args(["--pair", "debug", "--seed", "1"]), BuildConfig)
    assert bare == {"pair": "debug", "seed": 1}
    assert resolve_config(**bare) == resolve_config("debug", seed=1)
    assert resolve_config(**bare).shard_rows == 2048  # from the shipped debug.yaml


def test_a_new_field_is_a_new_flag():
    @dataclass
    class Cfg:
        name: str
        """The name."""
        size: int = 3
        """How many."""
        ratio: float | None = None
        fast: bool = False
        """Go fast."""
        opts: dict = field(default_factory=dict)
        hidden: str = field(default="x", metadata={"flag": False})
        noted: str = field(default="", metadata={"help": "from metadata"})

    p = argparse.ArgumentParser()
    names = add_dataclass_flags(p, Cfg)
    assert names == ["name", "size", "ratio", "fast", "opts", "noted"]
    flags = _flags(p)
    assert flags["--size"].help == "How many." and flags["--noted"].help == "from metadata"
    assert flags["--name"].required and "--hidden" not in flags
    a = p.parse_args(["--name", "n", "--ratio", "0.5", "--no-fast", "--opts", '{"k": 1}'])
    assert flag_overrides(a, Cfg) == {"name": "n", "ratio": 0.5, "fast": False, "opts": {"k": 1}}
    with pytest.raises(SystemExit):
        p.parse_args(["--name", "n", "--opts", "[1, 2]"])  # not a mapping
    with pytest.raises(TypeError, match="lacks"):
        add_dataclass_flags(argparse.ArgumentParser(), Cfg, custom={"nope": {}})
