"""The registered ``pointnet_lion`` pair end to end on the shipped mini zoo."""

import torch

from squeeze3d.pairs import get_pair


def test_pair_spec_fields():
    pair = get_pair("pointnet_lion")
    assert pair.asset_kind == "point_cloud" and pair.condition_kind == "noise"
    assert pair.z_e_shape == (1024,) and pair.z_g_shape == (128 + 2048 * 4,) and pair.num_points == 2048
    assert pair.mapping["arch"] == "deep_residual_mlp" and pair.mapping["d_code"] == 1024
    assert pair.mapping["dropout"] == 0.3
    assert pair.optim["optimizer"] == "muon" and (pair.optim["lr_start"], pair.optim["lr_end"]) == (1e-3, 1e-7)


def test_sample_encode_decode_with_shipped_weights():
    pair = get_pair("pointnet_lion")
    enc, gen = pair.build_encoder("cpu"), pair.build_generator("cpu")
    gen.ddim_steps = 6  # keep the test fast; the default is 32
    z_g, assets = gen.sample([7, 8])
    assert z_g.shape == (2, *pair.z_g_shape) and assets.shape == (2, pair.num_points, 3)
    assert torch.isfinite(assets).all() and assets.norm(dim=-1).max() <= 1 + 1e-5
    z_e = enc.encode(assets)
    assert z_e.shape == (2, *pair.z_e_shape) and torch.isfinite(z_e).all()
    torch.testing.assert_close(gen.decode(z_g), assets, rtol=1e-5, atol=1e-5)  # decode = the sampled asset
    z_again, _ = gen.sample([8])
    assert torch.equal(z_again[0], z_g[1])  # a sample depends only on its own seed
    assert not torch.allclose(z_g[0], z_g[1])
    assert len(enc.weights_hash()) == 64 and enc.weights_hash() == pair.build_encoder("cpu").weights_hash()
    assert gen.weights_hash() != enc.weights_hash()
