"""Radiance-field grids: NeRF-MAE ``.npz`` and our own arrays in and out, render-PSNR gate, ``qz``
(quantise + zstd) fallback, and raw-f16+zstd / qz ladder / VQRF-style baselines.

Our layout: ``[4, R, R, R]`` float32, channels (r, g, b, σ), rgb in [0, 1], σ ≥ 0 per voxel length,
axes (x, y, z), z up (``squeeze3d.metrics.volume``). R is the pair's ``grid_resolution``.

NeRF-MAE's on-disk format (read from its public loaders, NeRF-RPN lineage): an ``.npz`` with
``rgbsigma`` and ``resolution`` = [W, L, H] = [X, Y, Z] (other keys — scale, offset, bbox — are
ignored). ``rgbsigma`` is either ``[X, Y, Z, 4]`` (the pre-processed features NeRF-MAE trains on;
its loader transposes (3, 0, 1, 2) to channels-first) or the flat ``[X·Y·Z, 4]`` instant-ngp
extraction, whose order is z-major: ``reshape(Z, Y, X, 4)`` then transpose to ``[X, Y, Z, 4]``.
Its σ channel is a log-density: NeRF-MAE converts it with alpha = 1 − exp(−exp(s)/100) per voxel, so
ours is σ = exp(s)/100 (same opacity per voxel). uint8 files (rgb·255, alpha·255) are read as
rgb/255 and σ = −ln(1 − alpha/255). Writing ``.npz`` produces the ``[X, Y, Z, 4]`` float32 form with
the log-density (empty voxels get ``LOG_DENSITY_FLOOR``, read back as exactly 0). ``.npy`` (and an
``.npz`` holding a ``grid`` array or a single array) is our own ``[4, R, R, R]`` layout.

Inputs of another resolution (NeRF-MAE scenes are non-cubic, e.g. 160×140×90) are zero-padded to a
centred cube and resampled to R by area averaging, colours weighted by density, and σ rescaled to
the new voxel length (σ is per voxel length: a voxel k times longer absorbs like k old ones).
"""

from __future__ import annotations

import hashlib
import io as _io
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from squeeze3d.assets.base import AssetHandler, Baseline, MetricColumn
from squeeze3d.errors import UserError
from squeeze3d.io import InputError, atomic_write_bytes, check_input_file

LOG_DENSITY_FLOOR = -30.0
"""Log-density written for empty voxels (σ = exp(−30)/100 ≈ 1e-15); values at or below it read as 0."""
NERFMAE_DENSITY_SCALE = 100.0
MAX_RESOLUTION = 512
INPUT_EXTS = (".npz", ".npy")
OUTPUT_EXTS = (".npz", ".npy")
RGB_TOLERANCE = 1e-3


@dataclass
class GridAsset:
    data: np.ndarray
    """``[4, R, R, R]`` float32 at the pair's resolution."""
    kind: str = "grid"
    path: Path | None = None
    file_bytes: int | None = None
    source_resolution: tuple[int, ...] = ()
    """The file's own (X, Y, Z) resolution before resampling."""


# ------------------------------------------------------------------------------------ NeRF-MAE format


def from_nerfmae(rgbsigma: np.ndarray, resolution) -> np.ndarray:
    """NeRF-MAE ``rgbsigma`` (``[X, Y, Z, 4]`` or flat ``[X·Y·Z, 4]``) + ``resolution`` → our
    ``[4, X, Y, Z]`` float32 with σ per voxel length (see the module docstring)."""
    a = np.asarray(rgbsigma)
    res = tuple(int(v) for v in np.asarray(resolution).reshape(-1))
    if len(res) != 3 or min(res) < 1:
        raise InputError(f"NeRF-MAE resolution must be three positive integers, got {list(res)}")
    if a.ndim == 2 and a.shape == (res[0] * res[1] * res[2], 4):
        a = a.reshape(res[2], res[1], res[0], 4).transpose(2, 1, 0, 3)
    if a.shape != (*res, 4):
        raise InputError(f"NeRF-MAE rgbsigma has shape {list(a.shape)}, which does not fit resolution "
                         f"{list(res)} (expected {[*res, 4]} or {[res[0] * res[1] * res[2], 4]})")
    if a.dtype == np.uint8:
        rgb = a[..., :3].astype(np.float64) / 255.0
        alpha = np.minimum(a[..., 3].astype(np.float64) / 255.0, 1 - 1e-7)
        sigma = -np.log1p(-alpha)
    elif a.dtype.kind == "f":
        rgb = a[..., :3].astype(np.float64)
        s = a[..., 3].astype(np.float64)
        if not np.all(np.isfinite(rgb)) or np.isnan(s).any() or np.isposinf(s).any():
            raise InputError("NeRF-MAE rgbsigma contains NaN or Inf")
        with np.errstate(over="ignore"):
            sigma = np.where(s <= LOG_DENSITY_FLOOR, 0.0, np.exp(np.minimum(s, 80.0)) / NERFMAE_DENSITY_SCALE)
    else:
        raise InputError(f"NeRF-MAE rgbsigma has dtype {a.dtype}; expected float or uint8")
    out = np.concatenate([rgb, sigma[..., None]], axis=-1).transpose(3, 0, 1, 2)
    return np.ascontiguousarray(out, dtype=np.float32)


def to_nerfmae(grid: np.ndarray) -> dict[str, np.ndarray]:
    """Our ``[4, X, Y, Z]`` → ``{"rgbsigma": [X, Y, Z, 4] float32 (log-density), "resolution": [X, Y, Z]}``."""
    g = np.asarray(grid, np.float64)
    with np.errstate(divide="ignore"):
        logd = np.where(g[3] > 0, np.log(np.maximum(g[3], 1e-300) * NERFMAE_DENSITY_SCALE), LOG_DENSITY_FLOOR)
    logd = np.maximum(logd, LOG_DENSITY_FLOOR)
    rgbsigma = np.concatenate([g[:3], logd[None]], axis=0).transpose(1, 2, 3, 0).astype(np.float32)
    return {"rgbsigma": np.ascontiguousarray(rgbsigma), "resolution": np.asarray(g.shape[1:], np.int64)}


def encode_grid(grid: np.ndarray, fmt: str) -> bytes:
    """``npz`` (NeRF-MAE layout) or ``npy`` (our ``[4, R, R, R]``) bytes."""
    fmt = fmt.lower().lstrip(".")
    buf = _io.BytesIO()
    if fmt == "npz":
        np.savez(buf, **to_nerfmae(grid))
    elif fmt == "npy":
        np.save(buf, np.ascontiguousarray(grid, dtype=np.float32))
    else:
        raise InputError(f"unsupported output format {fmt!r} for a radiance field; use npz or npy")
    return buf.getvalue()


def _npz_header_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Array shapes from the NPZ members' headers, before anything is loaded (size checks first)."""
    shapes = {}
    with zipfile.ZipFile(path) as zf:
        for name in zf.namelist():
            if not name.endswith(".npy"):
                continue
            with zf.open(name) as f:
                version = np.lib.format.read_magic(f)
                read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                        else np.lib.format.read_array_header_2_0)
                shapes[name[:-4]] = tuple(read(f)[0])
    return shapes


def _check_voxels(shape: tuple[int, ...], path: Path) -> None:
    n = int(np.prod(shape[:-1] if len(shape) and shape[-1] == 4 else shape[1:])) if shape else 0
    if n > MAX_RESOLUTION ** 3:
        raise InputError(f"{path}: {n} voxels exceed the limit of {MAX_RESOLUTION}³")


def load_grid_file(path: str | Path) -> np.ndarray:
    """Read ``.npz`` (NeRF-MAE ``rgbsigma`` + ``resolution``; or a ``grid``/single ``[4, X, Y, Z]``
    array) or ``.npy`` (``[4, X, Y, Z]``) → ``[4, X, Y, Z]`` float32, unvalidated values."""
    p = check_input_file(path, INPUT_EXTS, " for a radiance field")
    ext = p.suffix.lower()
    try:
        if ext == ".npy":
            arr = np.load(p, mmap_mode="r", allow_pickle=False)
            _check_voxels(arr.shape, p)
            return _channels_first(np.array(arr), p)
        shapes = _npz_header_shapes(p)
        for s in shapes.values():
            _check_voxels(s, p)
        with np.load(p, allow_pickle=False) as z:
            if "rgbsigma" in shapes:
                if "resolution" not in shapes:
                    raise InputError(f"{p}: NeRF-MAE file without a 'resolution' array")
                try:
                    return from_nerfmae(z["rgbsigma"], z["resolution"])
                except InputError as e:
                    raise InputError(f"{p}: {e}") from None
            key = "grid" if "grid" in shapes else (next(iter(shapes)) if len(shapes) == 1 else None)
            if key is None:
                raise InputError(f"{p}: NPZ holds {sorted(shapes) or 'no arrays'}; expected NeRF-MAE "
                                 "'rgbsigma' + 'resolution', a 'grid' array, or exactly one array")
            return _channels_first(z[key], p)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as e:
        raise InputError(f"{p}: not a readable {ext[1:].upper()} file ({e})") from None


def _channels_first(a: np.ndarray, p: Path) -> np.ndarray:
    if a.ndim == 5 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 4 or a.shape[0] != 4:
        raise InputError(f"{p}: expected a grid shaped [4, X, Y, Z] (r, g, b, σ), got {list(a.shape)}")
    if a.dtype.kind not in "fiu":
        raise InputError(f"{p}: expected numeric values, got dtype {a.dtype}")
    return np.ascontiguousarray(a, dtype=np.float32)


def check_grid(grid: np.ndarray, what: str = "input") -> np.ndarray:
    """Validate ``[4, X, Y, Z]`` values: finite, rgb within [0, 1] (±1e-3, then clipped), σ ≥ 0
    (−1e-6 float noise clipped), and not empty (some σ > 0)."""
    a = np.asarray(grid)
    if a.ndim == 5 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 4 or a.shape[0] != 4:
        raise InputError(f"{what}: expected a grid shaped [4, X, Y, Z] (r, g, b, σ), got {list(a.shape)}")
    if a.dtype.kind not in "fiu":
        raise InputError(f"{what}: expected numeric values, got dtype {a.dtype}")
    if min(a.shape[1:]) < 1 or max(a.shape[1:]) > MAX_RESOLUTION:
        raise InputError(f"{what}: grid resolution {list(a.shape[1:])} outside 1..{MAX_RESOLUTION}")
    a = a.astype(np.float32)
    bad = int((~np.isfinite(a)).sum())
    if bad:
        raise InputError(f"{what}: {bad} value(s) are NaN or Inf")
    if a[:3].min() < -RGB_TOLERANCE or a[:3].max() > 1 + RGB_TOLERANCE:
        raise InputError(f"{what}: colours span [{a[:3].min():.4g}, {a[:3].max():.4g}]; expected rgb in [0, 1]")
    if a[3].min() < -1e-6:
        raise InputError(f"{what}: negative density {a[3].min():.4g}; σ must be ≥ 0")
    if not (a[3] > 0).any():
        raise InputError(f"{what}: empty radiance field (density 0 everywhere); nothing to compress")
    a[:3] = np.clip(a[:3], 0.0, 1.0)
    a[3] = np.maximum(a[3], 0.0)
    return a


def resample(grid: np.ndarray, resolution: int) -> np.ndarray:
    """``[4, X, Y, Z]`` → ``[4, R, R, R]``: centred zero-padding to a cube, then area resampling with
    density-weighted colours and σ rescaled to the new voxel length (module docstring)."""
    g = np.asarray(grid, np.float32)
    side = max(g.shape[1:])
    if g.shape[1:] != (side, side, side):
        pad = [(0, 0)] + [((side - s) // 2, side - s - (side - s) // 2) for s in g.shape[1:]]
        g = np.pad(g, pad)
    if side == resolution:
        return np.ascontiguousarray(g)
    t = torch.from_numpy(g)[None].double()
    sigma = t[:, 3:4]
    mass = torch.nn.functional.interpolate(sigma, size=(resolution,) * 3, mode="area")
    tint = torch.nn.functional.interpolate(t[:, :3] * sigma, size=(resolution,) * 3, mode="area")
    plain = torch.nn.functional.interpolate(t[:, :3], size=(resolution,) * 3, mode="area")
    rgb = torch.where(mass > 0, tint / mass.clamp_min(1e-300), plain)
    out = torch.cat([rgb.clamp(0, 1), mass * (side / resolution)], dim=1)[0]
    return out.float().numpy()


# ------------------------------------------------------------------------------------ the handler


_PROBED: dict[str, int] = {}


def pair_resolution(pair) -> int:
    """The pair's grid resolution R: ``PairSpec.grid_resolution`` or, when unset, the size of one
    asset G decodes from a zero latent (probed once per process)."""
    r = getattr(pair, "grid_resolution", None)
    if r:
        return int(r)
    if pair.name not in _PROBED:
        gen = pair.build_generator("cpu")
        out = gen.decode(torch.zeros(1, *pair.z_g_shape))
        if out.ndim != 5 or out.shape[1] != 4:
            raise UserError(f"pair {pair.name!r}: its generator produces {list(out.shape)}, not [B, 4, R, R, R] grids")
        _PROBED[pair.name] = int(out.shape[2])
    return _PROBED[pair.name]


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1e3


@dataclass
class _RenderContext:
    grid: np.ndarray
    renders: torch.Tensor


class RadianceFieldHandler(AssetHandler):
    kind = "radiance_field"
    quality_name = "render PSNR"
    fallback_name = "qz (quantise + zstd)"
    input_exts = INPUT_EXTS
    output_exts = OUTPUT_EXTS
    metric_columns = (MetricColumn("psnr", "render PSNR dB", 2), MetricColumn("ms_ssim", "MS-SSIM", 4))
    primary_metric = "psnr"

    def check_pair(self, pair) -> None:
        if pair.normalisation not in ("unit_sphere", "identity", "none"):
            raise UserError(f"pair {pair.name!r}: normalisation {pair.normalisation!r} is not supported for grids")

    def asset_size(self, pair) -> int:
        return pair_resolution(pair)

    def asset_shape(self, size: int) -> tuple[int, ...]:
        return (4, int(size), int(size), int(size))

    def read(self, path, pair, seed: int = 0) -> GridAsset:
        p = Path(path)
        raw = load_grid_file(p)
        grid = self.prepare(raw, pair, str(p))
        return GridAsset(grid, "grid", p, p.stat().st_size, tuple(raw.shape[1:]))

    def prepare(self, data, pair, what: str = "input") -> np.ndarray:
        return resample(check_grid(data, what), pair_resolution(pair))

    def normalise(self, data):
        # grids already live in the object's cube [-1, 1]^3: nothing to undo at the receiver
        return np.asarray(data, np.float32), (0.0, 0.0, 0.0), 1.0

    def denormalise(self, norm, centre, scale) -> np.ndarray:
        return np.asarray(norm, np.float32)

    def _reference_render(self, grid: np.ndarray) -> torch.Tensor:
        """Renders of a reference grid, remembered for the last one (the gate renders the input once
        for the neural check and the whole fallback search)."""
        from squeeze3d.metrics.volume import render

        g = np.ascontiguousarray(grid, np.float32)
        key = (g.shape, hashlib.blake2b(g.tobytes(), digest_size=16).digest())
        return self._last_reference(key, lambda: render(torch.from_numpy(g)[None]))

    def quality(self, reference, test) -> float:
        from squeeze3d.metrics.volume import psnr, render

        rec = render(torch.from_numpy(np.asarray(test, np.float32))[None])
        return float(psnr(self._reference_render(reference), rec)[0])

    def fallback_encode(self, norm, floor_db):
        from squeeze3d.baselines import grid

        return grid.encode_min_bits(np.asarray(norm, np.float32), float(floor_db), self.quality)

    fallback_bits = tuple(range(1, 9))

    def fallback_blob(self, norm, bits) -> bytes:
        from squeeze3d.baselines import grid

        return grid.encode_qz(np.asarray(norm, np.float32), int(bits))

    def fallback_at(self, norm, bits):
        from squeeze3d.baselines import grid

        blob = self.fallback_blob(norm, bits)
        return blob, float(self.quality(norm, grid.decode_qz(blob, bits=int(bits), resolution=norm.shape[-1])))

    def fallback_decode(self, payload, param, size) -> np.ndarray:
        from squeeze3d.baselines import grid

        return grid.decode_qz(payload, bits=param, resolution=size)

    def encode_output(self, data, fmt) -> bytes:
        return encode_grid(data, fmt)

    def describe(self, data) -> str:
        r = np.asarray(data).shape
        return f"grid {r[0]}×{r[1]}×{r[2]}×{r[3]}"

    # ------------------------------------------------------------------ evaluation
    def corpus_inputs(self, pair, split: str, limit: int, dest: Path, log: Callable[[str], None]) -> list[Path]:
        """The pair's held-out assets (``PairSpec.heldout_assets``, the corpus test split) written as
        NeRF-MAE ``.npz`` files into ``dest``, so every method reads the same files."""
        if split != "test" or pair.heldout_assets is None:
            raise UserError(f"pair {pair.name!r}: only the test split (the pair's held-out grids) can be "
                            "evaluated from the corpus; pass --input DIR for other grids")
        dest.mkdir(parents=True, exist_ok=True)
        grids = pair.heldout_assets(limit)
        out = []
        for i, g in enumerate(grids):
            path = dest / f"test_{i:05d}.npz"
            if not path.exists():
                atomic_write_bytes(path, encode_grid(np.asarray(g, np.float32), "npz"))
            out.append(path)
        log(f"{len(out)} held-out {pair.name} grids in {dest}")
        return out

    def metric_context(self, reference) -> _RenderContext:
        from squeeze3d.metrics.volume import render

        return _RenderContext(reference, render(torch.from_numpy(np.asarray(reference, np.float32))[None]))

    def eval_metrics(self, context: _RenderContext, test) -> dict[str, float]:
        from squeeze3d.metrics.volume import ms_ssim, psnr, render

        rec = render(torch.from_numpy(np.asarray(test, np.float32))[None])
        return {"psnr": float(psnr(context.renders, rec)[0]),
                "ms_ssim": float(ms_ssim(context.renders[0], rec[0]).mean())}

    def baselines(self, asset, reference, pair, seed: int, options: dict) -> Iterator[Baseline]:
        from squeeze3d.baselines import grid as gb

        runs = [("raw-f16+zstd", gb.encode_raw_f16, gb.decode_raw_f16)]
        for bits in options.get("qz_bits", gb.QZ_LADDER):
            runs.append((f"qz-{bits}", lambda g, b=bits: gb.encode_qz(g, b), gb.decode_qz))
        for k, thr in options.get("vqrf_rates", gb.VQRF_RATES):
            runs.append((f"vqrf-{k}", lambda g, k=k, thr=thr: gb.encode_vqrf(g, k, thr, seed), gb.decode_vqrf))
        for method, enc, dec in runs:
            t0 = time.perf_counter()
            blob = enc(reference)
            c_ms = _ms(t0)
            t0 = time.perf_counter()
            out = dec(blob)
            yield Baseline(method, len(blob), out, c_ms, _ms(t0))

    def preview(self, path, reference, reconstruction, title) -> Path:
        return self.preview_sequence(path, [reference, reconstruction], ["original", "reconstruction"],
                                     views=4, suptitle=title)

    def preview_sequence(self, path, assets, titles, views: int = 1, suptitle: str | None = None) -> Path:
        """One row per asset (``views`` renders from the camera ring), or one strip when ``views`` is 1."""
        from squeeze3d.metrics.volume import render

        imgs = render(torch.from_numpy(np.stack([np.asarray(a, np.float32) for a in assets])), num_views=max(views, 4),
                      image_size=96)[:, :views].permute(0, 1, 3, 4, 2).numpy()
        return image_grid(Path(path), imgs, list(titles), suptitle)

    def rd_series(self, rows):
        qz = sorted((r for r in rows if r["method"].startswith("qz-")), key=lambda r: r["bytes"])
        vq = sorted((r for r in rows if r["method"].startswith("vqrf-")), key=lambda r: r["bytes"])
        series = {"quantise + zstd": ([r["bytes"] for r in qz], [r["psnr"] for r in qz]),
                  "prune + VQ (VQRF-style)": ([r["bytes"] for r in vq], [r["psnr"] for r in vq])}
        series.update({r["method"]: ([r["bytes"]], [r["psnr"]]) for r in rows if r["method"] == "raw-f16+zstd"})
        return {k: v for k, v in series.items() if v[0]}, None

    def definitions(self) -> str:
        return ("Definitions: render PSNR over 8 views × 64² px (emission–absorption, camera ring at 30° "
                "elevation, white background; `squeeze3d.metrics.volume`), MS-SSIM with 3 scales; CR raw = "
                "4·R³·4 bytes (float32 grid) / bytes; neural bytes include the .sq3d header, baseline bytes are "
                "their bare payloads; raw-f16+zstd = float16 grid, zstd 19; qz-b = b-bit opacity/rgb + zstd; "
                "vqrf-K = opacity pruning + K-entry VQ; ms = median per object on this machine.")


def image_grid(path: Path, imgs: np.ndarray, titles: list[str], suptitle: str | None) -> Path:
    """``[rows, cols, H, W, 3]`` → PNG (matplotlib, Agg), written atomically."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    rows, cols = imgs.shape[:2]
    if cols == 1:  # a strip: one panel per asset, side by side
        imgs, titles, rows, cols = imgs.transpose(1, 0, 2, 3, 4), titles, 1, rows
        labels = [[t] for t in titles]
        panel = lambda r, c: (imgs[0, c], labels[c][0])  # noqa: E731
    else:
        panel = lambda r, c: (imgs[r, c], titles[r] if c == 0 else "")  # noqa: E731
    fig, axes = plt.subplots(rows, cols, figsize=(1.8 * cols, 1.9 * rows + (0.3 if suptitle else 0)), squeeze=False)
    try:
        for r in range(rows):
            for c in range(cols):
                img, label = panel(r, c)
                axes[r, c].imshow(np.clip(img, 0, 1))
                axes[r, c].set_axis_off()
                axes[r, c].set_title(label, fontsize=8)
        if suptitle:
            fig.suptitle(suptitle, fontsize=8)
        fig.tight_layout()
        buf = _io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
    finally:
        plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


HANDLER = RadianceFieldHandler()
