"""Adapter functions (``zoo.adapters``) of the mini NeRF-MAE (the published Swin-3D network:
``swin3d.build_encoder`` / ``build_generator``)."""

from __future__ import annotations

from squeeze3d.zoo.adapters import dir_or_shipped


def nerfmae_mini_encoder(checkpoint_path, device):
    from squeeze3d.zoo.nerfmae import model as nerfmae

    p = dir_or_shipped(checkpoint_path, "nerfmae_mini")
    model, _ = nerfmae.load_weights(p) if p is not None else nerfmae.load_weights()
    return nerfmae.NerfMAEEncoder(device, model=model)


def nerfmae_mini_generator(checkpoint_path, device):
    from squeeze3d.zoo.nerfmae import model as nerfmae

    p = dir_or_shipped(checkpoint_path, "nerfmae_mini")
    model, _ = nerfmae.load_weights(p) if p is not None else nerfmae.load_weights()
    return nerfmae.NerfMAEGenerator(device, model=model)
