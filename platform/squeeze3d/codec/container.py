"""The ``.sq3d`` container: a small, versioned, little-endian binary format with a CRC32 trailer.

Layout of format version 1 (all integers little-endian; offsets after ``pair`` shift by its length)::

    field           type           notes
    magic           4 bytes        b"SQ3D"
    version         u16            format version (this build reads ``SUPPORTED_VERSIONS``)
    codec           u8             0 neural, 1 fallback (the kind's classical codec: Draco / qz)
    dtype           u8             0 none (fallback), 1 f32, 2 f16, 3 int8
    quant           u8             0 none, 1 int8 per-vector scale, 2 int8 per-group scales
    draco_bits      u8             fallback: its rate (Draco bits 1..30; grid qz bits 1..16); neural: 0
    pair_len        u8             1..64
    pair            pair_len bytes ASCII pair name ([a-z0-9_])
    model_version   u32            registry version that compressed (0: a checkpoint given by path)
    model_hash      8 bytes        first 8 bytes of the mapping weights' sha256
    num_points      u32            asset size the decoder produces (1..2^24): points (point clouds)
                                   or grid resolution R (radiance fields, [4, R, R, R])
    code_ndim       u8             neural: 1..4 (MLP codes [d_C]; unet3d codes [C, r, r, r]); fallback: 0
    code_shape      code_ndim × u32  d_C = product (≤ 2^20)
    centre          3 × f64        normalisation: asset = points * scale + centre (grids: 0, 1)
    scale           f32            > 0, finite
    payload_len     u32            must equal the size the codec/dtype/d_C imply (neural)
    payload         payload_len bytes  neural: quantised code; fallback: a Draco point cloud or a qz grid
    crc32           u32            zlib.crc32 over every byte before it

Parsing is strict: magic and version first (so a wrong file or a newer format gets a specific
message), then every length is bounds-checked as it is read ("truncated or corrupted"), then the
CRC, then the semantics (enums known, d_C consistent with the payload size, finite normalisation).
Any failure raises ``ContainerError`` (a ``UserError``: the CLI prints one line and exits 2).

The format is kind-agnostic: the pair named in the header gives the asset kind, and that kind's
handler (``squeeze3d.assets``) interprets ``num_points``, the normalisation and the fallback payload
(whose own layout is checked by its decoder). Radiance fields fit version 1 unchanged, so no bump.
"""

from __future__ import annotations

import math
import re
import struct
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path

from squeeze3d.errors import UserError

MAGIC = b"SQ3D"
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)
MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_POINTS = 1 << 24
MAX_CODE_NUMBERS = 1 << 20
MAX_CODE_NDIM = 4
MAX_PAIR_LEN = 64

CODECS = ("neural", "fallback")
DTYPES = ("none", "f32", "f16", "int8")
QUANTS = ("none", "per_vector", "per_group")
GROUP_SIZE = 32  # int8 per-group: one f16 scale per GROUP_SIZE code numbers

_HEAD = struct.Struct("<4sHBBBBB")  # magic version codec dtype quant draco_bits pair_len
_MODEL = struct.Struct("<I8sIB")  # model_version model_hash num_points code_ndim
_NORM = struct.Struct("<3df")  # centre scale
_U32 = struct.Struct("<I")
_PAIR_RE = re.compile(r"[a-z0-9_]{1,64}")


class ContainerError(UserError):
    """A .sq3d file is malformed, corrupted, of an unknown version, or does not fit the model."""


def payload_size(dtype: str, quant: str, d_code: int) -> int:
    """Bytes a neural payload of ``d_code`` numbers takes (see ``squeeze3d.codec.quantise``)."""
    if dtype == "f32":
        return 4 * d_code
    if dtype == "f16":
        return 2 * d_code
    if dtype == "int8" and quant == "per_vector":
        return 4 + d_code
    if dtype == "int8" and quant == "per_group":
        return 2 * (-(-d_code // GROUP_SIZE)) + d_code
    raise ContainerError(f"no neural payload layout for dtype {dtype!r} with quantisation {quant!r}")


@dataclass(frozen=True)
class Container:
    pair: str
    codec: str
    """``neural`` (a quantised code) or ``fallback`` (the kind's classical codec: Draco, qz grid)."""
    model_version: int | None
    """Registry version of the mapping model that compressed; None for a checkpoint given by path."""
    model_hash: str
    """First 16 hex digits of the mapping weights' sha256."""
    num_points: int
    """Asset size: points (point clouds) or grid resolution R (radiance fields)."""
    code_shape: tuple[int, ...]
    dtype: str
    quant: str
    draco_bits: int
    centre: tuple[float, float, float]
    scale: float
    payload: bytes = field(repr=False)
    version: int = FORMAT_VERSION

    @property
    def d_code(self) -> int:
        return math.prod(self.code_shape) if self.code_shape else 0

    @property
    def model_identity(self) -> str:
        """Same form as ``squeeze3d.registry.ResolvedModel.identity``: ``v<version>:<hash>`` or ``path:<hash>``."""
        return f"{'v' + str(self.model_version) if self.model_version else 'path'}:{self.model_hash}"

    def describe(self) -> dict:
        """Header fields as plain values (``squeeze3d inspect``)."""
        return {
            "format_version": self.version, "pair": self.pair, "codec": self.codec,
            "model_identity": self.model_identity, "model_version": self.model_version,
            "model_hash": self.model_hash, "num_points": self.num_points,
            "code_shape": list(self.code_shape), "d_code": self.d_code, "dtype": self.dtype,
            "quant": self.quant, "draco_bits": self.draco_bits, "centre": list(self.centre),
            "scale": self.scale, "payload_bytes": len(self.payload), "total_bytes": len(pack(self)),
        }


def _check_semantics(c: Container) -> None:
    if c.codec not in CODECS:
        raise ContainerError(f"unknown codec {c.codec!r}; known: {', '.join(CODECS)}")
    if c.dtype not in DTYPES or c.quant not in QUANTS:
        raise ContainerError(f"unknown dtype/quantisation {c.dtype!r}/{c.quant!r}")
    if not _PAIR_RE.fullmatch(c.pair):
        raise ContainerError(f"invalid pair name {c.pair!r} in header")
    if not re.fullmatch(r"[0-9a-f]{16}", c.model_hash):
        raise ContainerError(f"invalid model hash {c.model_hash!r} in header")
    if c.model_version is not None and not 0 < c.model_version < 2**32:
        raise ContainerError(f"invalid model version {c.model_version}")
    if not 1 <= c.num_points <= MAX_POINTS:
        raise ContainerError(f"num_points {c.num_points} outside 1..{MAX_POINTS}")
    if not all(math.isfinite(v) for v in c.centre):
        raise ContainerError(f"non-finite normalisation centre {c.centre}")
    if not (math.isfinite(c.scale) and c.scale > 0):
        raise ContainerError(f"normalisation scale {c.scale} is not a positive finite number")
    if len(c.code_shape) > MAX_CODE_NDIM or any(not 1 <= d <= MAX_CODE_NUMBERS for d in c.code_shape):
        raise ContainerError(f"invalid code shape {c.code_shape}")
    if c.d_code > MAX_CODE_NUMBERS:
        raise ContainerError(f"code of {c.d_code} numbers exceeds {MAX_CODE_NUMBERS}")
    if c.codec == "neural":
        if not c.code_shape:
            raise ContainerError("neural container without a code shape")
        if c.dtype == "none" or c.draco_bits != 0:
            raise ContainerError(f"neural container with dtype {c.dtype!r} and draco_bits {c.draco_bits}")
        if (c.dtype == "int8") != (c.quant != "none"):
            raise ContainerError(f"dtype {c.dtype!r} does not go with quantisation {c.quant!r}")
        want = payload_size(c.dtype, c.quant, c.d_code)
        if len(c.payload) != want:
            raise ContainerError(f"payload is {len(c.payload)} bytes but d_C={c.d_code} in {c.dtype}"
                                 f"{'/' + c.quant if c.quant != 'none' else ''} needs {want}")
    else:
        if c.code_shape or c.dtype != "none" or c.quant != "none":
            raise ContainerError("fallback container must have no code shape, dtype or quantisation")
        if not 1 <= c.draco_bits <= 30:
            raise ContainerError(f"fallback Draco quantisation bits {c.draco_bits} outside 1..30")
        if not c.payload:
            raise ContainerError("fallback container with an empty Draco payload")


def pack(c: Container) -> bytes:
    """Serialise (validating first: a container that ``unpack`` would refuse is never written)."""
    _check_semantics(c)
    pair = c.pair.encode("ascii")
    out = bytearray()
    out += _HEAD.pack(MAGIC, c.version, CODECS.index(c.codec), DTYPES.index(c.dtype),
                      QUANTS.index(c.quant), c.draco_bits, len(pair))
    out += pair
    out += _MODEL.pack(c.model_version or 0, bytes.fromhex(c.model_hash), c.num_points, len(c.code_shape))
    out += b"".join(_U32.pack(d) for d in c.code_shape)
    out += _NORM.pack(*c.centre, c.scale)
    out += _U32.pack(len(c.payload)) + c.payload
    out += _U32.pack(zlib.crc32(out))
    return bytes(out)


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.off = data, 0

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.off + n > len(self.data):
            raise ContainerError(f"truncated or corrupted: {what} needs {n} bytes at offset {self.off}, "
                                 f"but the file has {len(self.data)} bytes")
        b = self.data[self.off:self.off + n]
        self.off += n
        return b

    def unpack(self, st: struct.Struct, what: str) -> tuple:
        return st.unpack(self.take(st.size, what))


def unpack(data: bytes) -> Container:
    """Parse and validate a whole file's bytes."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ContainerError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > MAX_FILE_BYTES:
        raise ContainerError(f"file is {len(data)} bytes; .sq3d files are at most {MAX_FILE_BYTES}")
    if not data or not MAGIC.startswith(data[:len(MAGIC)]):
        raise ContainerError(f"not a .sq3d file (starts with {data[:4]!r}, expected {MAGIC!r})")
    r = _Reader(data)
    r.take(len(MAGIC), "magic")
    (version,) = struct.unpack("<H", r.take(2, "format version"))
    if version not in SUPPORTED_VERSIONS:
        raise ContainerError(f".sq3d format version {version} is not supported; this build reads version(s) "
                             f"{', '.join(map(str, SUPPORTED_VERSIONS))}")
    r.off = 0
    _, _, codec, dtype, quant, draco_bits, pair_len = r.unpack(_HEAD, "header")
    if not 1 <= pair_len <= MAX_PAIR_LEN:
        raise ContainerError(f"corrupted header: pair name length {pair_len}")
    pair_b = r.take(pair_len, "pair name")
    model_version, model_hash, num_points, ndim = r.unpack(_MODEL, "model identity")
    if ndim > MAX_CODE_NDIM:
        raise ContainerError(f"corrupted header: code has {ndim} dimensions (at most {MAX_CODE_NDIM})")
    shape = tuple(_U32.unpack(r.take(4, f"code_shape[{i}]"))[0] for i in range(ndim))
    *centre, scale = r.unpack(_NORM, "normalisation")
    (plen,) = r.unpack(_U32, "payload length")
    payload = r.take(plen, "payload")
    (crc,) = r.unpack(_U32, "CRC32")
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
    _check_semantics(c)
    return c


def read_container(path: str | Path) -> Container:
    p = Path(path)
    if not p.exists():
        raise ContainerError(f"{p}: no such file")
    if not p.is_file():
        raise ContainerError(f"{p}: not a regular file")
    size = p.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ContainerError(f"{p}: {size} bytes; .sq3d files are at most {MAX_FILE_BYTES}")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ContainerError(f"{p}: cannot read: {e.strerror or e}") from e
    try:
        return unpack(data)
    except ContainerError as e:
        raise ContainerError(f"{p}: {e}") from None


def with_payload(c: Container, payload: bytes) -> Container:
    return replace(c, payload=payload)
