"""The rate–distortion curve of training for rate: one fit per λ (``loss.lambda_rate``), the same
pairs, the same seed; each model's held-out codes coded with a code prior fitted on its own
training codes (as ``jobs/fit_code_prior.py`` does for a shipped model), and decoded through F_D and
G to measure what the receiver gets. ``jobs/bench_rate.py`` prints the table."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import torch

from squeeze3d.codec.code_prior import CodePrior
from squeeze3d.codec.quantise import fixed_levels
from squeeze3d.config import TrainConfig
from squeeze3d.errors import UserError
from squeeze3d.mapping.setloss import round_to_bits
from squeeze3d.metrics.pointcloud import d1_psnr
from squeeze3d.pairs import get_pair
from squeeze3d.synth.in_process import synthesise
from squeeze3d.train.loop import TensorPairs, fit


def rate_curve(cfg: TrainConfig, lambdas: list[float], n_train: int, n_test: int, bits: tuple[int, ...] = (8, 4),
               log=print) -> list[dict]:
    """``cfg``: a bounded-code training config of a point-cloud pair (``code_noise_bits`` set). For
    each λ: fit on ``n_train`` synthetic pairs (noise seeds 0..), then on ``n_test`` held-out pairs
    (the next seeds) report the latent MSE, the training histogram's bits, the prior-coded bytes of
    the whole code at each of ``bits``, and the D1-PSNR of G's decode of the stored code against
    G's own sample (the asset the code was made from)."""
    if cfg.mapping.code_bound != "tanh" or not cfg.loss.code_noise_bits:
        raise UserError("the rate curve needs bounded codes trained with quantisation noise: "
                        "--set mapping.code_bound=tanh --set loss.code_noise_bits=8")
    pair = get_pair(cfg.pair)
    t0 = time.perf_counter()
    z_e, z_g, x = synthesise(cfg.pair, list(range(n_train + n_test)), device=cfg.device)
    log(f"{n_train + n_test} {pair.name} pairs in {time.perf_counter() - t0:.0f} s")
    gen = pair.build_generator(cfg.device)
    train = TensorPairs(z_e[:n_train], z_g[:n_train], cfg.optim.batch_size, seed=cfg.seed)
    val = TensorPairs(z_e[n_train:], z_g[n_train:], 256, shuffle=False, drop_last=False)
    rows = []
    for lam in lambdas:
        c = replace(cfg, loss=replace(cfg.loss, lambda_rate=float(lam)))
        t0 = time.perf_counter()
        res = fit(c, pair.z_e_shape, pair.z_g_shape, train, val)
        with torch.no_grad():
            codes = res.f_e(z_e).flatten(1).numpy()
        row = {"lambda_rate": float(lam), "val_mse": res.final["val_mse"], "val_rate_bits": res.final.get("val_rate"),
               "d_eff": res.final["d_eff"], "fit_s": time.perf_counter() - t0}
        for b in bits:
            prior = CodePrior.fit(codes[:n_train], [b], "rate-bench")
            held = codes[n_train:]
            row[f"bytes_{b}bit"] = float(np.mean([len(prior.encode(fixed_levels(q, b), b)) for q in held]))
            row[f"raw_bytes_{b}bit"] = -(-held.shape[1] * b // 8)
            with torch.no_grad():
                stored = round_to_bits(torch.as_tensor(held), b)
                recon = gen.decode(res.f_d(stored.reshape(len(held), *res.f_e.out_shape)))
            row[f"d1_{b}bit"] = float(d1_psnr(x[n_train:], recon).mean())
        log("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
        rows.append(row)
    return rows
