"""The ``.sq3d`` container's fields and the rules every file obeys, whatever its layout: constants,
``Container``, ``payload_size``, ``check_semantics`` and the bounds-checked ``Reader`` that the layouts
(``container_v1`` and the compact layouts in ``container``) share. The format itself is documented in
``squeeze3d.codec.container``."""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass, field

from squeeze3d.errors import ContainerError

MAGIC = b"SQ3D"
FORMAT_VERSION = 2
ATTRIBUTES_VERSION = LAYERED_VERSION = 3
"""Files that keep per-point attributes or carry octree layers (see the module doc); others are
still written as version 2."""
SUPPORTED_VERSIONS = (1, 2, 3)
CODERS = ("draco", "octree")
EXT_OCTREE, EXT_ENHANCEMENT, EXT_ENTROPY, EXT_ATTRS = 0x40, 0x80, 0x04, 0x03
MAGIC_V2 = b"S3"
MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_POINTS = 1 << 24
MAX_CODE_NUMBERS = 1 << 20
MAX_CODE_NDIM = 4
MAX_PAIR_LEN = 64

CODECS = ("neural", "fallback")
DTYPES = ("none", "f32", "f16", "int8", "fixed", "entropy")
"""``fixed``: codes bounded in [-1, 1] by the model (``mapping.code_bound``), stored as k-bit integers
with no scale at all (version 2 only); ``entropy``: the same k-bit levels range-coded with the model's
code prior (version 3 only)."""
LEVEL_DTYPES = ("fixed", "entropy")
"""Dtypes whose code is k-bit fixed-range levels (k in ``draco_bits``)."""
MAX_FIXED_BITS = 16
QUANTS = ("none", "per_vector", "per_group")
GROUP_SIZE = 32  # int8 per-group: one f16 scale per GROUP_SIZE code numbers

V1_HEAD = struct.Struct("<4sHBBBBB")  # magic version codec dtype quant draco_bits pair_len
V1_MODEL = struct.Struct("<I8sIB")  # model_version model_hash num_points code_ndim
V1_NORM = struct.Struct("<3df")  # centre scale
U32 = struct.Struct("<I")
_PAIR_RE = re.compile(r"[a-z0-9_]{1,64}")
DRACO_PREFIX = b"DRACO\x02\x03\x00\x01\x00\x00"
"""What DracoPy's point clouds start with: magic, version 2.3, point cloud, kd-tree, no flags."""


def payload_size(dtype: str, quant: str, d_code: int, bits: int = 0) -> int:
    """Bytes a neural payload of ``d_code`` numbers takes (see ``squeeze3d.codec.quantise``)."""
    if dtype == "fixed":
        if not 1 <= bits <= MAX_FIXED_BITS:
            raise ContainerError(f"fixed-range code with {bits} bits (1..{MAX_FIXED_BITS} allowed)")
        return -(-d_code * bits // 8)
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
    """Fallback: the classical codec's rate; neural ``fixed``: k, the bits per code number; else 0."""
    centre: tuple[float, float, float]
    scale: float
    payload: bytes = field(repr=False)
    version: int = FORMAT_VERSION
    own_frame: bool = False
    """Fallback only: the payload is the asset in its own frame (Draco keeps its quantisation frame),
    so there is no normalisation, size or model hash in the file (format version 2, modes 6/7)."""
    coder: str = "draco"
    """Fallback only: the classical coder of the payload (``draco``, or ``octree``: version 3)."""
    enhancement: bytes = field(default=b"", repr=False)
    """Neural only (version 3): an octree stream of the asset, coded with the neural decode as
    context (``codec.octree``); decoded, it replaces the neural points."""
    attributes: tuple[str, ...] = ()
    """Per-point attributes the file keeps (``squeeze3d.codec.attributes.NAMES``; format version 3)."""
    attr_payload: bytes = field(default=b"", repr=False)
    """Their coding for the decoded points; empty when the classical payload carries them (Draco)."""

    @property
    def d_code(self) -> int:
        return math.prod(self.code_shape) if self.code_shape else 0

    @property
    def model_identity(self) -> str:
        """Same form as ``squeeze3d.registry.ResolvedModel.identity``: ``v<version>:<hash>`` or
        ``path:<hash>``; version 2 files name the weights only (``hash:<8 hex digits>``)."""
        if self.version >= 2:
            return f"hash:{self.model_hash}"
        return f"{'v' + str(self.model_version) if self.model_version else 'path'}:{self.model_hash}"

    def matches_weights(self, weights_hash: str) -> bool:
        """Was this file written by the mapping weights with this sha256 (hex)?"""
        return str(weights_hash).startswith(self.model_hash)

    @property
    def stored_payload_bytes(self) -> int:
        """Payload bytes as the file stores them: an own-frame Draco fallback keeps the payload without
        Draco's fixed prefix (the mode says it was there), so it is shorter on disk than in memory."""
        if self.own_frame and self.coder == "draco" and self.payload.startswith(DRACO_PREFIX):
            return len(self.payload) - len(DRACO_PREFIX)
        return len(self.payload)


def check_semantics(c: Container) -> None:
    """Refuse a container no reader should accept (``pack`` checks before writing, ``unpack`` after
    parsing)."""
    if c.attributes or c.attr_payload:
        from squeeze3d.codec.attributes import mask_of

        mask_of(c.attributes)  # known names only
        if not c.attributes or c.version != ATTRIBUTES_VERSION:
            raise ContainerError(f"attributes need format version {ATTRIBUTES_VERSION} and at least one name")
        if tuple(sorted(c.attributes, key=lambda n: mask_of([n]))) != tuple(c.attributes) or len(set(c.attributes)) != len(c.attributes):
            raise ContainerError(f"attributes {c.attributes} are not distinct names in their canonical order")
    elif c.version == ATTRIBUTES_VERSION and not (c.coder == "octree" or c.enhancement or c.dtype == "entropy"):
        raise ContainerError(f"format version {ATTRIBUTES_VERSION} is for files with attributes, octree layers "
                             "or an entropy-coded code; this one has none")
    if c.coder not in CODERS or (c.coder == "octree" and (c.version != LAYERED_VERSION or c.codec != "fallback")):
        raise ContainerError(f"classical coder {c.coder!r} in a version {c.version} {c.codec} container")
    if c.enhancement and (c.codec != "neural" or c.version != LAYERED_VERSION):
        raise ContainerError("only version 3 neural containers carry an enhancement layer")
    if c.codec not in CODECS:
        raise ContainerError(f"unknown codec {c.codec!r}; known: {', '.join(CODECS)}")
    if c.dtype not in DTYPES or c.quant not in QUANTS:
        raise ContainerError(f"unknown dtype/quantisation {c.dtype!r}/{c.quant!r}")
    if not _PAIR_RE.fullmatch(c.pair):
        raise ContainerError(f"invalid pair name {c.pair!r} in header")
    if not re.fullmatch(r"[0-9a-f]{16}" if c.version == 1 else r"[0-9a-f]{8}", c.model_hash):
        raise ContainerError(f"invalid model hash {c.model_hash!r} in header")
    if c.own_frame:
        if c.codec != "fallback" or c.version not in (2, ATTRIBUTES_VERSION):
            raise ContainerError("only version 2 fallback containers keep the asset's own frame")
        if not (0 if c.coder == "octree" else 1) <= c.draco_bits <= 30 or not c.payload:
            raise ContainerError(f"own-frame fallback with bits {c.draco_bits} and {len(c.payload)} payload bytes")
        return
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
        if c.dtype == "none" or (c.draco_bits != 0) != (c.dtype in LEVEL_DTYPES):
            raise ContainerError(f"neural container with dtype {c.dtype!r} and draco_bits (bits) {c.draco_bits}")
        if c.dtype == "fixed" and c.version < 2:
            raise ContainerError("fixed-range codes need format version 2")
        if c.dtype == "entropy":
            if c.version != LAYERED_VERSION or not 1 <= c.draco_bits <= MAX_FIXED_BITS or c.quant != "none":
                raise ContainerError(f"an entropy-coded code needs format version {LAYERED_VERSION}, 1..16 bits "
                                     "and no int8 quantisation")
            return
        if (c.dtype == "int8") != (c.quant != "none"):
            raise ContainerError(f"dtype {c.dtype!r} does not go with quantisation {c.quant!r}")
        want = payload_size(c.dtype, c.quant, c.d_code, c.draco_bits)
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


class Reader:
    """Bounds-checked reads from a file's bytes: running short is a one-line ``ContainerError``."""

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


