"""The rate term of training (``mapping/rate.py``): level costs, their gradient, the config check, and a
fit in which a rate weight makes the stored code cheaper under the code prior the codec fits."""

import numpy as np
import pytest
import torch

from squeeze3d.codec.code_prior import CodePrior
from squeeze3d.codec.quantise import fixed_levels
from squeeze3d.config import ConfigError, train_config_for_pair
from squeeze3d.mapping.rate import LevelRate
from squeeze3d.train.loop import TensorPairs, fit


def test_a_fresh_histogram_prices_every_level_at_k_bits():
    r = LevelRate(5, 3)
    code = torch.rand(4, 5) * 2 - 1
    assert torch.allclose(r(code, update=False), torch.full((4,), 15.0))


def test_frequent_levels_get_cheap_and_pull_codes_toward_them():
    r = LevelRate(2, 2)  # levels -1, -1/3, 1/3, 1
    for _ in range(50):
        r.update(torch.full((16, 2), 1.0))
    costs = r.costs()
    assert costs[0, 3] < 0.2 and costs[0, 0] > 5  # the level seen every step is nearly free
    assert r(torch.tensor([[1.0, 1.0]]), update=False) == pytest.approx(2 * float(costs[0, 3]), rel=1e-5)
    code = torch.tensor([[0.5, 0.5]], requires_grad=True)  # between levels 2 and 3
    r(code, update=False).sum().backward()
    assert (code.grad < 0).all()  # descending the rate moves the code up, toward the frequent level


def test_the_rate_weight_needs_quantised_bounded_codes():
    with pytest.raises(ConfigError, match="lambda_rate"):
        train_config_for_pair("debug", sets=["loss.lambda_rate=0.01"])
    with pytest.raises(ConfigError, match="lambda_rate"):
        train_config_for_pair("debug", sets=["mapping.code_bound=tanh", "loss.code_noise_bits=4",
                                             "loss.lambda_rate=-1"])


def _prior_bytes(lam: float) -> tuple[float, float]:
    """Mean coded bytes of held-out codes under a prior fitted on training codes, and the val MSE."""
    g = torch.Generator().manual_seed(0)
    z_e = torch.randn(512, 12, generator=g)
    z_g = torch.tanh(z_e @ torch.randn(12, 20, generator=g))
    cfg = train_config_for_pair("debug", sets=[
        "mapping.arch=residual_mlp", "mapping.d_code=8", "mapping.hidden=32", "mapping.code_bound=tanh",
        "loss.code_noise_bits=4", f"loss.lambda_rate={lam}", "optim.optimizer=adamw", "optim.epochs=12",
        "optim.batch_size=32", "optim.lr_start=3e-3"])
    res = fit(cfg, (12,), (20,), TensorPairs(z_e[:384], z_g[:384], 32),
              val=TensorPairs(z_e[384:], z_g[384:], 128, shuffle=False, drop_last=False))
    assert ("val_rate" in res.final) == (lam > 0) and ("train_rate" in res.final)
    with torch.no_grad():
        codes = res.f_e(z_e).numpy()
    prior = CodePrior.fit(codes[:384], [4], "w")
    held = codes[384:]
    nbytes = np.mean([len(prior.encode(fixed_levels(c, 4), 4)) for c in held])
    return float(nbytes), res.final["val_mse"]


def test_a_rate_weight_buys_fewer_code_bytes_for_some_distortion():
    b0, mse0 = _prior_bytes(0.0)
    b1, mse1 = _prior_bytes(0.05)
    assert b1 < 0.85 * b0  # the same code width, coded in clearly fewer bytes
    assert mse1 >= mse0 * 0.9  # ... paid for in distortion, not free
