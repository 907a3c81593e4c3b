"""Squeeze3D: pre-trained 3D generative models as extreme neural compressors.

The import name is ``squeeze3d``; the source lives under ``platform/squeeze3d`` (``platform/`` is
never a package: it would shadow Python's stdlib ``platform`` module).

``squeeze3d.compress``, ``squeeze3d.decompress`` and ``squeeze3d.load_codec`` (``squeeze3d.api``) are
imported on first use: ``import squeeze3d`` (and so the CLI's start) does not import torch.
"""

__version__ = "0.1.0"

__all__ = ["compress", "decompress", "load_codec", "__version__"]

_API = ("compress", "decompress", "load_codec")


def __getattr__(name: str):
    if name in _API:
        from squeeze3d import api

        return getattr(api, name)
    raise AttributeError(f"module 'squeeze3d' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_API])
