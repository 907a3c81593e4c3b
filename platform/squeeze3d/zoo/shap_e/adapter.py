"""Adapter functions (``zoo.adapters``) of Shap-E: the mini generator and a local diffusers
``ShapEPipeline`` folder."""

from __future__ import annotations

import json
from pathlib import Path

from squeeze3d.zoo.adapters import dir_or_shipped, need_checkpoint


def shap_e_mini_generator(checkpoint_path, device, num_points: int = 2048):
    from squeeze3d.zoo.shap_e.model import ShapEGenerator

    return ShapEGenerator(device, path=dir_or_shipped(checkpoint_path, "shap_e_mini"), num_points=num_points)


def _shap_e_mini_shape(checkpoint_path, **_options):
    from squeeze3d.zoo.shap_e import model as shap_e

    d = Path(checkpoint_path) if checkpoint_path else shap_e.WEIGHTS_DIR
    return shap_e.ShapEConfig(**json.loads((d / "squeeze3d.json").read_text())).z_shape


shap_e_mini_generator.latent_shape = _shap_e_mini_shape


def shap_e_diffusers_generator(checkpoint_path, device, num_points: int = 2048, grid_size: int = 32,
                               steps: int = 16, guidance_scale: float = 3.0):
    """A local ``ShapEPipeline`` folder (the layout of openai/shap-e on the Hugging Face hub: prior,
    shap_e_renderer, text_encoder, tokenizer, scheduler); never downloaded."""
    from squeeze3d.zoo.shap_e.pipeline import ShapEPipelineGenerator

    return ShapEPipelineGenerator(need_checkpoint(checkpoint_path, "shap_e_diffusers"), device, num_points=num_points,
                                  grid_size=grid_size, steps=steps, guidance_scale=guidance_scale)


def _shap_e_diffusers_shape(checkpoint_path, **_options):
    cfg = json.loads((need_checkpoint(checkpoint_path, "shap_e_diffusers") / "prior" / "config.json").read_text())
    return (int(cfg["num_embeddings"]), int(cfg["embedding_dim"]))


shap_e_diffusers_generator.latent_shape = _shap_e_diffusers_shape
