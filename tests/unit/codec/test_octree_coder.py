"""The octree coder (squeeze3d.codec.octree): lossless on its grid, progressive, deterministic across
processes and thread counts, and strict with damaged streams."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from squeeze3d.codec import octree
from squeeze3d.codec.octree import coder, context
from squeeze3d.errors import ContainerError
from squeeze3d.metrics.pointcloud import d1_psnr_pair

ROOT = Path(__file__).resolve().parents[3]


def _cloud(n=2048, seed=0):
    rng = np.random.default_rng(seed)
    u, v = rng.uniform(0, 2 * np.pi, n), rng.uniform(0, 2 * np.pi, n)
    return np.stack([(1 + 0.4 * np.cos(v)) * np.cos(u), (1 + 0.4 * np.cos(v)) * np.sin(u), 0.4 * np.sin(v)],
                    1).astype(np.float32)


def _same_set(a, b):
    a, b = np.unique(np.asarray(a, np.float32), axis=0), np.unique(np.asarray(b, np.float32), axis=0)
    return a.shape == b.shape and np.array_equal(a, b)


@pytest.mark.parametrize("bits", [2.0, 5.0, 7.5, 11.0])
def test_round_trip_is_the_grid_reconstruction(bits):
    pts = _cloud()
    side = float((pts.max(0) - pts.min(0)).max())
    e = octree.exponent_for(side / (2 ** bits - 1))
    blob = octree.encode_points(pts, e)
    assert _same_set(octree.decode_points(blob), octree.reconstruct(pts, e))
    assert blob == octree.encode_points(pts, e)  # deterministic


def test_finer_grids_cost_more_and_decode_better():
    pts = _cloud()
    lo, hi = octree.exponent_range(pts)
    es = [hi - 8, hi - 24, hi - 40, hi - 56]
    sizes = [len(octree.encode_points(pts, e)) for e in es]
    quals = [d1_psnr_pair(pts, octree.reconstruct(pts, e)) for e in es]
    assert sizes == sorted(sizes) and quals == sorted(quals)


def test_progressive_levels_are_coarser_clouds():
    pts = _cloud()
    e = octree.exponent_for(float((pts.max(0) - pts.min(0)).max()) / 255)
    blob = octree.encode_points(pts, e)
    grid, cells = octree.Grid.fit(pts, e)
    prev = None
    for level in range(grid.depth + 1):
        got = octree.decode_points(blob, max_level=level)
        want = grid.to_points(np.unique(cells >> (grid.depth - level), axis=0), level)
        assert _same_set(got, want), level
        if prev is not None:
            assert len(got) >= prev
        prev = len(got)


def test_neural_prior_is_used_and_must_match():
    pts = _cloud()
    prior = pts + np.random.default_rng(1).normal(0, 0.01, pts.shape).astype(np.float32)
    e = octree.exponent_for(float((pts.max(0) - pts.min(0)).max()) / 63)
    with_prior = octree.encode_points(pts, e, prior=prior)
    assert _same_set(octree.decode_points(with_prior, prior=prior), octree.reconstruct(pts, e))
    assert len(with_prior) < len(octree.encode_points(pts, e))  # a good prior saves bytes


@pytest.mark.parametrize("name,pts", [
    ("single point", np.array([[1.5, -2.0, 3.0]], np.float32)),
    ("duplicates", np.repeat(np.array([[0, 0, 0], [1, 1, 1]], np.float32), 50, axis=0)),
    ("collinear", np.stack([np.linspace(0, 1, 300)] * 3, 1).astype(np.float32)),
    ("planar", np.c_[np.random.default_rng(0).uniform(size=(500, 2)), np.zeros(500)].astype(np.float32)),
    ("far from the origin", _cloud(500) * 10 + np.float32(1e6)),
    ("tiny", _cloud(500) * np.float32(1e-6)),
])
def test_edge_clouds_round_trip(name, pts):
    lo, hi = octree.exponent_range(pts)
    for e in {lo, (lo + hi) // 2, hi}:
        blob = octree.encode_points(pts, e)
        assert _same_set(octree.decode_points(blob), octree.reconstruct(pts, e)), (name, e)


def test_min_quality_search_meets_the_floor():
    pts = _cloud()
    for floor in (25.0, 30.0, 35.0, 45.0):
        blob, e, q = octree.encode_min_quality(pts, floor, d1_psnr_pair)
        assert q >= floor
        assert d1_psnr_pair(pts, octree.decode_points(blob)) == pytest.approx(q, abs=1e-6)


@pytest.mark.parametrize("budget", [40, 120, 600])
def test_max_bytes_search_is_the_finest_grid_within_the_budget(budget):
    pts = _cloud()
    blob, e = octree.encode_max_bytes(pts, budget)
    assert len(blob) <= budget
    assert octree.coder.Grid.parse(blob)[0].e == e and octree.coder.Grid.parse(blob)[0].smooth
    assert _same_set(octree.decode_points(blob), octree.reconstruct(pts, e, smooth=True))
    fine, _ = octree.exponent_range(pts)
    if e > fine:  # one grid finer does not fit, even with its tail cut
        assert len(octree.encode_points(pts, e - 1, smooth=True)) > budget
    bigger, _ = octree.encode_max_bytes(pts, 2 * budget)
    assert d1_psnr_pair(pts, octree.decode_points(bigger)) > d1_psnr_pair(pts, octree.decode_points(blob))


def test_max_bytes_search_with_a_prior_and_too_small_a_budget():
    pts = _cloud()
    prior = pts[::2] + 0.01
    blob, e = octree.encode_max_bytes(pts, 80, prior=prior, smooth=False)
    assert len(blob) <= 80 and not octree.coder.Grid.parse(blob)[0].smooth
    assert _same_set(octree.decode_points(blob, prior=prior), octree.reconstruct(pts, e))
    assert octree.encode_max_bytes(pts, 3) is None  # not even the grid's header fits


def test_damaged_streams_are_refused():
    pts = _cloud()
    blob = octree.encode_points(pts, octree.exponent_for(0.02))
    with pytest.raises(ContainerError, match="truncated"):
        octree.decode_points(blob[:3])
    # the raw stream has no integrity check of its own (the .sq3d container's CRC refuses any cut or
    # flipped file, tests/unit/codec/test_octree_codec.py): a cut stream errors or decodes otherwise
    try:
        cut = octree.decode_points(blob[:-2])
        assert not _same_set(cut, octree.decode_points(blob))
    except ContainerError:
        pass
    bad = bytearray(blob)
    bad[0] = coder.MAX_DEPTH + 1
    with pytest.raises(ContainerError, match="levels"):
        octree.decode_points(bytes(bad))


def test_trimmed_tail_decodes_the_same_and_is_shorter():
    pts = _cloud()
    saved = 0
    for e in (-60, -70, -80, -90):
        full = octree.encode_points(pts, e, trimmed=False)
        cut = octree.encode_points(pts, e)
        assert len(cut) <= len(full) and full.startswith(cut)
        assert _same_set(octree.decode_points(cut), octree.decode_points(full))
        saved += len(full) - len(cut)
    assert saved >= 4  # ~2 bytes a stream on average


def test_contexts_are_integers_within_the_table():
    pts = _cloud()
    grid, cells = octree.Grid.fit(pts, octree.exponent_for(0.01))
    prior = context.NeuralPrior(grid.prior_cells(pts), grid.depth)
    for ctx, bits in coder.coded_bits(grid.depth, cells, prior):
        assert ctx.dtype == np.int64 and ctx.min() >= 0 and ctx.max() < context.N_CONTEXTS
        assert set(np.unique(bits)) <= {0, 1}


_ENCODE = """
import sys, numpy as np
sys.path.insert(0, {tests!r})
from test_octree_coder import _cloud
from squeeze3d.codec import octree
pts = _cloud()
prior = pts[::2] * np.float32(1.01)
sys.stdout.buffer.write(octree.encode_points(pts, octree.exponent_for(0.004), prior=prior))
"""
_DECODE = """
import sys, numpy as np
sys.path.insert(0, {tests!r})
from test_octree_coder import _cloud
from squeeze3d.codec import octree
pts = _cloud()
prior = pts[::2] * np.float32(1.01)
out = octree.decode_points(sys.stdin.buffer.read(), prior=prior)
np.save(sys.stdout.buffer, out)
"""


def test_encode_and_decode_in_other_processes_and_thread_counts(tmp_path):
    tests = str(Path(__file__).parent)
    env2 = {**os.environ, "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    env1 = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    blob = subprocess.run([sys.executable, "-c", _ENCODE.format(tests=tests)], env=env2, capture_output=True,
                          check=True, timeout=300).stdout
    out = subprocess.run([sys.executable, "-c", _DECODE.format(tests=tests)], input=blob, env=env1,
                         capture_output=True, check=True, timeout=300).stdout
    f = tmp_path / "rec.npy"
    f.write_bytes(out)
    pts = _cloud()
    assert blob == octree.encode_points(pts, octree.exponent_for(0.004), prior=pts[::2] * np.float32(1.01))
    assert _same_set(np.load(f), octree.reconstruct(pts, octree.exponent_for(0.004)))


def test_smoothing_moves_cells_toward_their_occupied_neighbours():
    cells = np.array([[5, 5, 5], [6, 5, 5], [6, 6, 5], [20, 20, 20]], np.int64)
    got = coder.smoothed(cells, 5, weight=0.5)
    assert np.array_equal(got[3], cells[3])  # isolated: stays at its centre
    assert np.allclose(got[0], [5.5, 5.25, 5.0])  # neighbours (1,0,0), (1,1,0): mean (1, .5, 0), half way
    assert np.allclose(got[1], [5.75, 5.25, 5.0])  # (−1,0,0), (0,1,0)


def test_a_smoothed_stream_says_so_and_decodes_to_its_smoothed_reconstruction():
    pts = _cloud()
    e = octree.exponent_for(0.05)
    plain, smooth = octree.encode_points(pts, e), octree.encode_points(pts, e, smooth=True)
    assert len(plain) == len(smooth) and plain[1:] == smooth[1:] and smooth[0] == plain[0] | coder.SMOOTH_FLAG
    assert octree.Grid.parse(smooth)[0].smooth and not octree.Grid.parse(plain)[0].smooth
    assert _same_set(octree.decode_points(plain), octree.reconstruct(pts, e))
    rec = octree.decode_points(smooth)
    assert _same_set(rec, octree.reconstruct(pts, e, smooth=True)) and not _same_set(rec, octree.decode_points(plain))
    grid, cells = octree.Grid.fit(pts, e, smooth=True)
    coarse = octree.decode_points(smooth, max_level=3)  # progressive: level 3's cells, smoothed among themselves
    want = grid.to_points(np.unique(cells >> (grid.depth - 3), axis=0), 3)
    assert _same_set(coarse, want)


def test_the_encoder_smooths_when_that_buys_quality():
    """On a smooth surface the smoothed centres measure better, so the floor is met on a coarser grid:
    the file is no larger and smaller here; ``smooth=False`` keeps plain centres."""
    pts = _cloud()
    blob, e, q = octree.encode_min_quality(pts, 35.0, d1_psnr_pair)
    plain, pe, pq = octree.encode_min_quality(pts, 35.0, d1_psnr_pair, smooth=False)
    assert q >= 35.0 and pq >= 35.0 and not octree.Grid.parse(plain)[0].smooth
    assert octree.Grid.parse(blob)[0].smooth and len(blob) < len(plain) and e > pe
    assert d1_psnr_pair(pts, octree.decode_points(blob)) == pytest.approx(q, abs=1e-6)
