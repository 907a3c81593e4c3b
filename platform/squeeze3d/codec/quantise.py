"""Code quantisation: the payload of a neural .sq3d container.

    f32         d_C little-endian float32
    f16         d_C little-endian float16 (values beyond ±65504 are refused, not silently clipped)
    int8        symmetric, round-to-nearest, zero-point 0, values in [-127, 127]:
      per_vector  one f32 scale (absmax/127) then d_C int8                → 4 + d_C bytes
      per_group   one f16 scale per 32 numbers then d_C int8              → 2·⌈d_C/32⌉ + d_C bytes
    fixed       k-bit integers q in [0, 2^k − 1], code = q·Δ − 1 with Δ = 2 / (2^k − 1), bit-packed
                little-endian                                             → ⌈k·d_C / 8⌉ bytes
                Only for models whose codes are bounded in [-1, 1] by construction
                (``mapping.code_bound = "tanh"``) and trained with quantisation noise of that Δ: no
                scale is stored, so a 128-number code at 6 bits is 96 bytes.

Why no per-*dimension* scales in the file: for one code vector, d_C per-dimension scales cost more
bytes than storing the code in f16. Per-dimension scales only pay off when they are shared by the
model (calibrated on training codes), which needs code statistics in the mapping checkpoint. The
gram loss drives codes towards decorrelated, similarly scaled dimensions, so a single per-vector
scale loses little; ``per_group`` is the measured middle ground (see the codec evaluation).
"""

from __future__ import annotations

import numpy as np

from squeeze3d.codec.container import GROUP_SIZE, ContainerError, payload_size

DTYPE_CHOICES = ("f32", "f16", "int8", "fixed")
QUANT_CHOICES = ("per_vector", "per_group")


def fixed_step(bits: int) -> float:
    """Δ of a k-bit fixed-range code on [-1, 1]."""
    return 2.0 / ((1 << int(bits)) - 1)


def fixed_levels(code: np.ndarray, bits: int) -> np.ndarray:
    """Codes in [-1, 1] → integer levels ``[0, 2^k − 1]`` (round to nearest; values outside are clipped)."""
    x = np.clip(np.asarray(code, np.float64), -1.0, 1.0)
    return np.rint((x + 1.0) / fixed_step(bits)).astype(np.int64)


def from_levels(q: np.ndarray, bits: int) -> np.ndarray:
    """Integer levels of a k-bit fixed-range code → its float32 numbers (``fixed_levels``' inverse)."""
    return (np.asarray(q, np.int64) * fixed_step(bits) - 1.0).astype(np.float32)


def quantise(code: np.ndarray, dtype: str, quant: str = "per_vector", bits: int = 0) -> bytes:
    """``code``: any shape, float → payload bytes. ``quant`` only matters for int8, ``bits`` for fixed."""
    x = np.asarray(code, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(x)):
        raise ValueError("the code contains NaN or Inf (the mapping network diverged on this input)")
    if dtype == "fixed":
        if not 1 <= bits <= 16:
            raise ValueError(f"fixed-range codes take 1..16 bits, got {bits}")
        q = fixed_levels(x, bits)
        planes = ((q[:, None] >> np.arange(bits)) & 1).astype(np.uint8).reshape(-1)
        return np.packbits(planes, bitorder="little").tobytes()
    if dtype == "f32":
        return x.astype("<f4").tobytes()
    if dtype == "f16":
        if np.abs(x).max(initial=0.0) > 65504:
            raise ValueError("code values exceed the float16 range; use --dtype f32")
        return x.astype("<f2").tobytes()
    if dtype != "int8":
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPE_CHOICES)}")
    if quant == "per_vector":
        scale = np.float32(np.abs(x).max(initial=0.0) / 127.0)
        q = _q8(x, np.float64(scale))
        return np.array([scale], "<f4").tobytes() + q.tobytes()
    if quant == "per_group":
        n = x.size
        groups = -(-n // GROUP_SIZE)
        padded = np.zeros(groups * GROUP_SIZE)
        padded[:n] = x
        absmax = np.abs(padded.reshape(groups, GROUP_SIZE)).max(axis=1)
        # round the scale up to the next f16 so that absmax/scale never exceeds 127
        scales = (absmax / 127.0).astype("<f2")
        scales = np.where(scales.astype(np.float64) * 127.0 < absmax, np.nextafter(scales, np.float16(np.inf)),
                          scales).astype("<f2")
        q = _q8(x, np.repeat(scales.astype(np.float64), GROUP_SIZE)[:n])
        return scales.tobytes() + q.tobytes()
    raise ValueError(f"unknown int8 quantisation {quant!r}; choose one of {', '.join(QUANT_CHOICES)}")


def _q8(x: np.ndarray, scale) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(scale > 0, np.rint(x / np.where(scale > 0, scale, 1.0)), 0.0)
    return np.clip(q, -127, 127).astype(np.int8)


def dequantise(payload: bytes, dtype: str, quant: str, shape: tuple[int, ...], bits: int = 0) -> np.ndarray:
    """Payload bytes → float32 code of ``shape``; the size was already checked by the container."""
    n = int(np.prod(shape)) if shape else 0
    if len(payload) != payload_size(dtype, quant if dtype == "int8" else "none", n, bits):
        raise ContainerError(f"payload of {len(payload)} bytes does not hold {n} {dtype} numbers")
    if dtype == "fixed":
        planes = np.unpackbits(np.frombuffer(payload, np.uint8), bitorder="little")[:n * bits].reshape(n, bits)
        q = (planes.astype(np.int64) << np.arange(bits)).sum(axis=1)
        x = from_levels(q, bits)
    elif dtype == "f32":
        x = np.frombuffer(payload, "<f4").astype(np.float32)
    elif dtype == "f16":
        x = np.frombuffer(payload, "<f2").astype(np.float32)
    elif quant == "per_vector":
        scale = np.frombuffer(payload[:4], "<f4")[0]
        if not (np.isfinite(scale) and scale >= 0):
            raise ContainerError(f"int8 scale {scale} is not a finite non-negative number")
        x = np.frombuffer(payload[4:], np.int8).astype(np.float32) * scale
    else:
        groups = -(-n // GROUP_SIZE)
        scales = np.frombuffer(payload[:2 * groups], "<f2").astype(np.float32)
        if not np.all(np.isfinite(scales) & (scales >= 0)):
            raise ContainerError("int8 group scales are not finite non-negative numbers")
        x = np.frombuffer(payload[2 * groups:], np.int8).astype(np.float32) * np.repeat(scales, GROUP_SIZE)[:n]
    if not np.all(np.isfinite(x)):
        raise ContainerError("the code in the payload contains NaN or Inf")
    return x.reshape(shape)
