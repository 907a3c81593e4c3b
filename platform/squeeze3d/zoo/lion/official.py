"""LION (Zeng et al., NeurIPS 2022; nv-tlabs/LION) at its published architecture, loading the
released checkpoints key for key: the generator G of a point-cloud pair.

Layout of a released checkpoint (``lion_ckpt/unconditional/<category>/``): ``cfg.yml`` (the yacs
configuration) and ``checkpoints/model.pt``, a ``torch.save`` dict whose ``vae_state_dict`` is the
VAE (``style_encoder.*``, ``encoder.layers.*``, ``decoder.layers.*``) and ``dae_state_dict`` the
two priors as a ModuleList (``0.*`` the global shape-latent prior, ``1.*`` the latent-point prior);
the file also holds optimiser, scheduler and grad-scaler states (ignored, except the EMA copies of
the prior weights when ``prior_weights="ema"``). It is read with ``torch.load(weights_only=True)``;
a file that needs arbitrary unpickling is refused with a pointer to ``convert`` below (which writes
a safetensors file with the two state dicts and nothing else).

z_G is LION's own latent, in LION's order (``compose_eps``): ``[z_global (style_dim) | latent points
(N x (3 + latent_dim), per point xyz then features)]``: 128 + 2048·4 = 8320 numbers for the
released models. ``decode(z_G)`` is the VAE decoder; ``sample`` runs the two priors (global, then
latent points conditioned on it) and decodes; ``encode_latents(points)`` is the VAE posterior mean.

Architecture: ``squeeze3d.zoo.lion.official_net`` (the configuration and LION's module tree,
re-exported here), ``official_pvcnn`` (networks) and ``official_ops`` (PVCNN's CUDA operators in
pure torch). Key/shape manifest of the published configuration, derived by
running the official constructors: ``manifests/lion_official.json``.

This project never unpickles: a checkpoint that ``weights_only`` refuses is re-saved once in the
environment that made it, with the two state dicts alone, then read (or converted) here::

    torch.save({k: ckpt[k] for k in ("vae_state_dict", "dae_state_dict")}, "model_tensors.pt")  # LION's env
    python -m squeeze3d.zoo.lion.official convert model_tensors.pt model.safetensors
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from squeeze3d.errors import UserError
from squeeze3d.zoo.base import Generator
from squeeze3d.zoo.lion.official_net import (  # noqa: F401 - moved there, re-exported
    LatentPointDecPVC,
    LatentPointPrior,
    LionOfficial,
    LionOfficialCheckpointError,
    LionOfficialConfig,
    LionVAE,
    PointTransPVC,
    build_priors,
)
from squeeze3d.zoo.lion.official_pvcnn import STYLE_SA
from squeeze3d.zoo.pretrained import MANIFESTS

MANIFEST = MANIFESTS / "lion_official.json"
SECTIONS = ("vae_state_dict", "dae_state_dict")
SAMPLERS = ("ddpm", "ddim")
# ----------------------------------------------------------------------------------------------
# checkpoint files


def read_state_dicts(path: str | Path) -> dict[str, dict[str, torch.Tensor]]:
    """``{"vae_state_dict": ..., "dae_state_dict": ...}`` (plus ``dae_optimizer`` when present) from
    a LION ``.pt`` (``weights_only``) or a ``.safetensors`` written by ``convert``."""
    path = Path(path)
    if not path.is_file():
        raise LionOfficialCheckpointError(f"LION checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        flat = load_file(str(path))
        out: dict[str, dict[str, torch.Tensor]] = {s: {} for s in SECTIONS}
        for k, v in flat.items():
            head, _, rest = k.partition(".")
            if head not in out:
                raise LionOfficialCheckpointError(f"{path}: unexpected tensor {k!r} (expected vae_state_dict.* "
                                                  "or dae_state_dict.*)")
            out[head][rest] = v
        return out
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError and friends: the file needs code execution to load
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()  # torch's message carries terminal colours
        first = text.splitlines()[0] if text else type(e).__name__
        raise LionOfficialCheckpointError(
            f"{path}: torch.load(weights_only=True) refused the file ({first}); this project never unpickles: "
            "re-save its vae_state_dict and dae_state_dict alone with torch.save in the environment that made "
            "it, then convert that (docs/models/lion_official.md)") from e
    if not isinstance(ckpt, dict):
        raise LionOfficialCheckpointError(f"{path}: expected a dict with vae_state_dict and dae_state_dict, "
                                          f"got {type(ckpt).__name__}")
    missing = [s for s in SECTIONS if s not in ckpt]
    if missing:
        raise LionOfficialCheckpointError(f"{path}: not a LION checkpoint, missing {', '.join(missing)} "
                                          f"(top-level keys: {', '.join(sorted(map(str, ckpt))[:10])})")
    return ckpt


def _names(keys: Sequence[str], limit: int = 5) -> str:
    keys = sorted(keys)
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def check_state_dict(module: nn.Module, state: Mapping[str, torch.Tensor], section: str, source: str) -> None:
    """Strict key and shape check; one line naming what is missing, unexpected or mis-shaped."""
    ours = module.state_dict()
    missing = [k for k in ours if k not in state]
    unexpected = [k for k in state if k not in ours]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in ours.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    problems = []
    if missing:
        problems.append(f"missing {_names(missing)}")
    if unexpected:
        problems.append(f"unexpected {_names(unexpected)}")
    if shapes:
        problems.append(f"shape (file vs model) {_names(shapes, 3)}")
    if problems:
        raise LionOfficialCheckpointError(f"{source}: {section} does not match LION's layout: " + "; ".join(problems))


def ema_prior_state(ckpt: Mapping, priors: nn.Module, source: str) -> dict[str, torch.Tensor]:
    """The priors' EMA weights, which LION keeps in ``dae_optimizer.state[i]["ema"]`` (i: position
    in ``dae.parameters()``) and swaps in for evaluation (``ddpm.ema``)."""
    opt = ckpt.get("dae_optimizer")
    state = opt.get("state") if isinstance(opt, Mapping) else None
    if not isinstance(state, Mapping):
        raise LionOfficialCheckpointError(f"{source}: prior_weights='ema' needs dae_optimizer.state in the file")
    out = dict(priors.state_dict())
    names = [n for n, _ in priors.named_parameters()]
    missing = [n for i, n in enumerate(names) if "ema" not in state.get(i, {})]
    if missing:
        raise LionOfficialCheckpointError(f"{source}: no EMA copy for {_names(missing)} in dae_optimizer.state")
    for i, n in enumerate(names):
        out[n] = state[i]["ema"]
    return out


def load_lion_official(checkpoint_path: str | Path, config: LionOfficialConfig | Mapping | None = None,
                       config_path: str | Path | None = None, prior_weights: str = "raw",
                       device: str | torch.device = "cpu") -> LionOfficial:
    """Build LION and load a checkpoint into it, strictly. The configuration is ``config`` when it is
    a ``LionOfficialConfig``; else ``resolve_config`` (``cfg.yml``, the PVCNN width read from the
    weights, then ``config`` as a mapping of field overrides). ``prior_weights``: ``raw``
    (``dae_state_dict``, what LION's demo loads) or ``ema`` (the EMA copies from the optimiser state,
    what LION's evaluation uses)."""
    if prior_weights not in ("raw", "ema"):
        raise ValueError(f"prior_weights must be 'raw' or 'ema', got {prior_weights!r}")
    checkpoint_path = Path(checkpoint_path)
    ckpt = read_state_dicts(checkpoint_path)
    if not isinstance(config, LionOfficialConfig):
        config = resolve_config(checkpoint_path, config_path, config, ckpt["vae_state_dict"])
    with torch.device("meta"):
        model = LionOfficial(config)
    check_state_dict(model.vae, ckpt["vae_state_dict"], "vae_state_dict", str(checkpoint_path))
    dae = ckpt["dae_state_dict"] if prior_weights == "raw" else ema_prior_state(ckpt, model.dae, str(checkpoint_path))
    check_state_dict(model.dae, dae, "dae_state_dict", str(checkpoint_path))
    model.vae.load_state_dict(ckpt["vae_state_dict"], strict=True, assign=True)
    model.dae.load_state_dict(dae, strict=True, assign=True)
    for p in model.parameters():  # the file's dtype may differ (e.g. fp16 copies): run in float32
        p.data = p.data.float()
    return model.to(device).eval()


WIDTH_KEY = "style_encoder.layers.0.0.voxel_layers.0.weight"
"""The first voxel convolution of the style encoder: 32 output channels at the official width."""


def resolve_config(checkpoint_path: str | Path, config_path: str | Path | None = None,
                   overrides: Mapping | None = None,
                   vae_shapes: Mapping[str, Any] | None = None) -> LionOfficialConfig:
    """The configuration of a checkpoint from files only: ``config_path``, else a ``cfg.yml`` beside
    the checkpoint or one folder up (the release layout), else the published defaults; then the
    PVCNN width multiplier, which no ``cfg.yml`` holds (1 in every release), from the shape of
    ``WIDTH_KEY`` in ``vae_shapes`` (key -> tensor or shape; skipped when None); then ``overrides``
    (``LionOfficialConfig`` field -> value, e.g. ``{voxel_resolution: 0.5}`` from a pair file)."""
    c = config_from_file(config_path, Path(checkpoint_path))
    if vae_shapes is not None and WIDTH_KEY in vae_shapes:
        out = getattr(vae_shapes[WIDTH_KEY], "shape", vae_shapes[WIDTH_KEY])[0]
        c = replace(c, width=int(out) / STYLE_SA[0][0][0])
    if overrides:
        bad = sorted(set(overrides) - {f.name for f in fields(LionOfficialConfig)})
        if bad:
            raise LionOfficialCheckpointError(f"unknown LION config field {bad[0]!r}; known: "
                                              f"{', '.join(f.name for f in fields(LionOfficialConfig))}")
        c = replace(c, **{k: type(getattr(c, k))(v) for k, v in overrides.items()})
    return c


def latent_shape(checkpoint_path: str | Path, *, config_path: str | Path | None = None,
                 config: LionOfficialConfig | Mapping | None = None, **_options) -> tuple[int]:
    """z_G's shape from the configuration alone (no weights read): the adapter's ``latent_shape``."""
    if isinstance(config, LionOfficialConfig):
        return (config.z_dim,)
    return (resolve_config(checkpoint_path, config_path, config).z_dim,)


def config_from_file(config_path: str | Path | None, checkpoint_path: Path | None = None) -> LionOfficialConfig:
    import yaml

    if config_path is None and checkpoint_path is not None:
        for cand in (checkpoint_path.parent / "cfg.yml", checkpoint_path.parent.parent / "cfg.yml"):
            if cand.is_file():
                config_path = cand
                break
    if config_path is None:
        return LionOfficialConfig()
    try:
        cfg = yaml.safe_load(Path(config_path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise LionOfficialCheckpointError(f"cannot read LION config {config_path}: {e}") from e
    if not isinstance(cfg, Mapping):
        raise LionOfficialCheckpointError(f"{config_path}: expected a YAML mapping (LION cfg.yml)")
    return LionOfficialConfig.from_lion_cfg(cfg)


def convert(src: str | Path, dst: str | Path) -> None:
    """Write the two state dicts of a LION ``.pt`` (read with ``weights_only=True``) as one
    safetensors file (keys prefixed with their section)."""
    from safetensors.torch import save_file

    ckpt = read_state_dicts(src)
    flat = {f"{s}.{k}": v.detach().contiguous() for s in SECTIONS for k, v in ckpt[s].items()}
    save_file(flat, str(dst), metadata={"format": "lion-official", "source": Path(src).name})


# ----------------------------------------------------------------------------------------------
# sampling


class DiscreteDiffusion:
    """LION's DDPM schedule (linear betas over ``num_steps``); priors are called with step t + 1.

    ``ddpm`` is the ancestral sampler of LION's ``models/lion.py`` (diffusers' DDPMScheduler with
    ``variance_type="fixedlarge"``, a name that scheduler does not recognise, so it keeps the
    posterior variance β̃_t; no noise at the last step). ``ddim`` (eta 0, evenly spaced steps) is
    deterministic given the start noise and much cheaper; it is not what LION's paper reports."""

    def __init__(self, num_steps: int, beta_1: float, beta_T: float):
        self.T = num_steps
        self.betas = torch.linspace(beta_1, beta_T, num_steps, dtype=torch.float64)
        self.abar = torch.cumprod(1 - self.betas, 0)

    def timesteps(self, sampler: str, steps: int) -> list[int]:
        if sampler == "ddpm":
            return list(range(self.T - 1, -1, -1))
        stride = max(self.T // steps, 1)
        return list(range(0, self.T, stride))[:steps][::-1]

    def sample(self, eps_fn, x: torch.Tensor, sampler: str, steps: int, gen: torch.Generator) -> torch.Tensor:
        ts = self.timesteps(sampler, steps)
        for i, t in enumerate(ts):
            tt = torch.full((x.shape[0],), float(t + 1), device=x.device)
            eps = eps_fn(x, tt).double()
            a_t = float(self.abar[t])
            prev = ts[i + 1] if i + 1 < len(ts) else -1
            a_prev = float(self.abar[prev]) if prev >= 0 else 1.0
            x64 = x.double()
            x0 = (x64 - (1 - a_t) ** 0.5 * eps) / a_t ** 0.5
            if sampler == "ddim":
                x64 = a_prev ** 0.5 * x0 + (1 - a_prev) ** 0.5 * eps
            else:
                beta = float(self.betas[t])
                x64 = (a_prev ** 0.5 * beta / (1 - a_t)) * x0 + ((1 - beta) ** 0.5 * (1 - a_prev) / (1 - a_t)) * x64
                if t > 0:
                    var = (1 - a_prev) / (1 - a_t) * beta
                    x64 = x64 + var ** 0.5 * torch.randn(x.shape, generator=gen, dtype=torch.float64).to(x.device)
            x = x64.float()
        return x


class LionOfficialGenerator(Generator):
    """G: conditions are integer noise seeds; z_G = [z_global | latent points] (LION's order)."""

    name = "lion-official"

    def __init__(self, model: LionOfficial, device: str | torch.device = "cpu", sampler: str = "ddpm",
                 steps: int | None = None):
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; choose from {SAMPLERS}")
        c = model.c
        # ddpm always walks the whole schedule (ddpm.num_steps); steps only thins ddim's
        steps = c.num_steps if steps is None or sampler == "ddpm" else int(steps)
        if not 1 <= steps <= c.num_steps:
            raise ValueError(f"steps must be in [1, {c.num_steps}], got {steps}")
        self.cfg = c
        self.sampler, self.steps = sampler, steps
        self.diffusion = DiscreteDiffusion(c.num_steps, c.beta_1, c.beta_T)
        super().__init__(model, device)

    @property
    def z_dim(self) -> int:
        return self.cfg.z_dim

    def settings(self) -> dict:
        return {"sampler": self.sampler, "steps": self.steps}

    def _sample_latents(self, conditions: Sequence[int], rng: torch.Generator | None) -> torch.Tensor:
        return torch.cat([self._sample_one(int(s)) for s in conditions])

    def _sample_one(self, seed: int) -> torch.Tensor:
        # all randomness of a sample from its own seed, drawn on CPU: identical on any device
        c, m = self.cfg, self.module
        gen = torch.Generator().manual_seed(seed)
        g0 = torch.randn(1, c.style_dim, generator=gen).to(self.device)
        p0 = torch.randn(1, c.num_points * c.point_dim, generator=gen).to(self.device)
        z_global = self.diffusion.sample(lambda x, t: m.dae[0](x, t), g0, self.sampler, self.steps, gen)
        z_local = self.diffusion.sample(lambda x, t: m.dae[1](x, t, z_global), p0, self.sampler, self.steps, gen)
        return torch.cat([z_global, z_local], 1)

    def _decode(self, z_g: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        return self.module.vae.decode(z_g[:, :c.style_dim], z_g[:, c.style_dim:])

    def encode_latents(self, points: torch.Tensor, sample: bool = False, seed: int = 0) -> torch.Tensor:
        """VAE posterior of ``points [B, N, 3]`` as z_G ``[B, z_dim]``: means, or one draw per cloud
        (``sample``; noise from ``seed``)."""
        with torch.no_grad():
            gen = torch.Generator().manual_seed(int(seed))
            zg, zl = self.module.vae.encode(points.to(self.device, torch.float32), sample, gen)
        return torch.cat([zg, zl], 1).float()


def build_generator(checkpoint_path: str | Path, device: str | torch.device = "cpu", *,
                    config_path: str | Path | None = None, config: LionOfficialConfig | Mapping | None = None,
                    prior_weights: str = "raw", sampler: str = "ddpm", steps: int | None = None
                    ) -> LionOfficialGenerator:
    """The released LION as G: the ``lion_official`` adapter (``zoo.adapters``). ``checkpoint_path``:
    the ``.pt`` (or converted ``.safetensors``) file; ``cfg.yml`` is found beside it or one folder up
    unless ``config_path`` names it; ``config``: a ``LionOfficialConfig``, or (from a pair file's
    options) a mapping of its fields overriding the file's. ``steps``: ddim's step count (default:
    the whole schedule; ddpm always takes all of it). See the module docstring for z_G."""
    model = load_lion_official(checkpoint_path, config, config_path, prior_weights, device)
    return LionOfficialGenerator(model, device, sampler=sampler, steps=steps)


build_generator.latent_shape = latent_shape


def layout(config: LionOfficialConfig | None = None) -> dict[str, dict[str, list[int]]]:
    """Key -> shape of both sections for ``config`` (built on the meta device: no memory)."""
    with torch.device("meta"):
        model = LionOfficial(config or LionOfficialConfig())
    return {"vae_state_dict": {k: list(v.shape) for k, v in model.vae.state_dict().items()},
            "dae_state_dict": {k: list(v.shape) for k, v in model.dae.state_dict().items()}}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m squeeze3d.zoo.lion.official",
                                description="LION checkpoint tools")
    sub = p.add_subparsers(dest="cmd", required=True)
    cv = sub.add_parser("convert", help="write a LION .pt's vae/dae state dicts as safetensors")
    cv.add_argument("src")
    cv.add_argument("dst")
    ck = sub.add_parser("check", help="load a checkpoint strictly and print its configuration")
    ck.add_argument("checkpoint")
    ck.add_argument("--config", default=None, help="LION cfg.yml (default: beside the checkpoint)")
    a = p.parse_args(argv)
    try:
        if a.cmd == "convert":
            convert(a.src, a.dst)
            print(f"wrote {a.dst}")
        else:
            model = load_lion_official(a.checkpoint, config_path=a.config)
            n = sum(t.numel() for t in model.parameters())
            print(f"ok: {n} parameters, config {asdict(model.c)}")
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
