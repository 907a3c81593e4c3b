"""The .sq3d container and code quantisation: round trips, strict parsing, and a fuzz (truncation at
every length, every single-bit flip, random corruption, crafted headers with a valid CRC)."""

import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest

from squeeze3d.codec.container import (
    GROUP_SIZE,
    SUPPORTED_VERSIONS,
    Container,
    ContainerError,
    describe,
    pack,
    payload_size,
    read_container,
    unpack,
)
from squeeze3d.codec.quantise import dequantise, quantise
from squeeze3d.errors import UserError


def _neural(dtype="int8", quant="per_vector", shape=(40,), **kw):
    code = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    fields = dict(pair="debug", codec="neural", model_version=7, model_hash="0123456789abcdef", num_points=256,
                  code_shape=shape, dtype=dtype, quant=quant if dtype == "int8" else "none", draco_bits=0,
                  centre=(100.5, -3.25, 1e6 + 0.125), scale=4.5, payload=quantise(code, dtype, quant), version=1)
    fields.update(kw)
    return Container(**fields)


def _fallback():
    return Container(pair="pointnet_lion", codec="fallback", model_version=None, model_hash="fedcba9876543210",
                     num_points=2048, code_shape=(), dtype="none", quant="none", draco_bits=5,
                     centre=(0.0, 0.0, 0.0), scale=1.0, payload=b"\x01\x02draco-bytes", version=1)


def _recrc(data: bytes) -> bytes:
    """Make a corrupted body look intact, to reach the semantic checks behind the CRC."""
    return data[:-4] + struct.pack("<I", zlib.crc32(data[:-4]))


@pytest.mark.parametrize("make", [lambda: _neural("f32"), lambda: _neural("f16"), lambda: _neural("int8"),
                                  lambda: _neural("int8", "per_group", (3, 25)), _fallback])
def test_round_trip_is_exact(make):
    c = make()
    back = unpack(pack(c))
    assert back == c  # dataclass equality covers every field, the payload included
    assert back.centre[2] == 1e6 + 0.125 or c.codec == "fallback"  # f64 centre: far-away objects keep position


def test_identity_strings():
    assert _neural().model_identity == "v7:0123456789abcdef"
    assert _fallback().model_identity == "path:fedcba9876543210"
    info = describe(_neural())
    assert info["total_bytes"] == len(pack(_neural())) and info["d_code"] == 40


def test_header_overhead_is_small():
    # the neural codec competes at a few hundred bytes; the header must stay well under 100
    c = _neural("int8", shape=(128,))
    assert len(pack(c)) - len(c.payload) <= 80


def test_truncation_at_every_length_is_a_clear_error():
    for data in (pack(_neural()), pack(_fallback())):
        for n in range(len(data)):
            with pytest.raises(ContainerError) as ei:
                unpack(data[:n])
            msg = str(ei.value)
            assert msg and "\n" not in msg
            if n >= 6:  # past magic + version every cut is reported as truncation/corruption
                assert "truncated" in msg or "checksum" in msg, (n, msg)


def test_every_single_bit_flip_is_detected():
    data = pack(_neural())
    for i in range(len(data) * 8):
        bad = bytearray(data)
        bad[i // 8] ^= 1 << (i % 8)
        with pytest.raises(ContainerError):
            unpack(bytes(bad))


def test_random_corruption_never_parses():
    data = pack(_fallback())
    rng = np.random.default_rng(1)
    for _ in range(500):
        bad = bytearray(data)
        for pos in rng.choice(len(bad), size=int(rng.integers(1, 6)), replace=False):
            bad[pos] = (bad[pos] + int(rng.integers(1, 256))) % 256
        with pytest.raises(ContainerError):
            unpack(bytes(bad))
    with pytest.raises(ContainerError, match="unexpected bytes"):
        unpack(data + b"\x00")


def test_wrong_magic_and_unknown_version():
    data = pack(_neural())
    with pytest.raises(ContainerError, match="not a .sq3d file"):
        unpack(b"PK\x03\x04" + data[4:])
    with pytest.raises(ContainerError, match="not a .sq3d file"):
        unpack(b"")
    newer = data[:4] + struct.pack("<H", 99) + data[6:]
    with pytest.raises(ContainerError) as ei:
        unpack(newer)
    assert "version 99" in str(ei.value) and f"reads version(s) {SUPPORTED_VERSIONS[0]}" in str(ei.value)


@pytest.mark.parametrize("edits,match", [
    ({6: 9}, "unknown codec"),              # codec id
    ({7: 9}, "unknown dtype"),              # dtype id
    ({8: 9}, "unknown quantisation"),       # quant id
    ({7: 1, 8: 0}, "payload is"),           # int8 payload relabelled as f32: d_C no longer fits the payload
    ({7: 1}, "does not go with"),           # f32 with an int8 scale layout
    ({9: 3}, "draco_bits"),                 # a neural container carrying Draco bits
    ({6: 1}, "fallback container must"),    # a neural body labelled fallback
])
def test_semantic_errors_behind_a_valid_crc(edits, match):
    bad = bytearray(pack(_neural()))
    for offset, value in edits.items():
        bad[offset] = value
    with pytest.raises(ContainerError, match=match):
        unpack(_recrc(bytes(bad)))


def test_bad_pair_and_normalisation_behind_a_valid_crc():
    data = pack(_neural())
    pair_at = 11
    bad = bytearray(data)
    bad[pair_at:pair_at + 5] = b"DE/UG"
    with pytest.raises(ContainerError, match="pair name"):
        unpack(_recrc(bytes(bad)))
    norm_at = len(data) - 4 - len(_neural().payload) - 4 - 28
    for centre, scale in [((float("nan"), 0, 0), 1.0), ((0, 0, 0), 0.0), ((0, 0, 0), float("inf"))]:
        bad = bytearray(data)
        bad[norm_at:norm_at + 28] = struct.pack("<3df", *centre, scale)
        with pytest.raises(ContainerError, match="centre|scale"):
            unpack(_recrc(bytes(bad)))


def test_pack_refuses_what_unpack_would_refuse():
    with pytest.raises(ContainerError):
        pack(_neural(payload=b"short"))
    with pytest.raises(ContainerError):
        pack(_neural(scale=-1.0))
    with pytest.raises(ContainerError):
        pack(_neural(pair="Bad Pair"))


def test_read_container_names_the_file(tmp_path):
    p = tmp_path / "x.sq3d"
    p.write_bytes(pack(_neural())[:-1])
    with pytest.raises(ContainerError, match="x.sq3d: truncated"):
        read_container(p)
    with pytest.raises(ContainerError, match="no such file"):
        read_container(tmp_path / "missing.sq3d")
    assert issubclass(ContainerError, UserError)


# ------------------------------------------------------------------------------------- quantisation


def test_quantisation_error_bounds_and_sizes():
    rng = np.random.default_rng(2)
    x = rng.normal(size=100).astype(np.float32) * np.linspace(0.1, 3, 100).astype(np.float32)
    for dtype, quant in [("f32", "per_vector"), ("f16", "per_vector"), ("int8", "per_vector"), ("int8", "per_group")]:
        payload = quantise(x, dtype, quant)
        assert len(payload) == payload_size(dtype, quant if dtype == "int8" else "none", 100)
        y = dequantise(payload, dtype, quant, (100,))
        err = np.abs(y - x)
        if dtype == "f32":
            assert np.array_equal(y, x)
        elif dtype == "f16":
            assert err.max() <= np.abs(x).max() * 2 ** -11
        elif quant == "per_vector":
            assert err.max() <= np.abs(x).max() / 127 / 2 + 1e-6
        else:  # per-group scales follow the local range: never worse than one scale per vector
            groups = np.abs(np.pad(x, (0, -len(x) % GROUP_SIZE))).reshape(-1, GROUP_SIZE).max(1)
            bound = np.repeat(groups / 127 / 2 * (1 + 2 ** -10), GROUP_SIZE)[:100]
            assert np.all(err <= bound + 1e-7)
    assert len(quantise(x, "int8", "per_vector")) == 104
    assert len(quantise(x, "f16")) == 200


def test_quantise_refuses_non_finite_and_f16_overflow():
    with pytest.raises(ValueError, match="NaN"):
        quantise(np.array([1.0, np.nan]), "f16")
    with pytest.raises(ValueError, match="float16"):
        quantise(np.array([1e6]), "f16")
    zero = dequantise(quantise(np.zeros(8), "int8", "per_vector"), "int8", "per_vector", (8,))
    assert np.array_equal(zero, np.zeros(8))


def test_non_finite_code_in_payload_is_an_error():
    with pytest.raises(ContainerError, match="NaN or Inf"):
        dequantise(np.array([1.0, np.inf], "<f2").tobytes(), "f16", "none", (2,))


# ------------------------------------------------------------------------------------- through the CLI


def test_cli_on_corrupt_files_exits_2_without_traceback(tmp_path):
    data = pack(_neural())
    cases = {"trunc.sq3d": data[:17], "flip.sq3d": data[:30] + bytes([data[30] ^ 4]) + data[31:],
             "magic.sq3d": b"XXXX" + data[4:], "version.sq3d": data[:4] + b"\x02\x00" + data[6:]}
    for name, blob in cases.items():
        (tmp_path / name).write_bytes(blob)
        for cmd in (["inspect", str(tmp_path / name)],
                    ["decompress", str(tmp_path / name), "-o", str(tmp_path / f"{name}.ply")]):
            r = subprocess.run([sys.executable, "-m", "squeeze3d", *cmd], capture_output=True, text=True,
                               timeout=120)
            assert r.returncode == 2, (name, cmd[0], r.stderr)
            assert "Traceback" not in r.stderr and r.stderr.startswith("squeeze3d: error:"), r.stderr
            assert len(r.stderr.strip().splitlines()) == 1
            assert not (tmp_path / f"{name}.ply").exists()


def test_grid_code_shapes_round_trip_and_limits():
    # radiance-field pairs (unet3d mapping) carry [C, r, r, r] codes and the grid resolution as size
    c = _neural("int8", "per_group", (24, 2, 2, 2), pair="nerfmae", num_points=32, centre=(0.0, 0.0, 0.0),
                scale=1.0)
    back = unpack(pack(c))
    assert back == c and back.code_shape == (24, 2, 2, 2) and back.d_code == 192
    assert describe(back)["code_shape"] == [24, 2, 2, 2]
    with pytest.raises(ContainerError, match="code shape"):
        pack(_neural("f16", shape=(2, 2, 2, 2, 2)))
    data = pack(c)
    for n in range(len(data)):
        with pytest.raises(ContainerError):
            unpack(data[:n])
