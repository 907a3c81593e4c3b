"""The mini MeshAnything encoder E: shapes, batch invariance, device, weights round trip, the
MeshAnything real-format adapter (random weights saved here in MeshAnything's key layout: no
download), and a training smoke run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from squeeze3d.zoo.meshanything.checkpoint import (
    MeshAnythingCheckpointError,
    export_meshanything_layout,
    load_meshanything_checkpoint,
)
from squeeze3d.zoo.meshanything.model import (
    WEIGHTS_DIR,
    MeshAnythingConfig,
    MeshAnythingEncoder,
    MeshAnythingMini,
    load_weights,
    save_weights,
)

TINY = dict(num_latents=8, width=16, heads=2, num_encoder_layers=1, num_decoder_layers=1, embed_dim=4,
            num_freqs=4, cond_dim=12)


def _model(seed: int = 0, **kw) -> MeshAnythingMini:
    torch.manual_seed(seed)
    return MeshAnythingMini(MeshAnythingConfig(**{**TINY, **kw})).eval()


def _assets(b: int = 3, n: int = 256, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xyz = torch.rand(b, n, 3, generator=g) * 2 - 1
    nrm = torch.nn.functional.normalize(torch.randn(b, n, 3, generator=g), dim=-1)
    return torch.cat([xyz, nrm, torch.rand(b, n, 3, generator=g)], -1)


def test_shapes_and_input_check():
    enc = MeshAnythingEncoder("cpu", model=_model())
    z = enc.encode(_assets())
    assert z.shape == (3, 9, 12) and z.dtype == torch.float32 and enc.z_e_shape == (9, 12)
    assert torch.isfinite(z).all()
    with pytest.raises(ValueError, match=r"\[B, N, 9\]"):
        enc.encode(torch.zeros(1, 16, 3))


def test_colour_input_reaches_z_e_only_when_enabled():
    x = _assets(1)
    y = x.clone()
    y[..., 6:9] = 1 - y[..., 6:9]
    with_colour, without = _model(color_channels=3), _model(color_channels=0)
    assert not torch.equal(with_colour.z_e(x), with_colour.z_e(y))
    assert torch.equal(without.z_e(x), without.z_e(y))  # MeshAnything's input: xyz + normals only


def test_batch_invariance_bitwise():
    enc = MeshAnythingEncoder("cpu", model=_model())
    x = _assets(4)
    batched = enc.encode(x)
    for i in range(4):
        assert torch.equal(enc.encode(x[i:i + 1])[0], batched[i])


def test_device_parameter():
    m = _model()
    x = _assets(2)
    cpu = MeshAnythingEncoder("cpu", model=m)
    assert cpu.device == torch.device("cpu") and next(cpu.module.parameters()).device.type == "cpu"
    ref = cpu.encode(x)
    if torch.cuda.is_available():
        gpu = MeshAnythingEncoder("cuda", model=_model())
        assert next(gpu.module.parameters()).device.type == "cuda"
        torch.testing.assert_close(gpu.encode(x).cpu(), ref, atol=1e-4, rtol=1e-4)


def test_weights_round_trip_safetensors_json(tmp_path):
    m = _model()
    save_weights(m, tmp_path, {"note": "test"}, fp16=False)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["meshanything_shape.json", "meshanything_shape.safetensors"]
    raw = (tmp_path / "meshanything_shape.safetensors").read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    assert raw[8:9] == b"{" and json.loads(raw[8:8 + header_len])  # a safetensors header, not a pickle
    meta = json.loads((tmp_path / "meshanything_shape.json").read_text())
    assert meta["config"]["width"] == 16 and meta["z_e_shape"] == [9, 12] and meta["note"] == "test"
    loaded, _ = load_weights(tmp_path)
    x = _assets(2)
    assert torch.equal(loaded.z_e(x), m.z_e(x))
    assert torch.equal(MeshAnythingEncoder(weights=tmp_path).encode(x), MeshAnythingEncoder(model=m).encode(x))


def _meshanything_layout(m: MeshAnythingMini) -> dict[str, torch.Tensor]:
    """The model's tensors under MeshAnything's names, written out here independently of the exporter,
    plus tensors of the parts of MeshAnything the encoder does not need (they must be skipped)."""
    out = {}
    for k, v in m.state_dict().items():
        if k.startswith("shape_model."):
            out["point_encoder.model." + k] = v.clone()
        elif k == "shape_projection":
            out["point_encoder.model.shape_projection"] = v.clone()
        else:
            out[k] = v.clone()  # cond_head_proj.*, cond_proj.* sit at MeshAnything's top level
    out["transformer.model.decoder.embed_tokens.weight"] = torch.randn(5, 12)
    out["tokenizer.cond_proj.weight"] = torch.randn(4, 4)
    return out


def test_adapter_loads_real_layout_strictly(tmp_path):
    m = _model(seed=3, color_channels=0)
    state = _meshanything_layout(m)
    assert {k.split(".")[0] for k in state} == {"point_encoder", "cond_head_proj", "cond_proj", "transformer", "tokenizer"}
    path = tmp_path / "MeshAnything_350m.safetensors"
    save_file(state, str(path))
    loaded = load_meshanything_checkpoint(path, heads=2)
    assert loaded.cfg == m.cfg  # architecture read back from the shapes
    x = _assets(2)
    assert torch.equal(loaded.z_e(x), m.z_e(x))
    # heads from MeshAnything's yaml instead of the argument
    (tmp_path / "shapevae-256.yaml").write_text(
        "model:\n  params:\n    shape_module_cfg:\n      params:\n        heads: 2\n        num_freqs: 4\n"
        "        include_pi: false\n")
    assert loaded.cfg == load_meshanything_checkpoint(path, yaml_path=tmp_path / "shapevae-256.yaml").cfg
    # the exporter writes the same layout
    export_meshanything_layout(m, tmp_path / "exported.safetensors")
    assert torch.equal(load_meshanything_checkpoint(tmp_path / "exported.safetensors", heads=2).z_e(x), m.z_e(x))


def test_adapter_names_missing_misshaped_and_unexpected_keys(tmp_path):
    m = _model(seed=3, color_channels=0)
    state = _meshanything_layout(m)
    del state["cond_proj.bias"]
    state["point_encoder.model.shape_model.post_kl.weight"] = torch.zeros(16, 5)
    state["point_encoder.model.shape_model.encoder.extra.weight"] = torch.zeros(2)
    path = tmp_path / "bad.safetensors"
    save_file(state, str(path))
    with pytest.raises(MeshAnythingCheckpointError) as err:
        load_meshanything_checkpoint(path, config=m.cfg)
    msg = str(err.value)
    assert "\n" not in msg
    assert "missing 1: cond_proj.bias" in msg
    assert "shape_model.post_kl.weight (16, 5) (expected (16, 4))" in msg
    assert "unexpected 1: shape_model.encoder.extra.weight" in msg
    with pytest.raises(MeshAnythingCheckpointError, match="head count"):
        load_meshanything_checkpoint(path)
    no_encoder = {k: v for k, v in _meshanything_layout(m).items() if not k.startswith("point_encoder")}
    save_file(no_encoder, str(tmp_path / "not_meshanything.safetensors"))
    with pytest.raises(MeshAnythingCheckpointError, match="point_encoder.model.shape_model.encoder.query"):
        load_meshanything_checkpoint(tmp_path / "not_meshanything.safetensors", heads=2)


def test_training_smoke_reduces_loss(tmp_path):
    from squeeze3d.zoo_training.meshanything import MeshAnythingTrainConfig, fit, train_meshanything
    from squeeze3d.zoo_training.meshanything_data import object_arrays

    rows = [object_arrays(0, i) for i in (0, 1, 108)]  # 108: a test-split object (corpus.split_of)
    data = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    assert data["surface"].shape == (3, 2048, 9) and data["occ"].dtype == bool and list(data["splits"]) == [0, 0, 2]
    cfg = MeshAnythingTrainConfig(steps=30, batch_size=2, lr=2e-3, warmup=3, occ_queries=256, color_queries=64,
                                  log_every=1000, model=TINY)
    torch.manual_seed(0)
    model = MeshAnythingMini(MeshAnythingConfig(**TINY))
    losses = fit(model, data, np.array([0, 1]), cfg, seed=0, log=lambda s: None)
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
    cfg.steps = 2
    summary = train_meshanything(cfg, tmp_path, seed=0, log=lambda s: None, data=data)
    m = summary["metrics_test"]
    assert m["objects"] == 1 and 0 <= m["iou_uniform"] <= 1 and 0 <= m["color_mae"] <= 1 and m["encode_ms_per_mesh"] > 0
    assert (tmp_path / "meshanything_shape.safetensors").exists() and summary["weights_bytes"] > 0


def test_shipped_weights():
    from squeeze3d.zoo_training.meshanything import evaluate
    from squeeze3d.zoo_training.meshanything_data import object_arrays

    path = WEIGHTS_DIR / "meshanything_shape.safetensors"
    assert path.stat().st_size < 5 * 2**20
    enc = MeshAnythingEncoder()
    assert enc.z_e_shape == (65, 64)
    assert enc.encode(_assets(1, 2048)).shape == (1, 65, 64)
    # held-out test objects, live: trained, not random (a random init scores IoU ~0.02, colour error ~0.27)
    rows = [object_arrays(0, i) for i in (108, 109, 110)]
    m = evaluate(enc.module, {k: np.stack([r[k] for r in rows]) for k in rows[0]}, np.arange(3))
    assert m["iou_uniform"] > 0.2 and m["color_mae"] < 0.1
    assert enc.meta["metrics_test"]["objects"] > 100
