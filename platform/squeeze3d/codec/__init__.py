"""The .sq3d codec: container, quantisation, neural compressor with a Draco fallback, evaluation.

Public API (``squeeze3d.codec.compressor``): ``compress_points``, ``compress_file``, ``decompress_bytes``,
``decompress_file``, ``interpolate``, ``get_codec``; evaluation: ``squeeze3d.codec.evaluate.evaluate``.
This module stays import-light (no torch) so the CLI starts fast; the defaults live here.
"""

DEFAULT_PAIR = "pointnet_lion"
DEFAULT_DTYPE = "int8"
DEFAULT_QUANT = "per_vector"
DEFAULT_MIN_QUALITY_DB = 30.0
"""Quality gate floor (D1-PSNR, dB); see ``squeeze3d.codec.compressor`` for why 30."""
