"""The octree paths inside the codec: the default classical path for point clouds, the neural code
with an enhancement layer, their .sq3d containers (format version 3), and the G-PCC bench's pieces."""

import numpy as np
import pytest

from squeeze3d.codec import octree, rd_bench
from squeeze3d.codec.classical import classical_for
from squeeze3d.codec.compressor import compress_points, get_codec
from squeeze3d.codec.container import ContainerError, pack, unpack
from squeeze3d.codec.decompress import decompress_bytes
from squeeze3d.codec.options import CompressOptions
from squeeze3d.codec.rd_search import RDSearch
from squeeze3d.errors import UserError
from squeeze3d.metrics.pointcloud import d1_psnr_pair

PAIR = "pointnet_lion"


def _cloud(seed=0, n=2048, offset=(3.0, -1.0, 0.5)):
    rng = np.random.default_rng(seed)
    u, v = rng.uniform(0, 2 * np.pi, n), rng.uniform(0, 2 * np.pi, n)
    pts = np.stack([(1 + 0.4 * np.cos(v)) * np.cos(u), (1 + 0.4 * np.cos(v)) * np.sin(u), 0.4 * np.sin(v)], 1)
    return (pts * 0.8 + np.asarray(offset)).astype(np.float32)


@pytest.mark.parametrize("floor", [30.0, 35.0, 45.0])
def test_default_gate_meets_the_floor_and_beats_draco(floor):
    pts = _cloud()
    res = compress_points(pts, pair=PAIR, min_quality=floor, effort=0)
    assert res.psnr >= floor
    out = decompress_bytes(res.data).data
    assert d1_psnr_pair(pts, out) == pytest.approx(res.psnr, abs=0.05)
    draco = compress_points(pts, pair=PAIR, min_quality=floor, effort=0, classical="draco")
    assert res.nbytes <= draco.nbytes
    c = unpack(res.data)
    if res.fallback:
        assert c.coder == "octree" and c.version == 3 and c.own_frame


def test_octree_fallback_container_is_nine_bytes_and_strict():
    from squeeze3d.codec.container import Container

    pts = _cloud()
    blob = octree.encode_points(pts, octree.exponent_for(0.03))
    c = Container(pair=PAIR, codec="fallback", model_version=None, model_hash="00000000", num_points=0,
                  code_shape=(), dtype="none", quant="none", draco_bits=0, centre=(0.0, 0.0, 0.0), scale=1.0,
                  payload=blob, own_frame=True, coder="octree", version=3)
    small = pack(c)
    assert len(small) == len(blob) + 9 and unpack(small) == c
    assert np.array_equal(decompress_bytes(small).data, octree.decode_points(blob))
    for cut in (len(small) - 1, len(small) - 5, 8):
        with pytest.raises(ContainerError):
            decompress_bytes(small[:cut])
    bad = bytearray(small)
    bad[len(bad) // 2] ^= 0x10
    with pytest.raises(ContainerError, match="checksum"):
        decompress_bytes(bytes(bad))


def test_enhancement_layer_file_round_trips_to_its_octree():
    pts = _cloud(1)
    codec = get_codec(PAIR)
    h = codec.handler
    norm, centre, scale = h.normalise(h.prepare(pts, codec.pair))
    code = codec.encode(norm)
    base = unpack(codec.rung_file(code, 32, 2, centre, scale))
    search = RDSearch(codec, classical_for(h), norm, norm, norm, {}, {}, CompressOptions())
    data, c, q = search.enhanced(base, 33.0)  # the rung's own decode is the layer's context
    assert q >= 33.0 and c.version == 3 and c.enhancement and c.codec == "neural"
    assert unpack(data) == c and len(data) == len(pack(base)) + 1 + len(c.enhancement)
    out = decompress_bytes(data).data
    g, _ = octree.Grid.parse(c.enhancement)
    want = h.denormalise(octree.reconstruct(norm, g.e, g.smooth), c.centre, c.scale)  # the file's normalisation
    assert np.allclose(np.unique(out, axis=0), np.unique(want, axis=0), atol=1e-5 * scale)
    with pytest.raises(ContainerError):  # the layer cut: its words no longer add up, or the CRC fails
        decompress_bytes(data[:-3] + data[-2:])


def test_gate_off_writes_the_layered_stream_within_its_budget():
    """Unmeasured: the shortest rung plus the finest enhancement layer that fits OFF_BUDGET_BYTES;
    a rung asked for, or Draco as the classical codec, keeps the neural code alone."""
    from squeeze3d.codec import OFF_BUDGET_BYTES

    pts = _cloud(2)
    res = compress_points(pts, pair=PAIR, min_quality=None, effort=0)
    c = unpack(res.data)
    assert res.nbytes <= OFF_BUDGET_BYTES and c.codec == "neural" and c.enhancement and res.psnr is None
    assert (c.d_code, c.draco_bits) == (32, 2)  # the shortest rung: the budget goes to the layer
    out = decompress_bytes(res.data).data
    alone = [compress_points(pts, pair=PAIR, min_quality=None, effort=0, **kw) for kw in
             (dict(prefix=128), dict(classical="draco"))]
    for r in alone:
        assert not unpack(r.data).enhancement
        assert len(decompress_bytes(r.data).data) == get_codec(PAIR).asset_size
    assert unpack(alone[0].data).d_code == 128  # the rung asked for, at the model's bits
    assert alone[1].nbytes <= OFF_BUDGET_BYTES  # the largest rung whose raw file fits
    assert d1_psnr_pair(pts, out) > max(d1_psnr_pair(pts, decompress_bytes(r.data).data) for r in alone)


def test_classical_choice_is_checked():
    with pytest.raises(UserError, match="choose one of octree, draco"):
        compress_points(_cloud(), pair=PAIR, min_quality=30.0, effort=0, classical="gpcc")


def test_far_from_origin_quality_is_exact():
    """D1 is translation-invariant: a cloud 100 away from the origin (float32 still resolves it) measures as the same cloud at 0."""
    pts = _cloud()
    rec = octree.reconstruct(pts, octree.exponent_for(0.004))
    far = np.float32(100.0)
    assert d1_psnr_pair(pts + far, rec + far) == pytest.approx(d1_psnr_pair(pts, rec), abs=0.05)


def test_bench_pieces_on_one_object(tmp_path):
    ref = _cloud(2)
    objects, cli, summary = rd_bench.run({"obj": ref}, "corpus", PAIR, effort=0, grids_step=8, log=lambda m: None)
    curves = objects["obj"]
    for name in ("octree", "neural", "neural+octree", "draco", "draco_dedup", "ours"):
        assert curves[name] and all(b > 0 and np.isfinite(q) for b, q in curves[name]), name
    assert summary["ours"]["median_bytes_ge_30"] <= summary["draco"]["median_bytes_ge_30"]
    assert cli["obj"]["cli"]["d1"] >= 30.0 - 0.05
    # no G-PCC curve for this object: "not larger than G-PCC" is not measured, not counted as a win
    assert summary["cli_default"]["not_larger_than_gpcc"] is None
    assert summary["cli_default"]["not_larger_than_draco"] == 1
    from squeeze3d.codec import OFF_BUDGET_BYTES

    off, code = summary["cli_gate_off"], summary["cli_gate_off_code"]  # the layered file and the code alone
    assert off["median_bytes"] <= OFF_BUDGET_BYTES and code["median_bytes"] <= OFF_BUDGET_BYTES
    assert off["reach_30"] == (cli["obj"]["cli_off"]["d1"] >= 30.0)
    # the first objects time the gate-off compress as a user runs it; the code-alone file reuses it
    assert off["timed_objects"] == 1 and off["median_compress_ms"] > 0
    assert code["timed_objects"] == 0 and code["median_compress_ms"] is None
    png = rd_bench.rd_plot(objects, tmp_path / "rd.png", "one object")
    assert png.is_file() and png.stat().st_size > 1000
    rows = [{"split": "corpus", "object_id": "obj", "codec": "tmc13_octree", "bits": "5", "bytes": "99",
             "d1_db": "31.5"}]
    import csv

    with open(tmp_path / "a.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    assert rd_bench.gpcc_from_csv(tmp_path / "a.csv", "corpus") == {"obj": [(99, 31.5)]}


def test_bench_measures_the_model_it_is_given(tmp_path):
    """rd_bench.run(model=...) compresses and decodes with that model (it used to compress with the
    default model, and a file of another model then failed to decode)."""
    import torch

    from squeeze3d.codec.models import shipped_path
    from squeeze3d.mapping.checkpoint import load_checkpoint, save_checkpoint
    from squeeze3d.pairs import get_pair

    ck = load_checkpoint(shipped_path(get_pair(PAIR)))
    with torch.no_grad():  # another model: the shipped one, slightly moved
        for p in ck.f_d.parameters():
            p.add_(1e-3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(0)))
    other = save_checkpoint(tmp_path / "other", ck.f_e, ck.f_d, ck.config)
    ref = _cloud(3)
    objects, cli, _ = rd_bench.run({"obj": ref}, "corpus", PAIR, effort=0, grids_step=8, time_off=0,
                                   log=lambda m: None, model=str(other))
    assert objects["obj"]["neural"] and cli["obj"]["cli_off_code"]["d1"] > 20
    res = get_codec(PAIR, str(other)).compress_asset(ref, min_quality=None, effort=0, classical="draco")
    from squeeze3d.mapping.checkpoint import read_config

    assert unpack(res.data).model_hash == read_config(other)["weights_hash"][:8] != ck.weights_hash[:8]
    with pytest.raises(UserError, match="neither the shipped model nor in the registry"):
        decompress_bytes(res.data)  # without the model it wrote it with


def test_progressive_decode_from_the_cli(tmp_path):
    """``decompress --levels K``: a valid, coarser cloud from the first K octree levels of a file."""
    import subprocess
    import sys

    from squeeze3d.io import read_asset

    pts = _cloud(3)
    src, sq = tmp_path / "c.npy", tmp_path / "c.sq3d"
    np.save(src, pts)
    env = {"SQUEEZE3D_NO_SERVER": "1", "OMP_NUM_THREADS": "1"}
    import os

    env = {**os.environ, **env}
    run = [sys.executable, "-m", "squeeze3d"]
    r = subprocess.run(run + ["compress", str(src), "-o", str(sq), "--min-quality", "45", "--effort", "0"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    c = unpack(sq.read_bytes())
    blob = c.payload if c.coder == "octree" else c.enhancement
    grid, _ = octree.Grid.parse(blob)
    counts = []
    for k in (2, grid.depth - 2, None):
        out = tmp_path / f"l{k}.ply"
        args = ["decompress", str(sq), "-o", str(out)] + ([] if k is None else ["--levels", str(k)])
        r = subprocess.run(run + args, capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr
        counts.append(len(read_asset(out).cloud))
    assert counts[0] < counts[1] < counts[2]
    r = subprocess.run(run + ["decompress", str(sq), "-o", str(tmp_path / "x.ply"), "--levels", "-1"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "--levels" in r.stderr
