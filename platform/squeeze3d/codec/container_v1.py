"""The ``.sq3d`` container's version 1 layout ("SQ3D" magic, fixed-width fields, CRC32 trailer), as
documented in ``squeeze3d.codec.container``: read for files written before version 2, and written
only when a caller asks for version 1."""

from __future__ import annotations

import struct
import zlib

from squeeze3d.codec.container_fields import (
    CODECS,
    DTYPES,
    MAGIC,
    MAX_CODE_NDIM,
    MAX_PAIR_LEN,
    QUANTS,
    SUPPORTED_VERSIONS,
    U32,
    V1_HEAD,
    V1_MODEL,
    V1_NORM,
    Container,
    ContainerError,
    Reader,
    check_semantics,
)


def pack_v1(c: Container) -> bytes:
    """Version 1 bytes of a (checked) container."""
    pair = c.pair.encode("ascii")
    out = bytearray()
    out += V1_HEAD.pack(MAGIC, c.version, CODECS.index(c.codec), DTYPES.index(c.dtype),
                      QUANTS.index(c.quant), c.draco_bits, len(pair))
    out += pair
    out += V1_MODEL.pack(c.model_version or 0, bytes.fromhex(c.model_hash), c.num_points, len(c.code_shape))
    out += b"".join(U32.pack(d) for d in c.code_shape)
    out += V1_NORM.pack(*c.centre, c.scale)
    out += U32.pack(len(c.payload)) + c.payload
    out += U32.pack(zlib.crc32(out))
    return bytes(out)


def unpack_v1(data: bytes) -> Container:
    """Parse and check version 1 bytes (they start with ``MAGIC``)."""
    r = Reader(data)
    r.take(len(MAGIC), "magic")
    (version,) = struct.unpack("<H", r.take(2, "format version"))
    if version != 1:  # the "SQ3D" layout is version 1 only; version 2 has its own magic
        raise ContainerError(f".sq3d format version {version} is not supported; this build reads version(s) "
                             f"{', '.join(map(str, SUPPORTED_VERSIONS))}")
    r.off = 0
    _, _, codec, dtype, quant, draco_bits, pair_len = r.unpack(V1_HEAD, "header")
    if not 1 <= pair_len <= MAX_PAIR_LEN:
        raise ContainerError(f"corrupted header: pair name length {pair_len}")
    pair_b = r.take(pair_len, "pair name")
    model_version, model_hash, num_points, ndim = r.unpack(V1_MODEL, "model identity")
    if ndim > MAX_CODE_NDIM:
        raise ContainerError(f"corrupted header: code has {ndim} dimensions (at most {MAX_CODE_NDIM})")
    shape = tuple(U32.unpack(r.take(4, f"code_shape[{i}]"))[0] for i in range(ndim))
    *centre, scale = r.unpack(V1_NORM, "normalisation")
    (plen,) = r.unpack(U32, "payload length")
    payload = r.take(plen, "payload")
    (crc,) = r.unpack(U32, "CRC32")
    if r.off != len(data):
        raise ContainerError(f"corrupted: {len(data) - r.off} unexpected bytes after the CRC32")
    actual = zlib.crc32(data[:-4])
    if actual != crc:
        raise ContainerError(f"checksum mismatch (stored CRC32 {crc:08x}, computed {actual:08x}): the file is "
                             "corrupted")
    if codec >= len(CODECS):
        raise ContainerError(f"unknown codec id {codec}; this build knows {', '.join(CODECS)}")
    if dtype >= len(DTYPES):
        raise ContainerError(f"unknown dtype id {dtype}; this build knows {', '.join(DTYPES[1:])}")
    if quant >= len(QUANTS):
        raise ContainerError(f"unknown quantisation id {quant}; this build knows {', '.join(QUANTS)}")
    try:
        pair = pair_b.decode("ascii")
    except UnicodeDecodeError as e:
        raise ContainerError(f"pair name {pair_b!r} is not ASCII") from e
    c = Container(pair=pair, codec=CODECS[codec], model_version=model_version or None,
                  model_hash=model_hash.hex(), num_points=num_points, code_shape=shape,
                  dtype=DTYPES[dtype], quant=QUANTS[quant], draco_bits=draco_bits,
                  centre=(float(centre[0]), float(centre[1]), float(centre[2])), scale=float(scale),
                  payload=payload, version=version)
    check_semantics(c)
    return c
