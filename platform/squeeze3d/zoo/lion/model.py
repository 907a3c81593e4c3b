"""LION-style hierarchical latent point diffusion, at mini scale (the generator G of ``pointnet_lion``).

Layout as in LION (Zeng et al. 2022): a VAE maps a cloud of N points to
- a global shape latent ``z_glob`` (128 numbers) and
- N latent points ``h`` of (3 + 1) numbers: an xyz position near the surface plus one feature,
and decodes (``z_glob``, ``h``) back to N points, each output point = its latent point's xyz + a
small learned offset. Two diffusion priors generate latents: one on ``z_glob``, one on ``h``
conditioned on ``z_glob``. Training uses DDPM (linear betas, 1000 steps, epsilon prediction);
sampling uses DDIM with a configurable number of steps (eta 0: deterministic given the start noise).

z_G, the generator latent the mapping network regresses, is the flat vector
``[z_glob (128) | h (N x 4, row-major)]``: 128 + 4N numbers, 8320 for N = 2048.

Mini-scale choices (CPU budget), documented because they differ from LION:
- networks are per-point MLPs conditioned on the global latent (FiLM) instead of PVCNNs. The point
  prior therefore denoises each latent point independently given ``z_glob`` (the conditional point
  diffusion of Luo & Hu 2021): it fits i.i.d. surface samples, trains on random point subsets and
  keeps sampling cheap. Decoding is a single per-point MLP pass (no diffusion).
- the global encoder reads a fixed-seed subset of 1024 of the points (as PointNet++ does), so
  training on 1024-point subsets sees exactly the inference-time distribution.
- ``N`` (``num_points``) is configurable; 2048 is the default and what the shipped weights use.
- the VAE decoder is trained on latent points with extra noise (``lion_train.VAETrainConfig.dec_noise``) so it
  must know the shape to pull them back onto the surface: that keeps the global latent informative,
  which a point prior conditioned on it needs. Known deviation in the shipped weights: the encoder
  learned an expanded copy of the input as latent xyz (about 2.5x the spread, which shrinks the
  posterior noise relative to the shape), so the decoder's offsets are not small as in LION; a
  bounded encoder offset would enforce it (not done within the CPU budget).

Latent points are a set: decoding is per point, so the output set does not depend on their order.
z_G stores them in a canonical order (``canonical_order="morton"``: sorted by the Z-order code of
their xyz on a 1024^3 grid, ties broken by x, y, z, feature), so that a network
regressing z_G has a well-defined target; the grid spans the training latents' mean +- 3 std
(``LionGenerator.canonicalise``). ``canonical_order="none"`` keeps the diffusion's order.

This module is the model: z_G's layout, weights format (``load_lion``, ``save_state``) and the
generator G (``LionGenerator``, ``LionLossDecoder``); the architecture and the diffusion
(``LionConfig``, ``LionModel``, ...) are ``zoo.lion.network``, re-exported here. Its training recipe is ``lion_train``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from squeeze3d.zoo.base import Generator, seeded_normal
from squeeze3d.zoo.lion.network import (  # noqa: F401 - moved there, re-exported
    ENCODER_SUBSET_SEED,
    CondPointMLP,
    Diffusion,
    GlobalPrior,
    LionConfig,
    LionModel,
    LionVAE,
    PointPrior,
    timestep_embedding,
)
from squeeze3d.zoo.pretrained import SHIPPED_WEIGHTS, load_pretrained, save_pretrained

WEIGHTS_DIR = SHIPPED_WEIGHTS / "pointnet_lion"
VAE_NAME, PRIORS_NAME = "lion_vae", "lion_priors"
ORDERS = ("morton", "none")


# ----------------------------------------------------------------------------------------------
# z_G layout and canonical order


def morton_codes(xyz: torch.Tensor, bits: int = 10) -> torch.Tensor:
    """Z-order codes ``[..., N]`` (int64) of points in [-1, 1]^3 on a 2^bits grid per axis."""
    q = ((xyz.clamp(-1, 1) + 1) * 0.5 * ((1 << bits) - 1)).round().long()
    code = torch.zeros(q.shape[:-1], dtype=torch.long, device=xyz.device)
    for b in range(bits):
        for axis in range(3):
            code |= ((q[..., axis] >> b) & 1) << (3 * b + axis)
    return code


def canonicalise(latent_points: torch.Tensor, order: str = "morton", centre: torch.Tensor | None = None,
                 scale: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Latent points ``[B, N, C]`` in the canonical order (see module docstring). Morton codes are
    taken of ``(xyz - centre) / scale`` so the latent cloud fills the [-1, 1]^3 grid."""
    if order == "none":
        return latent_points
    if order != "morton":
        raise ValueError(f"unknown canonical order {order!r}; choose from {ORDERS}")
    keys = [latent_points[..., c] for c in range(latent_points.shape[-1] - 1, -1, -1)]  # least significant first
    xyz = latent_points[..., :3] if centre is None else latent_points[..., :3] - centre
    keys.append(morton_codes(xyz / scale))
    perm = torch.arange(latent_points.shape[1], device=latent_points.device).expand(latent_points.shape[:2])
    for key in keys:  # lexicographic sort by successive stable sorts
        k = torch.gather(key, 1, perm)
        perm = torch.gather(perm, 1, torch.sort(k, dim=1, stable=True).indices)
    return torch.gather(latent_points, 1, perm[..., None].expand_as(latent_points))


def pack_latents(z_glob: torch.Tensor, latent_points: torch.Tensor) -> torch.Tensor:
    return torch.cat([z_glob, latent_points.flatten(1)], dim=1)


def unpack_latents(z_g: torch.Tensor, cfg: LionConfig) -> tuple[torch.Tensor, torch.Tensor]:
    if z_g.ndim != 2 or z_g.shape[1] != cfg.z_dim:
        raise ValueError(f"z_G must be [B, {cfg.z_dim}] (= {cfg.global_dim} + {cfg.num_points} x "
                         f"{cfg.point_dim}), got {tuple(z_g.shape)}")
    return z_g[:, :cfg.global_dim], z_g[:, cfg.global_dim:].reshape(-1, cfg.num_points, cfg.point_dim)


# ----------------------------------------------------------------------------------------------
# weights


def save_state(module_state: dict, path: Path, config: dict, fp16: bool) -> None:
    """One weights file pair as ``load_lion`` reads it: ``path.safetensors`` (fp16 floats if ``fp16``)
    and ``path.json`` (``config``)."""
    save_pretrained(module_state, path.parent, path.name, config, fp16=fp16)


def _load_state(path: Path) -> tuple[dict, dict]:
    return load_pretrained(path.parent, path.name, "LION mini",
                           "train them with `python jobs/train_zoo.py --pair pointnet_lion`")


def load_lion(directory: str | Path = WEIGHTS_DIR, with_priors: bool = True) -> tuple[LionModel, dict]:
    """The shipped (or given) VAE + priors. Returns ``(model, {"vae": json, "priors": json})``."""
    directory = Path(directory)
    vstate, vcfg = _load_state(directory / VAE_NAME)
    cfg = LionConfig.from_dict(vcfg["architecture"])
    model = LionModel(cfg)
    model.vae.load_state_dict(vstate)
    configs = {"vae": vcfg}
    ppath = directory / PRIORS_NAME
    if with_priors:
        pstate, pcfg = _load_state(ppath)
        if pcfg.get("vae_hash") != vcfg.get("hash"):
            raise ValueError(f"{ppath}.json was trained on VAE {pcfg.get('vae_hash')}, but {directory / VAE_NAME} "
                             f"is {vcfg.get('hash')}: retrain the priors (`--stages priors`)")
        missing, unexpected = model.load_state_dict(pstate, strict=False)
        missing = [k for k in missing if not k.startswith("vae.")]
        if missing or unexpected:
            raise ValueError(f"{ppath}.safetensors: missing {missing}, unexpected {unexpected}")
        configs["priors"] = pcfg
    return model.eval(), configs


# ----------------------------------------------------------------------------------------------
# the generator


class LionLossDecoder(nn.Module):
    """``z_G [B, D] -> points [B, N, 3]`` exactly as ``LionGenerator.decode`` but with autograd, so the
    output loss can reach F_D. ``keep > 0`` decodes a random subset of ``keep`` latent points (the
    decoder is per point, so this is a subset of the full decode; renormalisation then uses the
    subset's bounding box, a small bias the full decode at evaluation does not have)."""

    def __init__(self, vae: LionVAE, cfg: LionConfig, renormalise: bool):
        super().__init__()
        self.vae, self.cfg, self.renormalise = vae, cfg, renormalise

    def forward(self, z_g: torch.Tensor, keep: int = 0, generator: torch.Generator | None = None) -> torch.Tensor:
        z_glob, latent_points = unpack_latents(z_g, self.cfg)
        if 0 < keep < latent_points.shape[1]:
            idx = torch.randperm(latent_points.shape[1], generator=generator)[:keep].to(z_g.device)
            latent_points = latent_points[:, idx]
        pts = self.vae.decode(z_glob, latent_points)
        if self.renormalise:
            from squeeze3d.metrics.pointcloud import normalise_unit_sphere

            pts = normalise_unit_sphere(pts)[0]
        return pts


class LionGenerator(Generator):
    """G for ``pointnet_lion``: conditions are integer noise seeds; z_G = [z_glob | latent points]."""

    name = "lion-mini"

    def __init__(self, device: str | torch.device = "cpu", model: LionModel | None = None,
                 ddim_steps: int = 32, eta: float = 0.0, canonical_order: str = "morton",
                 renormalise: bool = True, configs: dict | None = None, posterior_mix: float = 0.0,
                 corpus_seed: int = 0, real_share: float = 0.0):
        if model is None:
            model, configs = load_lion()
        if not 0.0 <= posterior_mix <= 1.0:
            raise ValueError(f"posterior_mix must be in [0, 1], got {posterior_mix}")
        if not 0.0 <= real_share <= 1.0:
            raise ValueError(f"real_share must be in [0, 1], got {real_share}")
        self.posterior_mix, self.corpus_seed = float(posterior_mix), int(corpus_seed)
        self.real_share = float(real_share)
        if canonical_order not in ORDERS:
            raise ValueError(f"unknown canonical order {canonical_order!r}; choose from {ORDERS}")
        self.cfg = model.cfg
        self.configs = configs or {}
        self.ddim_steps, self.eta = int(ddim_steps), float(eta)
        self.canonical_order = canonical_order
        self.renormalise = renormalise
        super().__init__(model, device)
        model.diffusion.ddim_timesteps(self.ddim_steps)  # validate early

    @property
    def z_dim(self) -> int:
        return self.cfg.z_dim

    def _noise(self, seeds: Sequence[int]) -> tuple[torch.Tensor, ...]:
        """All randomness of one sample comes from its own seed: start noise for both priors, then
        (eta > 0 only) per-step noise."""
        c = self.cfg
        n_start = c.global_dim + c.num_points * c.point_dim
        extra = self.ddim_steps * n_start if self.eta > 0 else 0
        noise = seeded_normal(list(seeds), (n_start + extra,), self.device)
        g0 = noise[:, :c.global_dim]
        p0 = noise[:, c.global_dim:n_start].reshape(-1, c.num_points, c.point_dim)
        if not extra:
            return g0, p0, None, None
        steps = noise[:, n_start:].reshape(len(seeds), self.ddim_steps, n_start).transpose(0, 1)
        return g0, p0, steps[..., :c.global_dim], steps[..., c.global_dim:].reshape(
            self.ddim_steps, len(seeds), c.num_points, c.point_dim)

    def _sample_latents(self, conditions: Sequence[int], rng: torch.Generator | None) -> torch.Tensor:
        # One sample at a time: batched matmuls may pick other kernels and differ in the last bits,
        # and the canonical sort can amplify that into a different order. Per-sample runs make a
        # sample bitwise independent of its batch (2048 points per call keep the MLPs efficient).
        return torch.cat([self._sample_one(int(s)) for s in conditions])

    def uses_posterior(self, seed: int) -> bool:
        """Does noise seed ``seed`` draw a posterior reconstruction (see ``posterior_latent``)?"""
        if self.posterior_mix <= 0:
            return False
        u = np.random.default_rng([int(seed) & (2**63 - 1), 0x5053]).random()
        return bool(u < self.posterior_mix)

    def uses_real(self, seed: int) -> bool:
        """Does a posterior draw of ``seed`` reconstruct a real object (``real_share``)?"""
        return self.real_share > 0 and bool(np.random.default_rng([int(seed) & (2**63 - 1), 0x5253]).random()
                                            < self.real_share)

    def settings(self) -> dict:
        # only when real objects are drawn, so the identities of existing builds stay as they were
        if self.real_share <= 0:
            return {}
        from squeeze3d.corpora.posterior import real_identity

        return {"posterior_mix": self.posterior_mix, "real_share": self.real_share,
                "real_corpus": real_identity(self.cfg.num_points)}

    def posterior_latent(self, seed: int) -> torch.Tensor:
        """z_G of a *train-split* object chosen by ``seed``, from a seeded sampling of its surface:
        G's VAE posterior, i.e. G reconstructing a real shape. Mixed into ``sample`` with probability
        ``posterior_mix`` (as the nerfmae generator does), it puts training pairs where real inputs
        are: G's prior alone covers them poorly (1-NNA-CD ~0.9), and a mapping only learns shapes its
        training pairs contain. A share ``real_share`` of these draws reconstructs an augmented object
        of the real-object corpus, the rest a procedural one (``squeeze3d.corpora.posterior``).
        Test-split objects are never drawn."""
        from squeeze3d.corpora import posterior as src

        if self.uses_real(seed):
            points = src.real_cloud(seed, self.cfg.num_points)
        else:
            points = src.procedural_cloud(seed, self.corpus_seed, self.cfg.num_points)
        return self.encode_latents(torch.from_numpy(points)[None]).to(self.device)

    def _sample_one(self, seed: int) -> torch.Tensor:
        if self.uses_posterior(seed):
            return self.posterior_latent(seed)
        m: LionModel = self.module
        g0, p0, gs, ps = self._noise([seed])
        g = m.diffusion.ddim(m.global_prior, g0, self.ddim_steps, self.eta, gs)
        p = m.diffusion.ddim(lambda x, t: m.point_prior(x, t, g), p0, self.ddim_steps, self.eta, ps)
        z_glob = g * m.g_std + m.g_mean
        latent_points = p * m.p_std + m.p_mean
        return pack_latents(z_glob, self.canonicalise(latent_points))

    def canonicalise(self, latent_points: torch.Tensor) -> torch.Tensor:
        """The generator's canonical order: Morton grid over the training latents' mean +- 3 std
        (isotropic, so the curve is not distorted)."""
        m: LionModel = self.module
        return canonicalise(latent_points, self.canonical_order, m.p_mean[:3], 3 * m.p_std[:3].max())

    def _decode(self, z_g: torch.Tensor) -> torch.Tensor:
        z_glob, latent_points = unpack_latents(z_g, self.cfg)
        pts = self.module.vae.decode(z_glob, latent_points)
        if self.renormalise:  # generated assets live in the unit-sphere frame encoders expect
            from squeeze3d.metrics.pointcloud import normalise_unit_sphere

            pts = normalise_unit_sphere(pts)[0]
        return pts

    def loss_decoder(self) -> LionLossDecoder:
        """The decode as a differentiable module, for training F_D through G (``PairSpec.loss_decoder``)."""
        return LionLossDecoder(self.module.vae, self.cfg, self.renormalise)

    def encode_latents(self, points: torch.Tensor) -> torch.Tensor:
        """z_G of given clouds ``[B, N, 3]`` (VAE posterior means, canonical order): the
        reconstruction path used to measure the VAE."""
        with torch.no_grad():
            g_mu, _, p_mu, _ = self.module.vae.encode(points.to(self.device, torch.float32))
        return pack_latents(g_mu, self.canonicalise(p_mu)).float()
