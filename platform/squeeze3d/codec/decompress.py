"""Decompress: a ``.sq3d`` file or its bytes back to the asset, in the original frame.

    .sq3d → check (CRC, pair, model identity) → neural: dequantise → F_D → G [→ octree enhancement
    layer with that decode as context] → denormalise; fallback: the classical payload (no model)

``decompress_bytes`` / ``decompress_file`` are the public calls; ``model_for`` names the model that
decodes a file (the one given, else the one the file names). ``levels`` decodes only that many
octree levels (progressive decode).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from squeeze3d.assets import handler_for
from squeeze3d.assets.base import all_output_exts
from squeeze3d.codec import attributes as attributes_
from squeeze3d.codec.compressor import get_codec
from squeeze3d.codec.container import Container, ContainerError, read_container, unpack
from squeeze3d.codec.models import pair_for_codec
from squeeze3d.codec.results import DecompressResult, label
from squeeze3d.errors import UserError
from squeeze3d.io import InputError


def _check_levels(c: Container, levels: int | None, where: str = "") -> None:
    if levels is None:
        return
    if int(levels) < 0:
        raise UserError(f"--levels must be >= 0 octree levels, got {levels}")
    if not (c.coder == "octree" or c.enhancement):
        raise UserError(f"{where}--levels: this file has no octree layer to decode progressively "
                        f"({label(c)})")
    if c.attributes:
        raise UserError(f"{where}--levels: the file's {', '.join(c.attributes)} is coded for its full-resolution "
                        "points; decode it whole")


def _decode_with_attributes(c: Container, model: str | None, device: str, where: str = "",
                            levels: int | None = None) -> tuple[np.ndarray, dict]:
    """The asset in its original frame and the per-point attributes the file keeps; ``levels``:
    only that many levels of an octree layer (a coarser cloud: progressive decode)."""
    _check_levels(c, levels, where)
    if not c.attributes:
        return _decode_geometry(c, model, device, where, levels), {}
    if c.codec == "fallback" and not c.attr_payload:  # the classical payload carries them
        h = handler_for(pair_for_codec(c.pair).asset_kind)
        try:
            pts, attrs = h.fallback_decode_attributes(c.payload, c.attributes)
        except ContainerError as e:
            raise ContainerError(f"{where}{e}") from None
        return (pts.astype(np.float32) if c.own_frame else h.denormalise(pts, c.centre, c.scale)), attrs
    pts = _decode_geometry(c, model, device, where)
    try:
        return pts, attributes_.decode_for_points(c.attr_payload, pts, c.attributes)
    except ContainerError as e:
        raise ContainerError(f"{where}{e}") from None


def _decode_geometry(c: Container, model: str | None, device: str, where: str = "",
                     levels: int | None = None) -> np.ndarray:
    if c.codec == "fallback":
        pair = pair_for_codec(c.pair)  # an unknown pair is an error even though the fallback needs no model
        h = handler_for(pair.asset_kind)
        from squeeze3d.codec.classical import for_container

        try:  # no count check: Draco and the octree merge duplicate points: their count wins
            codec = for_container(h, c.coder)
            decoded = (codec.decode(c.payload, c.draco_bits) if levels is None else
                       codec.decode(c.payload, c.draco_bits, max_level=levels))
        except ContainerError as e:
            raise ContainerError(f"{where}{e}") from None
        return decoded.astype(np.float32) if c.own_frame else h.denormalise(decoded, c.centre, c.scale)
    return get_codec(c.pair, model_for(c, model, where), device).decode_container(c, where, levels)


def model_for(c: Container, model: str | None, where: str = "") -> str:
    """The model reference that decodes ``c``: the one given, else the one the file names (version 2:
    found by its weights-hash prefix among the shipped model and the registry; see ``codec.models``)."""
    if model is not None:
        return model
    if c.version >= 2:
        from squeeze3d.codec.models import resolve_for_hash

        try:
            return str(resolve_for_hash(pair_for_codec(c.pair), c.model_hash).path)
        except UserError as e:
            raise UserError(f"{where}{e}") from None
    if c.model_version is None:
        raise UserError(f"{where}compressed with a mapping checkpoint given by path (identity "
                        f"{c.model_identity}); pass that checkpoint with --model PATH")
    return str(c.model_version)


def decompress_bytes(data: bytes, *, model: str | None = None, device: str = "cpu",
                     levels: int | None = None) -> DecompressResult:
    """.sq3d bytes → the asset in the original frame (and its kept attributes). ``model`` defaults to
    the registry version recorded in the file; any other model is refused unless its weights hash
    matches. ``levels``: decode only that many levels of the file's octree layer (progressive)."""
    c = unpack(data)
    t0 = time.perf_counter()
    out, attrs = _decode_with_attributes(c, model, device, levels=levels)
    return DecompressResult(out, c, (time.perf_counter() - t0) * 1e3, attributes=attrs)


decompress_asset = decompress_bytes


def decompress_file(input: str | Path, output: str | Path, *, model: str | None = None,
                    device: str = "cpu", drop_attributes: bool = False, levels: int | None = None) -> DecompressResult:
    """.sq3d → an asset file, written atomically; the format follows the extension and the pair's
    kind (point clouds: .ply | .pcd | .las | .npz | .obj, with the attributes the file keeps;
    radiance fields: .npz in NeRF-MAE layout | .npy). A format that cannot hold a kept attribute
    (intensity in .obj) is refused before decoding, unless ``drop_attributes``."""
    out = check_any_output_path(output)
    c = read_container(input)
    h = handler_for(pair_for_codec(c.pair).asset_kind)
    h.check_output_path(out)
    attributes_.check_output(out, c.attributes, drop_attributes, where=f"{input}: ")
    t0 = time.perf_counter()
    data, attrs = _decode_with_attributes(c, model, device, where=f"{input}: ", levels=levels)
    ms = (time.perf_counter() - t0) * 1e3
    attrs = {} if drop_attributes else attrs
    return DecompressResult(data, c, ms, h.write(out, data, attrs), attributes=attrs)


def check_any_output_path(path: str | Path) -> Path:
    """Cheap output check before the pair (and so the kind) is known: an extension some kind writes."""
    p = Path(path)
    if p.suffix.lower() not in all_output_exts():
        raise InputError(f"{p}: unsupported output format {p.suffix or '(no extension)'!r}; "
                         f"use one of {', '.join(all_output_exts())}")
    if p.is_dir():
        raise InputError(f"{p}: is a directory")
    return p
