"""Adapter functions (``zoo.adapters``) for the models this package ships code for: the debug models,
the mini zoo, and the real-layout loaders of MeshAnything and diffusers' Shap-E.

Every function is ``(checkpoint_path, device, **options) -> Encoder | Generator``; heavy imports stay
inside. ``checkpoint_path`` None means the shipped weights (the debug models: their fixed seed). The
``latent_shape`` attached to some functions reads only configuration files, so a driver can resolve
a pair of large models without loading them.
"""

from __future__ import annotations

import json
from pathlib import Path


def _need(checkpoint_path, adapter: str) -> Path:
    if not checkpoint_path:
        raise ValueError(f"adapter {adapter!r} needs a checkpoint path (it has no shipped weights)")
    p = Path(checkpoint_path)
    if not p.exists():
        raise FileNotFoundError(f"adapter {adapter!r}: checkpoint {p} does not exist")
    return p


def _dir_or_shipped(checkpoint_path, adapter: str) -> Path | None:
    return None if checkpoint_path is None else _need(checkpoint_path, adapter)


# --- debug models: one safetensors file, the architecture in its metadata --------------------------

DEBUG_META_KEY = "squeeze3d_debug"


def save_debug_checkpoint(model, path: str | Path) -> Path:
    """Write a debug encoder's or generator's weights as one safetensors file whose metadata names its
    architecture (what ``debug_encoder`` / ``debug_generator`` read back). ``model``: a
    ``DebugEncoder`` or ``DebugGenerator``, or their modules."""
    from safetensors.torch import save_file

    from squeeze3d.zoo.debug_models import TinyPointDecoder, TinyPointEncoder

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
                         f"zoo.mini_adapters.save_debug_checkpoint")
    arch = json.loads(meta)
    if arch.get("kind") != kind:
        raise ValueError(f"{path}: holds a debug {arch.get('kind')}, not a {kind}")
    return arch, load_file(str(path))


def debug_encoder(checkpoint_path, device, latent_dim: int = 32):
    from squeeze3d.zoo.debug_models import DebugEncoder, TinyPointEncoder

    if checkpoint_path is None:
        return DebugEncoder(device, latent_dim=latent_dim)
    arch, state = _debug_checkpoint(_need(checkpoint_path, "debug"), "encoder")
    module = TinyPointEncoder(arch["latent_dim"], arch["hidden"])
    module.load_state_dict(state)
    return DebugEncoder(device, module=module)


def debug_generator(checkpoint_path, device, latent_dim: int = 16, num_points: int = 256):
    from squeeze3d.zoo.debug_models import DebugGenerator, TinyPointDecoder

    if checkpoint_path is None:
        return DebugGenerator(device, latent_dim=latent_dim, num_points=num_points)
    arch, state = _debug_checkpoint(_need(checkpoint_path, "debug"), "generator")
    module = TinyPointDecoder(arch["latent_dim"], arch["num_points"], arch["hidden"])
    module.load_state_dict(state)
    return DebugGenerator(device, module=module)


def debug_text_generator(checkpoint_path, device, latent_dim: int = 16, num_points: int = 256):
    from squeeze3d.zoo.debug_models import DebugTextGenerator

    if checkpoint_path is not None:
        raise ValueError("adapter 'debug_text' has fixed-seed weights only: set checkpoint to null")
    return DebugTextGenerator(device, latent_dim=latent_dim, num_points=num_points)


# --- mini zoo: folders in the zoo's own format (safetensors + JSON) ---------------------------------

def pointnet2_encoder(checkpoint_path, device, level: str = "global"):
    """A folder (``pointnet2_cls.safetensors`` + ``.json``), or a file written by the reference PointNet++
    training script (``best_model.pth``, read with ``weights_only=True``); None: the shipped mini."""
    from squeeze3d.zoo import pointnet2

    p = _dir_or_shipped(checkpoint_path, "pointnet2")
    if p is None:
        model, config = pointnet2.load_weights()
    elif p.is_dir():
        model, config = pointnet2.load_weights(p)
    else:
        model, config = pointnet2.load_official_checkpoint(p), {}
    return pointnet2.PointNet2Encoder(device, model=model, config=config, level=level)


def lion_mini_generator(checkpoint_path, device, ddim_steps: int = 16, posterior_mix: float = 0.0):
    from squeeze3d.zoo import lion

    p = _dir_or_shipped(checkpoint_path, "lion_mini")
    model, configs = lion.load_lion(p) if p is not None else lion.load_lion()
    return lion.LionGenerator(device, model=model, configs=configs, ddim_steps=ddim_steps, posterior_mix=posterior_mix)


def _lion_mini_shape(checkpoint_path, **_options):
    from squeeze3d.zoo import lion

    d = Path(checkpoint_path) if checkpoint_path else lion.WEIGHTS_DIR
    cfg = json.loads((d / f"{lion.VAE_NAME}.json").read_text())
    return (lion.LionConfig.from_dict(cfg["architecture"]).z_dim,)


lion_mini_generator.latent_shape = _lion_mini_shape


def meshanything_mini_encoder(checkpoint_path, device):
    from squeeze3d.zoo.meshanything import MeshAnythingEncoder

    return MeshAnythingEncoder(device, weights=_dir_or_shipped(checkpoint_path, "meshanything_mini"))


def nerfmae_mini_encoder(checkpoint_path, device):
    from squeeze3d.zoo import nerfmae

    p = _dir_or_shipped(checkpoint_path, "nerfmae_mini")
    model, _ = nerfmae.load_weights(p) if p is not None else nerfmae.load_weights()
    return nerfmae.NerfMAEEncoder(device, model=model)


def nerfmae_mini_generator(checkpoint_path, device):
    from squeeze3d.zoo import nerfmae

    p = _dir_or_shipped(checkpoint_path, "nerfmae_mini")
    model, _ = nerfmae.load_weights(p) if p is not None else nerfmae.load_weights()
    return nerfmae.NerfMAEGenerator(device, model=model)


def shap_e_mini_generator(checkpoint_path, device, num_points: int = 2048):
    from squeeze3d.zoo.shap_e import ShapEGenerator

    return ShapEGenerator(device, path=_dir_or_shipped(checkpoint_path, "shap_e_mini"), num_points=num_points)


def _shap_e_mini_shape(checkpoint_path, **_options):
    from squeeze3d.zoo import shap_e

    d = Path(checkpoint_path) if checkpoint_path else shap_e.WEIGHTS_DIR
    return shap_e.ShapEConfig(**json.loads((d / "squeeze3d.json").read_text())).z_shape


shap_e_mini_generator.latent_shape = _shap_e_mini_shape


# --- real checkpoints in their published layout ---------------------------------------------------

def meshanything_350m_encoder(checkpoint_path, device, heads: int = 12, shapevae_yaml: str | None = None):
    """MeshAnything's released checkpoint (``MeshAnything_350m.pth``, a safetensors file): its z_E path
    (``point_encoder.model.shape_model.*``, ``shape_projection``, ``cond_head_proj``, ``cond_proj``).
    ``heads`` (not visible in tensor shapes): 12 in ``shapevae-256.yaml``, or give that YAML."""
    from squeeze3d.zoo.meshanything import MeshAnythingEncoder
    from squeeze3d.zoo.meshanything_checkpoint import load_meshanything_checkpoint

    p = _need(checkpoint_path, "meshanything_350m")
    model = load_meshanything_checkpoint(p, heads=None if shapevae_yaml else heads, yaml_path=shapevae_yaml)
    return MeshAnythingEncoder(device, model=model, meta={"checkpoint": str(p)})


def _meshanything_350m_shape(checkpoint_path, **_options):
    """``(1 + L, d)`` from the safetensors header alone: the encoder's query rows and cond_proj's outputs."""
    from safetensors import safe_open

    with safe_open(str(_need(checkpoint_path, "meshanything_350m")), "pt") as f:
        tokens = f.get_slice("point_encoder.model.shape_model.encoder.query").get_shape()[0]
        dim = f.get_slice("cond_proj.weight").get_shape()[0]
    return (int(tokens), int(dim))


meshanything_350m_encoder.latent_shape = _meshanything_350m_shape


def shap_e_diffusers_generator(checkpoint_path, device, num_points: int = 2048, grid_size: int = 32,
                               steps: int = 16, guidance_scale: float = 3.0):
    """A local ``ShapEPipeline`` folder (the layout of openai/shap-e on the Hugging Face hub: prior,
    shap_e_renderer, text_encoder, tokenizer, scheduler); never downloaded."""
    from squeeze3d.zoo.shap_e_pipeline import ShapEPipelineGenerator

    return ShapEPipelineGenerator(_need(checkpoint_path, "shap_e_diffusers"), device, num_points=num_points,
                                  grid_size=grid_size, steps=steps, guidance_scale=guidance_scale)


def _shap_e_diffusers_shape(checkpoint_path, **_options):
    cfg = json.loads((_need(checkpoint_path, "shap_e_diffusers") / "prior" / "config.json").read_text())
    return (int(cfg["num_embeddings"]), int(cfg["embedding_dim"]))


shap_e_diffusers_generator.latent_shape = _shap_e_diffusers_shape
