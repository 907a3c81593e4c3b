"""The mini NeRF-MAE (zoo/nerfmae/model.py): shapes, contracts, weights round trip, shipped weights' quality."""

import json

import numpy as np
import pytest
import torch

from squeeze3d.corpora import radiance as rc
from squeeze3d.zoo.base import state_dict_hash
from squeeze3d.zoo.nerfmae import model as nm
from squeeze3d.zoo_training import nerfmae as nmt

TINY = nm.NerfMAEConfig(resolution=16, enc_channels=(16, 16), feature_channels=8, dec_channels=16, head_channels=8)


def _grids(n, r=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 4, r, r, r, generator=g)
    x[:, 3] = x[:, 3] * 10 * (torch.rand(n, r, r, r, generator=g) < 0.3)
    return x


def test_patchify_round_trip_and_layout():
    x = torch.arange(2 * 4 * 8 ** 3, dtype=torch.float32).reshape(2, 4, 8, 8, 8)
    t = nm.patchify(x, 4)
    assert t.shape == (2, 2, 2, 2, 4 * 64)
    assert torch.equal(t[0, 1, 0, 1].reshape(4, 4, 4, 4), x[0, :, 4:8, 0:4, 4:8])
    assert torch.equal(nm.unpatchify(t, 4, 4), x)


def test_features_and_decode_shapes_ranges_and_batch_independence():
    torch.manual_seed(0)
    model = nm.NerfMAE(TINY).eval()
    x = _grids(3)
    with torch.no_grad():
        z = model.features(x)
        out = model.decode(z)
        z1 = model.features(x[1:2])
    assert z.shape == (3, *TINY.z_shape) == (3, 8, 4, 4, 4)
    assert out.shape == x.shape
    assert out[:, :3].min() >= 0 and out[:, :3].max() <= 1 and out[:, 3].min() >= 0
    torch.testing.assert_close(z1[0], z[1], rtol=1e-4, atol=1e-5)  # GroupNorm: no batch coupling
    with pytest.raises(ValueError, match=r"\[B, 4, 16, 16, 16\]"):
        model.features(torch.zeros(1, 4, 32, 32, 32))
    with pytest.raises(ValueError, match="decode expects z"):
        model.decode(torch.zeros(1, 8, 8, 8, 8))
    with pytest.raises(ValueError, match="multiple of 8"):
        nm.NerfMAEConfig(resolution=20)


def test_nerfmae_scale_is_reachable_by_config():
    cfg = nm.NerfMAEConfig(resolution=160, feature_channels=96)
    assert cfg.z_shape == (96, 40, 40, 40)


@pytest.mark.slow  # ~10 s alone; minutes when the 2 cores are contended (3D conv backward on CPU)
def test_training_reduces_loss_and_weights_round_trip(tmp_path):
    torch.manual_seed(0)
    model = nm.NerfMAE(TINY)
    x = torch.from_numpy(np.stack([rc.make_grid(0, i, rc.GridConfig(resolution=16)).grid for i in range(4)]))
    opt = torch.optim.AdamW(model.parameters(), 3e-3)
    first = None
    cfg = nmt.NerfMAETrainConfig(render_weight=0.5, render_size=16)
    for _ in range(40):
        loss, terms = nmt._loss(model, x, None, cfg, azimuth=0.3)
        assert set(terms) == {"voxel", "render"}
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first
    nm.save_weights(model, tmp_path, {"note": "test"})
    loaded, info = nm.load_weights(tmp_path)
    assert info["note"] == "test" and info["architecture"]["feature_channels"] == 8
    assert state_dict_hash(loaded) == info["state_dict_hash"]
    with torch.no_grad():  # fp16 storage: raw outputs agree closely (before decode's empty-space cut,
        model.eval()        # which may flip a voxel sitting exactly at the threshold)
        torch.testing.assert_close(loaded.decode_raw(loaded.features(x)), model.decode_raw(model.features(x)),
                                   rtol=0, atol=2e-2)
    # a file for another architecture is refused with the mismatching keys named
    info["architecture"]["feature_channels"] = 12
    (tmp_path / "nerfmae.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match="do not match"):
        nm.load_weights(tmp_path)
    with pytest.raises(FileNotFoundError, match="train_zoo.py --pair nerfmae"):
        nm.load_weights(tmp_path / "missing")


def test_generator_sample_is_per_seed_and_builder_shaped():
    torch.manual_seed(0)
    model = nm.NerfMAE(TINY)
    gen = nm.NerfMAEGenerator("cpu", model)
    enc = nm.NerfMAEEncoder("cpu", model)
    z, assets = gen.sample([5, 7])
    z7, a7 = gen.sample([7])
    assert z.shape == (2, *TINY.z_shape) and assets.shape == (2, 4, 16, 16, 16)
    torch.testing.assert_close(z7[0], z[1], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(a7[0], assets[1], rtol=1e-4, atol=1e-5)
    # the source objects are train-split corpus geometry with seeded materials
    src = gen.source_grids([5]).numpy()[0]
    ref = rc.make_grid(0, rc.train_index(5), rc.GridConfig(resolution=16)).grid
    np.testing.assert_array_equal(src[3] > 0, ref[3] > 0)
    assert not np.allclose(src[:3], ref[:3])
    # E and G share the one network: encoding the source object gives z_G
    torch.testing.assert_close(enc.encode(gen.source_grids([5, 7])), z, rtol=1e-4, atol=1e-5)
    assert enc.weights_hash() == gen.weights_hash() == state_dict_hash(model)


def test_loss_weights_the_object_and_renders_what_the_metric_sees():
    """The voxel term weighs voxels at the object ``1 + occupied_weight``; the render term is zero
    for a perfect reconstruction and reaches the network's parameters."""
    x = _grids(2)
    target = nm.grid_to_input(x)
    occ = torch.nn.functional.max_pool3d((target[:, 3:4] > 0.01).float(), 3, stride=1, padding=1)
    # an error of 0.1 in the object's voxels vs the same error in empty space
    err_obj = target + 0.1 * occ
    err_empty = target + 0.1 * (1 - occ)
    d_obj = nm.grid_output_distance(err_obj, target, occupied_weight=4.0)
    d_empty = nm.grid_output_distance(err_empty, target, occupied_weight=4.0)
    n_obj, n_all = occ.flatten(1).sum(1), occ[0].numel()
    w_mean = (n_all + 4 * n_obj) / n_all
    torch.testing.assert_close(d_obj, 0.01 * 5 * n_obj / n_all / w_mean)
    torch.testing.assert_close(d_empty, 0.01 * (n_all - n_obj) / n_all / w_mean)
    assert torch.equal(nm.grid_output_distance(target, target), torch.zeros(2))
    torch.manual_seed(0)
    model = nm.NerfMAE(TINY)
    cfg = nmt.NerfMAETrainConfig(render_weight=1.0, render_views=2, render_size=12)
    loss, terms = nmt._loss(model, x, None, cfg, azimuth=1.0)
    loss.backward()
    assert terms["render"] > 0 and all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert model.head2[-1].weight.grad.abs().sum() > 0
    off = nmt.NerfMAETrainConfig(render_weight=0.0)
    assert set(nmt._loss(model, x, None, off)[1]) == {"voxel"}


def test_loss_decoder_matches_decode_and_is_differentiable():
    torch.manual_seed(0)
    model = nm.NerfMAE(TINY).eval()
    gen = nm.NerfMAEGenerator("cpu", model)
    x = _grids(2)
    with torch.no_grad():
        z = model.features(x)
    dec = gen.loss_decoder()
    zf = z.flatten(1).requires_grad_(True)
    out = dec(zf)  # flat z_G rows, as the training loop holds them
    assert out.shape == (2, 4, 16, 16, 16)
    model.cfg.empty_alpha = 0.0  # the loss decoder has no empty-space cut
    with torch.no_grad():
        torch.testing.assert_close(out.detach(), nm.grid_to_input(model.decode(z)), rtol=1e-5, atol=1e-5)
    out.sum().backward()
    assert zf.grad.abs().sum() > 0


def test_training_keeps_a_learning_curve_and_stops_when_val_stops_improving(tmp_path, monkeypatch):
    """With a learning rate of 0 held-out quality cannot improve: training stops after ``patience``
    evaluations and keeps the first (best) one; the curve and the chosen decode threshold are
    recorded with the weights."""
    monkeypatch.setenv("SQUEEZE3D_CACHE", str(tmp_path / "cache"))
    arch = {"resolution": 16, "enc_channels": [8, 8], "feature_channels": 8, "dec_channels": 8, "head_channels": 8}
    cfg = nmt.NerfMAETrainConfig(count=120, steps=40, batch_size=2, lr=0.0, lr_end=0.0, eval_every=2, patience=2,
                                curve_objects=2, eval_objects=2, render_size=8, empty_alpha_choices=(0.0, 0.1),
                                threads=1, model=arch)
    out = nmt.train_nerfmae(cfg, None, 0, tmp_path / "w", log=lambda m: None)
    assert out["stopped_early"] and [p["step"] for p in out["curve"]] == [2, 4, 6]
    assert out["best_step"] == 2 and "render_psnr" in out["curve"][0] and "render_psnr" in out["test"]
    model, info = nm.load_weights(tmp_path / "w")
    assert info["best_step"] == 2 and len(info["curve"]) == 3 and not info.get("partial")
    assert model.cfg.empty_alpha in (0.0, 0.1) and set(info["empty_alpha_val_psnr"]) == {"0.0", "0.1"}


def test_train_zoo_recipe_writes_loadable_weights(tmp_path, monkeypatch):
    """``jobs/train_zoo.py --pair nerfmae`` runs this recipe (tiny here: 12 objects at 16³, 2 steps)."""
    from squeeze3d.zoo_training.recipes import ZooConfig, train_zoo

    monkeypatch.setenv("SQUEEZE3D_CACHE", str(tmp_path / "cache"))
    arch = {"resolution": 16, "enc_channels": [8, 8], "feature_channels": 8, "dec_channels": 8, "head_channels": 8}
    cfg = ZooConfig(nerfmae={"count": 12, "steps": 2, "batch_size": 2, "model": arch})
    summary = train_zoo("nerfmae", tmp_path / "w", cfg=cfg, log=lambda m: None)
    assert summary["test"] == {} and summary["wall_s"] > 0  # 12 objects: all in the train split
    model, info = nm.load_weights(tmp_path / "w")
    assert model.cfg.z_shape == (8, 4, 4, 4) and info["train"]["steps"] == 2
    assert state_dict_hash(model) == info["state_dict_hash"]
    assert json.loads((tmp_path / "w" / "train_summary.json").read_text())["wall_s"] == summary["wall_s"]
    with pytest.raises(ValueError, match="available: pointnet_lion, nerfmae"):
        train_zoo("nope", tmp_path / "x")
