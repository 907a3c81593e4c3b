"""Format version 2 of the .sq3d container (the compact header) and fixed-range k-bit codes:
round trips, the overhead budget, and a fuzz (every truncation, every single-bit flip, random
corruption, unknown pair tags)."""

import numpy as np
import pytest

from squeeze3d.codec.container import Container, ContainerError, header_bytes, pack, pair_tag, unpack
from squeeze3d.codec.quantise import dequantise, fixed_step, quantise


def _v2(dtype="fixed", bits=8, d=128, centre=(0.01, -0.02, 0.03), scale=1.25, **kw):
    code = np.tanh(np.random.default_rng(0).normal(size=d)).astype(np.float32)
    quant = "per_vector" if dtype == "int8" else "none"
    fields = dict(pair="pointnet_lion", codec="neural", model_version=None, model_hash="0123abcd", num_points=2048,
                  code_shape=(d,), dtype=dtype, quant=quant, draco_bits=bits if dtype == "fixed" else 0,
                  centre=centre, scale=scale, payload=quantise(code, dtype, quant, bits if dtype == "fixed" else 0))
    fields.update(kw)
    return Container(**fields)


def _v2_fallback():
    return Container(pair="pointnet_lion", codec="fallback", model_version=None, model_hash="0123abcd",
                     num_points=2048, code_shape=(), dtype="none", quant="none", draco_bits=4,
                     centre=(0.5, 0.25, -0.125), scale=2.0, payload=b"\x01\x02draco-bytes")


@pytest.mark.parametrize("make", [lambda: _v2(), lambda: _v2(bits=6), lambda: _v2(bits=4, d=32), lambda: _v2("f16"),
                                  lambda: _v2("f32"), lambda: _v2("int8"), _v2_fallback])
def test_v2_round_trip(make):
    c = make()
    back = unpack(pack(c))
    assert back.version == 2 and back.payload == c.payload and back.pair == c.pair
    assert (back.codec, back.dtype, back.quant, back.draco_bits, back.num_points, back.d_code) == \
        (c.codec, c.dtype, c.quant, c.draco_bits, c.num_points, c.d_code)
    assert back.model_hash == c.model_hash and back.matches_weights(c.model_hash + "ffff")
    assert np.allclose(back.centre, c.centre, atol=1e-4 * c.scale) and abs(back.scale - c.scale) <= 1e-4 * c.scale


def test_v2_overhead_is_at_most_24_bytes():
    for c in (_v2(), _v2(bits=6), _v2("int8"), _v2_fallback()):
        assert header_bytes(c) <= 24, (c.dtype, header_bytes(c))
    assert len(pack(_v2(bits=8))) == 128 + 24 and len(pack(_v2(bits=6))) == 96 + 24


def test_v2_far_away_objects_keep_their_position():
    # f16 would move a centre at 1e5 by ~8 units: the packer switches to f32 normalisation
    c = _v2(centre=(1e5 + 0.125, -3.0, 7.5), scale=0.5)
    back = unpack(pack(c))
    assert back.centre == pytest.approx(c.centre, abs=0.02) and header_bytes(c) > 24


def test_fixed_codes_round_trip_within_half_a_step():
    x = np.tanh(np.random.default_rng(3).normal(size=(77,)))
    for bits in (1, 4, 6, 8, 12, 16):
        y = dequantise(quantise(x, "fixed", bits=bits), "fixed", "none", (77,), bits)
        assert np.abs(y - x).max() <= fixed_step(bits) / 2 + 1e-6
        assert len(quantise(x, "fixed", bits=bits)) == -(-77 * bits // 8)
    with pytest.raises(ValueError, match="1..16 bits"):
        quantise(x, "fixed", bits=0)


def test_v2_truncation_bit_flips_and_corruption_are_errors():
    for data in (pack(_v2()), pack(_v2_fallback()), pack(_v2(bits=5, d=33))):
        for n in range(len(data)):
            with pytest.raises(ContainerError) as ei:
                unpack(data[:n])
            assert "\n" not in str(ei.value)
        for i in range(len(data) * 8):
            bad = bytearray(data)
            bad[i // 8] ^= 1 << (i % 8)
            with pytest.raises(ContainerError):
                unpack(bytes(bad))
    data = pack(_v2_fallback())
    rng = np.random.default_rng(1)
    for _ in range(300):
        bad = bytearray(data)
        for pos in rng.choice(len(bad), size=int(rng.integers(1, 6)), replace=False):
            bad[pos] = (bad[pos] + int(rng.integers(1, 256))) % 256
        with pytest.raises(ContainerError):
            unpack(bytes(bad))


def test_v2_unknown_pair_tag_names_the_registered_pairs():
    import binascii
    import struct

    data = bytearray(pack(_v2()))
    data[4:6] = b"\xff\xfe" if pair_tag("pointnet_lion") != b"\xff\xfe" else b"\x00\x01"
    body = bytes(data[:-2])
    data = body + struct.pack("<H", binascii.crc_hqx(body, 0xFFFF))
    with pytest.raises(ContainerError, match="no registered pair.*pointnet_lion"):
        unpack(data)


def test_v2_refuses_registry_versions_and_v1_only_fields():
    with pytest.raises(ContainerError, match="registry version"):
        pack(_v2(model_version=3))
    with pytest.raises(ContainerError, match="version 2"):
        pack(_v2(version=1, model_hash="0123456789abcdef"))
