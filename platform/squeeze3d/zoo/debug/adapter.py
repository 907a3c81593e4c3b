"""Adapter functions (``zoo.adapters``) of the debug models, and their one-file checkpoints: one
safetensors file whose metadata names the architecture. ``checkpoint_path`` None: the fixed seed."""

from __future__ import annotations

import json
from pathlib import Path

from squeeze3d.zoo.adapters import need_checkpoint

DEBUG_META_KEY = "squeeze3d_debug"


def save_debug_checkpoint(model, path: str | Path) -> Path:
    """Write a debug encoder's or generator's weights as one safetensors file whose metadata names its
    architecture (what ``debug_encoder`` / ``debug_generator`` read back). ``model``: a
    ``DebugEncoder`` or ``DebugGenerator``, or their modules."""
    from safetensors.torch import save_file

    from squeeze3d.zoo.debug.models import TinyPointDecoder, TinyPointEncoder

    module = getattr(model, "module", model)
    if isinstance(module, TinyPointEncoder):
        arch = {"kind": "encoder", "latent_dim": module.mlp[-1].out_features, "hidden": module.mlp[0].out_features}
    elif isinstance(module, TinyPointDecoder):
        arch = {"kind": "generator", "latent_dim": module.mlp[0].in_features - 3,
                "num_points": int(module.template.shape[0]), "hidden": module.mlp[0].out_features}
    else:
        raise TypeError(f"not a debug model: {type(module).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}, str(path),
              metadata={DEBUG_META_KEY: json.dumps(arch)})
    return path


def _debug_checkpoint(path: Path, kind: str) -> tuple[dict, dict]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), "pt") as f:
        meta = (f.metadata() or {}).get(DEBUG_META_KEY)
    if meta is None:
        raise ValueError(f"{path}: not a debug-model checkpoint (no {DEBUG_META_KEY} metadata); write one with "
                         f"zoo.debug.adapter.save_debug_checkpoint")
    arch = json.loads(meta)
    if arch.get("kind") != kind:
        raise ValueError(f"{path}: holds a debug {arch.get('kind')}, not a {kind}")
    return arch, load_file(str(path))


def debug_encoder(checkpoint_path, device, latent_dim: int = 32):
    from squeeze3d.zoo.debug.models import DebugEncoder, TinyPointEncoder

    if checkpoint_path is None:
        return DebugEncoder(device, latent_dim=latent_dim)
    arch, state = _debug_checkpoint(need_checkpoint(checkpoint_path, "debug"), "encoder")
    module = TinyPointEncoder(arch["latent_dim"], arch["hidden"])
    module.load_state_dict(state)
    return DebugEncoder(device, module=module)


def debug_generator(checkpoint_path, device, latent_dim: int = 16, num_points: int = 256):
    from squeeze3d.zoo.debug.models import DebugGenerator, TinyPointDecoder

    if checkpoint_path is None:
        return DebugGenerator(device, latent_dim=latent_dim, num_points=num_points)
    arch, state = _debug_checkpoint(need_checkpoint(checkpoint_path, "debug"), "generator")
    module = TinyPointDecoder(arch["latent_dim"], arch["num_points"], arch["hidden"])
    module.load_state_dict(state)
    return DebugGenerator(device, module=module)


def debug_text_generator(checkpoint_path, device, latent_dim: int = 16, num_points: int = 256):
    from squeeze3d.zoo.debug.models import DebugTextGenerator

    if checkpoint_path is not None:
        raise ValueError("adapter 'debug_text' has fixed-seed weights only: set checkpoint to null")
    return DebugTextGenerator(device, latent_dim=latent_dim, num_points=num_points)
