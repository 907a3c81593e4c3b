"""Real-object codec features: nested (prefix) codes and their rate ladder, test-time code refinement,
and the own-frame Draco fallback (never larger than bare Draco; decodes whatever Draco merged)."""

import numpy as np
import pytest
import torch
from tiny_mappings import BOUNDED, train_debug_checkpoint

from squeeze3d.baselines import draco
from squeeze3d.codec.compressor import Variant, compress_points, get_codec
from squeeze3d.codec.container import DRACO_PREFIX, ContainerError, describe, pack, unpack
from squeeze3d.codec.decompress import decompress_bytes
from squeeze3d.mapping import cut_code, prefix_mask

PAIR = "debug"


def test_prefix_mask_keeps_a_listed_prefix_per_row():
    m = prefix_mask(64, 16, [4, 8, 16], "cpu", generator=torch.Generator().manual_seed(0))
    kept = m.sum(1).long().tolist()
    assert set(kept) <= {4, 8, 16} and len(set(kept)) == 3
    for row, k in zip(m, kept):  # ones first, then zeros
        assert row[:k].eq(1).all() and row[k:].eq(0).all()
    c = torch.arange(1.0, 7.0)[None]
    assert cut_code(c, 2).tolist() == [[1, 2, 0, 0, 0, 0]] and cut_code(c, 6) is c


@pytest.fixture(scope="module")
def nested_ckpt(tmp_path_factory):
    """A tiny debug model with nested 24-number codes (prefixes 6, 12, 24)."""
    return train_debug_checkpoint(tmp_path_factory.mktemp("nck") / "m", [*BOUNDED, "mapping.code_prefixes=[6,12,24]"])


def _cloud(seed=5):
    from squeeze3d.pairs import get_pair

    _, x = get_pair(PAIR).build_generator("cpu").sample([seed])
    return x[0].numpy() * 2.0 + np.array([3.0, -1.0, 0.5], np.float32)


def test_nested_ladder_stores_prefixes_that_decode(nested_ckpt):
    codec = get_codec(PAIR, nested_ckpt)
    ladder = codec.variants()
    assert {v.prefix for v in ladder} == {6, 12, 24} and all(v.dtype == "fixed" for v in ladder)
    sizes = [-(-v.prefix * v.bits // 8) for v in ladder]
    assert sizes == sorted(sizes, reverse=True)  # largest file first
    pts = _cloud()
    outs = {}
    for k in (6, 12, 24):
        res = compress_points(pts, pair=PAIR, model=nested_ckpt, min_quality=None, prefix=k, bits=8)
        c = unpack(res.data)
        assert c.d_code == k and len(c.payload) == k
        outs[k] = (res.nbytes, decompress_bytes(res.data, model=nested_ckpt).data)
        assert outs[k][1].shape == pts.shape and np.isfinite(outs[k][1]).all()
    assert outs[6][0] < outs[12][0] < outs[24][0]
    # the whole code is the same file the model's own 24-number rung writes
    full = compress_points(pts, pair=PAIR, model=nested_ckpt, min_quality=None, dtype="fixed", bits=8)
    assert unpack(full.data).d_code == 24
    with pytest.raises(Exception, match="prefixes of 6, 12, 24"):
        compress_points(pts, pair=PAIR, model=nested_ckpt, min_quality=None, prefix=7)


def test_floor_search_over_the_nested_ladder_matches_exhaustive_choice(nested_ckpt):
    codec = get_codec(PAIR, nested_ckpt)
    pts = _cloud(7)
    norm, _, _ = codec.handler.normalise(codec.handler.prepare(pts, codec.pair))
    code = codec.encode(norm)
    q = {}
    for v in codec.variants():
        res = compress_points(pts, pair=PAIR, model=nested_ckpt, min_quality=None, prefix=v.prefix, bits=v.bits)
        q[v] = (res.nbytes, draco.psnr(pts, decompress_bytes(res.data, model=nested_ckpt).data))
    assert code.shape == (24,)
    floor = min(x[1] for x in q.values()) - 1e-2  # every rung meets it: the smallest rung (a short prefix) wins
    got = compress_points(pts, pair=PAIR, model=nested_ckpt, min_quality=floor, effort=0)
    assert not got.fallback and got.nbytes == min(n for n, _ in q.values())
    assert unpack(got.data).d_code < 24  # a prefix was measured (decoded through F_D padded) and kept
    assert compress_points(pts, pair=PAIR, model=nested_ckpt, min_quality=200.0, effort=0).fallback


def test_refinement_is_deterministic_and_never_worse():
    codec = get_codec("pointnet_lion")
    from squeeze3d.pairs.pointnet_lion import _heldout

    pts = _heldout(1)[0].numpy() * 1.5
    off = compress_points(pts, pair="pointnet_lion", min_quality=None, effort=0)
    a = compress_points(pts, pair="pointnet_lion", min_quality=None, effort=12)
    b = compress_points(pts, pair="pointnet_lion", min_quality=None, effort=12)
    assert a.data == b.data  # deterministic
    ca, co = unpack(a.data), unpack(off.data)
    assert (ca.d_code, ca.draco_bits) == (co.d_code, co.draco_bits)  # the same rung (entropy-coded sizes vary by a byte or two)
    q0 = draco.psnr(pts, decompress_bytes(off.data).data)
    q1 = draco.psnr(pts, decompress_bytes(a.data).data)
    assert q1 >= q0 - 1e-3  # the search keeps F_E's code when it cannot improve on it
    assert codec.can_refine()
    with pytest.raises(Exception, match="effort must be >= 0"):
        compress_points(pts, pair="pointnet_lion", min_quality=None, effort=-1)


def test_duplicate_points_fallback_round_trips_and_beats_bare_draco():
    """Issue 25.1: a 1771-point scan resampled to 2048 with replacement (duplicates) fell back to
    Draco, which merges duplicates, and decompress then refused the file."""
    rng = np.random.default_rng(3)
    scan = rng.normal(size=(1771, 3)).astype(np.float32) * [1.0, 2.0, 0.5] + 100.0
    pts = scan[rng.integers(0, len(scan), 2048)]
    res = compress_points(pts, pair="pointnet_lion", min_quality=70.0, effort=0, classical="draco")
    assert res.fallback  # only a classical codec meets 70 dB
    c = unpack(res.data)
    assert c.own_frame and c.payload.startswith(DRACO_PREFIX)
    out = decompress_bytes(res.data).data
    assert len(out) < 2048  # Draco merged the duplicates; the file still decodes
    assert draco.psnr(pts, out) >= 70.0
    bare = draco.encode_points(pts, c.draco_bits)
    assert res.nbytes == len(bare) - 3  # never larger than bare Draco at the same bits (= same quality)
    # the default octree paths (classical, or an enhancement layer on the neural code) round-trip the
    # duplicates too, in fewer bytes
    oct_ = compress_points(pts, pair="pointnet_lion", min_quality=70.0, effort=0)
    c2 = unpack(oct_.data)
    assert (c2.coder == "octree" or c2.enhancement) and oct_.nbytes < res.nbytes
    out = decompress_bytes(oct_.data).data
    assert len(out) < 2048 and draco.psnr(pts, out) >= 70.0


def test_own_frame_container_round_trip_and_corruption():
    blob = draco.encode_points(np.random.default_rng(0).normal(size=(300, 3)).astype(np.float32), 9)
    from squeeze3d.codec.container import Container

    c = Container(pair="debug", codec="fallback", model_version=None, model_hash="00000000", num_points=0,
                  code_shape=(), dtype="none", quant="none", draco_bits=9, centre=(0.0, 0.0, 0.0), scale=1.0,
                  payload=blob, own_frame=True)
    data = pack(c)
    assert len(data) == len(blob) - 3
    back = unpack(data)
    assert back.own_frame and back.payload == blob and back.draco_bits == 9 and back.pair == "debug"
    assert describe(back)["own_frame"] is True
    bad = bytearray(data)
    bad[10] ^= 0x40
    with pytest.raises(ContainerError, match="checksum"):
        unpack(bytes(bad))
    odd = Container(**{**c.__dict__, "payload": b"XY" + blob})  # a Draco file with other first bytes: kept whole
    assert unpack(pack(odd)).payload == b"XY" + blob and len(pack(odd)) == len(blob) + 2 + 8


def test_variant_tuple_is_backward_compatible():
    v = Variant("fixed", "none", 8)
    assert v == ("fixed", "none", 8, 0) and v.prefix == 0
