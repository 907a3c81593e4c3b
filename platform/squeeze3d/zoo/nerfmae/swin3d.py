"""NeRF-MAE (Irshad et al., ECCV 2024; zubair-irshad/NeRF-MAE) at its published size: the Swin-3D
masked autoencoder ``SwinTransformer_MAE3D_New`` (backbone ``swin_s``: embed 96, depths 2-2-18-2,
heads 3-6-12-24, 4³ patches, 4³ windows), loading the released checkpoints key for key. E and G of
a radiance-field pair.

Network (``zoo.nerfmae.swin3d_net``, re-exported here; re-written from reading
``nerf_mae/model/mae/swin_mae3d.py`` and ``unetr_block.py``):

    grid [4, R³] ─► 4³ patch embedding + LayerNorm + fixed sin-cos position (R/4)
      ─► stage 0: 2 Swin blocks (96 ch, R/4) ─► merge ─► stage 1: 2 blocks (192, R/8)
      ─► merge ─► stage 2: 18 blocks (384, R/16) ─► merge ─► stage 3: 2 blocks (768, R/32)
    decoder4(stage3, skip stage2) ─► decoder3(·, stage1) ─► decoder2(·, stage0) = F: [96, (R/4)³]
    decoder1(F) (×4 transposed conv, no skip) ─► out (1³ conv) ─► [4, R³]: rgb, alpha logit

z_E = z_G = F, the decoder2 output (96 channels at 40³ for R = 160): where Squeeze3D takes
NeRF-MAE's latent (the project's nerfmae pair follows it at mini scale). The encoder's bottleneck
(stage 3, 768 × 5³) cannot be z_G: the decoder needs the skip features of stages 0-2 as well, so
no generator can start from it; ``build_encoder(..., features="bottleneck")`` gives it as z_E for
experiments (with a G taking F, z_E and z_G then differ).

Grids: NeRF-MAE reads (r, g, b, alpha) with alpha = clip(1 - exp(-exp(d)/100)) of Instant-NGP's
raw density d, zero-padded at the far end of each axis to R³. The project's radiance assets are
(r, g, b, σ) with σ per voxel length; E converts with alpha = 1 - exp(-σ) (the opacity of one
voxel, the same meaning) and G back with σ = -log(1 - sigmoid(logit)), rgb clamped to [0, 1].
Inference never masks (the official forward always masks, with its training probability).

Checkpoint: ``torch.save({"epoch", "state_dict", "train_args"})`` (run_swin_mae3d.py), read with
``torch.load(weights_only=True)``; a ``.safetensors`` of the state dict also loads. Key/shape
manifest derived by running the official constructor: ``manifests/nerfmae_swin3d.json``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from squeeze3d.errors import UserError
from squeeze3d.zoo.base import Encoder, Generator
from squeeze3d.zoo.nerfmae.swin3d_net import (  # noqa: F401 - moved there, re-exported
    BACKBONES,
    NerfMAESwinConfig,
    OutBlock3d,
    PatchMerging3d,
    Permute,
    ResBlock3d,
    SwinBlock3d,
    SwinMAE3D,
    UpBlock3d,
    WindowAttention3d,
    relative_position_index,
)
from squeeze3d.zoo.pretrained import MANIFESTS

MANIFEST = MANIFESTS / "nerfmae_swin3d.json"
class NerfMAECheckpointError(UserError):
    """The file is not a usable NeRF-MAE checkpoint (unreadable, missing keys or shapes)."""
# ----------------------------------------------------------------------------------------------
# checkpoint


def _names(keys: Sequence[str], limit: int = 5) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:limit]) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise NerfMAECheckpointError(f"NeRF-MAE checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # the file needs arbitrary unpickling
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()
        first = text.splitlines()[0] if text else type(e).__name__
        raise NerfMAECheckpointError(f"{path}: torch.load(weights_only=True) refused the file ({first}); "
                                     "save its state_dict as safetensors with a trusted tool") from e
    if isinstance(ckpt, Mapping) and isinstance(ckpt.get("state_dict"), Mapping):
        return dict(ckpt["state_dict"])
    raise NerfMAECheckpointError(f"{path}: expected a dict with a state_dict (NeRF-MAE's run_swin_mae3d.py "
                                 f"layout), got {type(ckpt).__name__}"
                                 + (f" with keys {', '.join(sorted(map(str, ckpt))[:8])}" if isinstance(ckpt, Mapping) else ""))


def check_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    ours = model.state_dict()
    missing = [k for k in ours if k not in state]
    unexpected = [k for k in state if k not in ours]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in ours.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    problems = ([f"missing {_names(missing)}"] if missing else []) + \
               ([f"unexpected {_names(unexpected)}"] if unexpected else []) + \
               ([f"shape (file vs model) {_names(shapes, 3)}"] if shapes else [])
    if problems:
        hint = ""
        if any(s.startswith("pos_embed") for s in shapes):
            side = tuple(state["pos_embed"].shape)[1]
            hint = f" (pos_embed says the checkpoint was trained at resolution {side * model.c.patch})"
        raise NerfMAECheckpointError(f"{source}: state_dict does not match NeRF-MAE's layout: "
                                     + "; ".join(problems) + hint)


def read_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Key -> shape of a checkpoint's state dict without reading its tensors into memory (safetensors
    header; a ``.pt`` memory-mapped)."""
    path = Path(path)
    if path.suffix == ".safetensors" and path.is_file():
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 (not a dict)
    if path.is_file():
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception:  # noqa: BLE001 (a legacy-format file cannot be mapped: read_state_dict reports)
            ckpt = None
        if isinstance(ckpt, Mapping) and isinstance(ckpt.get("state_dict"), Mapping):
            return {k: tuple(v.shape) for k, v in ckpt["state_dict"].items()}
    return {k: tuple(v.shape) for k, v in read_state_dict(path).items()}


def config_from_shapes(shapes: Mapping[str, Sequence[int]], source: str = "checkpoint") -> NerfMAESwinConfig:
    """The configuration a state dict was built with, read from its tensor shapes: patch embedding
    (width, channels, patch size), ``pos_embed`` (resolution), blocks per stage, the relative-position
    tables (heads, window) and the first MLP (ratio)."""
    def shape(key: str) -> tuple[int, ...]:
        if key not in shapes:
            raise NerfMAECheckpointError(f"{source}: no {key} (not NeRF-MAE's Swin-3D layout)")
        return tuple(int(x) for x in shapes[key])

    e, ch, patch = shape("patch_partition.0.weight")[:3]
    side = shape("pos_embed")[1]
    depths, heads = [], []
    for i in range(4):
        blocks = {int(m.group(1)) for k in shapes if (m := re.fullmatch(rf"stages\.{i}\.(\d+)\.attn\.qkv\.weight", k))}
        if not blocks:
            raise NerfMAECheckpointError(f"{source}: no blocks in stages.{i} (not NeRF-MAE's Swin-3D layout)")
        depths.append(len(blocks))
        heads.append(shape(f"stages.{i}.{min(blocks)}.attn.relative_position_bias_table")[1])
    first = min(k for k in range(2) if f"stages.0.{k}.attn.relative_position_bias_table" in shapes)
    table = shape(f"stages.0.{first}.attn.relative_position_bias_table")[0]
    window = (round(table ** (1 / 3)) + 1) // 2
    hidden = shape(f"stages.0.{first}.mlp.0.weight")[0]
    return NerfMAESwinConfig(resolution=side * patch, embed_dim=e, depths=tuple(depths), num_heads=tuple(heads),
                             window=window, patch=patch, mlp_ratio=hidden / e, channels=ch)


def _config(config: NerfMAESwinConfig | Mapping | None, shapes_of, source: str) -> NerfMAESwinConfig:
    """``config`` as given, a mapping of ``NerfMAESwinConfig`` fields (a pair file's options), or
    (None) read from the checkpoint's shapes; ``shapes_of`` is called only in that case."""
    if isinstance(config, NerfMAESwinConfig):
        return config
    if isinstance(config, Mapping):
        try:
            return NerfMAESwinConfig(**config)
        except TypeError as e:
            raise NerfMAECheckpointError(f"bad NeRF-MAE config {dict(config)}: {e}") from None
    return config_from_shapes(shapes_of(), source)


def load_nerfmae(checkpoint_path: str | Path, config: NerfMAESwinConfig | Mapping | None = None,
                 device: str | torch.device = "cpu") -> SwinMAE3D:
    """Build the Swin-3D MAE and load a checkpoint strictly (every key, every shape). ``config``:
    None reads it from the checkpoint's tensor shapes (the released file gives the published
    ``swin_s`` at 160³)."""
    state = read_state_dict(checkpoint_path)
    config = _config(config, lambda: {k: v.shape for k, v in state.items()}, str(checkpoint_path))
    with torch.device("meta"):
        model = SwinMAE3D(config)
    check_state_dict(model, state, str(checkpoint_path))
    model.load_state_dict(state, strict=True, assign=True)
    for p in model.parameters():
        p.data = p.data.float()
    model.pos_embed.requires_grad_(False)
    return model.to(device).eval()


# ----------------------------------------------------------------------------------------------
# E and G


def grids_to_input(grids: torch.Tensor, resolution: int, sigma: bool = True) -> torch.Tensor:
    """(r, g, b, σ) grids ``[B, 4, X, Y, Z]`` -> NeRF-MAE input (r, g, b, alpha), zero-padded at the far
    end of each axis to ``resolution``³ as the official ``transform``; ``sigma=False``: already alpha."""
    if grids.dim() != 5 or grids.shape[1] != 4:
        raise ValueError(f"expected grids [B, 4, X, Y, Z], got {tuple(grids.shape)}")
    if max(grids.shape[2:]) > resolution:
        raise ValueError(f"grid {tuple(grids.shape[2:])} is larger than the model's {resolution}³")
    alpha = 1 - torch.exp(-grids[:, 3:].clamp_min(0)) if sigma else grids[:, 3:].clamp(0, 1)
    x = torch.cat([grids[:, :3].clamp(0, 1), alpha], 1)
    pad = [p for s in reversed(x.shape[2:]) for p in (0, resolution - s)]
    return F.pad(x, pad)


def output_to_grids(out: torch.Tensor, sigma: bool = True) -> torch.Tensor:
    """Network output (rgb, alpha logit) -> (r, g, b, σ) grids (or (r, g, b, alpha) if not ``sigma``)."""
    alpha = torch.sigmoid(out[:, 3:])
    last = -torch.log1p(-alpha.clamp_max(1 - 1e-6)) if sigma else alpha
    return torch.cat([out[:, :3].clamp(0, 1), last], 1)


class NerfMAESwinEncoder(Encoder):
    """E: grids -> z_E (decoder2 features, or the stage-3 bottleneck with ``features="bottleneck"``)."""

    name = "nerfmae-swin3d"

    def __init__(self, model: SwinMAE3D, device: str | torch.device = "cpu", features: str = "decoder",
                 sigma: bool = True):
        if features not in ("decoder", "bottleneck"):
            raise ValueError(f"features must be 'decoder' or 'bottleneck', got {features!r}")
        self.features, self.sigma = features, sigma
        self.cfg = model.c
        super().__init__(model, device)

    def settings(self) -> dict:
        return {"features": self.features, "sigma": self.sigma}

    @property
    def z_shape(self) -> tuple[int, ...]:
        return self.cfg.feature_shape(self.features)

    def _encode(self, grids: torch.Tensor) -> torch.Tensor:
        return self.module.latent(grids_to_input(grids, self.cfg.resolution, self.sigma), self.features)


class NerfMAESwinGenerator(Generator):
    """G: decoder2 features -> grids (decoder1 + out). NeRF-MAE has no prior: ``sample`` encodes and
    decodes a grid per condition, either a given grid ``[4, X, Y, Z]`` or an integer seed (a
    procedural train-split object of ``squeeze3d.corpora.radiance`` at the model's resolution)."""

    name = "nerfmae-swin3d"

    def __init__(self, model: SwinMAE3D, device: str | torch.device = "cpu", sigma: bool = True,
                 corpus_seed: int | None = None):
        from squeeze3d.corpora import radiance as radiance_corpus

        self.cfg, self.sigma = model.c, sigma
        self.corpus_seed = radiance_corpus.DEFAULT_SEED if corpus_seed is None else int(corpus_seed)
        super().__init__(model, device)

    def settings(self) -> dict:
        return {"sigma": self.sigma}

    def source_grids(self, conditions: Sequence[Any]) -> torch.Tensor:
        from squeeze3d.corpora import radiance as radiance_corpus

        grid_cfg = radiance_corpus.GridConfig(resolution=self.cfg.resolution)
        grids = []
        for cond in conditions:
            if isinstance(cond, torch.Tensor):
                grids.append(cond.float())
            else:
                s = int(cond)
                obj = radiance_corpus.make_grid(self.corpus_seed, radiance_corpus.train_index(s % 2**31), grid_cfg,
                                                variation=s + 1)
                grids.append(torch.as_tensor(obj.grid).float())
        return torch.stack(grids)

    def _sample_latents(self, conditions: Sequence[Any], rng: torch.Generator | None) -> torch.Tensor:
        grids = self.source_grids(conditions).to(self.device)
        return torch.cat([self.module.latent(grids_to_input(grids[i:i + 1], self.cfg.resolution, self.sigma))
                          for i in range(grids.shape[0])])

    def _decode(self, z_g: torch.Tensor) -> torch.Tensor:
        return output_to_grids(self.module.reconstruct(z_g), self.sigma)


def build_encoder(checkpoint_path: str | Path, device: str | torch.device = "cpu", *,
                  config: NerfMAESwinConfig | Mapping | None = None, features: str = "decoder", sigma: bool = True
                  ) -> NerfMAESwinEncoder:
    """E: the ``nerfmae_swin3d`` encoder adapter (``zoo.adapters``); ``checkpoint_path``: the ``.pt``
    of run_swin_mae3d.py or a ``.safetensors`` of its state dict."""
    return NerfMAESwinEncoder(load_nerfmae(checkpoint_path, config, device), device, features, sigma)


def build_generator(checkpoint_path: str | Path, device: str | torch.device = "cpu", *,
                    config: NerfMAESwinConfig | Mapping | None = None, sigma: bool = True,
                    corpus_seed: int | None = None) -> NerfMAESwinGenerator:
    """G: the ``nerfmae_swin3d`` generator adapter (same checkpoint as ``build_encoder``)."""
    return NerfMAESwinGenerator(load_nerfmae(checkpoint_path, config, device), device, sigma, corpus_seed)


def encoder_latent_shape(checkpoint_path: str | Path, *, config: NerfMAESwinConfig | Mapping | None = None,
                         features: str = "decoder", **_options) -> tuple[int, ...]:
    """z_E's shape from the checkpoint's tensor shapes (no weights loaded): the adapter's ``latent_shape``."""
    return _config(config, lambda: read_shapes(checkpoint_path), str(checkpoint_path)).feature_shape(features)


def generator_latent_shape(checkpoint_path: str | Path, *, config: NerfMAESwinConfig | Mapping | None = None,
                           **_options) -> tuple[int, ...]:
    """z_G's shape (decoder2 features) from the checkpoint's tensor shapes."""
    return _config(config, lambda: read_shapes(checkpoint_path), str(checkpoint_path)).z_shape


build_encoder.latent_shape = encoder_latent_shape
build_generator.latent_shape = generator_latent_shape


def memory_estimate_bytes(c: NerfMAESwinConfig | None = None) -> dict[str, int]:
    """fp32 sizes: weights, and the largest activations of one grid (window attention of stage 0
    holds heads x (R/4)³ x 64 scores; decoder1 outputs 48 x R³)."""
    c = c or NerfMAESwinConfig()
    with torch.device("meta"):
        n = sum(p.numel() for p in SwinMAE3D(c).parameters())
    s = c.resolution // c.patch
    attn = c.num_heads[0] * s ** 3 * c.window ** 3
    return {"weights": 4 * n, "stage0_attention_scores": 4 * attn,
            "decoder1_output": 4 * (c.embed_dim // 2) * c.resolution ** 3,
            "z": 4 * math.prod(c.z_shape)}
