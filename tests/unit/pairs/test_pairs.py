"""Pair registry and the debug pair's contract."""

import pytest
import torch

from squeeze3d.pairs import UnknownPairError, get_pair, names


def test_unknown_pair_lists_known_ones():
    with pytest.raises(UnknownPairError) as e:
        get_pair("pointnet_lino")
    assert "unknown pair 'pointnet_lino'" in str(e.value)
    for n in names():
        assert n in str(e.value)


def test_debug_pair_contract():
    p = get_pair("debug")
    enc, gen = p.build_encoder("cpu"), p.build_generator("cpu")
    z_g, assets = gen.sample([1, 2, 3])
    assert z_g.shape == (3, *p.z_g_shape)
    assert assets.shape == (3, p.num_points, 3)
    z_e = enc.encode(assets)
    assert z_e.shape == (3, *p.z_e_shape)
    assert torch.allclose(gen.decode(z_g), assets)
    assert not enc.module.training and not any(q.requires_grad for q in enc.module.parameters())


def test_debug_pair_sample_depends_only_on_own_seed():
    gen = get_pair("debug").build_generator("cpu")
    z_a, x_a = gen.sample([7, 8, 9])
    z_b, x_b = gen.sample([9])
    assert torch.equal(z_a[2], z_b[0]) and torch.allclose(x_a[2], x_b[0], atol=1e-6)
    assert not torch.equal(z_a[0], z_a[1])


def test_debug_weights_are_fixed():
    """Every build of the debug models has the same weights (a fixed seed), and the weights hash that
    manifests and the registry record is of those weights: one changed number changes it."""
    from squeeze3d.zoo.base import state_dict_hash

    p = get_pair("debug")
    for build in (p.build_encoder, p.build_generator):
        a, b = build("cpu"), build("cpu")
        sa, sb = a.module.state_dict(), b.module.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
        assert a.weights_hash() == b.weights_hash() == state_dict_hash(a.module)
        with torch.no_grad():
            next(b.module.parameters()).view(-1)[0] += 1.0
        assert state_dict_hash(b.module) != a.weights_hash()


def test_weights_hash_handles_zero_dim_buffers():
    from torch import nn

    from squeeze3d.zoo.base import state_dict_hash

    bn = nn.BatchNorm1d(4)  # holds the 0-dim buffer num_batches_tracked
    h = state_dict_hash(bn)
    bn.num_batches_tracked += 1
    assert state_dict_hash(bn) != h
