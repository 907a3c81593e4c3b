"""A pair declared from a YAML file (tiny random weights saved as checkpoints in a temporary
directory) goes through the same commands as the shipped pairs: build (Ray Data), train (Ray Train),
sweep (Ray Tune), the MLflow registry, compress and decompress.

The session's Ray instance starts before this test writes its pair file, so its workers cannot learn
the file from the environment: they resolve the pair from the name they are handed (``PairName``
carries the file and registers it when unpickled)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from squeeze3d.pairs import declared

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
NAME = "tiny_declared"


def _job(name: str):
    spec = importlib.util.spec_from_file_location(f"job_{name}", ROOT / "jobs" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _write_pair(tmp: Path) -> Path:
    """Random-weight E (latent 24) and G (latent 12, 128 points) in the debug checkpoint format, and the
    pair file naming them through ${TINY_CKPTS}; no latent shape is written anywhere."""
    from squeeze3d.zoo.debug.adapter import save_debug_checkpoint
    from squeeze3d.zoo.debug.models import TinyPointDecoder, TinyPointEncoder

    torch.manual_seed(7)
    save_debug_checkpoint(TinyPointEncoder(latent_dim=24, hidden=32), tmp / "ckpts" / "enc.safetensors")
    save_debug_checkpoint(TinyPointDecoder(latent_dim=12, num_points=128, hidden=32), tmp / "ckpts" / "gen.safetensors")
    (tmp / "space.yaml").write_text(
        "space:\n  d_code: {choice: [4, 8]}\n  lambda_gram: {loguniform: [1.0e-4, 1.0e-2]}\n"
        "tune: {num_samples: 1, max_concurrent: 1, grace_period: 1, reduction_factor: 2}\n"
        "base: {optim: {epochs: 2}}\n")
    pair = tmp / "pair.yaml"
    pair.write_text(f"""name: {NAME}
asset_kind: point_cloud
condition_kind: noise
encoder: {{adapter: debug, checkpoint: "${{TINY_CKPTS}}/enc.safetensors"}}
generator: {{adapter: debug, checkpoint: "${{TINY_CKPTS}}/gen.safetensors"}}
num_points: 128
mapping: {{arch: deep_residual_mlp, d_code: 8, hidden: 32, depth: 4, dropout: 0.0}}
optim: {{epochs: 2, batch_size: 64, optimizer: adamw}}
tuning: space.yaml
""")
    return pair


def test_declared_pair_builds_trains_sweeps_registers_and_compresses(ray_session, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SQUEEZE3D_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("TINY_CKPTS", str(tmp_path / "ckpts"))
    monkeypatch.setenv(declared.FILES_ENV, "")  # restored afterwards: use_file appends to it
    monkeypatch.setattr(declared, "_FILES", {})
    pair_file = _write_pair(tmp_path)
    data = tmp_path / "data"

    # build: Ray Data actors resolve the declared pair by the name they are given
    rc = _job("build_dataset").main(["--pair", str(pair_file), "--num-samples", "160", "--shard-rows", "80",
                                     "--output", str(data), "--generator-batch-size", "40",
                                     "--encoder-batch-size", "40", "--cpus-per-worker", "0.5"])
    assert rc == 0, capsys.readouterr().err
    man = json.loads((data / "manifest.json").read_text())
    assert man["pair"] == NAME and sum(s["rows"] for s in man["shards"]) == 160

    from squeeze3d.pairs import get_pair

    spec = get_pair(NAME)
    assert spec.z_e_shape == (24,) and spec.z_g_shape == (12,)  # read from the checkpoints' models
    enc, gen = spec.build_encoder("cpu"), spec.build_generator("cpu")
    assert man["encoder"]["weights_hash"] == enc.weights_hash() and man["generator"]["weights_hash"] == gen.weights_hash()

    # train (Ray Train in the driver: the sweep below runs it in worker processes) and register
    monkeypatch.setattr(sys, "argv", ["train.py", "--pair", str(pair_file), "--data", str(data),
                                      "--set", "optim.epochs=2", "--workers", "0"])
    assert _job("train").main() == 0, capsys.readouterr().err
    from squeeze3d import registry

    first = registry.champion(NAME)
    assert first is not None and first.name == f"squeeze3d-{NAME}"
    assert first.tags["encoder_hash"] == enc.weights_hash() and first.tags["generator_hash"] == gen.weights_hash()

    # sweep (Ray Tune over Ray Train, one trial): the search space comes from the pair file's `tuning:`
    monkeypatch.setattr(sys, "argv", ["sweep.py", "--pair", str(pair_file), "--data", str(data),
                                      "--out", str(tmp_path / "sweeps")])
    assert _job("sweep").main() == 0, capsys.readouterr().err
    swept = [v for v in registry.list_versions(NAME) if v.tags.get("sweep_run_id")]
    assert swept and {v.tags.get("d_code") for v in swept} <= {"4", "8"}

    # compress / decompress through the CLI, the pair given by its file
    from squeeze3d.cli import main as cli

    pts = gen.sample([123])[1][0].numpy()
    np.save(tmp_path / "cloud.npy", pts)
    sq3d = tmp_path / "cloud.sq3d"
    assert cli(["compress", str(tmp_path / "cloud.npy"), "-o", str(sq3d), "--pair", str(pair_file),
                "--min-quality", "off", "--no-server"]) == 0
    capsys.readouterr()
    assert cli(["inspect", str(sq3d), "--json", "--no-server"]) == 0
    assert json.loads(capsys.readouterr().out)["pair"] == NAME
    out = tmp_path / "back.npz"
    assert cli(["decompress", str(sq3d), "-o", str(out), "--no-server"]) == 0
    back = np.load(out)["points"]
    assert back.shape == (128, 3) and np.isfinite(back).all()
