"""Adapter functions (``zoo.adapters``) of the mini LION (LION's released checkpoint: ``official.build_generator``)."""

from __future__ import annotations

import json
from pathlib import Path

from squeeze3d.zoo.adapters import dir_or_shipped


def lion_mini_generator(checkpoint_path, device, ddim_steps: int = 16, posterior_mix: float = 0.0):
    from squeeze3d.zoo.lion import model as lion

    p = dir_or_shipped(checkpoint_path, "lion_mini")
    model, configs = lion.load_lion(p) if p is not None else lion.load_lion()
    return lion.LionGenerator(device, model=model, configs=configs, ddim_steps=ddim_steps, posterior_mix=posterior_mix)


def _lion_mini_shape(checkpoint_path, **_options):
    from squeeze3d.zoo.lion import model as lion

    d = Path(checkpoint_path) if checkpoint_path else lion.WEIGHTS_DIR
    cfg = json.loads((d / f"{lion.VAE_NAME}.json").read_text())
    return (lion.LionConfig.from_dict(cfg["architecture"]).z_dim,)


lion_mini_generator.latent_shape = _lion_mini_shape
