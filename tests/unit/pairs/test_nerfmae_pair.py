"""The ``nerfmae`` pair and its shipped mini zoo: contract, weight identity, reconstruction quality."""

import json

import pytest
import torch

from squeeze3d.config import train_config_for_pair
from squeeze3d.mapping import build_mapping, code_shape
from squeeze3d.pairs import get_pair
from squeeze3d.zoo.base import state_dict_hash
from squeeze3d.zoo.nerfmae import model as nm


@pytest.fixture(scope="module")
def pair():
    return get_pair("nerfmae")


def test_pair_spec_uses_the_unet_mapping_with_a_24_channel_code(pair):
    assert pair.asset_kind == "radiance_field" and pair.condition_kind == "noise"
    assert pair.z_e_shape == pair.z_g_shape == (32, 8, 8, 8) and pair.num_points is None
    assert pair.grid_resolution == 32 and pair.objective_metric == "test_psnr" and pair.objective_mode == "max"
    cfg = train_config_for_pair("nerfmae")
    assert cfg.mapping.arch == "unet3d" and cfg.mapping.code_channels == 24
    assert code_shape(cfg.mapping, pair.z_e_shape) == (24, 2, 2, 2)
    f_e, f_d = build_mapping(cfg.mapping, pair.z_e_shape, pair.z_g_shape)
    z = torch.randn(2, *pair.z_e_shape)
    code = f_e(z)
    assert code.shape == (2, 24, 2, 2, 2) and f_d(code).shape == (2, *pair.z_g_shape)


def test_shipped_weights_identity():
    info = json.loads((nm.WEIGHTS_DIR / "nerfmae.json").read_text())
    model, _ = nm.load_weights()
    assert state_dict_hash(model) == info["state_dict_hash"]
    enc = get_pair("nerfmae").build_encoder("cpu")
    assert enc.weights_hash() == info["state_dict_hash"]
    size = sum(p.stat().st_size for p in nm.WEIGHTS_DIR.rglob("*") if p.is_file())  # zoo + shipped mapping
    assert size < 8 * 2**20  # shipped in the wheel: keep it small


def test_shipped_weights_reconstruct_heldout_objects(pair):
    """Held-out corpus test objects through E then G: floors the shipped weights clear with margin
    (measured: voxel PSNR 33.5 / 37.2 / 26.4 dB, render PSNR 28.1 / 26.6 / 18.9 dB, MS-SSIM mean 0.91;
    another object's features: render PSNR ~13 dB), and clearly better than decoding another object's
    features."""
    grids = pair.heldout_assets(3)
    assert grids.shape == (3, 4, 32, 32, 32)
    z = pair.build_encoder("cpu").encode(grids)
    gen = pair.build_generator("cpu")
    rec = gen.decode(z)
    wrong = gen.decode(z.roll(1, 0))
    vox, vox_wrong = nm.voxel_metrics(grids, rec), nm.voxel_metrics(grids, wrong)
    assert vox["voxel_psnr"].min() > 24.0, vox
    assert (vox["voxel_psnr"] > vox_wrong["voxel_psnr"] + 3).all(), (vox, vox_wrong)
    m, m_wrong = pair.asset_metrics(grids, rec), pair.asset_metrics(grids, wrong)
    assert m["psnr"].min() > 17.0 and m["ms_ssim"].mean() > 0.8, m
    assert m["psnr"].mean() > m_wrong["psnr"].mean() + 3, (m, m_wrong)


def test_pair_loss_overrides_reach_the_training_config():
    from squeeze3d.config import train_config_for_pair

    cfg = train_config_for_pair("nerfmae")
    assert cfg.loss.lambda_gram == 1e-7  # the pair's override, not the 1e-3 default
    assert train_config_for_pair("nerfmae", sets=["loss.lambda_gram=1e-5"]).loss.lambda_gram == 1e-5


def test_registry_d_code_tag_counts_the_unet_code_numbers():
    from squeeze3d.config import train_config_for_pair
    from squeeze3d.train.run import registry_tags

    tags = registry_tags(train_config_for_pair("nerfmae"), {}, {}, None)
    assert tags["d_code"] == "192" and tags["code_shape"] == "24x2x2x2"


def test_output_loss_decodes_grids_and_compares_them_with_the_pairs_distance(pair):
    """``loss.lambda_output`` on nerfmae: G's differentiable decode of ẑ_G against that of z_G with
    the pair's occupancy-weighted grid MSE (not Chamfer); ``output_batch`` decodes a subset of rows
    while training and every row without autograd (validation)."""
    from squeeze3d.train.objective import Objective

    cfg = train_config_for_pair("nerfmae", sets=["loss.lambda_output=100", "loss.output_batch=2", "mapping.dropout=0"])
    obj = Objective(cfg, "cpu", seed=0)
    assert obj.distance is pair.output_distance
    f_e, f_d = build_mapping(cfg.mapping, pair.z_e_shape, pair.z_g_shape)
    z_g = pair.build_encoder("cpu").encode(pair.heldout_assets(3))
    code = f_e(z_g)
    exact = obj(code, f_d.norm(z_g), z_g, f_d)
    assert float(exact["output"]) == pytest.approx(0.0, abs=1e-10)
    out = obj(code, f_d.forward_std(code), z_g, f_d)
    assert out["output"] > 0
    out["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in f_d.parameters())
    with torch.no_grad():  # every row: equals the pair's distance on the full decodes
        pred = f_d.forward_std(code)
        full = obj(code, pred, z_g, f_d)["output"]
        dec = pair.loss_decoder("cpu")
        want = pair.output_distance(dec(f_d.norm.inverse(pred)), dec(z_g)).mean()
    # two paths (the objective's batched decode vs the pair's distance on full decodes): BLAS picks
    # kernels by batch size and CPU, so float32 round-off differs; 1e-4 relative is far below any real error
    torch.testing.assert_close(full, want, rtol=1e-4, atol=1e-8)
