"""LEB128 unsigned varints (7 bits a byte, low first) and zigzag signed integers: the one
implementation the container, the octree stream and the attribute layer use."""

from __future__ import annotations

from squeeze3d.errors import ContainerError


def encode(n: int) -> bytes:
    if n < 0:
        raise ValueError(f"varint of a negative number {n}")
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def decode(data: bytes, pos: int, what: str, max_bytes: int = 10) -> tuple[int, int]:
    """``(value, position after it)``; a varint that runs off the data or past ``max_bytes`` is a
    ``ContainerError`` naming ``what``."""
    n = shift = 0
    for i in range(max_bytes):
        if pos + i >= len(data):
            break
        b = data[pos + i]
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, pos + i + 1
    raise ContainerError(f"truncated or corrupted: {what} is not a valid varint")


def zigzag(v: int) -> int:
    return (v << 1) if v >= 0 else ((-v << 1) - 1)


def unzigzag(z: int) -> int:
    return (z >> 1) if not z & 1 else -((z + 1) >> 1)
