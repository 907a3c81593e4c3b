"""Adapter functions (``zoo.adapters``) of MeshAnything: the mini encoder (shipped weights or a folder)
and the released checkpoint's z_E path."""

from __future__ import annotations

from squeeze3d.zoo.adapters import dir_or_shipped, need_checkpoint


def meshanything_mini_encoder(checkpoint_path, device):
    from squeeze3d.zoo.meshanything.model import MeshAnythingEncoder

    return MeshAnythingEncoder(device, weights=dir_or_shipped(checkpoint_path, "meshanything_mini"))


def meshanything_350m_encoder(checkpoint_path, device, heads: int = 12, shapevae_yaml: str | None = None):
    """MeshAnything's released checkpoint (``MeshAnything_350m.pth``, a safetensors file): its z_E path
    (``point_encoder.model.shape_model.*``, ``shape_projection``, ``cond_head_proj``, ``cond_proj``).
    ``heads`` (not visible in tensor shapes): 12 in ``shapevae-256.yaml``, or give that YAML."""
    from squeeze3d.zoo.meshanything.checkpoint import load_meshanything_checkpoint
    from squeeze3d.zoo.meshanything.model import MeshAnythingEncoder

    p = need_checkpoint(checkpoint_path, "meshanything_350m")
    model = load_meshanything_checkpoint(p, heads=None if shapevae_yaml else heads, yaml_path=shapevae_yaml)
    return MeshAnythingEncoder(device, model=model, meta={"checkpoint": str(p)})


def _meshanything_350m_shape(checkpoint_path, **_options):
    """``(1 + L, d)`` from the safetensors header alone: the encoder's query rows and cond_proj's outputs."""
    from safetensors import safe_open

    with safe_open(str(need_checkpoint(checkpoint_path, "meshanything_350m")), "pt") as f:
        tokens = f.get_slice("point_encoder.model.shape_model.encoder.query").get_shape()[0]
        dim = f.get_slice("cond_proj.weight").get_shape()[0]
    return (int(tokens), int(dim))


meshanything_350m_encoder.latent_shape = _meshanything_350m_shape
