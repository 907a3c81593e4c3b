"""Pairs declared in YAML files (``squeeze3d.pairs.declared``) and the adapter registry."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from squeeze3d.pairs import UnknownPairError, all_names, declared, get_pair
from squeeze3d.zoo import adapters

ROOT = Path(__file__).resolve().parents[3]
SHIPPED_DEBUG_YAML = ROOT / "platform" / "squeeze3d" / "data" / "pairs" / "debug_yaml.yaml"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """Pair files given in a test stay in that test (the registry of files is per process)."""
    monkeypatch.setattr(declared, "_FILES", {})
    monkeypatch.setattr(declared, "_CARRIED", {})
    monkeypatch.setenv(declared.FILES_ENV, "")
    monkeypatch.setenv(declared.DIRS_ENV, str(tmp_path / "user_pairs"))


def _tiny(tmp: Path, name: str = "tiny_unit", **over) -> Path:
    from squeeze3d.zoo.debug.adapter import save_debug_checkpoint
    from squeeze3d.zoo.debug.models import TinyPointDecoder, TinyPointEncoder

    torch.manual_seed(3)
    save_debug_checkpoint(TinyPointEncoder(latent_dim=20, hidden=16), tmp / "ck" / "e.safetensors")
    save_debug_checkpoint(TinyPointDecoder(latent_dim=6, num_points=64, hidden=16), tmp / "ck" / "g.safetensors")
    doc = {"name": name, "asset_kind": "point_cloud", "condition_kind": "noise",
           "encoder": "{adapter: debug, checkpoint: ck/e.safetensors}",
           "generator": "{adapter: debug, checkpoint: ck/g.safetensors}", "num_points": "64"} | over
    p = tmp / f"{name}.yaml"
    p.write_text("".join(f"{k}: {v}\n" for k, v in doc.items() if v is not None))
    return p


def test_shipped_debug_yaml_is_the_debug_pair():
    """The shipped squeeze3d/data/pairs/debug_yaml.yaml declares the registered debug pair's models and defaults."""
    a, b = get_pair("debug"), get_pair("debug_yaml")
    assert "debug_yaml" in all_names()
    for f in ("asset_kind", "condition_kind", "z_e_shape", "z_g_shape", "mapping", "optim", "loss",
              "normalisation", "num_points", "objective", "objective_mode"):
        assert getattr(a, f) == getattr(b, f), f
    assert a.build_encoder("cpu").weights_hash() == b.build_encoder("cpu").weights_hash()
    assert a.build_generator("cpu").weights_hash() == b.build_generator("cpu").weights_hash()
    assert declared.source_of("debug_yaml") == SHIPPED_DEBUG_YAML


def test_latent_shapes_come_from_the_checkpoints(tmp_path):
    spec = get_pair(str(_tiny(tmp_path)))
    assert (spec.z_e_shape, spec.z_g_shape) == ((20,), (6,))
    z, pts = spec.build_generator("cpu").sample([5])
    assert pts.shape == (1, 64, 3) and spec.build_encoder("cpu").encode(pts).shape == (1, 20)
    assert get_pair("tiny_unit") is spec  # the file is now known by its name in this process


@pytest.mark.parametrize("over, match", [
    ({"z_e_shape": "[20]"}, "z_e_shape: latent shapes are read from the loaded models"),
    ({"colour": "red"}, "colour: unknown key; allowed: name"),
    ({"name": "Bad-Name"}, "is not a pair name"),
    ({"name": "debug"}, "'debug' is a registered pair"),
    ({"asset_kind": "voxels"}, "asset_kind: 'voxels' is not one of"),
    ({"encoder": "{adapter: nope}"}, "unknown encoder adapter 'nope'; known: debug"),
    ({"encoder": "{adapter: debug, weights: x}"}, r"encoder.weights: unknown key; allowed: adapter, checkpoint, options"),
    ({"generator": None}, "generator: missing"),
    ({"num_points": "-3"}, "num_points: expected a positive integer"),
    ({"encoder": "{adapter: debug, checkpoint: '${NOT_SET_ANYWHERE}/e.safetensors'}"}, r"uses \$\{NOT_SET_ANYWHERE\}"),
])
def test_bad_pair_files_are_one_line_errors_naming_the_key(tmp_path, over, match):
    with pytest.raises(UnknownPairError, match=match) as e:
        get_pair(str(_tiny(tmp_path, **over)))
    assert "\n" not in str(e.value)


def test_missing_checkpoint_and_unknown_name(tmp_path):
    p = _tiny(tmp_path)
    (tmp_path / "ck" / "g.safetensors").unlink()
    with pytest.raises(UnknownPairError, match=r"tiny_unit .* generator checkpoint .*g.safetensors does not exist"):
        get_pair(str(p))
    with pytest.raises(UnknownPairError, match=r"unknown pair 'no_such_pair'; registered pairs: debug, .*; declared in pair files: .*debug_yaml"):
        get_pair("no_such_pair")


def test_reserved_adapters_list_and_fail_clearly_when_absent():
    assert "lion_official" in adapters.names("generator")
    assert "lion_official" not in adapters.names("encoder")  # LION is a generator (no encoder role)
    assert "nerfmae_swin3d" in adapters.names("encoder") and "nerfmae_swin3d" in adapters.names("generator")
    for kind in ("encoder", "generator"):
        for name in adapters.names(kind):
            if not adapters.available(kind, name):
                with pytest.raises(adapters.AdapterError, match=f"{kind} adapter '{name}' needs module"):
                    adapters.load(kind, name)
            else:
                assert callable(adapters.load(kind, name))
    with pytest.raises(adapters.AdapterError, match="unknown encoder adapter 'x'"):
        adapters.load("encoder", "x")


def test_pair_name_carries_the_file_and_its_variables_to_another_process(tmp_path, monkeypatch):
    """What a Ray worker receives: the name unpickles as the plain name and makes the pair resolvable
    there, with the driver's values of the file's ${VAR}s, in a process that has neither the variable
    nor the file (a worker on another node)."""
    ck = tmp_path / "elsewhere"
    p = _tiny(tmp_path, encoder="{adapter: debug, checkpoint: '${TINY_CK}/e.safetensors'}")
    (tmp_path / "ck").rename(ck)
    p.write_text(p.read_text().replace("ck/g.safetensors", str(ck / "g.safetensors")))
    monkeypatch.setenv("TINY_CK", str(ck))
    name = declared.pair_arg(str(p))
    assert name == "tiny_unit" and f"squeeze3d-{name}" == "squeeze3d-tiny_unit"
    blob = pickle.dumps(name)
    p.unlink()
    code = ("import pickle, sys; from squeeze3d.pairs import get_pair; n = pickle.loads(sys.stdin.buffer.read()); "
            "s = get_pair(n); print(type(n).__name__, str(n), s.z_e_shape, s.z_g_shape)")
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("TINY_CK", declared.FILES_ENV)}
    r = subprocess.run([sys.executable, "-c", code], input=blob, capture_output=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.decode().split() == ["PairName", "tiny_unit", "(20,)", "(6,)"]


def test_cli_pairs_lists_declared_and_add_copies_into_the_user_dir(tmp_path, capsys):
    from squeeze3d.cli import main

    p = _tiny(tmp_path, name="tiny_added",
              encoder=f"{{adapter: debug, checkpoint: {tmp_path / 'ck' / 'e.safetensors'}}}",
              generator=f"{{adapter: debug, checkpoint: {tmp_path / 'ck' / 'g.safetensors'}}}")
    assert main(["pairs", "add", str(p)]) == 0
    assert (tmp_path / "user_pairs" / "tiny_added.yaml").is_file()
    capsys.readouterr()
    assert main(["pairs"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "registered" in rows["debug"] and "20  " in rows["tiny_added"] and "user_pairs" in rows["tiny_added"]
    assert "debug_yaml" in rows
    assert main(["pairs", "add", str(p)]) == 2  # exists: --force to replace
    assert "exists; pass --force" in capsys.readouterr().err
    rel = _tiny(tmp_path, name="tiny_rel")
    assert main(["pairs", "add", str(rel)]) == 2
    assert "relative to the pair file" in capsys.readouterr().err


def test_every_job_takes_a_pair_file(tmp_path):
    """--pair FILE on the jobs and CLI commands: validated at parse time (exit 2 on a bad file)."""
    import importlib.util

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad_one\nasset_kind: point_cloud\n")
    for job in ("build_dataset", "train", "sweep"):
        spec = importlib.util.spec_from_file_location(f"j_{job}", ROOT / "jobs" / f"{job}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        ns = mod.build_parser().parse_args(["--pair", str(SHIPPED_DEBUG_YAML), "--data", "x"]
                                           if job != "build_dataset" else
                                           ["--pair", str(SHIPPED_DEBUG_YAML)])
        assert ns.pair == "debug_yaml"
        with pytest.raises(SystemExit) as e:
            mod.build_parser().parse_args(["--pair", str(bad), "--data", "x"])
        assert e.value.code == 2
