"""NeRF-MAE-style mini 3D autoencoder for (r, g, b, σ) grids: the encoder *and* generator of the
``nerfmae`` pair.

NeRF-MAE (Irshad et al., 2024) pre-trains a Swin-3D U-Net as a masked autoencoder on 160³ radiance
grids; Squeeze3D takes its intermediate *decoder* features (96 channels at 40³ = ¼ resolution) as
both z_E and z_G. Here the same structure at mini scale, with convolutions instead of Swin-3D
windows: on 2 CPU cores window attention of any useful width trains far too slowly, and what the pair
needs from the model — a ¼-resolution decoder feature grid that the remaining decoder layers turn
back into the grid — does not depend on attention. Like Swin-3D it starts from 4³ patch tokens
(a matrix product, not a full-resolution convolution: those cost seconds per batch on this CPU), and
like an MAE decoder it predicts patches:

    grid [4, R³] ─► (rgb·α, α) ─► 4³-patch tokens (R/4) ─ res ─► R/8 ─ res ─┐
                                        │ skip                      up ▼
                                        └──────────────────────► R/4 ─ fuse ─► z: [C, (R/4)³] = E(x) = z_G
    z ─► 1³ conv ─ res ─► token → 2³ sub-voxels (R/2) ─► MLP → 2³ voxels (R) ─► (sigmoid rgb, softplus σ) = G(z)

Defaults: R = 32, C = 32 (z = 32×8³); ``NerfMAEConfig(resolution=160, feature_channels=96)`` gives
NeRF-MAE's 96×40³. The input is re-expressed as opacity α = 1 − exp(−σ) and premultiplied colour
rgb·α: both bounded, and what a render sees (σ beyond ~5 per voxel is opaque whatever its value).
Training (``squeeze3d.zoo_training.nerfmae.train_nerfmae``) is MAE-style: half of each batch has 25 % of its 4³ input patches
zeroed, the loss is on all voxels; inference never masks.

Sampling: NeRF-MAE is an autoencoder, not a generative prior. ``NerfMAEGenerator.sample`` therefore
draws a *procedural train-split* corpus object per integer seed (geometry: the seed-th train index;
colours and materials re-drawn from the seed), encodes it and decodes it: (z_G, G(z_G)). The
builder then computes z_E = E(G(z_G)) as for every pair.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from squeeze3d.corpora import radiance as radiance_corpus
from squeeze3d.zoo.base import Encoder, Generator, per_sample, state_dict_hash
from squeeze3d.zoo.pretrained import SHIPPED_WEIGHTS, load_pretrained, save_pretrained

WEIGHTS_DIR = SHIPPED_WEIGHTS / "nerfmae"
WEIGHTS_NAME = "nerfmae"


@dataclass
class NerfMAEConfig:
    resolution: int = 32
    """R: grid voxels per axis (NeRF-MAE: 160); a multiple of 8 (patch 4, then one stride-2 level)."""
    enc_channels: tuple[int, int] = (48, 64)
    """Encoder channels at R/4 (the 4³-patch tokens) and R/8."""
    feature_channels: int = 32
    """C: channels of the ¼-resolution decoder features = z_E = z_G (NeRF-MAE: 96)."""
    dec_channels: int = 48
    """Generator channels at R/4 before the patch heads."""
    head_channels: int = 24
    """Channels per R/2 sub-voxel in the two-step (4³ = 2³·2³) un-patchify head."""
    empty_alpha: float = 0.1
    """``decode``: voxels whose opacity α = 1 − exp(−σ) is below this become empty (σ = 0). A
    regression output is never exactly 0, and a faint haze in every voxel adds up along a ray (render
    PSNR of the shipped weights: 11.8 dB without this, 15.7 dB with it). No weights involved."""

    def __post_init__(self):
        self.enc_channels = tuple(int(c) for c in self.enc_channels)
        if self.resolution % 8:
            raise ValueError(f"NerfMAEConfig.resolution must be a multiple of 8, got {self.resolution}")

    @property
    def z_shape(self) -> tuple[int, int, int, int]:
        s = self.resolution // 4
        return (self.feature_channels, s, s, s)


def _norm(c: int) -> nn.GroupNorm:
    # GroupNorm: independent of batch size (a 1-object decode equals the same object in a batch)
    return nn.GroupNorm(math.gcd(8, c), c)


class ResBlock3d(nn.Module):
    """Pre-activation residual block: GN–GELU–conv3³ twice."""

    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(_norm(c), nn.GELU(), nn.Conv3d(c, c, 3, padding=1),
                                  _norm(c), nn.GELU(), nn.Conv3d(c, c, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def grid_to_input(grids: torch.Tensor) -> torch.Tensor:
    """``[B, 4, R³]`` (rgb, σ) -> ``[B, 4, R³]`` (rgb·α, α) with α = 1 − exp(−σ)."""
    alpha = 1 - torch.exp(-grids[:, 3:4].clamp_min(0))
    return torch.cat([grids[:, :3].clamp(0, 1) * alpha, alpha], 1)


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """``[B, C, D, H, W]`` -> ``[B, D/p, H/p, W/p, C·p³]`` (one token per p³ patch)."""
    b, c, d, h, w = x.shape
    x = x.reshape(b, c, d // p, p, h // p, p, w // p, p)
    return x.permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(b, d // p, h // p, w // p, c * p ** 3)


def unpatchify(t: torch.Tensor, c: int, p: int) -> torch.Tensor:
    """Inverse of ``patchify``: ``[B, D, H, W, c·p³]`` -> ``[B, c, D·p, H·p, W·p]``."""
    b, d, h, w, _ = t.shape
    t = t.reshape(b, d, h, w, c, p, p, p)
    return t.permute(0, 4, 1, 5, 2, 6, 3, 7).reshape(b, c, d * p, h * p, w * p)


class NerfMAE(nn.Module):
    """Why patches and matmuls: a 3³ convolution at full 32³ resolution costs seconds per batch on
    this CPU (few channels, slow 3D conv kernels), while a patch embedding as a matrix product is
    milliseconds. NeRF-MAE's Swin-3D also starts from 4³ patches, and MAE decoders predict patches."""

    def __init__(self, cfg: NerfMAEConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or NerfMAEConfig()
        c1, c2 = cfg.enc_channels
        cf, cd, ch = cfg.feature_channels, cfg.dec_channels, cfg.head_channels
        self.embed = nn.Sequential(nn.Linear(4 * 4 ** 3, c1), nn.GELU(), nn.Linear(c1, c1))  # 4³ patch tokens, R/4
        self.enc1 = ResBlock3d(c1)
        self.down = nn.Conv3d(c1, c2, 2, stride=2)                          # R/8
        self.enc2 = ResBlock3d(c2)
        self.up = nn.ConvTranspose3d(c2, c1, 2, stride=2)                   # decoder, back at R/4
        self.fuse = nn.Sequential(nn.Conv3d(2 * c1, cf, 1), ResBlock3d(cf))  # -> the features
        # generator half: everything after the features
        self.dec = nn.Sequential(nn.Conv3d(cf, cd, 1), ResBlock3d(cd), _norm(cd), nn.GELU())
        self.head1 = nn.Linear(cd, ch * 8)                                  # token -> 2³ sub-voxels (R/2)
        self.head2 = nn.Sequential(nn.GELU(), nn.Linear(ch, ch), nn.GELU(), nn.Linear(ch, 4 * 8))  # -> 2³ voxels (R)

    def features(self, grids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, 4, R³]`` grids -> ``[B, C, (R/4)³]`` decoder features (z). ``mask`` ``[B, 1, R³]``
        (1 = keep) is the MAE training input mask."""
        r = self.cfg.resolution
        if grids.ndim != 5 or tuple(grids.shape[1:]) != (4, r, r, r):
            raise ValueError(f"NerfMAE expects grids [B, 4, {r}, {r}, {r}] (r, g, b, σ), got {tuple(grids.shape)}")
        x = grid_to_input(grids)
        if mask is not None:
            x = x * mask
        h1 = self.enc1(self.embed(patchify(x, 4)).permute(0, 4, 1, 2, 3))
        h2 = self.enc2(self.down(h1))
        return self.fuse(torch.cat([self.up(h2), h1], 1))

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        """Features -> ``[B, 4, R³]`` pre-activation outputs (rgb logits, σ pre-softplus)."""
        s = self.cfg.resolution // 4
        if z.ndim != 5 or tuple(z.shape[1:]) != self.cfg.z_shape:
            raise ValueError(f"NerfMAE decode expects z [B, {self.cfg.feature_channels}, {s}, {s}, {s}], "
                             f"got {tuple(z.shape)}")
        h = self.dec(z).permute(0, 2, 3, 4, 1)                              # [B, s, s, s, cd]
        h = unpatchify(self.head1(h), self.cfg.head_channels, 2)           # [B, ch, 2s, 2s, 2s]
        return unpatchify(self.head2(h.permute(0, 2, 3, 4, 1)), 4, 2)      # [B, 4, 4s, 4s, 4s]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        out = self.decode_raw(z)
        sigma = F.softplus(out[:, 3:4])
        # α < empty_alpha ⇔ σ < −ln(1 − empty_alpha)
        sigma = torch.where(sigma < -math.log1p(-self.cfg.empty_alpha), torch.zeros_like(sigma), sigma)
        return torch.cat([torch.sigmoid(out[:, :3]), sigma], 1)

    def forward(self, grids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.decode(self.features(grids, mask))


# ----------------------------------------------------------------------------------------------
# weights


def save_weights(model: NerfMAE, directory: str | Path, info: dict, name: str = WEIGHTS_NAME) -> Path:
    """``<name>.safetensors`` (fp16) + ``<name>.json`` (architecture, provenance, metrics)."""
    # the identity E/G report (zoo.base.state_dict_hash) of the model as loaded from the fp16 file
    shipped = NerfMAE(model.cfg)
    shipped.load_state_dict({k: v.half().float() if v.is_floating_point() else v for k, v in model.state_dict().items()})
    cfg = {"architecture": asdict(model.cfg), **info, "state_dict_hash": state_dict_hash(shipped)}
    return save_pretrained(model.state_dict(), directory, name, cfg, fp16=True)


def load_weights(directory: str | Path = WEIGHTS_DIR, name: str = WEIGHTS_NAME) -> tuple[NerfMAE, dict]:
    state, info = load_pretrained(directory, name, "NeRF-MAE", "train them with `python jobs/train_zoo.py --pair nerfmae`")
    wpath = Path(directory) / f"{name}.safetensors"
    model = NerfMAE(NerfMAEConfig(**info["architecture"]))
    expected = model.state_dict()
    bad = sorted(set(state) ^ set(expected)) + [k for k in state if k in expected and state[k].shape != expected[k].shape]
    if bad:
        raise ValueError(f"{wpath}: keys/shapes do not match NerfMAE{asdict(model.cfg)}: {bad[:5]}")
    model.load_state_dict(state)
    return model.eval(), info


# ----------------------------------------------------------------------------------------------
# the pair's E and G


class NerfMAEEncoder(Encoder):
    """E: ``[B, 4, R³]`` grids -> ``[B, C, (R/4)³]`` NeRF-MAE decoder features."""

    name = "nerfmae-mini"

    def __init__(self, device: str | torch.device = "cpu", model: NerfMAE | None = None):
        if model is None:
            model, _ = load_weights()
        super().__init__(model, device)

    @property
    def config(self) -> NerfMAEConfig:
        return self.module.cfg

    def _encode(self, assets: torch.Tensor) -> torch.Tensor:
        return self.module.features(assets)


class NerfMAEGenerator(Generator):
    """G: features -> grids (the rest of the decoder); ``sample`` = encode-decode of a seeded
    procedural train-split object (see the module docstring)."""

    name = "nerfmae-mini"

    def __init__(self, device: str | torch.device = "cpu", model: NerfMAE | None = None,
                 grid_cfg: radiance_corpus.GridConfig | None = None, corpus_seed: int = radiance_corpus.DEFAULT_SEED):
        if model is None:
            model, _ = load_weights()
        super().__init__(model, device)
        self.grid_cfg = grid_cfg or radiance_corpus.GridConfig(resolution=model.cfg.resolution)
        if self.grid_cfg.resolution != model.cfg.resolution:
            raise ValueError(f"grid resolution {self.grid_cfg.resolution} != model resolution {model.cfg.resolution}")
        self.corpus_seed = corpus_seed

    def source_grids(self, conditions: Sequence[Any]) -> torch.Tensor:
        """The procedural objects behind integer seeds: geometry of the (seed mod 2³¹)-th train-split
        index, colours/materials variation seed + 1 (variation 0 is the canonical corpus object)."""
        grids = []
        for s in conditions:
            s = int(s)
            idx = radiance_corpus.train_index(s % 2**31)
            grids.append(radiance_corpus.make_grid(self.corpus_seed, idx, self.grid_cfg, variation=s + 1).grid)
        return torch.from_numpy(np.stack(grids))

    def _sample_latents(self, conditions: Sequence[Any], rng: torch.Generator | None) -> torch.Tensor:
        # rng is unused: each sample is fixed by its own seed condition (reproducible per sample)
        # one grid at a time: conv3d kernels depend on the batch size (see zoo.base.per_sample)
        return per_sample(self.module.features, self.source_grids(conditions).to(self.device))

    def _decode(self, z_g: torch.Tensor) -> torch.Tensor:
        return self.module.decode(z_g)

    def loss_decoder(self) -> NerfMAELossDecoder:
        return NerfMAELossDecoder(self.module)


class NerfMAELossDecoder(nn.Module):
    """``z_G [B, C·(R/4)³]`` (or shaped) -> ``[B, 4, R³]`` (rgb·α, α) as ``NerfMAE.decode`` computes
    them, with autograd and without the ``empty_alpha`` cut (a step, no gradient): the output loss
    of the mapping (``PairSpec.loss_decoder``)."""

    def __init__(self, model: NerfMAE):
        super().__init__()
        self.model = model

    def forward(self, z_g: torch.Tensor, keep: int = 0, generator: torch.Generator | None = None) -> torch.Tensor:
        out = self.model.decode_raw(z_g.reshape(-1, *self.model.cfg.z_shape))
        alpha = 1 - torch.exp(-F.softplus(out[:, 3:4]))
        return torch.cat([torch.sigmoid(out[:, :3]) * alpha, alpha], 1)


def grid_output_distance(pred: torch.Tensor, target: torch.Tensor, occupied_weight: float = 4.0) -> torch.Tensor:
    """``[B]`` MSE between (rgb·α, α) grids, the voxels within one voxel of the target's object
    weighing ``1 + occupied_weight`` (as the zoo's training loss)."""
    occupied = F.max_pool3d((target[:, 3:4] > 0.01).float(), 3, stride=1, padding=1)
    w = 1 + occupied_weight * occupied
    return ((pred - target) ** 2 * w).flatten(1).mean(1) / w.flatten(1).mean(1)


# ----------------------------------------------------------------------------------------------
# voxel-space metrics (the training recipe is squeeze3d.zoo_training.nerfmae)


def voxel_metrics(reference: torch.Tensor, reconstruction: torch.Tensor) -> dict[str, torch.Tensor]:
    """Voxel-space errors per object: MSE and PSNR (peak 1) of (rgb·α, α), and opacity IoU (α > 0.5)."""
    a, b = grid_to_input(reference), grid_to_input(reconstruction)
    mse = ((a - b) ** 2).flatten(1).mean(1)
    oa, ob = a[:, 3] > 0.5, b[:, 3] > 0.5
    iou = (oa & ob).flatten(1).sum(1) / (oa | ob).flatten(1).sum(1).clamp_min(1)
    return {"voxel_mse": mse, "voxel_psnr": -10 * torch.log10(mse.clamp_min(1e-12)), "alpha_iou": iou.float()}
