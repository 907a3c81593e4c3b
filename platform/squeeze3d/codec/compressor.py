"""Compress and decompress assets with a pair's mapping networks, with a quality-gated Draco fallback.

    compress:   asset → normalise (unit sphere; centre + scale kept) → E → F_E → quantise → .sq3d
                [gate: dequantise → F_D → G → D1-PSNR vs the input; below the floor → Draco at the
                 fewest bits that meet it, container marked ``fallback``]
    decompress: .sq3d → check (CRC, pair, model identity) → dequantise → F_D → G → denormalise
                (fallback: Draco decode → denormalise; no model needed)

Models are loaded once per process and reused (``Codec`` instances and the frozen E/G/F_E/F_D are
cached), so batch mode and the evaluation pay the loading cost once. The sender needs E and F_E (plus
F_D and G when the quality gate is on); the receiver needs F_D and G only.

Quality gate default (``DEFAULT_MIN_QUALITY_DB``): 30 dB D1-PSNR (p2point, peak = the input's
bounding-box diagonal). At 30 dB the mean point error is about 3% of the object's size: the shape is
clearly recognisable; below it the neural code has usually decoded a different object, and Draco
reaches the floor with 3-4 bits. ``min_quality=None`` turns the gate off.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from squeeze3d.codec import DEFAULT_DTYPE, DEFAULT_MIN_QUALITY_DB, DEFAULT_PAIR, DEFAULT_QUANT, draco
from squeeze3d.codec.container import Container, ContainerError, pack, read_container, unpack
from squeeze3d.codec.quantise import DTYPE_CHOICES, QUANT_CHOICES, dequantise, quantise
from squeeze3d.errors import UserError
from squeeze3d.io import Asset, InputError, atomic_write_bytes, check_output_path, check_points, read_asset
from squeeze3d.metrics.pointcloud import d1_psnr, normalise_unit_sphere

CONTAINER_EXT = ".sq3d"


def _get_pair(name: str):
    from squeeze3d.pairs import UnknownPairError, get_pair

    try:
        pair = get_pair(name)
    except UnknownPairError as e:
        raise UserError(str(e)) from None
    except ImportError as e:  # a registered pair whose module is not importable in this build
        raise UserError(f"pair {name!r} is registered but cannot be loaded: {e}") from None
    if pair.asset_kind != "point_cloud" or not pair.num_points:
        raise UserError(f"pair {name!r} ({pair.asset_kind}): the codec supports point-cloud pairs only")
    if pair.normalisation != "unit_sphere":
        raise UserError(f"pair {name!r}: normalisation {pair.normalisation!r} is not supported by the codec")
    return pair


# (kind, key...) → loaded frozen model; lives for the process (batch mode loads each model once)
_CACHE: dict[tuple, object] = {}


def clear_cache() -> None:
    _CACHE.clear()


def _cached(key: tuple, build):
    if key not in _CACHE:
        _CACHE[key] = build()
    return _CACHE[key]


@dataclass
class CompressResult:
    data: bytes
    """The .sq3d bytes."""
    container: Container
    fallback: bool
    """True when the neural reconstruction missed the floor and Draco was used."""
    neural_psnr: float | None
    """D1-PSNR of the neural reconstruction vs the input (None: gate off)."""
    psnr: float | None
    """D1-PSNR of what decompression will produce (neural or fallback; None: gate off)."""
    encode_ms: float
    """Normalise → E → F_E → quantise → pack (no gate)."""
    gate_ms: float
    """Gate: decode + measure (+ Draco search when falling back)."""
    asset: Asset | None = None
    output: Path | None = None

    @property
    def nbytes(self) -> int:
        return len(self.data)


@dataclass
class DecompressResult:
    points: np.ndarray
    """``[num_points, 3]`` float32 in the original frame."""
    container: Container
    decode_ms: float
    output: Path | None = None


class Codec:
    """A pair plus one mapping model, with lazily loaded halves. Use ``get_codec`` to share them."""

    def __init__(self, pair: str = DEFAULT_PAIR, model: str | None = None, device: str = "cpu"):
        self.pair = _get_pair(pair)
        self.model_ref = model
        self.device = str(device)
        self._resolved = None

    # ---------------------------------------------------------------- models
    @property
    def resolved(self):
        """``squeeze3d.registry.ResolvedModel`` (registry lookup happens once)."""
        if self._resolved is None:
            from squeeze3d.registry import resolve_model

            self._resolved = resolve_model(self.model_ref, self.pair.name)
        return self._resolved

    @property
    def identity(self) -> str:
        return self.resolved.identity

    def _half(self, part: str):
        from squeeze3d.mapping.checkpoint import CheckpointError, load_checkpoint

        r = self.resolved

        def build():
            try:
                return load_checkpoint(r.path, self.device, part=part)
            except CheckpointError as e:
                raise UserError(f"model {r.uri}: {e}") from None

        return _cached(("mapping", str(r.path), r.weights_hash, self.device, part), build)

    @property
    def f_e(self):
        return self._half("f_e").f_e

    @property
    def f_d(self):
        return self._half("f_d").f_d

    @property
    def code_shape(self) -> tuple[int, ...]:
        return tuple(self._half("f_d").code_shape)

    def _frozen(self, kind: str):
        build = self.pair.build_encoder if kind == "encoder" else self.pair.build_generator

        def load():
            try:
                return build(self.device)
            except (OSError, ValueError, RuntimeError) as e:  # missing/corrupt shipped weights, bad device
                raise UserError(f"pair {self.pair.name}: cannot load its {kind}: {e}") from None

        return _cached((kind, self.pair.name, self.device), load)

    @property
    def encoder(self):
        return self._frozen("encoder")

    @property
    def generator(self):
        return self._frozen("generator")

    # ---------------------------------------------------------------- code <-> points (unit sphere)
    @torch.no_grad()
    def encode(self, points_norm: torch.Tensor) -> np.ndarray:
        """Normalised ``[N, 3]`` → float code of ``code_shape``."""
        z_e = self.encoder.encode(points_norm[None].to(self.device))
        code = self.f_e(z_e.to(self.device))
        return code[0].detach().to("cpu", torch.float32).numpy()

    @torch.no_grad()
    def decode(self, code: np.ndarray) -> torch.Tensor:
        """Code → normalised ``[num_points, 3]`` (CPU float32)."""
        c = torch.from_numpy(np.asarray(code, np.float32)).to(self.device)[None]
        return self.generator.decode(self.f_d(c))[0].detach().to("cpu", torch.float32)

    # ---------------------------------------------------------------- compress
    def compress_points(self, points: np.ndarray, dtype: str = DEFAULT_DTYPE, quant: str = DEFAULT_QUANT,
                        min_quality: float | None = DEFAULT_MIN_QUALITY_DB) -> CompressResult:
        """Raw ``[N, 3]`` points (any frame) → .sq3d bytes. Clouds larger than the pair's point count
        are reduced to a seeded random subset first (the gate measures against that subset)."""
        if dtype not in DTYPE_CHOICES:
            raise UserError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPE_CHOICES)}")
        if quant not in QUANT_CHOICES:
            raise UserError(f"unknown quantisation {quant!r}; choose one of {', '.join(QUANT_CHOICES)}")
        if min_quality is not None and not np.isfinite(min_quality):
            raise UserError(f"--min-quality must be a finite number of dB, got {min_quality}")
        pts = check_points(points)
        if len(pts) > self.pair.num_points:  # as read_asset does: a seeded subset of the pair's size
            pts = pts[np.sort(np.random.default_rng(0).choice(len(pts), self.pair.num_points, replace=False))]
        pts = torch.from_numpy(pts)
        t0 = time.perf_counter()
        norm, centre, scale = normalise_unit_sphere(pts[None].double())
        norm = norm[0].float()
        code = self.encode(norm)
        try:
            payload = quantise(code, dtype, quant)
        except ValueError as e:
            raise UserError(f"cannot quantise the code: {e}") from None
        r = self.resolved
        version = int(r.version) if r.version and str(r.version).isdigit() else None
        common = dict(pair=self.pair.name, model_version=version, model_hash=r.weights_hash[:16],
                      centre=tuple(float(v) for v in centre[0]), scale=float(scale[0]))
        neural = Container(codec="neural", num_points=int(self.pair.num_points), code_shape=tuple(code.shape),
                           dtype=dtype, quant=quant if dtype == "int8" else "none", draco_bits=0,
                           payload=payload, **common)
        data = pack(neural)
        encode_ms = (time.perf_counter() - t0) * 1e3
        if min_quality is None:
            return CompressResult(data, neural, False, None, None, encode_ms, 0.0)
        t0 = time.perf_counter()
        recon = self.decode(dequantise(payload, neural.dtype, neural.quant, neural.code_shape))
        neural_psnr = float(d1_psnr(norm[None], recon[None])[0])
        if neural_psnr >= min_quality:
            return CompressResult(data, neural, False, neural_psnr, neural_psnr, encode_ms,
                                  (time.perf_counter() - t0) * 1e3)
        blob, bits, p = draco.encode_min_bits(norm.numpy(), float(min_quality))
        fb = Container(codec="fallback", num_points=len(norm), code_shape=(), dtype="none", quant="none",
                       draco_bits=bits, payload=blob, **common)
        return CompressResult(pack(fb), fb, True, neural_psnr, p, encode_ms, (time.perf_counter() - t0) * 1e3)

    # ---------------------------------------------------------------- decompress
    def check_identity(self, c: Container, where: str = "") -> None:
        r = self.resolved
        if c.pair != self.pair.name:
            raise ContainerError(f"{where}compressed for pair {c.pair!r}, but the model given is for pair "
                                 f"{self.pair.name!r}")
        if r.weights_hash[:16] != c.model_hash:
            raise ContainerError(
                f"{where}compressed with model {c.model_identity} but decompressing with {r.identity} "
                f"({r.uri}); they differ, so the code would decode to a wrong shape. Pass the compressing "
                f"model with --model{' ' + str(c.model_version) if c.model_version else ' PATH'}")

    def decode_container(self, c: Container, where: str = "") -> np.ndarray:
        """Neural container → points in the original frame (identity checked first)."""
        self.check_identity(c, where)
        if tuple(c.code_shape) != self.code_shape:
            raise ContainerError(f"{where}code shape {c.code_shape} does not match the model's {self.code_shape}")
        if c.num_points != self.pair.num_points:
            raise ContainerError(f"{where}header says {c.num_points} points but pair {c.pair} generates "
                                 f"{self.pair.num_points}")
        recon = self.decode(dequantise(c.payload, c.dtype, c.quant, c.code_shape)).numpy()
        return _denormalise(recon, c)


def _denormalise(points: np.ndarray, c: Container) -> np.ndarray:
    return (points.astype(np.float64) * c.scale + np.asarray(c.centre)).astype(np.float32)


def get_codec(pair: str = DEFAULT_PAIR, model: str | None = None, device: str = "cpu") -> Codec:
    """A process-wide ``Codec`` per (pair, model reference, device): batch calls share loaded models."""
    return _cached(("codec", pair, model, str(device)), lambda: Codec(pair, model, device))


def _decode_any(c: Container, model: str | None, device: str, where: str = "") -> np.ndarray:
    if c.codec == "fallback":
        _get_pair(c.pair)  # an unknown pair is an error even though Draco needs no model
        pts = draco.decode_points(c.payload)
        if len(pts) != c.num_points:
            raise ContainerError(f"{where}Draco payload holds {len(pts)} points, header says {c.num_points}")
        return _denormalise(pts, c)
    ref = model
    if ref is None:
        if c.model_version is None:
            raise UserError(f"{where}compressed with a mapping checkpoint given by path (identity "
                            f"{c.model_identity}); pass that checkpoint with --model PATH")
        ref = str(c.model_version)
    return get_codec(c.pair, ref, device).decode_container(c, where)


# -------------------------------------------------------------------------------- public functions


def compress_points(points: np.ndarray, *, pair: str = DEFAULT_PAIR, model: str | None = None,
                    dtype: str = DEFAULT_DTYPE, quant: str = DEFAULT_QUANT,
                    min_quality: float | None = DEFAULT_MIN_QUALITY_DB, device: str = "cpu") -> CompressResult:
    """``[N, 3]`` points in any frame → ``CompressResult`` (``.data`` is the .sq3d bytes)."""
    return get_codec(pair, model, device).compress_points(points, dtype, quant, min_quality)


def decompress_bytes(data: bytes, *, model: str | None = None, device: str = "cpu") -> DecompressResult:
    """.sq3d bytes → points in the original frame. ``model`` defaults to the registry version recorded
    in the file; any other model is refused unless its weights hash matches."""
    c = unpack(data)
    t0 = time.perf_counter()
    pts = _decode_any(c, model, device)
    return DecompressResult(pts, c, (time.perf_counter() - t0) * 1e3)


def _check_sq3d_output(output: Path, input_path: Path) -> None:
    if output.suffix.lower() != CONTAINER_EXT:
        raise InputError(f"{output}: the output must end in {CONTAINER_EXT}")
    if output.is_dir():
        raise InputError(f"{output}: is a directory")
    if output.resolve() == input_path.resolve():
        raise InputError(f"{output}: output would overwrite the input")


def compress_file(input: str | Path, output: str | Path, *, pair: str = DEFAULT_PAIR, model: str | None = None,
                  dtype: str = DEFAULT_DTYPE, quant: str = DEFAULT_QUANT,
                  min_quality: float | None = DEFAULT_MIN_QUALITY_DB, device: str = "cpu",
                  seed: int = 0) -> CompressResult:
    """Read an asset file (meshes sampled to the pair's point count with ``seed``), compress it and
    write ``output`` (.sq3d) atomically. Nothing is written if anything fails."""
    inp, out = Path(input), Path(output)
    _check_sq3d_output(out, inp)
    codec = get_codec(pair, model, device)
    asset = read_asset(inp, codec.pair.num_points, seed)
    res = codec.compress_points(asset.points, dtype, quant, min_quality)
    res.asset = asset
    res.output = atomic_write_bytes(out, res.data)
    return res


def decompress_file(input: str | Path, output: str | Path, *, model: str | None = None,
                    device: str = "cpu") -> DecompressResult:
    """.sq3d → a point cloud file (.ply | .npz | .obj by extension), written atomically."""
    from squeeze3d.io import write_points

    out = check_output_path(output)
    c = read_container(input)
    t0 = time.perf_counter()
    pts = _decode_any(c, model, device, where=f"{input}: ")
    ms = (time.perf_counter() - t0) * 1e3
    return DecompressResult(pts, c, ms, write_points(out, pts))


def interpolate(a: str | Path, b: str | Path, steps: int, out_dir: str | Path, *, model: str | None = None,
                device: str = "cpu", fmt: str = "ply", preview: bool = True) -> list[Path]:
    """Decode ``steps`` codes on the line between two neural .sq3d files (the paper's Fig. 8).

    Writes ``interp_000.<fmt>`` … and, with ``preview``, ``interpolation.png`` into ``out_dir``;
    centre and scale are interpolated too. Returns the written paths (point files first)."""
    if not 2 <= int(steps) <= 256:
        raise UserError(f"--steps must be between 2 and 256, got {steps}")
    if f".{fmt.lstrip('.')}" not in (".ply", ".npz", ".obj"):
        raise UserError(f"unsupported output format {fmt!r}; use ply, npz or obj")
    ca, cb = read_container(a), read_container(b)
    for c, p in ((ca, a), (cb, b)):
        if c.codec != "neural":
            raise UserError(f"{p}: a Draco fallback file has no neural code to interpolate")
    if ca.pair != cb.pair or ca.model_hash != cb.model_hash:
        raise UserError(f"{a} ({ca.pair}, {ca.model_identity}) and {b} ({cb.pair}, {cb.model_identity}) were "
                        "compressed with different pairs or models; their codes do not share a space")
    ref = model if model is not None else (str(ca.model_version) if ca.model_version else None)
    if ref is None:
        raise UserError(f"{a}: compressed with a checkpoint given by path ({ca.model_identity}); pass --model PATH")
    codec = get_codec(ca.pair, ref, device)
    codec.check_identity(ca, f"{a}: ")
    za = dequantise(ca.payload, ca.dtype, ca.quant, ca.code_shape)
    zb = dequantise(cb.payload, cb.dtype, cb.quant, cb.code_shape)
    clouds = []
    ts = np.linspace(0.0, 1.0, int(steps))
    for t in ts:
        pts = codec.decode((1 - t) * za + t * zb).numpy().astype(np.float64)
        centre = (1 - t) * np.asarray(ca.centre) + t * np.asarray(cb.centre)
        scale = (1 - t) * ca.scale + t * cb.scale
        clouds.append((pts * scale + centre).astype(np.float32))
    from squeeze3d.io import write_points

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a directory")
    paths = [write_points(out / f"interp_{i:03d}.{fmt.lstrip('.')}", pts) for i, pts in enumerate(clouds)]
    if preview:
        from squeeze3d.metrics.render import render_clouds

        paths.append(render_clouds(out / "interpolation.png", clouds, [f"t={t:.2f}" for t in ts],
                                   cols=min(len(clouds), 8)))
    return paths
