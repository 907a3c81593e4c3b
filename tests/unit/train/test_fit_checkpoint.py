"""The training loop on a known linear ground truth, the gram loss's effect, checkpoints, resume."""

import json
from dataclasses import replace

import pytest
import torch

from squeeze3d.config import train_config_for_pair
from squeeze3d.mapping.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from squeeze3d.train.loop import TensorPairs, fit


def _linear_data(n=600, seed=0):
    g = torch.Generator().manual_seed(seed)
    lat = torch.randn(n, 8, generator=g)  # z_E spans an 8-d subspace of 32 dims
    ze = lat @ torch.randn(8, 32, generator=g) + 0.01 * torch.randn(n, 32, generator=g)
    zg = lat @ torch.randn(8, 24, generator=g)
    return ze, zg


def _fit(lam, epochs=20, **kw):
    ze, zg = _linear_data()
    cfg = train_config_for_pair("debug", sets=[f"optim.epochs={epochs}", f"loss.lambda_gram={lam}",
                                               "mapping.d_code=16", "optim.batch_size=32"])
    tr = TensorPairs(ze[:500], zg[:500], 32)
    va = TensorPairs(ze[500:], zg[500:], 100, shuffle=False, drop_last=False)
    return fit(cfg, (32,), (24,), tr, va, **kw), (ze, zg, cfg, tr, va)


@pytest.fixture(scope="module")
def runs():
    return {lam: _fit(lam)[0] for lam in (0.0, 1e-2)}


def test_fit_reduces_validation_mse_10x(runs):
    h = runs[0.0].history
    assert h[0]["val_mse"] / h[-1]["val_mse"] >= 10, [r["val_mse"] for r in h]


def test_gram_loss_raises_effective_dimension(runs):
    # the paper's claim: decorrelating codes spreads information over more code dimensions
    assert runs[1e-2].final["d_eff"] > runs[0.0].final["d_eff"] * 1.2, (runs[1e-2].final, runs[0.0].final)
    assert runs[1e-2].final["kappa"] < runs[0.0].final["kappa"]


def test_checkpoint_round_trip_bit_exact(tmp_path, runs):
    r = runs[0.0]
    path = save_checkpoint(tmp_path / "ck", r.f_e, r.f_d, r.config, meta={"note": "x"})
    ck = load_checkpoint(path)
    for a, b in [(r.f_e, ck.f_e), (r.f_d, ck.f_d)]:
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    x = torch.randn(5, 32)
    assert torch.equal(r.f_d(r.f_e(x)), ck.f_d(ck.f_e(x)))
    assert ck.meta == {"note": "x"} and ck.config == r.config
    only_d = load_checkpoint(path, part="f_d")
    assert only_d.f_e is None and torch.equal(only_d.f_d(r.f_e(x)), r.f_d(r.f_e(x)))
    assert not list(tmp_path.glob(".ck.*")), "temporary directory left behind"


def test_checkpoint_errors(tmp_path, runs):
    r = runs[0.0]
    path = save_checkpoint(tmp_path / "ck", r.f_e, r.f_d, r.config)
    with pytest.raises(CheckpointError, match="no config.json"):
        load_checkpoint(tmp_path)
    doc = json.loads((path / "config.json").read_text())
    doc["version"] = 99
    (path / "config.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="version 99 is not supported"):
        load_checkpoint(path)
    path = save_checkpoint(tmp_path / "ck2", r.f_e, r.f_d, r.config)
    other = save_checkpoint(tmp_path / "ck3", runs[1e-2].f_e, runs[1e-2].f_d, r.config)
    (path / "f_d.safetensors").write_bytes((other / "f_d.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="do not match the hash"):
        load_checkpoint(path)


def test_resume_continues_where_it_stopped(tmp_path):
    saved = {}

    def on_epoch_end(epoch, metrics, save):
        if epoch == 2:
            saved["path"] = save(tmp_path / "epoch2")
            raise KeyboardInterrupt  # simulate a crash after the epoch-2 checkpoint

    with pytest.raises(KeyboardInterrupt):
        _fit(0.0, epochs=5, on_epoch_end=on_epoch_end)
    full, (ze, zg, cfg, tr, va) = _fit(0.0, epochs=5)
    resumed = fit(cfg, (32,), (24,), tr, va, resume=saved["path"])
    assert [h["epoch"] for h in resumed.history] == [0, 1, 2, 3, 4]
    # same data order, weights, optimiser state and LR schedule → the same final model
    assert resumed.final["val_mse"] == pytest.approx(full.final["val_mse"], rel=1e-4)


def test_init_from_starts_from_the_checkpoint_and_refuses_another_shape(tmp_path, runs):
    r = runs[0.0]
    path = save_checkpoint(tmp_path / "ck", r.f_e, r.f_d, r.config)
    ze, zg = _linear_data()
    tr = TensorPairs(ze[:500], zg[:500], 32)
    va = TensorPairs(ze[500:], zg[500:], 100, shuffle=False, drop_last=False)
    # no epochs: the fit returns the checkpoint's weights and normalisation exactly
    cfg = train_config_for_pair("debug", sets=["mapping.d_code=16", f"init_from={path}"])
    same = fit(replace(cfg, optim=replace(cfg.optim, epochs=0)), (32,), (24,), tr, va)
    for a, b in [(r.f_e, same.f_e), (r.f_d, same.f_d)]:
        sa, sb = a.state_dict(), b.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    # one epoch at a small rate starts where the checkpoint ended, far below a fresh start's error
    tuned = fit(train_config_for_pair("debug", sets=["optim.epochs=1", "mapping.d_code=16", "optim.lr_start=1e-5",
                                                     "optim.lr_end=1e-6", f"init_from={path}"]), (32,), (24,), tr, va)
    fresh = fit(train_config_for_pair("debug", sets=["optim.epochs=1", "mapping.d_code=16"]), (32,), (24,), tr, va)
    assert tuned.final["val_mse"] < 0.5 * fresh.final["val_mse"], (tuned.final["val_mse"], fresh.final["val_mse"])
    assert tuned.final["val_mse"] < 1.5 * r.final["val_mse"]
    with pytest.raises(CheckpointError, match="different architecture"):
        fit(train_config_for_pair("debug", sets=["optim.epochs=1", "mapping.d_code=8", f"init_from={path}"]),
            (32,), (24,), tr, va)
