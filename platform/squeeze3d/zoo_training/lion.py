"""Training recipe of the LION-style mini generator (``squeeze3d.zoo.lion.model``): the VAE, then the two
latent diffusion priors on its posterior latents. Used by ``squeeze3d.zoo_training.recipes`` (stages ``vae``
and ``priors`` of ``pointnet_lion``); the model, its weights format and ``LionGenerator`` live in
``lion.py``.

Both stages write fp16 safetensors + JSON (``lion.save_state``) into the weights folder; the VAE's JSON
records the hash of the weights as shipped (after the fp16 round trip) and the priors' JSON the VAE
hash they were trained on, which ``lion.load_lion`` checks.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from squeeze3d.zoo.base import state_dict_hash
from squeeze3d.zoo.lion.model import PRIORS_NAME, VAE_NAME, LionConfig, LionVAE, load_lion, save_state


@dataclass
class VAETrainConfig:
    steps: int = 300
    batch_size: int = 8
    train_points: int = 512
    """Random points per object per step (per-point networks; the global encoder pools whatever it gets)."""
    lr: float = 3e-3
    lr_end: float = 3e-5
    kl_global: float = 1e-4
    """Weight of the global KL (sum over dims) against the reconstruction (sum over xyz, mean over points x N)."""
    kl_points: float = 5e-4
    """Weight of the latent-point KL (sum over the 3+F dims, per point) against the per-point squared error."""
    kl_warmup: float = 0.2
    """Fraction of steps over which both KL weights ramp up from 0."""
    dec_noise: float = 0.08
    """Extra noise on the latent xyz the decoder sees, scale ~ U(0, dec_noise) per object. To pull
    noisy latent points back onto *this* surface the decoder needs the shape, so the global latent
    becomes informative (otherwise the latent points alone suffice and z_glob is ignored, which a
    point prior conditioned on z_glob cannot afford); it also makes decoding robust to the residual
    noise of sampled latent points."""


@dataclass
class PriorTrainConfig:
    global_steps: int = 1500
    global_batch: int = 128
    point_steps: int = 800
    point_batch: int = 32
    point_subset: int = 128
    """Latent points per object per step (points are denoised independently given z_glob)."""
    lr: float = 1e-3
    lr_end: float = 1e-5


def _cosine(step: int, total: int, lr: float, lr_end: float) -> float:
    return lr_end + 0.5 * (lr - lr_end) * (1 + math.cos(math.pi * step / max(total, 1)))


def _kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar)


def train_vae(data: dict, cfg: LionConfig, tcfg: VAETrainConfig, seed: int, out: Path,
              log: Callable[[str], None] = print) -> dict:
    t0 = time.time()
    torch.manual_seed(seed + 10)
    rng = np.random.default_rng(seed + 11)
    vae = LionVAE(cfg)
    opt = torch.optim.AdamW(vae.parameters(), lr=tcfg.lr, weight_decay=0.0)
    train = np.flatnonzero(data["splits"] == 0)
    pts = data["points"]
    n = pts.shape[2]
    for step in range(tcfg.steps):
        for g in opt.param_groups:
            g["lr"] = _cosine(step, tcfg.steps, tcfg.lr, tcfg.lr_end)
        warm = min(1.0, step / max(1.0, tcfg.kl_warmup * tcfg.steps))
        idx = rng.choice(train, tcfg.batch_size, replace=False)
        stream = rng.integers(0, pts.shape[1], len(idx))
        sub = np.stack([rng.choice(n, cfg.encoder_points, replace=False) for _ in idx])
        x_glob = torch.from_numpy(pts[idx[:, None], stream[:, None], sub])
        x = x_glob[:, :tcfg.train_points]  # per-point parts: a random subset of the same points
        vae.train()
        g_mu, g_lv = vae.encode_global(x_glob)
        p_mu, p_lv = vae.encode_points(x, g_mu)
        z = g_mu + (0.5 * g_lv).exp() * torch.randn_like(g_mu)
        h = p_mu + (0.5 * p_lv).exp() * torch.randn_like(p_mu)
        s = tcfg.dec_noise * torch.rand(h.shape[0], 1, 1)
        h = torch.cat([h[..., :3] + s * torch.randn_like(h[..., :3]), h[..., 3:]], dim=-1)
        rec = vae.decode(z, h)
        err = (rec - x).pow(2).sum(-1)  # per point
        loss_rec = err.mean()
        # per object: N * rec + kl_global * KL_glob + kl_points * N * KL_point, divided by N
        kl_g = _kl(g_mu, g_lv).sum(-1).mean() / cfg.num_points
        kl_p = _kl(p_mu, p_lv).sum(-1).mean()
        loss = loss_rec + warm * (tcfg.kl_global * kl_g + tcfg.kl_points * kl_p)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        if step % 25 == 0 or step == tcfg.steps - 1:
            sig = (0.5 * p_lv[..., :3]).exp().mean().item()
            log(f"  vae step {step}/{tcfg.steps} rec {loss_rec.item():.2e} (rms {loss_rec.sqrt().item():.4f}) "
                f"kl_g {kl_g.item() * cfg.num_points:.1f} kl_p {kl_p.item():.2f} sigma_xyz {sig:.4f} "
                f"({time.time() - t0:.0f}s)")
    vae.eval()
    wall = time.time() - t0
    config = {"architecture": asdict(cfg), "hash": state_dict_hash(vae),
              "provenance": {"seed": seed, "wall_s": round(wall, 1), "torch": torch.__version__,
                             "train": asdict(tcfg), "train_objects": int(len(train)),
                             "trained_on": "procedural corpus (squeeze3d.corpora.points)"}}
    save_state(vae.state_dict(), out / VAE_NAME, config, fp16=True)
    # the hash recorded must be that of the weights as shipped (fp16 round trip)
    model, _ = load_lion(out, with_priors=False)
    config["hash"] = state_dict_hash(model.vae)
    (out / VAE_NAME).with_suffix(".json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return {"wall_s": wall}


@torch.no_grad()
def posterior_latents(vae: LionVAE, points: np.ndarray, batch: int = 32) -> tuple[torch.Tensor, ...]:
    """Posterior (mu, logvar) of the global latent and latent points for ``points [M, N, 3]``."""
    outs = [vae.encode(torch.from_numpy(points[s:s + batch])) for s in range(0, len(points), batch)]
    return tuple(torch.cat([o[i] for o in outs]) for i in range(4))


def train_priors(data: dict, tcfg: PriorTrainConfig, seed: int, out: Path,
                 log: Callable[[str], None] = print) -> dict:
    t0 = time.time()
    model, configs = load_lion(out, with_priors=False)
    cfg = model.cfg
    train = np.flatnonzero(data["splits"] == 0)
    g_mu, g_lv, p_mu, p_lv = posterior_latents(model.vae, data["points"][train, 0])
    log(f"  posterior latents of {len(train)} objects ({time.time() - t0:.0f}s)")
    model.g_mean.copy_(g_mu.mean(0))
    model.g_std.copy_(g_mu.std(0).clamp_min(1e-3))
    model.p_mean.copy_(p_mu.mean((0, 1)))
    model.p_std.copy_(p_mu.std((0, 1)).clamp_min(1e-3))
    g_sd, p_sd = (0.5 * g_lv).exp(), (0.5 * p_lv).exp()
    diff = model.diffusion
    torch.manual_seed(seed + 20)
    rng = np.random.default_rng(seed + 21)

    prior = model.global_prior.train()
    opt = torch.optim.AdamW(prior.parameters(), lr=tcfg.lr, weight_decay=0.0)
    for step in range(tcfg.global_steps):
        for g in opt.param_groups:
            g["lr"] = _cosine(step, tcfg.global_steps, tcfg.lr, tcfg.lr_end)
        idx = torch.from_numpy(rng.choice(len(train), tcfg.global_batch, replace=True))
        z = g_mu[idx] + g_sd[idx] * torch.randn_like(g_mu[idx])  # train on posterior samples, as LION
        x0 = (z - model.g_mean) / model.g_std
        t = torch.randint(0, diff.steps, (len(idx),))
        eps = torch.randn_like(x0)
        loss = F.mse_loss(prior(diff.q_sample(x0, t, eps), t), eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 250 == 0 or step == tcfg.global_steps - 1:
            log(f"  global prior step {step}/{tcfg.global_steps} loss {loss.item():.4f} ({time.time() - t0:.0f}s)")
    prior.eval()

    pp = model.point_prior.train()
    opt = torch.optim.AdamW(pp.parameters(), lr=tcfg.lr, weight_decay=0.0)
    n = p_mu.shape[1]
    for step in range(tcfg.point_steps):
        for g in opt.param_groups:
            g["lr"] = _cosine(step, tcfg.point_steps, tcfg.lr, tcfg.lr_end)
        idx = torch.from_numpy(rng.choice(len(train), tcfg.point_batch, replace=True))
        sub = torch.from_numpy(np.stack([rng.choice(n, tcfg.point_subset, replace=False) for _ in range(len(idx))]))
        z = g_mu[idx] + g_sd[idx] * torch.randn_like(g_mu[idx])
        zc = (z - model.g_mean) / model.g_std
        mu = torch.gather(p_mu[idx], 1, sub[..., None].expand(-1, -1, cfg.point_dim))
        sd = torch.gather(p_sd[idx], 1, sub[..., None].expand(-1, -1, cfg.point_dim))
        x0 = ((mu + sd * torch.randn_like(mu)) - model.p_mean) / model.p_std
        t = torch.randint(0, diff.steps, (len(idx),))
        eps = torch.randn_like(x0)
        loss = F.mse_loss(pp(diff.q_sample(x0, t, eps), t, zc), eps)  # conditioned on the standardised z_glob
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == tcfg.point_steps - 1:
            log(f"  point prior step {step}/{tcfg.point_steps} loss {loss.item():.4f} ({time.time() - t0:.0f}s)")
    pp.eval()
    wall = time.time() - t0
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("vae.")}
    config = {"vae_hash": configs["vae"]["hash"],
              "provenance": {"seed": seed, "wall_s": round(wall, 1), "torch": torch.__version__,
                             "train": asdict(tcfg), "train_objects": int(len(train))}}
    save_state(state, out / PRIORS_NAME, config, fp16=True)
    return {"wall_s": wall}
