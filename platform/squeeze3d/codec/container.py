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

Format version 2 (written by default; version 1 files still decode) cuts the overhead from ~80 to
at most 24 bytes for a neural file (d_C < 16384, assets < 16384 points), because at a few hundred bytes
the header *is* the rate::

    field           type           notes
    magic           2 bytes        b"S3" (version 1 starts b"SQ3D", so the two never collide)
    version|flags   u8             low nibble: 2; high nibble: flags (bit 4: normalisation in f32)
    mode            u8             high 3 bits: 0 neural fixed-range k-bit, 1 f16, 2 f32, 3 int8
                                   per-vector, 4 int8 per-group, 5 fallback; low 5 bits: k (fixed) or
                                   the fallback's rate (Draco bits / qz bits), else 0
    pair_tag        2 bytes        first 2 bytes of blake2b(pair name): resolved against the registry
    model_hash      4 bytes        first 4 bytes of the mapping weights' sha256 (fallback: of the model
                                   that would have been used; informational)
    size            varint         points (point clouds) or grid resolution R (radiance fields)
    d_code          varint         neural only: numbers in the code (its shape comes from the model)
    centre, scale   4 × f16        (4 × f32 when the flag says so: the packer uses f32 whenever f16
                                   would move the asset by more than 1e-3 of its scale for a neural
                                   file, 1e-5 for a fallback: +8 bytes for far-off-centre assets)
    payload         rest           neural: exactly the size mode and d_code imply; fallback: the rest
    crc16           u16            CRC-16-CCITT (binascii.crc_hqx, init 0xFFFF) over every byte
                                   before it: detects every single-bit flip and any burst ≤ 16 bits

Own-frame fallbacks (modes 6 and 7, written since the real-objects work; modes 0-5 still decode).
Draco stores its own quantisation frame (origin and range), so a Draco fallback carries no
normalisation, no model hash and no size (Draco merges duplicate points, so the count is Draco's),
and mode 6 also elides the 11 bytes every Draco 2.3 point-cloud file starts with (``DRACO_PREFIX``)::

    magic 2 · version|flags 1 · mode|bits 1 · pair_tag 2 · payload · crc16 2     (8 bytes)

so a fallback file is 3 bytes *smaller* than the bare Draco file it wraps (mode 7 keeps a Draco
file whose first bytes differ, at +8 bytes).

Format version 3 (written only for what version 2 cannot say: per-point attributes, octree layers
or an entropy-coded code; other files stay version 2, byte for byte) is version 2 with an extension byte right after
the pair tag, in every mode::

    magic 2 · version|flags 1 (low nibble 3) · mode|bits 1 · pair_tag 2 ·
    ext u8 (bit 0 colour RGB, bit 1 intensity, bit 2 entropy-coded code, bit 6 octree fallback,
            bit 7 enhancement layer) ·
    [attr_len varint · attr_payload: only when bit 0 or 1 is set] ·
    ... the rest exactly as version 2 (own-frame: payload · crc16) · [enhancement]

``attr_payload`` is empty when the classical payload carries the attributes itself (Draco's colour
and generic attributes); otherwise it is ``squeeze3d.codec.attributes.encode_for_points``'s coding
of them for the decoded points (the neural rungs, the octree).

An entropy-coded code (bit 2; mode 0, its bits k in the mode byte): the fixed-range levels of the
code range-coded with the model's learned code prior (``squeeze3d.codec.code_prior``) instead of
packed raw; the payload is the coded bytes (variable length: with an enhancement layer after it, a
varint of its length comes first). Container dtype ``entropy``.

The octree coder (``squeeze3d.codec.octree``) writes two kinds of layered file:

- an octree fallback (bit 6): the own-frame layout of mode 7 (no normalisation, size or model
  hash), its payload an octree stream that carries its own grid: 9 bytes of container;
- a neural code with an enhancement layer (bit 7): a neural header and code exactly as version 2,
  followed by an octree stream of the asset in the normalised frame, coded with the neural decode
  as context (the code's size follows from mode and d_code, so the layer needs no length).

Parsing is strict: magic and version first (so a wrong file or a newer format gets a specific
message), then every length is bounds-checked as it is read ("truncated or corrupted"), then the
CRC, then the semantics (enums known, d_C consistent with the payload size, finite normalisation).
Any failure raises ``ContainerError`` (a ``UserError``: the CLI prints one line and exits 2).

The format is kind-agnostic: the pair named in the header gives the asset kind, and that kind's
handler (``squeeze3d.assets``) interprets ``num_points``, the normalisation and the fallback payload
(whose own layout is checked by its decoder). Radiance fields fit version 1 unchanged, so no bump.
"""

from __future__ import annotations

import binascii
import hashlib
import math
import struct
from dataclasses import replace
from pathlib import Path

from squeeze3d.codec import varint
from squeeze3d.codec.container_fields import (  # the fields and constants are this module's API too
    ATTRIBUTES_VERSION,
    CODECS,
    CODERS,
    DRACO_PREFIX,
    DTYPES,
    EXT_ATTRS,
    EXT_ENHANCEMENT,
    EXT_ENTROPY,
    EXT_OCTREE,
    FORMAT_VERSION,
    GROUP_SIZE,
    LAYERED_VERSION,
    LEVEL_DTYPES,
    MAGIC,
    MAGIC_V2,
    MAX_CODE_NUMBERS,
    MAX_FILE_BYTES,
    MAX_FIXED_BITS,
    MAX_PAIR_LEN,
    MAX_POINTS,
    QUANTS,
    SUPPORTED_VERSIONS,
    Container,
    Reader,
    check_semantics,
    payload_size,
)
from squeeze3d.codec.container_v1 import pack_v1, unpack_v1
from squeeze3d.errors import ContainerError  # noqa: F401 - re-exported: the codec's error type

__all__ = ["ATTRIBUTES_VERSION", "CODECS", "CODERS", "DRACO_PREFIX", "DTYPES", "FORMAT_VERSION", "GROUP_SIZE",
           "LAYERED_VERSION", "LEVEL_DTYPES", "MAGIC", "MAGIC_V2", "MAX_CODE_NUMBERS", "MAX_FILE_BYTES",
           "MAX_FIXED_BITS", "MAX_PAIR_LEN", "MAX_POINTS", "QUANTS", "SUPPORTED_VERSIONS", "Container",
           "ContainerError", "describe", "header_bytes", "pack", "pair_tag", "payload_size", "read_container",
           "unpack", "with_attributes", "with_payload"]

def pack(c: Container) -> bytes:
    """Serialise (validating first: a container that ``unpack`` would refuse is never written)."""
    check_semantics(c)
    return _pack_v2(c) if c.version in (2, ATTRIBUTES_VERSION) else pack_v1(c)


def unpack(data: bytes) -> Container:
    """Parse and validate a whole file's bytes."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ContainerError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > MAX_FILE_BYTES:
        raise ContainerError(f"file is {len(data)} bytes; .sq3d files are at most {MAX_FILE_BYTES}")
    if data[:2] == MAGIC_V2:
        return _unpack_v2(data)
    if not data or not (MAGIC.startswith(data[:len(MAGIC)]) or MAGIC_V2.startswith(data[:2])):
        raise ContainerError(f"not a .sq3d file (starts with {data[:4]!r}, expected {MAGIC_V2!r} or {MAGIC!r})")
    if len(data) < len(MAGIC) or data[:len(MAGIC)] != MAGIC:
        raise ContainerError(f"truncated or corrupted: {len(data)} bytes are too short for a .sq3d header")
    return unpack_v1(data)


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


# ---------------------------------------------------------------------------------- version 2
_V2_MODES = ("fixed", "f16", "f32", "int8/per_vector", "int8/per_group", "fallback", "fallback/own-elided",
             "fallback/own")
_FLAG_NORM_F32 = 0x10
_NORM16 = struct.Struct("<4e")
_NORM32 = struct.Struct("<4f")


def pair_tag(name: str) -> bytes:
    """The 2-byte pair id of version 2 headers."""
    return hashlib.blake2b(name.encode("ascii"), digest_size=2).digest()


def _pair_from_tag(tag: bytes) -> str:
    from squeeze3d.pairs import all_names as names  # registered and declared in pair files

    hits = [n for n in names() if pair_tag(n) == tag]
    if not hits:
        raise ContainerError(f"the file names pair tag {tag.hex()}, which no registered pair has "
                             f"(registered or declared: {', '.join(names())}); it was written by a build with other pairs")
    return hits[0]


def _read_varint(r: Reader, what: str) -> int:
    n, r.off = varint.decode(r.data, r.off, what, max_bytes=4)  # ≤ 2^28: every size this format allows
    return n


def _norm_fits_f16(centre, scale, tol: float) -> bool:
    """f16 normalisation unless it would move the asset by more than ``tol`` of its scale."""
    vals = [*centre, scale]
    if any(abs(v) > 60000 for v in vals):
        return False
    back = struct.unpack("<4e", struct.pack("<4e", *vals))
    if not (back[3] > 0 and math.isfinite(back[3])):
        return False
    err = max(abs(a - b) for a, b in zip(back[:3], vals[:3])) + abs(back[3] - scale) * 1.0
    return err <= tol * scale


def _mode_of(c: Container) -> int:
    if c.own_frame:
        return 6 if c.coder == "draco" and c.payload.startswith(DRACO_PREFIX) else 7
    if c.codec == "fallback":
        return 5
    key = {"int8": f"int8/{c.quant}", "entropy": "fixed"}.get(c.dtype, c.dtype)
    return _V2_MODES.index(key)


def _attr_section(c: Container) -> bytes:
    """Version 3's extension byte, and the attribute payload when the file keeps attributes."""
    if c.version != ATTRIBUTES_VERSION:
        return b""
    from squeeze3d.codec.attributes import mask_of

    mask = mask_of(c.attributes)
    ext = mask | (EXT_OCTREE if c.coder == "octree" else 0) | (EXT_ENHANCEMENT if c.enhancement else 0) \
        | (EXT_ENTROPY if c.dtype == "entropy" else 0)
    return bytes([ext]) + ((varint.encode(len(c.attr_payload)) + c.attr_payload) if mask else b"")


def _pack_v2(c: Container) -> bytes:
    if c.model_version is not None:
        raise ContainerError("format version 2 does not store a registry version (the weights hash names the model)")
    # neural codes err by ~1e-2 of the scale (30-40 dB): a 1e-3 shift costs them < 0.01 dB; a classical
    # fallback, or an enhancement layer, may be coded at 60-80 dB, so it keeps f16 only for a 1e-5 shift
    f16 = _norm_fits_f16(c.centre, c.scale, 1e-3 if c.codec == "neural" and not c.enhancement else 1e-5)
    bits = c.draco_bits
    if c.own_frame:
        mode = _mode_of(c)
        out = bytearray(MAGIC_V2) + bytes([c.version, mode << 5 | bits]) + pair_tag(c.pair) + _attr_section(c)
        out += c.payload[len(DRACO_PREFIX):] if mode == 6 else c.payload
        out += struct.pack("<H", binascii.crc_hqx(bytes(out), 0xFFFF))
        return bytes(out)
    out = bytearray(MAGIC_V2)
    out.append(c.version | (0 if f16 else _FLAG_NORM_F32))
    out.append(_mode_of(c) << 5 | bits)
    out += pair_tag(c.pair) + _attr_section(c) + bytes.fromhex(c.model_hash)
    out += varint.encode(c.num_points)
    if c.codec == "neural":
        out += varint.encode(c.d_code)
    out += (_NORM16 if f16 else _NORM32).pack(*c.centre, c.scale)
    if c.dtype == "entropy" and c.enhancement:  # a variable-length code: the layer needs to know where it starts
        out += varint.encode(len(c.payload))
    out += c.payload + c.enhancement
    out += struct.pack("<H", binascii.crc_hqx(bytes(out), 0xFFFF))
    return bytes(out)


def _unpack_v2(data: bytes) -> Container:
    r = Reader(data)
    r.take(2, "magic")
    (vf,) = r.take(1, "format version")
    version = vf & 0x0F
    if version not in (2, ATTRIBUTES_VERSION) or vf & 0xE0:
        raise ContainerError(f".sq3d format version {vf & 0x0F} (flags {vf >> 4:#x}) is not supported; this build "
                             f"reads version(s) {', '.join(map(str, SUPPORTED_VERSIONS))}")
    if len(data) < 2 or binascii.crc_hqx(data[:-2], 0xFFFF) != struct.unpack("<H", data[-2:])[0]:
        raise ContainerError("checksum mismatch (CRC-16): the file is truncated or corrupted")
    (mb,) = r.take(1, "mode")
    mode, bits = mb >> 5, mb & 0x1F
    if mode >= len(_V2_MODES):
        raise ContainerError(f"unknown codec mode {mode}; this build knows {', '.join(_V2_MODES)}")
    pair = _pair_from_tag(r.take(2, "pair tag"))
    attrs, attr_payload, ext = (), b"", 0
    if version == ATTRIBUTES_VERSION:
        from squeeze3d.codec.attributes import names_of

        (ext,) = r.take(1, "extension byte")
        attrs = names_of(ext & EXT_ATTRS)
        if ext & ~(EXT_ATTRS | EXT_OCTREE | EXT_ENHANCEMENT | EXT_ENTROPY):
            raise ContainerError(f"extension flags {ext:#04x} are not known to this build")
        if not attrs and not ext & (EXT_OCTREE | EXT_ENHANCEMENT | EXT_ENTROPY):
            raise ContainerError("corrupted header: a version 3 file with no attributes, octree layers or entropy-coded code")
        if attrs:
            attr_payload = r.take(_read_varint(r, "attribute length"), "attribute payload")
        if r.off > len(data) - 2:
            raise ContainerError("truncated or corrupted: the attribute payload runs into the checksum")
    coder = "octree" if ext & EXT_OCTREE else "draco"
    if _V2_MODES[mode].startswith("fallback/own"):
        if vf & 0xF0:
            raise ContainerError("corrupted header: an own-frame fallback has no flags")
        if coder == "octree" and mode == 6:
            raise ContainerError("corrupted header: an octree fallback in Draco's prefix-elided mode")
        payload = data[r.off:-2]
        c = Container(pair=pair, codec="fallback", model_version=None, model_hash="00000000", num_points=0,
                      code_shape=(), dtype="none", quant="none", draco_bits=bits, centre=(0.0, 0.0, 0.0),
                      scale=1.0, payload=(DRACO_PREFIX + payload) if mode == 6 else payload, version=version,
                      own_frame=True, attributes=attrs, attr_payload=attr_payload, coder=coder)
        check_semantics(c)
        return c
    model_hash = r.take(4, "model hash").hex()
    size = _read_varint(r, "asset size")
    name = _V2_MODES[mode]
    d_code = _read_varint(r, "code size") if name != "fallback" else 0
    norm = _NORM32 if vf & _FLAG_NORM_F32 else _NORM16
    *centre, scale = r.unpack(norm, "normalisation")
    entropy = bool(ext & EXT_ENTROPY)
    if entropy and name != "fixed":
        raise ContainerError(f"corrupted header: an entropy-coded code in mode {name}")
    if entropy and ext & EXT_ENHANCEMENT:
        n = _read_varint(r, "code length")
        if r.off + n > len(data) - 2:
            raise ContainerError("truncated or corrupted: the code runs into the checksum")
    payload = data[r.off:-2]
    if name == "fallback":
        codec, dtype, quant = "fallback", "none", "none"
    else:
        codec, (dtype, _, quant) = "neural", name.partition("/")
        quant = quant or "none"
        dtype = "entropy" if entropy else dtype
    if codec == "neural" and not 1 <= d_code <= MAX_CODE_NUMBERS:
        raise ContainerError(f"corrupted header: code of {d_code} numbers")
    enhancement = b""
    if ext & EXT_ENHANCEMENT:
        if codec != "neural":
            raise ContainerError("corrupted header: an enhancement layer without a neural code")
        n = n if entropy else payload_size(dtype, quant, d_code, bits)
        payload, enhancement = payload[:n], payload[n:]
        if not enhancement:
            raise ContainerError("truncated or corrupted: the enhancement layer is missing")
    if coder == "octree":
        raise ContainerError("corrupted header: an octree fallback is always in its own frame")
    c = Container(pair=pair, codec=codec, model_version=None, model_hash=model_hash, num_points=size,
                  code_shape=(d_code,) if codec == "neural" else (), dtype=dtype, quant=quant,
                  draco_bits=bits, centre=(float(centre[0]), float(centre[1]), float(centre[2])),
                  scale=float(scale), payload=payload, version=version, attributes=attrs,
                  attr_payload=attr_payload, enhancement=enhancement)
    check_semantics(c)
    return c


def header_bytes(c: Container) -> int:
    """Container overhead: file size minus the payload the codec produced (an own-frame Draco file that
    elides Draco's 11-byte prefix has a negative overhead: it is smaller than the bare bitstream)."""
    return len(pack(c)) - len(c.payload) - len(c.enhancement)


def with_attributes(c: Container, names, attr_payload: bytes = b"") -> Container:
    """``c`` keeping per-point attributes ``names`` (format version 3), or ``c`` itself when none."""
    from squeeze3d.codec.attributes import NAMES

    names = tuple(n for n in NAMES if n in set(names))
    if not names:
        return c
    return replace(c, version=ATTRIBUTES_VERSION, attributes=names, attr_payload=bytes(attr_payload))


def describe(c: Container) -> dict:
        """Header fields as plain values (``squeeze3d inspect``)."""
        return {
            "format_version": c.version, "pair": c.pair, "codec": c.codec,
            "model_identity": c.model_identity, "model_version": c.model_version,
            "model_hash": c.model_hash, "num_points": c.num_points,
            "code_shape": list(c.code_shape), "d_code": c.d_code, "dtype": c.dtype,
            "quant": c.quant, "draco_bits": c.draco_bits, "centre": list(c.centre),
            "scale": c.scale, "own_frame": c.own_frame, "coder": c.coder if c.codec == "fallback" else None,
            "enhancement_bytes": len(c.enhancement),
            "attributes": ", ".join(c.attributes) if c.attributes else "none",
            "attribute_coding": (("in the classical payload" if not c.attr_payload else
                                  f"transferred to the decoded points ({len(c.attr_payload)} bytes)")
                                 if c.attributes else "none"),
            "payload_bytes": c.stored_payload_bytes, "total_bytes": len(pack(c)),
        }
