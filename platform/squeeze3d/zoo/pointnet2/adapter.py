"""Adapter functions (``zoo.adapters``) of PointNet++."""

from __future__ import annotations

from squeeze3d.zoo.adapters import dir_or_shipped


def pointnet2_encoder(checkpoint_path, device, level: str = "global"):
    """A folder (``pointnet2_cls.safetensors`` + ``.json``), or a file written by the reference PointNet++
    training script (``best_model.pth``, read with ``weights_only=True``); None: the shipped mini."""
    from squeeze3d.zoo.pointnet2 import model as pointnet2

    p = dir_or_shipped(checkpoint_path, "pointnet2")
    if p is None:
        model, config = pointnet2.load_weights()
    elif p.is_dir():
        model, config = pointnet2.load_weights(p)
    else:
        model, config = pointnet2.load_official_checkpoint(p), {}
    return pointnet2.PointNet2Encoder(device, model=model, config=config, level=level)
