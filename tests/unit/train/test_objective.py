"""The set-aware training objective: Chamfer helpers, the pair declarations it needs, and a fit
through G's frozen decoder (output loss) that actually learns."""

import pytest
import torch

from squeeze3d.config import ConfigError, train_config_for_pair
from squeeze3d.mapping.setloss import chamfer_sq, latent_point_xyz, quantisation_noise
from squeeze3d.metrics.pointcloud import chamfer
from squeeze3d.train.objective import Objective


def test_chamfer_matches_the_metric_and_its_gradient_flows():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 50, 3, generator=g), torch.randn(2, 70, 3, generator=g)
    assert torch.allclose(chamfer_sq(a, b), chamfer(a, b), atol=1e-5)
    assert torch.allclose(chamfer_sq(a, a[:, torch.randperm(50)]), torch.zeros(2), atol=1e-6)  # a set loss
    a.requires_grad_(True)
    chamfer_sq(a, b).sum().backward()
    assert a.grad is not None and a.grad.abs().sum() > 0


def test_latent_layout_and_quantisation_noise():
    z = torch.arange(2 * (5 + 3 * 4), dtype=torch.float32).reshape(2, -1)
    xyz = latent_point_xyz(z, (5, 3, 4))
    assert xyz.shape == (2, 3, 3) and xyz[0, 1, 0] == 9.0
    c = torch.zeros(1000)
    n = quantisation_noise(c, 4)
    assert n.abs().max() <= (2 / 15) / 2 + 1e-6 and n.std() > 0


def test_set_and_output_terms_need_the_pair_declarations():
    cfg = train_config_for_pair("debug", sets=["loss.lambda_set=1"])
    with pytest.raises(ConfigError, match="declares no latent point set"):
        Objective(cfg, "cpu")
    cfg = train_config_for_pair("debug", sets=["loss.lambda_output=1"])
    with pytest.raises(ConfigError, match="no differentiable decoder"):
        Objective(cfg, "cpu")
    with pytest.raises(ConfigError, match="code_bound=tanh"):
        train_config_for_pair("debug", sets=["loss.code_noise_bits=8"])
    with pytest.raises(ConfigError, match="at least one of"):
        train_config_for_pair("debug", sets=["loss.lambda_gen=0"])


@pytest.mark.slow
def test_output_loss_through_the_frozen_decoder_learns():
    """A few steps on 8 pointnet_lion pairs: the output term falls and stays finite (set term too)."""
    from squeeze3d.pairs import get_pair
    from squeeze3d.train.loop import TensorPairs, fit

    pair = get_pair("pointnet_lion")
    gen, enc = pair.build_generator("cpu"), pair.build_encoder("cpu")
    z, x = gen.sample(list(range(3, 11)))
    ze = enc.encode(x)
    cfg = train_config_for_pair("pointnet_lion", sets=[
        "mapping.d_code=16", "mapping.hidden=64", "mapping.depth=1", "mapping.dropout=0", "mapping.code_bound=tanh",
        "loss.lambda_gen=0", "loss.lambda_output=1", "loss.lambda_set=0.1", "loss.output_points=256",
        "loss.code_noise_bits=6", "optim.optimizer=adamw", "optim.lr_start=3e-3", "optim.epochs=12",
        "optim.batch_size=4"])
    r = fit(cfg, (1024,), tuple(pair.z_g_shape), TensorPairs(ze, z, 4),
            val=TensorPairs(ze, z, 8, shuffle=False, drop_last=False))
    first, last = r.history[0], r.history[-1]
    assert last["val_output"] < first["val_output"] and torch.isfinite(torch.tensor(last["val_set"]))
