"""LION at its published architecture: the configuration read from ``cfg.yml`` (``LionOfficialConfig``)
and the module tree whose state-dict keys are the released checkpoint's (VAE + the two priors, on the
PVCNN networks of ``official_pvcnn``). Checkpoint reading and the platform's G are ``zoo.lion.official``,
which re-exports these."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from squeeze3d.errors import UserError
from squeeze3d.zoo.lion.official_pvcnn import (
    PRIOR_SA,
    UNET_FP,
    UNET_SA,
    GlobalPrior,
    PointNetPlusEncoder,
    PVCNN2Unet,
)


class LionOfficialCheckpointError(UserError):
    """The file is not a usable LION checkpoint (unreadable, missing sections, keys or shapes)."""


@dataclass
class LionOfficialConfig:
    """The hyper-parameters that decide LION's weights and sampling (names: the ``cfg.yml`` keys).
    Defaults: the released unconditional models (``config/*_prior_cfg.yml`` in nv-tlabs/LION)."""

    style_dim: int = 128
    """latent_pts.style_dim: size of the global shape latent."""
    latent_dim: int = 1
    """shapelatent.latent_dim: features per latent point besides xyz."""
    input_dim: int = 3
    """ddpm.input_dim."""
    num_points: int = 2048
    """data.tr_max_sample_points: latent points = output points."""
    skip_weight: float = 0.01
    """latent_pts.skip_weight: scale of the encoder/decoder network outputs added to their input xyz."""
    pts_sigma_offset: float = 0.0
    """latent_pts.pts_sigma_offset."""
    log_sigma_offset: float = 6.0
    """shapelatent.log_sigma_offset: subtracted from the latent points' log sigma."""
    dropout: float = 0.1
    """ddpm.dropout (PVCNN networks; inactive in eval)."""
    time_dim: int = 64
    """ddpm.time_dim: time embedding of the latent-point prior."""
    prior_channels: int = 2048
    """sde.num_channels_dae: width of the global prior."""
    prior_blocks: int = 8
    """sde.num_cell_per_scale_dae: residual blocks of the global prior."""
    prior_dropout: float = 0.2
    """sde.dropout (global prior; inactive in eval)."""
    embedding_dim: int = 128
    """sde.embedding_dim: time embedding of the global prior."""
    embedding_scale: float = 1.0
    """sde.embedding_scale: time multiplier of both priors' embeddings."""
    num_steps: int = 1000
    """ddpm.num_steps."""
    beta_1: float = 1e-4
    beta_T: float = 0.02
    width: float = 1.0
    """The official width multiplier of the PVCNNs (1 in every released model; < 1 only for tests)."""
    voxel_resolution: float = 1.0
    """The official voxel-resolution multiplier of the PVCNNs (1 in every released model; no weights
    depend on it; < 1 only for tests)."""

    @property
    def point_dim(self) -> int:
        return self.input_dim + self.latent_dim

    @property
    def z_dim(self) -> int:
        return self.style_dim + self.num_points * self.point_dim

    @classmethod
    def from_lion_cfg(cls, cfg: Mapping) -> LionOfficialConfig:
        """From a parsed LION ``cfg.yml``; refuses variants this module does not build (one line)."""
        def get(dotted: str, default: Any = None) -> Any:
            cur: Any = cfg
            for part in dotted.split("."):
                if not isinstance(cur, Mapping) or part not in cur:
                    return default
                cur = cur[part]
            return cur

        unsupported = {
            "clipforge.enable": (get("clipforge.enable", 0), (0, False)),
            "sde.mixed_prediction": (get("sde.mixed_prediction", False), (0, False)),
            "data.cond_on_cat": (get("data.cond_on_cat", 0), (0, False)),
            "latent_pts.style_mlp": (get("latent_pts.style_mlp", ""), ("", None)),
            "sde.embedding_type": (get("sde.embedding_type", "positional"), ("positional",)),
            "ddpm.sched_mode": (get("ddpm.sched_mode", "linear"), ("linear",)),
            "shapelatent.encoder_type": (get("shapelatent.encoder_type", "models.latent_points_ada.PointTransPVC"),
                                         ("models.latent_points_ada.PointTransPVC",)),
            "shapelatent.decoder_type": (get("shapelatent.decoder_type", "models.latent_points_ada.LatentPointDecPVC"),
                                         ("models.latent_points_ada.LatentPointDecPVC",)),
            "latent_pts.style_encoder": (get("latent_pts.style_encoder", "models.shapelatent_modules.PointNetPlusEncoder"),
                                         ("models.shapelatent_modules.PointNetPlusEncoder",)),
            "latent_pts.style_prior": (get("latent_pts.style_prior", "models.score_sde.resnet.PriorSEDrop"),
                                       ("models.score_sde.resnet.PriorSEDrop",)),
            "sde.prior_model": (get("sde.prior_model", "models.latent_points_ada_localprior.PVCNN2Prior"),
                                ("models.latent_points_ada_localprior.PVCNN2Prior",)),
        }
        bad = [f"{k} = {v!r}" for k, (v, ok) in unsupported.items() if v not in ok]
        if bad:
            raise LionOfficialCheckpointError(
                "LION configuration not supported (unconditional PVCNN VAE + PriorSEDrop/PVCNN2Prior only): "
                + "; ".join(bad))
        d = cls()
        keys = {"style_dim": "latent_pts.style_dim", "latent_dim": "shapelatent.latent_dim",
                "input_dim": "ddpm.input_dim", "num_points": "data.tr_max_sample_points",
                "skip_weight": "latent_pts.skip_weight", "pts_sigma_offset": "latent_pts.pts_sigma_offset",
                "log_sigma_offset": "shapelatent.log_sigma_offset", "dropout": "ddpm.dropout",
                "time_dim": "ddpm.time_dim", "prior_channels": "sde.num_channels_dae",
                "prior_blocks": "sde.num_cell_per_scale_dae", "prior_dropout": "sde.dropout",
                "embedding_dim": "sde.embedding_dim", "embedding_scale": "sde.embedding_scale",
                "num_steps": "ddpm.num_steps", "beta_1": "ddpm.beta_1", "beta_T": "ddpm.beta_T"}
        kw = {}
        for name, key in keys.items():
            v = get(key)
            kw[name] = getattr(d, name) if v is None else type(getattr(d, name))(v)
        return cls(**kw)


class PointTransPVC(nn.Module):
    """VAE encoder of the latent points: per point (mu, log sigma) of xyz and features, given the
    global latent as style. The xyz mean is the input point plus ``skip_weight`` x network output."""

    def __init__(self, c: LionOfficialConfig):
        super().__init__()
        self.c = c
        self.layers = PVCNN2Unet(2 * c.latent_dim + 2 * c.input_dim, 0, 0, c.input_dim, c.style_dim,
                                 UNET_SA, UNET_FP, c.dropout, width=c.width, vres=c.voxel_resolution)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [B, N, 3]`` -> (mu, log sigma), each ``[B, N·(3 + latent_dim)]`` (per point xyz, feats)."""
        c, b = self.c, x.shape[0]
        out = self.layers(x.transpose(1, 2), style).transpose(1, 2)
        d = c.input_dim
        pt_mu = c.skip_weight * out[:, :, :d] + x
        pt_sigma = out[:, :, d:2 * d] - c.pts_sigma_offset
        if c.latent_dim > 0:
            mu = torch.cat([pt_mu, out[:, :, 2 * d:-c.latent_dim]], 2)
            sigma = torch.cat([pt_sigma, out[:, :, -c.latent_dim:]], 2)
        else:
            mu, sigma = pt_mu, pt_sigma
        return mu.reshape(b, -1), sigma.reshape(b, -1)


class LatentPointDecPVC(nn.Module):
    """VAE decoder: latent points (xyz + features) and the global latent -> output points,
    each = its latent point's xyz + ``skip_weight`` x network output."""

    def __init__(self, c: LionOfficialConfig):
        super().__init__()
        self.c = c
        self.layers = PVCNN2Unet(c.input_dim, 0, c.latent_dim, c.input_dim, c.style_dim, UNET_SA, UNET_FP,
                                 c.dropout, width=c.width, vres=c.voxel_resolution)

    def forward(self, z_local: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        c = self.c
        ctx = z_local.reshape(-1, c.num_points, c.point_dim)
        out = self.layers(ctx.transpose(1, 2), style).transpose(1, 2)
        return out * c.skip_weight + ctx[:, :, :c.input_dim]


class LionVAE(nn.Module):
    """``vae_state_dict``: style encoder (global latent), latent-point encoder, decoder.
    (The official ``style_mlp`` is empty in every released model: the global latent is the style.)"""

    def __init__(self, c: LionOfficialConfig):
        super().__init__()
        self.c = c
        self.style_encoder = PointNetPlusEncoder(c.style_dim, c.input_dim, c.dropout, c.width, c.voxel_resolution)
        self.encoder = PointTransPVC(c)
        self.decoder = LatentPointDecPVC(c)

    def encode(self, x: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [B, N, 3]`` -> (z_global, z_local): posterior means, or samples when ``sample``
        (noise from ``generator``, drawn on CPU). The local encoder sees the global latent used."""
        def draw(mu, log_sigma):
            if not sample:
                return mu
            eps = torch.randn(mu.shape, generator=generator).to(mu.device)
            return mu + log_sigma.exp() * eps

        mu_g, ls_g = self.style_encoder(x)
        z_global = draw(mu_g, ls_g)
        mu_l, ls_l = self.encoder(x, z_global)
        return z_global, draw(mu_l, ls_l - self.c.log_sigma_offset)

    def decode(self, z_global: torch.Tensor, z_local: torch.Tensor) -> torch.Tensor:
        return self.decoder(z_local, z_global)


class LatentPointPrior(PVCNN2Unet):
    """``dae_state_dict.1`` (``PVCNN2Prior``): eps-prediction on the latent points, conditioned on
    the global latent through AdaGN, time through a sinusoidal embedding + MLP."""

    def __init__(self, c: LionOfficialConfig):
        super().__init__(c.point_dim, c.time_dim, c.latent_dim, c.input_dim, c.style_dim, PRIOR_SA, UNET_FP,
                         c.dropout, time_emb_scale=c.embedding_scale, width=c.width, vres=c.voxel_resolution)
        self.c = c

    def forward(self, x: torch.Tensor, t: torch.Tensor, z_global: torch.Tensor) -> torch.Tensor:
        """``x [B, N·(3+F)]``, ``t [B]`` (LION's 1-based step), ``z_global [B, style_dim]``."""
        c = self.c
        h = x.reshape(-1, c.num_points, c.point_dim).transpose(1, 2)
        return super().forward(h, z_global.reshape(z_global.shape[0], -1), t).transpose(1, 2).reshape(x.shape)


def build_priors(c: LionOfficialConfig) -> nn.ModuleList:
    """``dae_state_dict``: ModuleList [global prior, latent-point prior], as the official trainer."""
    return nn.ModuleList([GlobalPrior(c.style_dim, c.prior_channels, c.prior_blocks, c.embedding_dim,
                                      c.embedding_scale, c.prior_dropout),
                          LatentPointPrior(c)])


class LionOfficial(nn.Module):
    def __init__(self, c: LionOfficialConfig | None = None):
        super().__init__()
        self.c = c = c or LionOfficialConfig()
        self.vae = LionVAE(c)
        self.dae = build_priors(c)
