"""The mini LION's architecture (``zoo.lion.model`` describes the model and re-exports these):
``LionConfig`` (stored in the weights' JSON), the VAE, the two priors and the DDPM/DDIM diffusion,
assembled as ``LionModel``."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ENCODER_SUBSET_SEED = 7_2022  # fixed subset the global encoder reads


@dataclass
class LionConfig:
    """Architecture (stored in the weights' JSON; loading rebuilds exactly this)."""

    num_points: int = 2048
    """N: latent points = output points."""
    global_dim: int = 128
    """Size of the global shape latent."""
    point_feat_dim: int = 1
    """Extra numbers per latent point besides xyz (LION: 1)."""
    encoder_points: int = 1024
    """Points the global encoder reads (fixed-seed subset)."""
    enc_widths: tuple[int, ...] = (64, 128, 256)
    """Per-point MLP of the global encoder (then max + mean pooling)."""
    enc_hidden: int = 128
    """Latent-point encoder width."""
    dec_hidden: int = 128
    dec_blocks: int = 3
    global_prior_hidden: int = 512
    global_prior_blocks: int = 3
    point_prior_hidden: int = 128
    point_prior_blocks: int = 4
    diffusion_steps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02

    @property
    def point_dim(self) -> int:
        return 3 + self.point_feat_dim

    @property
    def z_dim(self) -> int:
        return self.global_dim + self.num_points * self.point_dim

    @classmethod
    def from_dict(cls, d: dict) -> LionConfig:
        known = {f.name for f in fields(cls)}
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in known}
        return cls(**kw)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps ``[B] -> [B, dim]``."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    a = t.float()[:, None] * freqs[None]
    return torch.cat([a.sin(), a.cos()], dim=-1)


class CondPointMLP(nn.Module):
    """Per-point residual MLP; every block is modulated (FiLM scale + shift) by a per-object context.
    ``x [B, N, in]``, ``ctx [B, ctx]`` -> ``[B, N, out]``. The last layer starts at zero."""

    def __init__(self, in_dim: int, ctx_dim: int, hidden: int, blocks: int, out_dim: int):
        super().__init__()
        self.inp = nn.Linear(in_dim, hidden)
        self.films = nn.ModuleList(nn.Linear(ctx_dim, 2 * hidden) for _ in range(blocks))
        self.lins = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(blocks))
        self.out = nn.Linear(hidden, out_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        for film, lin in zip(self.films, self.lins):
            scale, shift = film(ctx)[:, None, :].chunk(2, dim=-1)
            h = h + lin(F.silu(h * (1 + scale) + shift))
        return self.out(F.silu(h))


class LionVAE(nn.Module):
    def __init__(self, cfg: LionConfig):
        super().__init__()
        self.cfg = cfg
        layers, last = [], 3
        for w in cfg.enc_widths:
            layers += [nn.Linear(last, w), nn.SiLU()]
            last = w
        self.enc_point = nn.Sequential(*layers[:-1])  # raw features: pooled, then activated
        self.enc_global = nn.Sequential(nn.Linear(2 * last, 256), nn.SiLU(), nn.Linear(256, 2 * cfg.global_dim))
        self.enc_latent = CondPointMLP(3 + last, cfg.global_dim, cfg.enc_hidden, 2, 2 * cfg.point_dim)
        self.dec = CondPointMLP(cfg.point_dim, cfg.global_dim, cfg.dec_hidden, cfg.dec_blocks, 3)
        with torch.no_grad():  # start with small posterior noise: latent points begin near the input
            self.enc_latent.out.bias[cfg.point_dim:].fill_(-4.0)
        g = torch.Generator().manual_seed(ENCODER_SUBSET_SEED)
        self._subset_perm = torch.randperm(1 << 20, generator=g)  # prefix -> subset for any N

    def _subset(self, n: int) -> torch.Tensor:
        k = self.cfg.encoder_points
        if n <= k:
            return torch.arange(k) % n
        perm = self._subset_perm[self._subset_perm < n][:k]
        return perm

    def encode_global(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Global posterior ``(mu, logvar) [B, G]`` from the points it is given (all of them)."""
        feats = self.enc_point(points)
        pooled = torch.cat([feats.amax(dim=1), feats.mean(dim=1)], dim=-1)
        g_mu, g_logvar = self.enc_global(F.silu(pooled)).chunk(2, dim=-1)
        return g_mu, g_logvar.clamp(-12, 4)

    def encode_points(self, points: torch.Tensor, z_glob: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Latent-point posterior ``(mu, logvar) [B, N, 3+F]``, one latent point per input point."""
        feats = F.silu(self.enc_point(points))
        out = self.enc_latent(torch.cat([points, feats], dim=-1), z_glob)
        d = self.cfg.point_dim
        p_mu = torch.cat([points + out[..., :3], out[..., 3:d]], dim=-1)  # skip: latent xyz ~ input xyz
        return p_mu, out[..., d:].clamp(-12, 4)

    def encode(self, points: torch.Tensor):
        """``points [B, N, 3]`` -> ``(g_mu, g_logvar [B, G], p_mu, p_logvar [B, N, 3+F])``; the global
        encoder reads the fixed-seed ``encoder_points`` subset (training feeds it random subsets of
        the same size, so it sees the same distribution)."""
        sub = points[:, self._subset(points.shape[1]).to(points.device)]
        g_mu, g_logvar = self.encode_global(sub)
        p_mu, p_logvar = self.encode_points(points, g_mu)
        return g_mu, g_logvar, p_mu, p_logvar

    def decode(self, z_glob: torch.Tensor, latent_points: torch.Tensor) -> torch.Tensor:
        """``[B, G]``, ``[B, N, 3+F]`` -> points ``[B, N, 3]`` = latent xyz + learned offset."""
        return latent_points[..., :3] + self.dec(latent_points, z_glob)


class GlobalPrior(nn.Module):
    """epsilon-predictor for the (standardised) global latent: residual MLP with time FiLM."""

    def __init__(self, dim: int, hidden: int, blocks: int):
        super().__init__()
        self.temb = nn.Sequential(nn.Linear(128, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.inp = nn.Linear(dim, hidden)
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(blocks))
        self.films = nn.ModuleList(nn.Linear(hidden, 2 * hidden) for _ in range(blocks))
        self.lin1 = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(blocks))
        self.lin2 = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(blocks))
        self.out = nn.Linear(hidden, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        e = F.silu(self.temb(timestep_embedding(t, 128)))
        h = self.inp(x)
        for norm, film, l1, l2 in zip(self.norms, self.films, self.lin1, self.lin2):
            scale, shift = film(e).chunk(2, dim=-1)
            h = h + l2(F.silu(l1(F.silu(norm(h) * (1 + scale) + shift))))
        return self.out(F.silu(h))


class PointPrior(nn.Module):
    """epsilon-predictor for (standardised) latent points given the global latent; points are
    denoised independently given (z_glob, t)."""

    def __init__(self, point_dim: int, global_dim: int, hidden: int, blocks: int):
        super().__init__()
        self.ctx = nn.Sequential(nn.Linear(global_dim + 128, 256), nn.SiLU(), nn.Linear(256, 256))
        self.net = CondPointMLP(point_dim, 256, hidden, blocks, point_dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor, z_glob: torch.Tensor) -> torch.Tensor:
        ctx = F.silu(self.ctx(torch.cat([z_glob, timestep_embedding(t, 128)], dim=-1)))
        return self.net(x, ctx)


class Diffusion:
    """Linear-beta DDPM schedule; ``q_sample`` for training, ``ddim`` for sampling."""

    def __init__(self, steps: int, beta_start: float, beta_end: float):
        betas = torch.linspace(beta_start, beta_end, steps, dtype=torch.float64)
        self.steps = steps
        self.alphas_cumprod = torch.cumprod(1 - betas, 0).float()

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        ac = self.alphas_cumprod.to(x0.device)[t].view(-1, *([1] * (x0.ndim - 1)))
        return ac.sqrt() * x0 + (1 - ac).sqrt() * noise

    def ddim_timesteps(self, num: int) -> list[int]:
        if not 1 <= num <= self.steps:
            raise ValueError(f"DDIM steps must be in [1, {self.steps}], got {num}")
        return [int(round(x)) for x in np.linspace(self.steps - 1, 0, num)]

    def ddim(self, eps_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor, num_steps: int,
             eta: float = 0.0, step_noise: torch.Tensor | None = None) -> torch.Tensor:
        """Run DDIM from ``x`` (pure noise at t = T-1). ``step_noise [num_steps, *x.shape]`` supplies
        the per-step noise when ``eta > 0`` (drawn per sample by the caller, so results do not depend
        on batching)."""
        ts = self.ddim_timesteps(num_steps)
        ac = self.alphas_cumprod.to(x.device)
        for i, t in enumerate(ts):
            a_t = ac[t]
            a_prev = ac[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0, device=x.device)
            tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
            eps = eps_fn(x, tt)
            x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
            sigma = eta * ((1 - a_prev) / (1 - a_t)).sqrt() * (1 - a_t / a_prev).sqrt()
            x = a_prev.sqrt() * x0 + (1 - a_prev - sigma**2).clamp_min(0).sqrt() * eps
            if eta > 0:
                if step_noise is None:
                    raise ValueError("ddim with eta > 0 needs step_noise (per-sample seeded noise)")
                x = x + sigma * step_noise[i]
        return x


class LionModel(nn.Module):
    """VAE + both priors + the latent standardisation statistics the priors work in."""

    def __init__(self, cfg: LionConfig):
        super().__init__()
        self.cfg = cfg
        self.vae = LionVAE(cfg)
        self.global_prior = GlobalPrior(cfg.global_dim, cfg.global_prior_hidden, cfg.global_prior_blocks)
        self.point_prior = PointPrior(cfg.point_dim, cfg.global_dim, cfg.point_prior_hidden, cfg.point_prior_blocks)
        self.register_buffer("g_mean", torch.zeros(cfg.global_dim))
        self.register_buffer("g_std", torch.ones(cfg.global_dim))
        self.register_buffer("p_mean", torch.zeros(cfg.point_dim))
        self.register_buffer("p_std", torch.ones(cfg.point_dim))
        self.diffusion = Diffusion(cfg.diffusion_steps, cfg.beta_start, cfg.beta_end)
