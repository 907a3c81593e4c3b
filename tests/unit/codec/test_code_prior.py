"""The learned code prior: range-coded fixed-range levels, their container mode, and the codec using
it (a tiny bounded-code model with a prior fitted beside its weights)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from squeeze3d.codec.code_prior import FILE_NAME, CodePrior, load_prior
from squeeze3d.codec.container import Container, ContainerError, pack, unpack
from squeeze3d.codec.quantise import fixed_levels
from squeeze3d.errors import UserError

HASH = "ab" * 32


def _codes(n=400, d=32, seed=0):
    """tanh codes with a few informative dimensions and many nearly constant ones (like real F_E codes)."""
    rng = np.random.default_rng(seed)
    scale = np.where(np.arange(d) < 6, 2.0, 0.15)
    offset = np.random.default_rng(42).normal(0, 0.5, d)  # the same dimensions in every draw
    return np.tanh(rng.normal(0, 1, (n, d)) * scale + offset).astype(np.float32)


@pytest.fixture(scope="module")
def prior():
    return CodePrior.fit(_codes(), (8, 6, 4, 2), HASH)


@pytest.mark.parametrize("bits", [8, 6, 4, 2])
def test_levels_round_trip_and_beat_raw(prior, bits):
    held_out = _codes(50, seed=1)
    sizes = []
    for c in held_out:
        for k in (1, 7, 32):
            q = fixed_levels(c[:k], bits)
            blob = prior.encode(q, bits)
            assert np.array_equal(prior.decode(blob, k, bits), q)
            assert blob == prior.encode(q, bits)  # deterministic
            if k == 32:
                sizes.append(len(blob))
    assert np.mean(sizes) < 32 * bits / 8  # the prior pays on codes like its training codes


def test_trimmed_tail_is_the_shortest_that_decodes(prior):
    q = fixed_levels(_codes(1, seed=3)[0], 6)
    full, cut = prior.encode(q, 6, trimmed=False), prior.encode(q, 6)
    assert len(cut) <= len(full) and full.startswith(cut)
    if cut:
        assert not np.array_equal(prior.decode(cut[:-1], 32, 6), q)


def test_out_of_range_requests_are_refused(prior):
    with pytest.raises(ValueError):
        prior.encode(np.zeros(33, np.int64), 6)  # more numbers than the prior has dimensions
    with pytest.raises(ValueError):
        prior.encode(np.full(4, 64), 6)
    with pytest.raises(ContainerError, match="beyond"):
        prior.decode(b"\x00", 32, 5)  # no table for 5 bits


def test_save_load_is_bound_to_the_weights(prior, tmp_path):
    assert load_prior(tmp_path, HASH) is None
    prior.save(tmp_path, {"recipe": "test"})
    back = load_prior(tmp_path, HASH)
    assert back.digest == prior.digest and set(back.tables) == {2, 4, 6, 8}
    with pytest.raises(UserError, match="fitted for mapping weights abababab"):
        load_prior(tmp_path, "cd" * 32)


def _entropy_container(prior, enhancement=b""):
    q = fixed_levels(_codes(1, seed=5)[0][:32], 4)
    return Container(pair="pointnet_lion", codec="neural", model_version=None, model_hash="0123abcd",
                     num_points=2048, code_shape=(32,), dtype="entropy", quant="none", draco_bits=4,
                     centre=(0.5, -1.0, 2.0), scale=1.5, payload=prior.encode(q, 4), version=3,
                     enhancement=enhancement)


def test_container_mode_round_trips_and_is_strict(prior):
    c = _entropy_container(prior)
    data = pack(c)
    assert unpack(data) == c and data[2] & 0x0F == 3 and data[6] == 0x04  # version 3, ext: entropy-coded
    raw = pack(Container(**{**c.__dict__, "dtype": "fixed", "version": 2, "payload": bytes(16)}))
    assert len(raw) == len(data) - 1 - len(c.payload) + 16  # one extension byte more than a raw code
    with_layer = _entropy_container(prior, enhancement=b"\x01\x02\x03")
    assert unpack(pack(with_layer)) == with_layer  # the code's length is stored before the layer
    import binascii
    import struct

    def recrc(b):
        b = bytes(b[:-2])
        return b + struct.pack("<H", binascii.crc_hqx(b, 0xFFFF))

    bad = bytearray(data)
    bad[6] = 0x24  # an unknown extension bit
    with pytest.raises(ContainerError, match="not known"):
        unpack(recrc(bad))
    bad[6], bad[3] = 0x04, 1 << 5 | 4  # entropy flag on an f16 code
    with pytest.raises(ContainerError, match="entropy-coded code in mode"):
        unpack(recrc(bad))


def _debug_cloud(seed):
    from squeeze3d.pairs import get_pair

    _, x = get_pair("debug").build_generator("cpu").sample([seed])
    return x[0].numpy() * 2.0 + np.array([3.0, -1.0, 0.5], np.float32)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny bounded-code debug model, and a copy of it with a code prior fitted beside its weights
    (by the fit job's library call, on clouds the tests below never compress)."""
    sys.path.insert(0, str(Path(__file__).parents[1]))  # tests/unit: the shared tiny-model helper
    from tiny_mappings import BOUNDED, train_debug_checkpoint

    from squeeze3d.codec.code_prior import fit_for_codec
    from squeeze3d.codec.compressor import clear_cache, get_codec

    base = tmp_path_factory.mktemp("prior")
    plain = train_debug_checkpoint(base / "plain", [*BOUNDED, "mapping.code_prefixes=[6,12,24]"])
    with_prior = str(base / "with_prior")
    shutil.copytree(plain, with_prior)
    fit_for_codec(get_codec("debug", with_prior), [_debug_cloud(1000 + i) for i in range(80)], 0, (8, 6, 4, 2))
    clear_cache()
    yield plain, with_prior
    clear_cache()


def test_codec_writes_entropy_coded_codes_that_decode_like_raw_ones(models):
    from squeeze3d.codec.compressor import compress_points
    from squeeze3d.codec.decompress import decompress_bytes

    plain, with_prior = models
    pts = _debug_cloud(3)
    smaller = 0
    for k in (6, 12, 24):
        for bits in (8, 4):
            raw = compress_points(pts, pair="debug", model=plain, min_quality=None, prefix=k, bits=bits)
            ec = compress_points(pts, pair="debug", model=with_prior, min_quality=None, prefix=k, bits=bits)
            c = unpack(ec.data)
            assert c.dtype in ("entropy", "fixed") and c.d_code == k and ec.nbytes <= raw.nbytes
            smaller += c.dtype == "entropy"
            # same levels, same decode: the prior changes the bytes, never the asset
            assert np.array_equal(decompress_bytes(ec.data, model=with_prior).data,
                                  decompress_bytes(raw.data, model=plain).data)
    assert smaller >= 3
    forced = compress_points(pts, pair="debug", model=with_prior, min_quality=None, dtype="fixed", bits=8)
    assert unpack(forced.data).dtype == "fixed"  # --dtype fixed: raw levels, readable without the prior
    ec = compress_points(pts, pair="debug", model=with_prior, min_quality=None, prefix=24, bits=8)
    assert unpack(ec.data).dtype == "entropy"
    from squeeze3d.codec.compressor import clear_cache

    saved = (Path(with_prior) / FILE_NAME).read_bytes()
    os.remove(Path(with_prior) / FILE_NAME)
    clear_cache()
    try:
        with pytest.raises(ContainerError, match="has no code prior"):
            decompress_bytes(ec.data, model=with_prior)
    finally:
        (Path(with_prior) / FILE_NAME).write_bytes(saved)
        clear_cache()


_ENCODE = """
import sys
sys.path.insert(0, {tests!r})
from test_code_prior import _debug_cloud
from squeeze3d.codec.compressor import compress_points
sys.stdout.buffer.write(compress_points(_debug_cloud(4), pair="debug", model={model!r}, min_quality=None,
                                        prefix=24, bits=6).data)
"""
_DECODE = """
import sys, numpy as np
from squeeze3d.codec.decompress import decompress_bytes
np.save(sys.stdout.buffer, decompress_bytes(sys.stdin.buffer.read(), model={model!r}).data)
"""


def test_encode_and_decode_in_other_processes_and_thread_counts(models, tmp_path):
    """Files decode on any thread count: encode with 2 threads in one process, decode with 1 in another."""
    from squeeze3d.codec.compressor import compress_points
    from squeeze3d.codec.decompress import decompress_bytes

    model = models[1]
    tests = str(Path(__file__).parent)
    env2 = {**os.environ, "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    env1 = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    blob = subprocess.run([sys.executable, "-c", _ENCODE.format(tests=tests, model=model)], env=env2,
                          capture_output=True, check=True, timeout=300).stdout
    out = subprocess.run([sys.executable, "-c", _DECODE.format(model=model)], input=blob, env=env1,
                         capture_output=True, check=True, timeout=300).stdout
    f = tmp_path / "rec.npy"
    f.write_bytes(out)
    here = compress_points(_debug_cloud(4), pair="debug", model=model, min_quality=None, prefix=24, bits=6)
    assert unpack(blob).dtype == unpack(here.data).dtype
    assert unpack(blob).payload == unpack(here.data).payload  # the code's bytes: identical across processes
    np.testing.assert_allclose(np.load(f), decompress_bytes(blob, model=model).data, atol=1e-5)


def test_fit_job_refuses_to_replace_a_prior(models, tmp_path):
    repo = Path(__file__).resolve().parents[3]
    r = subprocess.run([sys.executable, str(repo / "jobs" / "fit_code_prior.py"), "--pair", "debug", "--model",
                        models[1], "--real", "0", "--procedural", "0"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "exists" in r.stderr and "--force" in r.stderr


def test_gate_off_keeps_the_rung_it_would_pick_without_a_prior(models, monkeypatch):
    """The prior shrinks the gate-off file; it does not buy a longer code with the savings (the neural
    code alone: Draco as the classical codec, so no octree enhancement layer)."""
    from squeeze3d.codec import compressor
    from squeeze3d.codec.compressor import compress_points

    plain, with_prior = models
    pts = _debug_cloud(6)
    top = compress_points(pts, pair="debug", model=plain, min_quality=None, prefix=24, bits=8, effort=0,
                          classical="draco")
    # a budget the raw top rung misses by a byte, while its entropy-coded file fits
    monkeypatch.setattr(compressor, "OFF_BUDGET_BYTES", top.nbytes - 1)
    raw = unpack(compress_points(pts, pair="debug", model=plain, min_quality=None, effort=0,
                                     classical="draco").data)
    ec = unpack(compress_points(pts, pair="debug", model=with_prior, min_quality=None, effort=0,
                                     classical="draco").data)
    assert (raw.d_code, raw.draco_bits) != (24, 8)
    assert (ec.d_code, ec.draco_bits) == (raw.d_code, raw.draco_bits)
    assert len(pack(ec)) <= len(pack(raw))


def test_level_costs_are_the_bits_the_prior_spends(prior):
    costs = prior.level_costs(4)
    assert costs.shape == (32, 16) and np.allclose(np.exp2(-costs).sum(axis=1), 1.0)  # a distribution per dim
    q = fixed_levels(_codes(1, seed=9)[0], 4)
    bits = costs[np.arange(32), q].sum()
    coded = len(prior.encode(q, 4, trimmed=False)) * 8
    assert bits <= coded <= bits + 64  # the range coder's flush: at most two 32-bit words


def test_refinement_with_a_rate_weight_stores_a_cheaper_code(prior):
    """Rate + distortion at test time (``refine_code``): a rate weight moves the code to levels the
    prior codes in fewer bits than the distortion-only search, at some cost in distortion."""
    import torch

    from squeeze3d.codec.refine import refine_code
    from squeeze3d.mapping.setloss import chamfer_sq

    torch.manual_seed(0)
    f_d = torch.nn.Linear(32, 64 * 3)  # a toy F_D and a "decoder" that reads its output as 64 points

    def decoder(z, keep=None, generator=None):
        return z.view(z.shape[0], 64, 3)

    target = torch.randn(64, 3)
    code = _codes(1, seed=3)[0]
    costs = prior.level_costs(8)

    def bits(c):
        return float(costs[np.arange(c.size), fixed_levels(c, 8)].sum())

    def err(c):
        with torch.no_grad():
            return float(chamfer_sq(decoder(f_d(torch.as_tensor(c)[None])), target[None]).mean())

    plain = refine_code(code, target, f_d, decoder, steps=60, bits=8)
    cheap = refine_code(code, target, f_d, decoder, steps=60, bits=8, rate_costs=costs, rate_weight=1e-2)
    assert bits(cheap) < bits(plain) - 8 and err(cheap) > err(plain)
    same = refine_code(code, target, f_d, decoder, steps=60, bits=8, rate_costs=costs, rate_weight=0.0)
    assert np.array_equal(same, plain)  # weight 0: the distortion-only search, bit for bit
