"""MeshAnything's checkpoint layout (buaacyw/MeshAnything, ``MeshAnything_350m.pth``, a safetensors
file) onto the mini encoder.

The z_E path of MeshAnything reads these tensors (the rest of the file, the OPT transformer and the
noise-resistant decoder under ``transformer.*`` / ``tokenizer.*``, builds meshes from z_E and is
not needed to encode):

    point_encoder.model.shape_model.*     Michelangelo's shape Perceiver   -> shape_model.*
    point_encoder.model.shape_projection  CLIP-alignment projection        -> shape_projection
    cond_head_proj.{weight,bias}          global-token projection          -> cond_head_proj.*
    cond_proj.{weight,bias}               shape-token projection           -> cond_proj.*

Loading is strict: every tensor of the mini model (``color_channels=0``: MeshAnything feeds xyz +
normals only) must be present with the right shape, and nothing unknown may sit under those
prefixes; otherwise one ``MeshAnythingCheckpointError`` line names the missing, mis-shaped and
unexpected keys. The architecture is read from the tensor shapes; the number of attention heads is
not visible in shapes, so it comes from the caller or from MeshAnything's ``shapevae-256.yaml``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

# the strict key check lives beside the model (its own weights loader uses it too): one import direction
from squeeze3d.zoo.meshanything.model import (  # noqa: F401
    MeshAnythingCheckpointError,
    MeshAnythingConfig,
    MeshAnythingMini,
    check_state_dict,
)

PREFIXES = {"point_encoder.model.shape_model.": "shape_model.",
            "point_encoder.model.shape_projection": "shape_projection",
            "cond_head_proj.": "cond_head_proj.", "cond_proj.": "cond_proj."}
"""MeshAnything key prefix -> mini key prefix."""


def to_mini_keys(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], int]:
    """The z_E-path tensors renamed to mini keys, and how many other tensors were skipped."""
    out, skipped = {}, 0
    for k, v in state.items():
        for theirs, ours in PREFIXES.items():
            if k.startswith(theirs):
                out[ours + k[len(theirs):]] = v
                break
        else:
            skipped += 1
    return out, skipped


def _count(state: Mapping, prefix: str) -> int:
    idx = {k[len(prefix):].split(".")[0] for k in state if k.startswith(prefix)}
    return len(idx)


def config_from_state(state: Mapping[str, torch.Tensor], heads: int, include_pi: bool = False) -> MeshAnythingConfig:
    """The architecture implied by the tensor shapes (mini key names); ``heads`` from the caller."""
    need = ["shape_model.encoder.query", "shape_model.encoder.input_proj.weight", "shape_model.pre_kl.weight",
            "shape_model.geo_decoder.query_proj.weight", "cond_proj.weight"]
    missing = [k for k in need if k not in state]
    if missing:
        raise MeshAnythingCheckpointError("not a MeshAnything checkpoint: missing "
                                          + ", ".join(k.replace("shape_model.", "point_encoder.model.shape_model.")
                                                      for k in missing))
    tokens, width = state["shape_model.encoder.query"].shape
    fourier = state["shape_model.geo_decoder.query_proj.weight"].shape[1]
    if (fourier % 3) or ((fourier // 3 - 1) % 2):
        raise MeshAnythingCheckpointError(f"geo_decoder.query_proj takes {fourier} inputs: not a 3-D Fourier embedding")
    num_freqs = (fourier // 3 - 1) // 2
    feats = state["shape_model.encoder.input_proj.weight"].shape[1] - fourier
    if feats != 3:
        raise MeshAnythingCheckpointError(f"encoder.input_proj takes {feats} point features besides the Fourier "
                                          "embedding; MeshAnything's point encoder takes the 3 normal components")
    return MeshAnythingConfig(
        num_latents=int(tokens) - 1, width=int(width), heads=int(heads),
        num_encoder_layers=_count(state, "shape_model.encoder.self_attn.resblocks."),
        num_decoder_layers=_count(state, "shape_model.transformer.resblocks."),
        embed_dim=int(state["shape_model.pre_kl.weight"].shape[0]) // 2, num_freqs=int(num_freqs),
        include_pi=include_pi, color_channels=0, cond_dim=int(state["cond_proj.weight"].shape[0]),
        qkv_bias="shape_model.encoder.cross_attn.attn.c_q.bias" in state)


def shape_vae_yaml(path: str | Path) -> dict:
    """``heads``, ``num_freqs``, ``include_pi`` from MeshAnything's ``shapevae-256.yaml``."""
    import yaml

    cfg = yaml.safe_load(Path(path).read_text())
    try:
        p = cfg["model"]["params"]["shape_module_cfg"]["params"]
    except (KeyError, TypeError) as e:
        raise MeshAnythingCheckpointError(f"{path}: no model.params.shape_module_cfg.params section") from e
    return {k: p[k] for k in ("heads", "num_freqs", "include_pi") if k in p}


def load_meshanything_checkpoint(path: str | Path, heads: int | None = None, config: MeshAnythingConfig | None = None,
                                 yaml_path: str | Path | None = None) -> MeshAnythingMini:
    """The mini encoder with a MeshAnything checkpoint's z_E-path weights (strict).

    ``config``: the expected architecture (shapes are then checked against it); without it, the
    architecture is read from the shapes and ``heads`` (or ``yaml_path``'s) supplies the head count."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"MeshAnything checkpoint {path} does not exist")
    state, _ = to_mini_keys(load_file(str(path)))
    if config is None:
        extra = shape_vae_yaml(yaml_path) if yaml_path is not None else {}
        heads = heads if heads is not None else extra.get("heads")
        if heads is None:
            raise MeshAnythingCheckpointError("the head count is not stored in the weights: pass heads= or the "
                                              "yaml_path of MeshAnything's shapevae-256.yaml")
        config = config_from_state(state, int(heads), bool(extra.get("include_pi", False)))
    if config.color_channels:
        raise MeshAnythingCheckpointError("MeshAnything's layout has no colour input or head: pass a config "
                                          "with color_channels=0")
    model = MeshAnythingMini(config)
    check_state_dict(state, model, str(path))
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval()


def export_meshanything_layout(model: MeshAnythingMini, path: str | Path) -> Path:
    """Write the model's z_E-path tensors under MeshAnything's key names (safetensors): what the
    adapter reads. The mini-only colour head has no MeshAnything counterpart and is refused."""
    from safetensors.torch import save_file

    if model.cfg.color_channels:
        raise ValueError("MeshAnything's layout has no colour input or head: export a color_channels=0 model")
    back = {v: k for k, v in PREFIXES.items()}
    out = {}
    for k, v in model.state_dict().items():
        ours = next(p for p in back if k.startswith(p))
        out[back[ours] + k[len(ours):]] = v.contiguous()
    save_file(out, str(path))
    return Path(path)
