"""The Python API: ``squeeze3d.compress``, ``squeeze3d.decompress``, ``squeeze3d.load_codec``.

A thin layer over ``squeeze3d.codec.compressor`` (imported on first use, so ``import squeeze3d``
stays light)::

    import squeeze3d

    data = squeeze3d.compress("chair.ply", pair="pointnet_lion")      # .sq3d bytes
    points = squeeze3d.decompress(data)                               # [2048, 3] float32

    codec = squeeze3d.load_codec("pointnet_lion", model="7")         # batch: load the models once
    blobs = [squeeze3d.compress(p, codec=codec) for p in paths]
    clouds = [squeeze3d.decompress(b, codec=codec) for b in blobs]

``compress`` takes an array of the pair's kind (``[N, 3]`` points in any frame; ``[4, R, R, R]`` grids) or
a path the pair's handler reads (meshes are sampled with ``seed``); it returns the bytes of a .sq3d
file. ``decompress`` takes those bytes (or a .sq3d path) and returns the asset in the original frame:
the pair's resample (e.g. 2048 points), not every input point. ``model``: as ``--model`` on the command
line (None: the registry champion; a version number; a ``models:/`` URI; a checkpoint directory).
Errors a caller can fix are ``squeeze3d.errors.UserError``.
"""

from __future__ import annotations

import os
from pathlib import Path

from squeeze3d.codec import DEFAULT_DTYPE, DEFAULT_MIN_QUALITY_DB, DEFAULT_PAIR, DEFAULT_QUANT


def load_codec(pair: str = DEFAULT_PAIR, model: str | None = None, device: str = "cpu"):
    """A ``Codec`` for ``pair`` and ``model``, shared process-wide; pass it as ``codec=`` to compress
    and decompress many assets without reloading. The model is resolved now (a missing model or an
    unreachable registry fails here, not on the first asset); its networks load on first use."""
    from squeeze3d.codec.compressor import get_codec

    codec = get_codec(pair, None if model is None else str(model), device)
    _ = codec.resolved
    return codec


def compress(points_or_path, *, pair: str = DEFAULT_PAIR, model: str | None = None, codec=None,
             dtype: str | None = DEFAULT_DTYPE, quant: str = DEFAULT_QUANT,
             min_quality: float | None = DEFAULT_MIN_QUALITY_DB, device: str = "cpu", seed: int = 0,
             target_bytes: int | None = None, effort: int | None = None, attributes: dict | None = None,
             drop_attributes: bool = False) -> bytes:
    """An asset (array, or a file path) → .sq3d bytes. ``codec`` (from ``load_codec``) overrides
    ``pair``/``model``/``device``. ``min_quality``: the quality floor in dB: the smallest file meeting it
    among the neural variants and the classical codec (None: off). ``target_bytes``: instead, the best
    quality that fits. ``effort``: test-time refinement steps (None: the default, 0: off).
    ``attributes``: per-point ``colour`` (uint8 [N, 3]) / ``intensity`` (uint16 [N]) of an array's
    points; a file's are read with it (per-point data no mode keeps are refused unless
    ``drop_attributes``, which keeps geometry only, as the CLI's ``--drop-attributes``)."""
    c = codec if codec is not None else load_codec(pair, model, device)
    x = points_or_path
    if isinstance(x, (str, os.PathLike)):
        from squeeze3d.codec.attributes import for_codec

        x, attributes = for_codec(c.handler.read(Path(x), c.pair, seed), x, drop_attributes)
    elif drop_attributes:
        attributes = None
    return c.compress_asset(x, dtype=dtype, quant=quant, min_quality=min_quality, target_bytes=target_bytes, effort=effort,
                            attributes=attributes).data


def decompress(data, *, model: str | None = None, codec=None, device: str = "cpu", attributes: bool = False):
    """.sq3d bytes (or a path to a .sq3d file) → the asset in the original frame (``numpy`` float32:
    ``[num_points, 3]`` points or a ``[4, R, R, R]`` grid). ``model`` defaults to the registry version
    recorded in the data; a ``codec`` from ``load_codec`` is used for neural data of its pair.
    ``attributes=True``: ``(asset, {"colour": ..., "intensity": ...})`` with the attributes the file keeps."""
    from squeeze3d.codec.container import unpack
    from squeeze3d.codec.decompress import decompress_bytes

    if isinstance(data, (str, os.PathLike)):
        data = Path(data).read_bytes()
    data = bytes(data)
    if codec is not None:
        c = unpack(data)
        if c.codec == "neural" and not (attributes and c.attributes):
            asset = codec.decode_container(c)
            return (asset, {}) if attributes else asset
        model = model if model is not None else codec.model_ref
    r = decompress_bytes(data, model=model, device=device)
    return (r.data, r.attributes or {}) if attributes else r.data
