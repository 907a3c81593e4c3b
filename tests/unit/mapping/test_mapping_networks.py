"""Mapping architectures: shapes, gradient flow, dropout off in eval, separate halves."""

import pytest
import torch

from squeeze3d.config import MappingConfig, resolve
from squeeze3d.mapping import Mapping, build_mapping, code_shape

MLP_CASES = [
    ("residual_mlp", (32,), (20,)),
    ("deep_residual_mlp", (32,), (20,)),
    ("official_mlp", (8, 4), (5, 4)),
]


def _cfg(arch: str, **kw) -> MappingConfig:
    return resolve([{"mapping": {"arch": arch, "hidden": 32, "depth": 5, "d_code": 6, "dropout": 0.5,
                                 "unet_channels": [4, 8], "code_channels": 3, **kw}}]).mapping


@pytest.mark.parametrize("arch,ze,zg", MLP_CASES)
def test_mlp_shapes_and_separate_halves(arch, ze, zg):
    f_e, f_d = build_mapping(_cfg(arch), ze, zg)
    x = torch.randn(7, *ze)
    code = f_e(x)
    assert code.shape == (7, 6)
    assert f_d(code).shape == (7, *zg)
    # the halves share no parameters: the sender ships F_E alone, the receiver F_D alone
    assert not {id(p) for p in f_e.parameters()} & {id(p) for p in f_d.parameters()}


def test_unet_shapes_code_grid():
    cfg = _cfg("unet3d")
    ze, zg = (5, 8, 8, 8), (6, 8, 8, 8)
    f_e, f_d = build_mapping(cfg, ze, zg)
    assert code_shape(cfg, ze) == (3, 2, 2, 2)  # two stride-2 steps: 8³ → 4³ → 2³, 3 code channels
    code = f_e(torch.randn(2, *ze))
    assert code.shape == (2, 3, 2, 2, 2)
    assert f_d(code).shape == (2, *zg)


def test_unet_rejects_indivisible_grid():
    with pytest.raises(ValueError, match="divisible by 4"):
        build_mapping(_cfg("unet3d"), (5, 6, 6, 6), (5, 6, 6, 6))


@pytest.mark.parametrize("arch,ze,zg", MLP_CASES + [("unet3d", (5, 8, 8, 8), (6, 8, 8, 8))])
def test_gradients_reach_every_parameter(arch, ze, zg):
    torch.manual_seed(0)
    model = Mapping(*build_mapping(_cfg(arch, dropout=0.0), ze, zg))
    code, pred = model(torch.randn(4, *ze))
    (pred.pow(2).mean() + code.pow(2).mean()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reaches {name}"


@pytest.mark.parametrize("arch,ze,zg", MLP_CASES + [("unet3d", (5, 8, 8, 8), (6, 8, 8, 8))])
def test_dropout_active_in_train_off_in_eval(arch, ze, zg):
    torch.manual_seed(0)
    model = Mapping(*build_mapping(_cfg(arch, dropout=0.5), ze, zg))
    x = torch.randn(4, *ze)
    model.train()
    a, b = model(x)[1], model(x)[1]
    assert not torch.allclose(a, b), "dropout should make two training passes differ"
    model.eval()
    a, b = model(x)[1], model(x)[1]
    assert torch.equal(a, b)


def test_deep_residual_global_residual_matters():
    """With every hidden layer zeroed, the global residual still carries the input through."""
    f_e, _ = build_mapping(_cfg("deep_residual_mlp", dropout=0.0), (32,), (20,))
    body = f_e.body
    with torch.no_grad():
        for layer in body.hidden:
            layer[0].weight.zero_()
            layer[0].bias.zero_()
    x = torch.randn(3, 32)
    g = body.ln_in(body.fc_in(x))
    # depth 5: h = g after layer 0 (0 + g), layer 3 adds block_in (= g) → 2g? No: layers 1..3 zero h,
    # then +block_in at layer index 3 gives g; layer 4 zeroes it again (GELU(0)=0).
    expected = body.fc_out(torch.zeros_like(g))
    assert torch.allclose(body(x), expected, atol=1e-6)
    f_e4, _ = build_mapping(_cfg("deep_residual_mlp", dropout=0.0, depth=4), (32,), (20,))
    b4 = f_e4.body
    with torch.no_grad():
        for layer in b4.hidden:
            layer[0].weight.zero_()
            layer[0].bias.zero_()
    g4 = b4.ln_in(b4.fc_in(x))
    assert torch.allclose(b4(x), b4.fc_out(g4), atol=1e-6)  # the local residual re-adds g at layer 4
