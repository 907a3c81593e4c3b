"""Radiance-field grids through the codec with a test-only pair (tiny random-weight E, G and unet3d
mapping on 16³ grids): compress/decompress round trips, the render-PSNR gate and its quantise+zstd
fallback, multi-dimensional codes in the container, NeRF-MAE .npz layout conversion, the grid
baselines, evaluation and interpolation, and bad inputs."""

import sys
import types

import numpy as np
import pytest
import torch
from torch import nn

from squeeze3d.assets import handler_for
from squeeze3d.assets.radiance_field import (
    LOG_DENSITY_FLOOR,
    encode_grid,
    from_nerfmae,
    load_grid_file,
    resample,
    to_nerfmae,
)
from squeeze3d.baselines import grid as gb
from squeeze3d.codec.container import ContainerError, pack, read_container, unpack
from squeeze3d.errors import UserError
from squeeze3d.metrics.volume import psnr, render

PAIR = "fakegrid"
R = 16
Z = (8, 4, 4, 4)


class _Enc(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Conv3d(4, Z[0], 1)

    def forward(self, x):
        return self.proj(nn.functional.avg_pool3d(x, R // Z[1]))


class _Dec(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Conv3d(Z[0], 4, 1)

    def forward(self, z):
        h = self.proj(nn.functional.interpolate(z, scale_factor=R // Z[1], mode="trilinear"))
        return torch.cat([torch.sigmoid(h[:, :3]), nn.functional.softplus(h[:, 3:] + 1.0)], dim=1)


def _encoder(device):
    from squeeze3d.zoo.base import Encoder

    class FakeEncoder(Encoder):
        def _encode(self, assets):
            return self.module(assets)

    torch.manual_seed(1)
    return FakeEncoder(_Enc(), device)


def _generator(device):
    from squeeze3d.zoo.base import Generator

    class FakeGenerator(Generator):
        def _decode(self, z_g):
            return self.module(z_g)

    torch.manual_seed(2)
    return FakeGenerator(_Dec(), device)


def _make_pair(resolution):
    from squeeze3d.pairs.base import PairSpec

    return PairSpec(name=PAIR, description="test-only random-weight grid pair", asset_kind="radiance_field",
                    condition_kind="noise", z_e_shape=Z, z_g_shape=Z, build_encoder=_encoder,
                    build_generator=_generator, num_points=None, grid_resolution=resolution,
                    mapping={"arch": "unet3d", "unet_channels": [8], "code_channels": 4, "dropout": 0.0},
                    objective="psnr")


@pytest.fixture(scope="module")
def fake_pair(tmp_path_factory):
    """Register the fake pair, build a random-weight unet3d checkpoint for it."""
    from squeeze3d import pairs
    from squeeze3d.codec.compressor import clear_cache
    from squeeze3d.config import train_config_for_pair
    from squeeze3d.mapping import build_mapping
    from squeeze3d.mapping.checkpoint import save_checkpoint

    mod = types.ModuleType("_squeeze3d_test_fakegrid")
    mod.PAIR = _make_pair(R)
    mp = pytest.MonkeyPatch()
    mp.setitem(sys.modules, mod.__name__, mod)
    mp.setitem(pairs._REGISTRY, PAIR, mod.__name__)
    try:
        cfg = train_config_for_pair(PAIR)
        torch.manual_seed(3)
        f_e, f_d = build_mapping(cfg.mapping, Z, Z)
        ck = save_checkpoint(tmp_path_factory.mktemp("ck") / "grid", f_e, f_d, cfg)
        yield str(ck)
    finally:
        clear_cache()
        mp.undo()


def _scene(seed=0, r=R):
    """A random-but-structured grid: two coloured boxes and a soft ball in empty space."""
    rng = np.random.default_rng(seed)
    g = np.zeros((4, r, r, r), np.float32)
    x, y, z = np.meshgrid(*(np.linspace(-1, 1, r),) * 3, indexing="ij")
    for _ in range(2):
        lo = rng.integers(1, r // 2, 3)
        hi = lo + rng.integers(3, r // 2, 3)
        sl = (slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], hi[2]))
        g[(slice(0, 3), *sl)] = rng.random(3)[:, None, None, None]
        g[(3, *sl)] = rng.uniform(2, 20)
    ball = (x - 0.3) ** 2 + (y + 0.2) ** 2 + z ** 2 < 0.3
    g[3][ball] += 3.0 * rng.random(ball.sum())
    g[0][ball], g[1][ball], g[2][ball] = 0.9, 0.5 * (1 + x[ball]), 0.2
    return g


# ------------------------------------------------------------------------------------- NeRF-MAE format


def test_nerfmae_layout_round_trip_and_flat_order(tmp_path):
    g = _scene(2)
    g[3, 0, 0, 0] = 0.0
    d = to_nerfmae(g)
    assert d["rgbsigma"].shape == (R, R, R, 4) and list(d["resolution"]) == [R, R, R]
    # [X, Y, Z, 4] with the voxel at (x, y, z) in rgbsigma[x, y, z]; σ as NeRF-MAE's log-density
    x, y, z = 3, 7, 11
    assert np.allclose(d["rgbsigma"][x, y, z, :3], g[:3, x, y, z])
    assert np.isclose(np.exp(d["rgbsigma"][x, y, z, 3]) / 100, g[3, x, y, z], rtol=1e-5) or g[3, x, y, z] == 0
    assert d["rgbsigma"][0, 0, 0, 3] == LOG_DENSITY_FLOOR
    back = from_nerfmae(d["rgbsigma"], d["resolution"])
    assert np.allclose(back, g, rtol=1e-5, atol=1e-7) and back[3, 0, 0, 0] == 0.0
    # the flat instant-ngp extraction order: z-major
    flat = d["rgbsigma"].transpose(2, 1, 0, 3).reshape(-1, 4)
    assert np.allclose(from_nerfmae(flat, d["resolution"]), back)
    # files: .npz (NeRF-MAE layout), .npy (ours); non-cubic NeRF-MAE scenes are padded and resampled
    (tmp_path / "a.npz").write_bytes(encode_grid(g, "npz"))
    (tmp_path / "a.npy").write_bytes(encode_grid(g, "npy"))
    with np.load(tmp_path / "a.npz") as z_:
        assert set(z_.files) == {"rgbsigma", "resolution"}
    assert np.allclose(load_grid_file(tmp_path / "a.npz"), g, rtol=1e-5, atol=1e-7)
    assert np.array_equal(load_grid_file(tmp_path / "a.npy"), g)
    rect = np.zeros((4, 8, 6, 4), np.float32)
    rect[:, 2:6, 1:5, 1:3] = 0.5
    np.savez(tmp_path / "rect.npz", **to_nerfmae(rect))
    assert load_grid_file(tmp_path / "rect.npz").shape == (4, 8, 6, 4)
    cube = resample(rect, 4)
    assert cube.shape == (4, 4, 4, 4)
    # σ is per voxel length: halving the resolution averages 2³ voxels and doubles σ, so the total is
    # 2/8 of the original (and the optical depth along an axis is kept)
    assert np.isclose(cube[3].sum(), rect[3].sum() / 4, rtol=1e-5)


def test_uint8_nerfmae_and_bad_grid_files(tmp_path):
    rgbsigma = np.zeros((4, 4, 4, 4), np.uint8)
    rgbsigma[1, 2, 3] = (255, 0, 128, 255)
    rgbsigma[2, 2, 2] = (0, 255, 0, 128)
    g = from_nerfmae(rgbsigma, [4, 4, 4])
    assert np.allclose(g[:3, 1, 2, 3], [1, 0, 128 / 255]) and g[3, 1, 2, 3] > 10
    assert np.isclose(1 - np.exp(-g[3, 2, 2, 2]), 128 / 255, atol=1e-6)
    h = handler_for("radiance_field")
    cases = {
        "mismatch.npz": lambda p: np.savez(p, rgbsigma=np.zeros((4, 4, 5, 4), np.float32), resolution=[4, 4, 4]),
        "nores.npz": lambda p: np.savez(p, rgbsigma=np.zeros((4, 4, 4, 4), np.float32)),
        "two.npz": lambda p: np.savez(p, a=np.zeros(3), b=np.zeros(3)),
        "shape.npy": lambda p: np.save(p, np.zeros((3, 4, 4, 4), np.float32)),
        "nan.npy": lambda p: np.save(p, np.full((4, 4, 4, 4), np.nan, np.float32)),
        "empty.npy": lambda p: np.save(p, np.zeros((4, 4, 4, 4), np.float32)),
        "neg.npy": lambda p: np.save(p, np.concatenate([np.zeros((3, 4, 4, 4)), -np.ones((1, 4, 4, 4))])),
        "colour.npy": lambda p: np.save(p, np.full((4, 4, 4, 4), 3.0, np.float32)),
        "garbage.npz": lambda p: p.write_bytes(b"PK\x03\x04 not a zip"),
    }
    pair = _make_pair(4)
    for name, make in cases.items():
        make(tmp_path / name)
        with pytest.raises(UserError):
            h.read(tmp_path / name, pair)
    (tmp_path / "x.ply").write_text("ply")
    with pytest.raises(UserError, match="unsupported format"):
        h.read(tmp_path / "x.ply", pair)


# ------------------------------------------------------------------------------------- baselines


def test_grid_baselines_shapes_rates_and_fallback_search():
    g = _scene(3)
    raw = gb.encode_raw_f16(g)
    assert np.allclose(gb.decode_raw_f16(raw), g, rtol=1e-3, atol=1e-3)
    sizes, quality = {}, {}
    ref = render(torch.from_numpy(g)[None])
    for bits in (8, 4, 2):
        blob = gb.encode_qz(g, bits)
        out = gb.decode_qz(blob, bits, R)
        assert out.shape == g.shape and out.dtype == np.float32 and np.isfinite(out).all()
        sizes[bits], quality[bits] = len(blob), float(psnr(ref, render(torch.from_numpy(out)[None]))[0])
    assert sizes[8] > sizes[4] > sizes[2] and quality[8] > quality[4] > quality[2]
    vq = [gb.encode_vqrf(g, k, t) for k, t in gb.VQRF_RATES]  # highest rate first
    assert len(vq) >= 2 and all(len(a) > len(b) for a, b in zip(vq, vq[1:]))
    for blob in vq:
        assert gb.decode_vqrf(blob).shape == g.shape
    q = lambda a, b: float(psnr(ref, render(torch.from_numpy(b)[None]))[0])  # noqa: E731
    floor = (quality[4] + quality[8]) / 2
    blob, bits, achieved = gb.encode_min_bits(g, floor, q)
    assert 4 < bits <= 8 and achieved >= floor
    assert q(g, gb.decode_qz(gb.encode_qz(g, bits - 1))) < floor
    # fuzz: the stored fallback payload fails cleanly on any corruption
    for n in range(0, len(blob), max(1, len(blob) // 40)):
        with pytest.raises(ContainerError):
            gb.decode_qz(blob[:n], bits, R)
    with pytest.raises(ContainerError, match="bits"):
        gb.decode_qz(blob, bits + 1, R)
    with pytest.raises(ContainerError, match="resolution"):
        gb.decode_qz(blob, bits, R * 2)


# ------------------------------------------------------------------------------------- through the codec


def test_compress_decompress_round_trip_and_container(fake_pair, tmp_path):
    from squeeze3d.codec.compressor import compress_file, get_codec
    from squeeze3d.codec.decompress import decompress_file

    src = tmp_path / "scene.npz"
    src.write_bytes(encode_grid(_scene(4), "npz"))
    res = compress_file(src, tmp_path / "s.sq3d", pair=PAIR, model=fake_pair, dtype="f16", min_quality=None)
    c = read_container(tmp_path / "s.sq3d")
    assert c.codec == "neural" and c.num_points == R and c.d_code == 4 * 2 * 2 * 2  # v2 stores the count; the model the shape
    assert c.centre == (0.0, 0.0, 0.0) and c.scale == 1.0 and res.nbytes == len(pack(c))
    assert unpack(pack(c)) == c
    codec = get_codec(PAIR, fake_pair)
    for ext in ("npz", "npy"):
        out = decompress_file(tmp_path / "s.sq3d", tmp_path / f"o.{ext}", model=fake_pair)
        assert out.data.shape == (4, R, R, R)
        want = codec.decode(np.frombuffer(c.payload, "<f2").astype(np.float32).reshape(codec.code_shape)).numpy()
        assert np.allclose(out.data, want, atol=1e-6)
        assert np.allclose(load_grid_file(tmp_path / f"o.{ext}"), out.data, rtol=1e-5, atol=1e-6)
    with pytest.raises(UserError, match="radiance field"):
        decompress_file(tmp_path / "s.sq3d", tmp_path / "o.ply", model=fake_pair)
    assert not (tmp_path / "o.ply").exists()
    # a higher-resolution input is resampled to the pair's R before encoding
    big = tmp_path / "big.npy"
    np.save(big, resample(_scene(4), 32))
    assert compress_file(big, tmp_path / "b.sq3d", pair=PAIR, model=fake_pair, min_quality=None).nbytes > 0


def test_gate_falls_back_to_fewest_qz_bits(fake_pair, tmp_path):
    from squeeze3d.codec.compressor import compress_asset
    from squeeze3d.codec.decompress import decompress_bytes

    g = _scene(5)
    neural = compress_asset(g, pair=PAIR, model=fake_pair, min_quality=-100.0)
    assert not neural.fallback
    floor = max(neural.neural_psnr + 3.0, 25.0)  # the random-weight G cannot reach it
    r = compress_asset(g, pair=PAIR, model=fake_pair, min_quality=floor)
    assert r.fallback and r.container.codec == "fallback" and r.psnr >= floor
    bits = r.container.draco_bits
    h = handler_for("radiance_field")
    if bits > 1:
        assert h.quality(g, gb.decode_qz(gb.encode_qz(g, bits - 1))) < floor
    dec = decompress_bytes(r.data)  # no model needed for a fallback file
    assert dec.data.shape == g.shape and h.quality(g, dec.data) >= floor - 1e-6
    # container fuzz on the new payload: truncations and flips are clean errors
    data = r.data
    for n in range(0, len(data), max(1, len(data) // 60)):
        with pytest.raises(ContainerError):
            unpack(data[:n])
    for i in range(0, len(data) * 8, 97):
        bad = bytearray(data)
        bad[i // 8] ^= 1 << (i % 8)
        with pytest.raises(ContainerError):
            unpack(bytes(bad))


def test_eval_and_interpolate_on_grids(fake_pair, tmp_path):
    from squeeze3d.codec.compressor import compress_asset
    from squeeze3d.codec.evaluate import evaluate
    from squeeze3d.codec.interpolate import interpolate

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "g0.npz").write_bytes(encode_grid(_scene(10), "npz"))
    (inputs / "ignored.ply").write_text("not a grid input")
    rep = evaluate(pair=PAIR, model=fake_pair, input_dir=inputs, out_dir=tmp_path / "eval", min_quality=35.0,
                   variants=(("f32", "per_vector"), ("int8", "per_vector")), log=lambda m: None)
    methods = [r["method"] for r in rep.rows]
    for m in ("sq3d-f32", "sq3d-int8-pervector", "sq3d+gate", "raw-f16+zstd", "qz-8", "qz-4",
              "vqrf-256", "vqrf-16"):
        assert m in methods, m
    assert rep.row("sq3d-f32")["objects"] == 1
    assert rep.row("raw-f16+zstd")["psnr"] > 40 and rep.row("raw-f16+zstd")["cr_raw"] > 1
    assert rep.row("vqrf-256")["bytes"] > rep.row("vqrf-16")["bytes"]
    assert rep.row("qz-8")["psnr"] > rep.row("qz-4")["psnr"]
    # the random-weight G decodes at well under 35 dB: the gated row is the qz fallback at the floor
    assert rep.row("sq3d+gate")["fallbacks"] == 1 and rep.row("sq3d+gate")["psnr"] >= 35.0
    assert "render PSNR" in rep.markdown and "| vqrf-16 |" in rep.markdown
    assert rep.csv_path.read_text().startswith("method,objects,bytes,cr_raw,cr_file,psnr,ms_ssim")
    assert len(rep.previews) == 1 and all(p.stat().st_size > 1000 for p in rep.previews + [rep.rd_png])
    for name, seed in (("a", 20), ("b", 21)):
        (tmp_path / f"{name}.sq3d").write_bytes(
            compress_asset(_scene(seed), pair=PAIR, model=fake_pair, dtype="f32", min_quality=None).data)
    with pytest.raises(UserError, match="radiance field"):
        interpolate(tmp_path / "a.sq3d", tmp_path / "b.sq3d", 3, tmp_path / "bad", model=fake_pair, fmt="ply")
    paths = interpolate(tmp_path / "a.sq3d", tmp_path / "b.sq3d", 3, tmp_path / "interp", model=fake_pair,
                        fmt="npy")
    assert [p.name for p in paths] == ["interp_000.npy", "interp_001.npy", "interp_002.npy", "interpolation.png"]
    assert np.load(paths[1]).shape == (4, R, R, R)
    dflt = interpolate(tmp_path / "a.sq3d", tmp_path / "b.sq3d", 2, tmp_path / "i2", model=fake_pair, fmt=None,
                       preview=False)
    assert [p.name for p in dflt] == ["interp_000.npz", "interp_001.npz"]  # the kind's default format
    assert np.allclose(load_grid_file(dflt[0]), np.load(paths[0]), rtol=1e-5, atol=1e-6)


def test_cli_compress_decompress_grid_and_bad_input(fake_pair, tmp_path, capsys):
    from squeeze3d.cli import main

    src = tmp_path / "s.npz"
    src.write_bytes(encode_grid(_scene(6), "npz"))
    out = tmp_path / "s.sq3d"
    assert main(["compress", str(src), "-o", str(out), "--pair", PAIR, "--model", fake_pair,
                 "--min-quality", "off"]) == 0
    assert main(["decompress", str(out), "-o", str(tmp_path / "r.npz"), "--model", fake_pair]) == 0
    text = capsys.readouterr().out
    assert f"grid 4×{R}×{R}×{R}" in text and "neural int8" in text
    np.save(tmp_path / "empty.npy", np.zeros((4, R, R, R), np.float32))
    assert main(["compress", str(tmp_path / "empty.npy"), "-o", str(tmp_path / "e.sq3d"), "--pair", PAIR,
                 "--model", fake_pair]) == 2
    err = capsys.readouterr().err
    assert "empty radiance field" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "e.sq3d").exists()
