"""Per-point attributes (colour, intensity): what the codec keeps of them, how a geometry coder that
does not carry them itself codes them for its decoded points, and the colour error metric.

Attributes travel as a dict aligned with a cloud's points:

    ``colour``     ``[N, 3]`` uint8 RGB (LAS 16-bit colours are read as their high bytes)
    ``intensity``  ``[N]`` uint16 (LAS and PCD intensity)

Two ways to code them, both used by ``squeeze3d.codec.compressor``:

- A classical coder with its own attribute coding (Draco's colour and generic attributes) carries
  them in its bitstream; the container then only names them (``Container.attributes``).
- Any other geometry coder (the neural rungs, whose 2,048 decoded points are not the input's; an
  octree coder that decodes points in its own order) codes them here, *for its decoded points*:
  ``encode_for_points(decoded, source_points, source_attributes, floor_db)`` transfers the source
  attributes to a subset of the decoded points (the anchors: fixed indices ``i·n // m``, so the
  decoder picks the same ones without any search), quantises them (colour as BT.709 Y'CbCr, chroma
  one bit coarser) and packs them; ``decode_for_points(payload, decoded, names)`` spreads the anchor
  values back to every decoded point by inverse-distance weighting of its 3 nearest anchors (with
  ``m = n`` each point is its own anchor: exact up to the quantisation). The decoded points only
  have to come out in the same order on both sides (a generator's output index, a coder's
  deterministic order); float noise between machines moves a point's colour by a near-tie, never
  the layout of the payload.

The rung (anchors ``m``, bits ``q``) is the smallest payload whose colour PSNR on Y meets the floor,
or is within 0.5 dB of the best this geometry allows (a distorted geometry caps the colour metric,
which matches colours through nearest neighbours).

Colour error: PSNR on Y (BT.709 luma, 8-bit peak 255), symmetric as MPEG's colour metric: each
point of either cloud is compared with its nearest neighbour in the other; the worse direction counts.
"""

from __future__ import annotations

import math
import struct

import numpy as np

from squeeze3d.codec import varint
from squeeze3d.errors import ContainerError
from squeeze3d.point_attributes import NAMES, check  # noqa: F401 - re-exported: one validation for io and codec

LABELS = {"colour": "colour (RGB)", "intensity": "intensity"}
ANCHOR_COUNTS = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
BITS = (3, 4, 5, 6, 8)
_KNN = 3
_BT709 = (0.2126, 0.7152, 0.0722)


def mask_of(names) -> int:
    bad = [n for n in names if n not in NAMES]
    if bad:
        raise ContainerError(f"unknown attribute(s) {', '.join(bad)}; known: {', '.join(NAMES)}")
    return sum(1 << NAMES.index(n) for n in names)


def names_of(mask: int) -> tuple[str, ...]:
    if mask >> len(NAMES):
        raise ContainerError(f"unknown attribute bits {mask:#x} in the header (this build knows {', '.join(NAMES)})")
    return tuple(n for i, n in enumerate(NAMES) if mask >> i & 1)


def subset(attrs: dict, idx) -> dict:
    return {k: v[idx] for k, v in attrs.items()}


def raw_bytes(names) -> int:
    """Bytes per point the kept attributes take uncompressed (RGB8: 3, intensity16: 2)."""
    return sum({"colour": 3, "intensity": 2}[n] for n in names)


# ----------------------------------------------------------------------------------- metric


def luma(rgb: np.ndarray) -> np.ndarray:
    c = np.asarray(rgb, np.float64)
    return c @ np.asarray(_BT709)


def _nn(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Index of each point of ``a``'s nearest neighbour in ``b``."""
    from scipy.spatial import cKDTree

    return cKDTree(np.asarray(b, np.float64)).query(np.asarray(a, np.float64))[1]


def _psnr(err2: float, peak: float = 255.0) -> float:
    return float("inf") if err2 <= 0 else 10.0 * math.log10(peak * peak / err2)


def y_psnr(ref_points, ref_colour, test_points, test_colour, nn=None) -> float:
    """Colour PSNR on Y (BT.709 luma, peak 255) between two coloured clouds (see the module doc)."""
    a2b, b2a = nn if nn is not None else (_nn(ref_points, test_points), _nn(test_points, ref_points))
    ya, yb = luma(ref_colour), luma(test_colour)
    return _psnr(max(float(np.mean((ya - yb[a2b]) ** 2)), float(np.mean((yb - ya[b2a]) ** 2))))


def attribute_psnr(ref_points, ref_attrs: dict, test_points, test_attrs: dict) -> dict[str, float]:
    """``{"colour": Y-PSNR dB, "intensity": PSNR dB (peak 65535)}`` for the attributes both hold."""
    nn = (_nn(ref_points, test_points), _nn(test_points, ref_points))
    out = {}
    if "colour" in ref_attrs and "colour" in test_attrs:
        out["colour"] = y_psnr(ref_points, ref_attrs["colour"], test_points, test_attrs["colour"], nn)
    if "intensity" in ref_attrs and "intensity" in test_attrs:
        a = ref_attrs["intensity"].astype(np.float64)
        b = test_attrs["intensity"].astype(np.float64)
        out["intensity"] = _psnr(max(float(np.mean((a - b[nn[0]]) ** 2)), float(np.mean((b - a[nn[1]]) ** 2))),
                                 65535.0)
    return out


# ------------------------------------------------------------- transfer to decoded points


def _channels(attrs: dict, names) -> tuple[np.ndarray, tuple[int, int]]:
    """Attributes → ``[N, C]`` float channels in 0..255 (Y', Cb, Cr; intensity over its range)."""
    cols, rng = [], (0, 0)
    if "colour" in names:
        rgb = attrs["colour"].astype(np.float64)
        y = luma(rgb)
        cols += [y, (rgb[:, 2] - y) / 1.8556 + 128.0, (rgb[:, 0] - y) / 1.5748 + 128.0]
    if "intensity" in names:
        v = attrs["intensity"].astype(np.float64)
        rng = (int(v.min()), int(v.max()))
        cols.append((v - rng[0]) * (255.0 / max(rng[1] - rng[0], 1)))
    return np.clip(np.stack(cols, 1), 0.0, 255.0), rng


def _attributes(ch: np.ndarray, names, rng: tuple[int, int]) -> dict:
    out, i = {}, 0
    if "colour" in names:
        y, cb, cr = ch[:, 0], ch[:, 1] - 128.0, ch[:, 2] - 128.0
        r, b = y + 1.5748 * cr, y + 1.8556 * cb
        g = (y - _BT709[0] * r - _BT709[2] * b) / _BT709[1]
        out["colour"] = np.clip(np.rint(np.stack([r, g, b], 1)), 0, 255).astype(np.uint8)
        i = 3
    if "intensity" in names:
        out["intensity"] = np.clip(np.rint(rng[0] + ch[:, i] * (max(rng[1] - rng[0], 1) / 255.0)), 0,
                                   65535).astype(np.uint16)
    return out


def _channel_bits(names, q: int) -> list[int]:
    return ([q, max(q - 1, 1), max(q - 1, 1)] if "colour" in names else []) + ([q] if "intensity" in names else [])


def anchor_index(n: int, m: int) -> np.ndarray:
    return (np.arange(m, dtype=np.int64) * n) // m


def _spread(points: np.ndarray, anchors: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Anchor values → every point: its own anchor when each point is one, else inverse-distance
    weights of its 3 nearest anchors."""
    from scipy.spatial import cKDTree

    if len(anchors) == len(points):
        return values
    k = min(_KNN, len(anchors))
    d, i = cKDTree(anchors).query(points, k=k)
    d, i = d.reshape(len(points), k), i.reshape(len(points), k)
    span = float(np.linalg.norm(points.max(0) - points.min(0))) or 1.0
    w = 1.0 / np.maximum(d, 1e-9 * span)
    w /= w.sum(1, keepdims=True)
    return np.einsum("nk,nkc->nc", w, values[i])


def _quantise(v: np.ndarray, bits: list[int]) -> np.ndarray:
    levels = (1 << np.asarray(bits)) - 1
    return np.rint(v * (levels / 255.0)).astype(np.int64)


def _dequantise(q: np.ndarray, bits: list[int]) -> np.ndarray:
    levels = (1 << np.asarray(bits)) - 1
    return q * (255.0 / levels)


def _pack_bits(q: np.ndarray, bits: list[int]) -> bytes:
    cols = [((q[:, c:c + 1] >> np.arange(b - 1, -1, -1)) & 1).astype(np.uint8) for c, b in enumerate(bits)]
    return np.packbits(np.concatenate(cols, 1).reshape(-1)).tobytes()


def _unpack_bits(data: bytes, m: int, bits: list[int]) -> np.ndarray:
    total = m * sum(bits)
    if len(data) != -(-total // 8):
        raise ContainerError(f"attribute payload holds {len(data)} bytes of values, {m} anchors need {-(-total // 8)}")
    flat = np.unpackbits(np.frombuffer(data, np.uint8))[:total].reshape(m, sum(bits)).astype(np.int64)
    out, off = np.zeros((m, len(bits)), np.int64), 0
    for c, b in enumerate(bits):
        out[:, c] = flat[:, off:off + b] @ (1 << np.arange(b - 1, -1, -1))
        off += b
    return out


def encode_for_points(decoded: np.ndarray, points: np.ndarray, attrs: dict, floor_db: float | None = None,
                      exact: bool = False) -> tuple[bytes, dict]:
    """Code ``attrs`` (aligned with ``points``) for the ``decoded`` points of any geometry coder.

    Returns ``(payload, info)``; ``info`` has ``anchors``, ``bits`` and the PSNR of the primary
    attribute (colour: Y-PSNR; intensity alone: its PSNR on a 0..255 scale) of what
    ``decode_for_points`` will return. ``exact``: every decoded point is an anchor at 8 bits (a
    classical coder whose points are the input's own). The frame of ``decoded`` does not matter
    (any uniform scale and shift gives the same result)."""
    names = tuple(n for n in NAMES if n in attrs)
    if not names:
        return b"", {}
    dec = np.asarray(decoded, np.float64)
    src = np.asarray(points, np.float64)
    n = len(dec)
    ch, rng = _channels(attrs, names)
    src_to_dec, dec_to_src = _nn(src, dec), _nn(dec, src)
    ref_primary = ch[:, 0]

    def score(values_at_dec: np.ndarray) -> float:
        got = _attributes(values_at_dec, names, rng)  # as the decoder rounds them
        p = luma(got["colour"]) if "colour" in got else (got["intensity"] - rng[0]) * (255.0 / max(rng[1] - rng[0], 1))
        return _psnr(max(float(np.mean((ref_primary - p[src_to_dec]) ** 2)),
                         float(np.mean((p - ref_primary[dec_to_src]) ** 2))))

    def anchor_values(m: int) -> tuple[np.ndarray, np.ndarray]:
        anchors = dec[anchor_index(n, m)]
        owner = src_to_dec if m == n else _nn(src, anchors)
        sums = np.zeros((m, ch.shape[1]))
        np.add.at(sums, owner, ch)
        counts = np.bincount(owner, minlength=m)
        vals = sums / np.maximum(counts, 1)[:, None]
        empty = counts == 0
        if empty.any():  # an anchor no source point is nearest to: its nearest source point's value
            vals[empty] = ch[_nn(anchors[empty], src)]
        return anchors, vals

    counts = [n] if exact else sorted({min(m, n) for m in ANCHOR_COUNTS} | {n})
    rungs = []
    for m in counts:
        anchors, vals = anchor_values(m)
        for q in ((8,) if exact else BITS):
            bits = _channel_bits(names, q)
            qv = _quantise(vals, bits)
            p = score(_spread(dec, anchors, _dequantise(qv, bits)))
            nbytes = -(-m * sum(bits) // 8)
            rungs.append((nbytes, m, q, qv, bits, p))
    best = max(r[5] for r in rungs)
    want = best - 0.5 if floor_db is None else min(float(floor_db), best - 0.5)
    nbytes, m, q, qv, bits, p = min((r for r in rungs if r[5] >= want), key=lambda r: (r[0], -r[5]))
    head = varint.encode(m) + bytes([q])
    if "intensity" in names:
        head += struct.pack("<HH", *rng)
    return head + _pack_bits(qv, bits), {"anchors": m, "bits": q, "psnr": p}


def decode_for_points(payload: bytes, decoded: np.ndarray, names) -> dict:
    """``encode_for_points``'s payload → attributes of each decoded point (same order)."""
    names = tuple(names)
    if not names:
        return {}
    dec = np.asarray(decoded, np.float64)
    n = len(dec)
    m, off = varint.decode(payload, 0, "the attribute payload's anchor count", max_bytes=5)
    if not 1 <= m <= n:
        raise ContainerError(f"attribute payload names {m} anchors for {n} decoded points")
    if off >= len(payload) or not 1 <= payload[off] <= 8:
        raise ContainerError("truncated or corrupted attribute payload (bits)")
    q = payload[off]
    off += 1
    rng = (0, 0)
    if "intensity" in names:
        if off + 4 > len(payload):
            raise ContainerError("truncated attribute payload (intensity range)")
        rng = struct.unpack_from("<HH", payload, off)
        off += 4
    bits = _channel_bits(names, q)
    qv = _unpack_bits(payload[off:], m, bits)
    vals = _spread(dec, dec[anchor_index(n, m)], _dequantise(qv, bits))
    return _attributes(vals, names, rng)


# ------------------------------------------------------------------------- the user's side


def for_codec(asset, path, drop: bool = False) -> tuple[np.ndarray, dict]:
    """What ``compress_file`` hands the codec from a read asset: every point of a cloud (the mesh
    samples for a mesh) and the attributes it keeps. Per-point data that no mode keeps (``asset.unkept``:
    normals, labels, LAS classification, ...) are refused in one line unless ``drop`` (the user's
    ``--drop-attributes``), which drops colour and intensity too: geometry only."""
    from squeeze3d.errors import UserError

    unkept = tuple(getattr(asset, "unkept", ()) or ())
    if unkept and not drop:
        them = "it" if len(unkept) == 1 else "them"
        raise UserError(f"{path}: the file holds per-point {'; '.join(unkept)}, which no compression mode keeps; "
                        f"pass --drop-attributes to compress without {them} (nothing was written)")
    cloud = getattr(asset, "cloud", None)
    data = cloud if cloud is not None else asset.data
    return data, ({} if drop else dict(getattr(asset, "attributes", None) or {}))


def check_output(out, names, drop: bool = False, where: str = "") -> None:
    """Refuse (one line) an output format that cannot hold a kept attribute, before decoding."""
    from squeeze3d.io import KEEPS, InputError

    fmt = str(out).rsplit(".", 1)[-1].lower()
    if drop or not names or fmt not in KEEPS:
        return
    lost = [n for n in names if n not in KEEPS[fmt]]
    if lost:
        raise InputError(f"{where}{out}: .{fmt} cannot hold the file's {', '.join(lost)}; write .ply, .pcd, .las "
                         "or .npz, or pass --drop-attributes")
