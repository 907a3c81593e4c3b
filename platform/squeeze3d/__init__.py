"""Squeeze3D: pre-trained 3D generative models as extreme neural compressors.

The import name is ``squeeze3d``; the source lives under ``platform/squeeze3d`` (``platform/`` is
never a package: it would shadow Python's stdlib ``platform`` module).
"""

__version__ = "0.1.0"
