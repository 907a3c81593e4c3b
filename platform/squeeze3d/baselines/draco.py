"""Draco point-cloud coding: the baseline the evaluation compares against and the fallback codec.

DracoPy quantises positions to ``bits`` per axis over the cloud's bounding box and entropy-codes
them; ``level`` (0..10) trades speed for size. The fallback picks the *fewest* bits whose
reconstruction meets a D1-PSNR floor (PSNR rises ~6 dB per bit, so the scan is short).
"""

from __future__ import annotations

import numpy as np

# The one import that runs back up (to a leaf: codec/container.py imports only squeeze3d.errors):
# an undecodable baseline payload is a malformed .sq3d payload, and the compressor, the handlers
# and the tests catch ContainerError. It goes once ContainerError lives in squeeze3d.errors.
from squeeze3d.errors import ContainerError
from squeeze3d.metrics.pointcloud import d1_psnr_pair

DEFAULT_LEVEL = 10
BASELINE_BITS = (14, 11, 8, 7, 6, 5, 4, 3)
MIN_BITS, MAX_BITS = 1, 30


def encode_points(points: np.ndarray, bits: int, level: int = DEFAULT_LEVEL, attributes: dict | None = None) -> bytes:
    """``attributes`` (``squeeze3d.codec.attributes``: ``colour`` uint8 [N, 3], ``intensity`` uint16
    [N]) go in Draco's own colour attribute and one generic attribute, losslessly."""
    import DracoPy

    if not MIN_BITS <= int(bits) <= MAX_BITS:
        raise ValueError(f"Draco quantisation bits must be in {MIN_BITS}..{MAX_BITS}, got {bits}")
    pts = np.ascontiguousarray(points, dtype=np.float32)
    attrs = attributes or {}
    extra = {}
    if attrs.get("colour") is not None:
        extra["colors"] = np.ascontiguousarray(attrs["colour"], dtype=np.uint8)
    if attrs.get("intensity") is not None:  # an integer id: no metadata, so the standard 11-byte prefix
        extra["generic_attributes"] = {_INTENSITY_ID: np.ascontiguousarray(attrs["intensity"], np.uint16)[:, None]}
    return DracoPy.encode(pts, quantization_bits=int(bits), compression_level=int(level), **extra)


_INTENSITY_ID = 7
_GENERIC = 4  # draco::GeometryAttribute::GENERIC


def decode_cloud(data: bytes, names=()) -> tuple[np.ndarray, dict]:
    """Draco bytes → ``([N, 3]`` float32 points, the attributes ``names`` asked for); a payload that
    lacks one of them is a ``ContainerError``."""
    import DracoPy

    pts = decode_points(data)
    if not names:
        return pts, {}
    obj = DracoPy.decode(bytes(data))
    out = {}
    if "colour" in names:
        col = getattr(obj, "colors", None)
        if col is None or np.asarray(col).shape != (len(pts), 3):
            raise ContainerError("the Draco payload has no RGB colour attribute, but the header says it holds one")
        out["colour"] = np.asarray(col, np.uint8)
    if "intensity" in names:
        gen = [a for a in obj.attributes if a.get("attribute_type") == _GENERIC and a.get("num_components") == 1]
        data_ = np.asarray(gen[0]["data"]).reshape(-1) if gen else None
        if data_ is None or len(data_) != len(pts) or (data_.size and data_.max() > 65535):
            raise ContainerError("the Draco payload has no intensity attribute, but the header says it holds one")
        out["intensity"] = data_.astype(np.uint16)
    return pts, out


def decode_points(data: bytes, expected_points: int | None = None) -> np.ndarray:
    """Draco bytes → ``[N, 3]`` float32; anything undecodable, or a cloud of other than
    ``expected_points`` points (the container header's count), is a ``ContainerError``."""
    import DracoPy

    try:
        obj = DracoPy.decode(bytes(data))
        pts = np.asarray(obj.points, dtype=np.float32)
    except Exception as e:  # noqa: BLE001 - DracoPy raises assorted types on bad input
        raise ContainerError(f"the Draco payload cannot be decoded ({type(e).__name__}: {e})") from None
    if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) == 0:
        raise ContainerError(f"the Draco payload decoded to an array of shape {pts.shape}, expected [N, 3]")
    if not np.all(np.isfinite(pts)):
        raise ContainerError("the Draco payload decoded to non-finite coordinates")
    if expected_points is not None and len(pts) != expected_points:
        raise ContainerError(f"Draco payload holds {len(pts)} points, header says {expected_points}")
    return pts


def psnr(reference: np.ndarray, test: np.ndarray) -> float:
    return d1_psnr_pair(reference, test)


def encode_min_bits(points: np.ndarray, floor_db: float, level: int = DEFAULT_LEVEL,
                    start_bits: int = 2, attributes: dict | None = None) -> tuple[bytes, int, float]:
    """Fewest bits whose decoded cloud reaches ``floor_db`` D1-PSNR against ``points``.

    Returns ``(draco bytes, bits, achieved psnr)``. If even ``MAX_BITS`` misses the floor (only for
    absurd floors) the ``MAX_BITS`` encoding is returned with its PSNR."""
    best = None
    for bits in range(max(MIN_BITS, start_bits), MAX_BITS + 1):
        data = encode_points(points, bits, level, attributes)
        p = psnr(points, decode_points(data))
        best = (data, bits, p)
        if p >= floor_db:
            break
    assert best is not None
    return best
