"""The rate-distortion codec: fixed-range k-bit ladder of a bounded-code model, the RD gate
(smallest file at the floor; best quality within --target-bytes; never a fallback larger than bare
Draco plus the header), version 2 files found by their model hash, and the shipped-model default."""

import numpy as np
import pytest
import torch
from tiny_mappings import BOUNDED, train_debug_checkpoint

from squeeze3d.baselines import draco
from squeeze3d.codec import compressor
from squeeze3d.codec.compressor import clear_cache, get_codec
from squeeze3d.codec.container import header_bytes, unpack
from squeeze3d.codec.decompress import decompress_bytes
from squeeze3d.errors import UserError

PAIR = "debug"


def compress_points(*args, **kw):
    """The gate with Draco as its classical codec (what these tests check; the octree default is
    tested in tests/unit/codec/test_octree_codec.py)."""
    return compressor.compress_points(*args, **{"classical": "draco", **kw})


@pytest.fixture(scope="module")
def bounded_ckpt(tmp_path_factory):
    """A tiny debug model with tanh-bounded codes trained with 8-bit quantisation noise."""
    return train_debug_checkpoint(tmp_path_factory.mktemp("bck") / "m", BOUNDED)


def _cloud():
    from squeeze3d.pairs import get_pair

    _, x = get_pair(PAIR).build_generator("cpu").sample([5])
    return x[0].numpy() * 3.0 + np.array([10.0, -2.0, 0.5], np.float32)


def test_ladder_sizes_and_round_trip(bounded_ckpt):
    codec = get_codec(PAIR, bounded_ckpt)
    assert codec.variants() == [("fixed", "none", b, 0) for b in range(8, 0, -1)]
    pts = _cloud()
    sizes = {}
    for bits in (8, 6, 4):
        res = compress_points(pts, pair=PAIR, model=bounded_ckpt, dtype="fixed", bits=bits, min_quality=None)
        c = unpack(res.data)
        assert c.version == 2 and c.dtype == "fixed" and c.draco_bits == bits and res.variant == f"neural fixed-{bits}"
        sizes[bits] = res.nbytes
        assert res.nbytes - len(c.payload) <= 32 and len(c.payload) == -(-24 * bits // 8)  # off-centre: f32 norm
        out = decompress_bytes(res.data, model=bounded_ckpt).data
        assert out.shape == pts.shape and np.isfinite(out).all()
    assert sizes[8] > sizes[6] > sizes[4]
    # 8-bit codes of a QAT model decode (almost) like the float code
    f32 = decompress_bytes(compress_points(pts, pair=PAIR, model=bounded_ckpt, dtype="f32", min_quality=None).data,
                           model=bounded_ckpt).data
    q8 = decompress_bytes(compress_points(pts, pair=PAIR, model=bounded_ckpt, dtype="fixed", bits=8,
                                          min_quality=None).data, model=bounded_ckpt).data
    assert draco.psnr(f32, q8) > 40


def test_floor_picks_the_smallest_file_that_meets_it(bounded_ckpt):
    pts = _cloud()
    codec = get_codec(PAIR, bounded_ckpt)
    norm, _, _ = codec.handler.normalise(codec.handler.prepare(pts, codec.pair))
    low = compress_points(pts, pair=PAIR, model=bounded_ckpt, min_quality=-100.0)  # every candidate meets it
    assert low.variant == "neural fixed-1" and not low.fallback
    high = compress_points(pts, pair=PAIR, model=bounded_ckpt, min_quality=60.0)  # only Draco can
    assert high.fallback and high.psnr >= 60.0
    blob, bits, _ = draco.encode_min_bits(norm, 60.0)
    assert high.nbytes == len(blob) + header_bytes(high.container) <= len(blob) + 32
    assert high.container.draco_bits == bits


def test_target_bytes_picks_the_best_quality_that_fits(bounded_ckpt):
    pts = _cloud()
    res = compress_points(pts, pair=PAIR, model=bounded_ckpt, target_bytes=300)
    assert res.nbytes <= 300
    everything = []
    codec = get_codec(PAIR, bounded_ckpt)
    norm, _, _ = codec.handler.normalise(codec.handler.prepare(pts, codec.pair))
    for b in codec.handler.fallback_bits:
        blob, q = codec.handler.fallback_at(norm, b)
        if len(blob) + 23 <= 300:
            everything.append(q)
    assert res.psnr >= max(everything) - 1e-6  # nothing that fits is better
    with pytest.raises(UserError, match="no variant fits in 10 bytes"):
        compress_points(pts, pair=PAIR, model=bounded_ckpt, target_bytes=10)


def test_v2_file_finds_its_model_by_hash_and_shipped_default(bounded_ckpt, tmp_path, monkeypatch):
    from pathlib import Path

    from squeeze3d.codec import models

    monkeypatch.setenv("SQUEEZE3D_STATE_DIR", str(tmp_path / "state"))  # no registry here
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(models, "shipped_path", lambda pair: Path(bounded_ckpt) if pair.name == PAIR else None)
    clear_cache()
    pts = _cloud()
    res = compress_points(pts, pair=PAIR, min_quality=None)  # no --model: the shipped one
    assert unpack(res.data).matches_weights(get_codec(PAIR, bounded_ckpt).resolved.weights_hash)
    out = decompress_bytes(res.data).data  # no --model: found by the header's hash prefix
    assert out.shape == pts.shape
    assert not (tmp_path / "state" / "mlflow.db").exists()  # nothing created a registry
    monkeypatch.setattr(models, "shipped_path", lambda pair: None)
    clear_cache()
    with pytest.raises(UserError, match="neither the shipped model nor in the registry"):
        decompress_bytes(res.data)
    with pytest.raises(UserError, match="no model ships with the package"):
        compress_points(pts, pair=PAIR, min_quality=None)
    clear_cache()
    compressor._CACHE.clear()


def test_nearest_neighbour_distances_match_exact_float64():
    """The fast float32-pick / float64-recompute NN search gives cdist's float64 distances."""

    from squeeze3d.metrics.pointcloud import _nn_sq

    g = torch.Generator().manual_seed(0)
    a = torch.randn(2, 700, 3, generator=g)
    for b in (a + 1e-5 * torch.randn(2, 700, 3, generator=g), torch.randn(2, 333, 3, generator=g), a.clone()):
        d = torch.cdist(a.double(), b.double()).pow(2)
        a2b, b2a = _nn_sq(a, b, chunk=128)
        torch.testing.assert_close(a2b, d.amin(2), rtol=1e-6, atol=1e-13)  # cdist itself rounds at ~1e-15
        torch.testing.assert_close(b2a, d.amin(1), rtol=1e-6, atol=1e-13)  # cdist itself rounds at ~1e-15


def test_lazy_gate_keeps_the_exhaustive_choice(bounded_ckpt):
    """The gate measures few candidates (smallest first; the classical codec only when it could be
    smaller), yet keeps the file an exhaustive search picks: the smallest that meets the floor."""
    from squeeze3d.codec.quantise import dequantise, quantise

    pts = _cloud()
    codec = get_codec(PAIR, bounded_ckpt)
    h = codec.handler
    norm, _, _ = h.normalise(h.prepare(pts, codec.pair))
    code = codec.encode(norm)
    ladder = {}  # bits -> (file bytes, quality)
    for b in range(1, 9):
        r = compress_points(pts, pair=PAIR, model=bounded_ckpt, dtype="fixed", bits=b, min_quality=None)
        rec = codec.decode_asset(dequantise(quantise(code, "fixed", "none", b), "fixed", "none", code.shape, b))
        ladder[b] = (r.nbytes, float(h.quality(norm, rec)))
    qs = sorted({q for _, q in ladder.values()})
    floors = [-100.0, 60.0] + [(x + y) / 2 for x, y in zip(qs, qs[1:])] + [qs[-1] - 1e-9]
    for floor in floors:
        top_meets = ladder[8][1] >= floor
        neural = [n for n, q in ladder.values() if q >= floor] if top_meets else []  # the ladder's monotone assumption
        blob, _, fq = draco.encode_min_bits(norm, floor, start_bits=1)
        fallback = [len(blob) + 24] if fq >= floor else []  # header: 24 bytes at f16 normalisation, or more
        res = compress_points(pts, pair=PAIR, model=bounded_ckpt, min_quality=floor)
        if neural and (not fallback or min(neural) <= min(fallback)):
            assert not res.fallback and res.nbytes == min(neural), floor
        else:
            assert res.fallback and res.container.draco_bits == draco.encode_min_bits(norm, floor, start_bits=1)[1], floor


def test_kdtree_d1_matches_the_matmul_search():
    from squeeze3d.metrics import pointcloud as pc

    g = np.random.default_rng(1)
    ref = g.normal(size=(2048, 3)).astype(np.float32)
    for test in (ref + 1e-5 * g.normal(size=ref.shape).astype(np.float32), g.normal(size=(1500, 3)).astype(np.float32)):
        slow = pc.d1_psnr_pair(ref, test)
        pc.use_kdtree(True)
        try:
            fast = pc.d1_psnr_pair(ref, test)
        finally:
            pc.use_kdtree(False)
        assert abs(fast - slow) < 1e-4, (fast, slow)
