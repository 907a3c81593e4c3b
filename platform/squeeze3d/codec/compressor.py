"""Compress assets with a pair's mapping networks, with a quality-gated classical fallback.

    compress:   asset → normalise (kind-specific; centre + scale kept) → E → F_E [→ test-time
                refinement] → the rungs of the rate ladder → the rate–distortion choice
                (``codec.rd_search``: the neural rungs, the kind's classical codec, the octree
                enhancement layer) → .sq3d

``Codec`` is one pair plus one mapping model: it owns the neural code (``encode``, ``refine``, the
rungs, ``decode_container``); ``codec.classical`` owns the classical codecs; ``codec.decompress``
reads files back. How to compress is one ``CompressOptions`` (``codec.options``).

Everything that depends on the asset kind (reading and writing files, normalisation, the gate's
metric, the fallback codec) comes from the pair's handler, ``squeeze3d.assets.handler_for(kind)``:
point clouds gate on D1-PSNR and fall back to the octree coder (``codec.octree``; Draco with
``--classical draco`` or when the cloud keeps attributes); radiance-field grids gate on render PSNR
and fall back to quantise + zstd (``squeeze3d.baselines.grid``).

Models are loaded once per process and reused (``Codec`` instances and the frozen E/G/F_E/F_D are
cached), so batch mode and the evaluation pay the loading cost once. The sender needs E and F_E (plus
F_D and G when the quality gate is on); the receiver needs F_D and G only.

Quality gate default (``DEFAULT_MIN_QUALITY_DB``): 30 dB of the kind's metric. Point clouds: D1-PSNR
(p2point, peak = the input's bounding-box diagonal); at 30 dB the mean point error is about 3% of the
object's size: the shape is clearly recognisable; below it the neural code has usually decoded a
different object. Radiance fields: render PSNR (8 views, 64 px); 30 dB is a render that differs from
the original only in fine detail. ``min_quality=None`` turns the gate off.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from squeeze3d.assets import handler_for
from squeeze3d.codec import (
    DEFAULT_PAIR,
    OFF_BUDGET_BYTES,
)
from squeeze3d.codec import attributes as attributes_
from squeeze3d.codec.container import (
    LAYERED_VERSION,
    Container,
    ContainerError,
    pack,
)
from squeeze3d.codec.models import pair_for_codec
from squeeze3d.codec.options import CompressOptions, OptionError
from squeeze3d.codec.quantise import (
    dequantise,
    fixed_levels,
    from_levels,
    quantise,
)
from squeeze3d.codec.refine import RATE_WEIGHT
from squeeze3d.codec.results import CompressResult
from squeeze3d.errors import UserError
from squeeze3d.io import InputError, atomic_write_bytes

CONTAINER_EXT = ".sq3d"


class Variant(NamedTuple):
    """One neural rung: payload dtype, quantisation, bits (fixed-range codes) and the code prefix
    stored (0: the whole code; nested-code models store the first ``prefix`` numbers)."""

    dtype: str
    quant: str
    bits: int
    prefix: int = 0


PREFIX_BITS = (8, 6, 4, 2)
"""Bits per number on the rungs of a nested-code model (each prefix length at each of these)."""


# (kind, key...) → loaded frozen model; lives for the process (batch mode loads each model once)
_CACHE: dict[tuple, object] = {}


def clear_cache() -> None:
    _CACHE.clear()


def _cached(key: tuple, build):
    if key not in _CACHE:
        _CACHE[key] = build()
    return _CACHE[key]


class Codec:
    """A pair plus one mapping model, with lazily loaded halves. Use ``get_codec`` to share them."""

    def __init__(self, pair: str = DEFAULT_PAIR, model: str | None = None, device: str = "cpu"):
        self.pair = pair_for_codec(pair)
        self.handler = handler_for(self.pair.asset_kind)
        self.model_ref = model
        self.device = str(device)
        self._resolved = None
        self._size: int | None = None
        self._refined: dict[tuple[str, int, float], np.ndarray] = {}
        self._lock = threading.Lock()
        self.rate_weight = RATE_WEIGHT  # refinement's rate term, when the model has a code prior

    @property
    def asset_size(self) -> int:
        """The header's size field: points (point clouds) or grid resolution (radiance fields)."""
        if self._size is None:
            self._size = int(self.handler.asset_size(self.pair))
        return self._size

    # ---------------------------------------------------------------- models
    @property
    def resolved(self):
        """``squeeze3d.registry.ResolvedModel`` (registry lookup happens once)."""
        if self._resolved is None:
            if self.model_ref is None:
                from squeeze3d.codec.models import resolve_default

                self._resolved = resolve_default(self.pair)
            else:
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

    @property
    def code_prior(self):
        """The model's learned code prior (``codec.code_prior``), or None: its fixed-range codes are
        then stored raw."""
        from squeeze3d.codec.code_prior import load_prior

        r = self.resolved
        return _cached(("code_prior", str(r.path), r.weights_hash), lambda: load_prior(r.path, r.weights_hash))

    def code_of(self, c: Container) -> np.ndarray:
        """A neural container's payload → its code numbers (float32, the stored prefix)."""
        if c.dtype != "entropy":
            return dequantise(c.payload, c.dtype, c.quant, c.code_shape, c.draco_bits)
        prior = self.code_prior
        if prior is None:
            raise ContainerError(f"the file's code is entropy-coded, but model {self.resolved.uri} has no code "
                                 "prior (code_prior.safetensors) to decode it")
        return from_levels(prior.decode(c.payload, c.d_code, c.draco_bits), c.draco_bits).reshape(c.code_shape)

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

    # ---------------------------------------------------------------- code <-> normalised asset
    @torch.no_grad()
    def encode(self, asset_norm) -> np.ndarray:
        """One normalised asset (e.g. ``[N, 3]`` points, ``[4, R, R, R]`` grid) → float code of ``code_shape``."""
        x = torch.as_tensor(self.handler.model_input(asset_norm, self.pair))
        z_e = self.encoder.encode(x[None].to(self.device))
        code = self.f_e(z_e.to(self.device))
        return code[0].detach().to("cpu", torch.float32).numpy()

    @torch.no_grad()
    def decode_asset(self, code: np.ndarray):
        """Code → one normalised asset as the handler holds it (numpy array, or a ``Mesh``)."""
        c = torch.from_numpy(np.asarray(code, np.float32)).to(self.device)[None]
        return self.handler.from_generator(self.generator, self.f_d(c))

    def decode(self, code: np.ndarray):
        """Code → one normalised asset: a CPU float32 tensor for array kinds (the older API), the
        handler's object (a ``Mesh``) otherwise."""
        a = self.decode_asset(code)
        return torch.from_numpy(a) if isinstance(a, np.ndarray) else a

    # ---------------------------------------------------------------- compress
    @property
    def train_config(self):
        return self._half("f_d").config

    @property
    def prefixes(self) -> list[int]:
        """Code lengths a nested-code model can store (``mapping.code_prefixes``; [] otherwise)."""
        return list(self.train_config.mapping.code_prefixes)

    def variants(self) -> list[Variant]:
        """The neural payloads this model supports, largest file first.

        Models with bounded codes (``mapping.code_bound = tanh``) get the fixed-range rate ladder from
        the bits they were trained for down to 1 (fewer bits: a smaller file, a coarser code; tanh
        codes tend to saturate, so even 1 bit per number can hold most of the quality: measured, see
        the README); nested-code models add the prefix lengths: every prefix at each of
        ``PREFIX_BITS`` (a shorter prefix: fewer numbers, a coarser shape). The gate measures them.
        Unbounded (older) models keep int8 with a per-vector scale."""
        cfg = self.train_config
        if cfg.mapping.code_bound != "tanh":
            return [Variant("int8", "per_vector", 0)]
        top = int(cfg.loss.code_noise_bits or 8)
        if not self.prefixes:
            return [Variant("fixed", "none", b) for b in range(top, 0, -1)]
        rungs = [Variant("fixed", "none", b, k) for k in self.prefixes for b in PREFIX_BITS if b <= top]
        def payload_bytes(v: Variant) -> int:
            return -(-v.prefix * v.bits // 8)

        return sorted(rungs, key=lambda v: (-payload_bytes(v), -v.prefix))

    def rung_decode(self, code: np.ndarray, prefix: int, bits: int) -> np.ndarray:
        """What the decoder reconstructs (normalised frame) from ``code`` stored as its first ``prefix``
        numbers at ``bits`` bits (a fixed-range rung); the enhancement layer's prior."""
        flat = np.asarray(code, np.float32).reshape(-1)[:int(prefix)]
        q = dequantise(quantise(flat, "fixed", "none", int(bits)), "fixed", "none", flat.shape, int(bits))
        return np.asarray(self.decode_asset(self.padded(q)), np.float32)

    def rung_file(self, code: np.ndarray, prefix: int, bits: int, centre, scale: float) -> bytes:
        """The .sq3d bytes of one neural rung (no gate): what ``compress`` writes for it."""
        r = self.resolved
        common = dict(pair=self.pair.name, model_version=None, model_hash=r.weights_hash[:8],
                      centre=tuple(float(v) for v in centre), scale=float(scale))
        return pack(self.neural_container(code, Variant("fixed", "none", int(bits), int(prefix)), common))

    # ---------------------------------------------------------------- refinement
    def _loss_decoder(self):
        def build():
            dec = self.pair.loss_decoder(self.device)
            for p in dec.parameters():
                p.requires_grad_(False)
            return dec.eval()

        return _cached(("loss_decoder", self.pair.name, self.device), build)

    def can_refine(self) -> bool:
        """Test-time refinement needs bounded codes, a differentiable decoder and a point target."""
        return (self.train_config.mapping.code_bound == "tanh" and self.pair.loss_decoder is not None
                and self.handler.refine_target is not None)

    def refine(self, norm, code: np.ndarray, effort: int) -> np.ndarray:
        """F_E's code → the code refined by ``effort`` steps against this input (``codec.refine``).
        The last few results are remembered by (input, effort), so the evaluation's per-rung calls
        on one asset search once."""
        if effort <= 0 or not self.can_refine():
            return code
        from squeeze3d.codec.refine import refine_code

        bits = int(self.train_config.loss.code_noise_bits or 8)
        prior = self.code_prior
        costs = prior.level_costs(bits) if prior is not None and prior.covers(code.size, bits) else None
        key = (hashlib.sha256(np.ascontiguousarray(norm, np.float32).tobytes()).hexdigest(), int(effort),
               self.rate_weight if costs is not None else 0.0)
        with self._lock:
            hit = self._refined.get(key)
        if hit is None:
            for p in self.f_d.parameters():
                p.requires_grad_(False)
            hit = refine_code(code, self.handler.refine_target(norm), self.f_d, self._loss_decoder(),
                              steps=int(effort), bits=bits, prefixes=self.prefixes, rate_costs=costs,
                              rate_weight=self.rate_weight)
            with self._lock:  # directory mode compresses in threads that share this codec
                self._refined[key] = hit
                while len(self._refined) > 4:
                    self._refined.pop(next(iter(self._refined)))
        return hit.copy()

    def neural_container(self, code: np.ndarray, v: Variant, common: dict, entropy: bool = True) -> Container:
        """One rung's container. Fixed-range rungs of a model with a code prior are range-coded with
        it when that is smaller than the raw levels (``entropy``: allowed; ``--dtype fixed``: raw)."""
        dtype, quant, bits = v.dtype, v.quant, v.bits
        if v.prefix:
            code = np.asarray(code).reshape(-1)[:v.prefix]
        try:
            payload = quantise(code, dtype, quant, bits)
        except ValueError as e:
            raise UserError(f"cannot quantise the code: {e}") from None
        c = Container(codec="neural", num_points=self.asset_size, code_shape=tuple(code.shape), dtype=dtype,
                      quant=quant if dtype == "int8" else "none", draco_bits=bits if dtype == "fixed" else 0,
                      payload=payload, **common)
        prior = self.code_prior if entropy and dtype == "fixed" else None
        if prior is not None and prior.covers(code.size, bits):
            coded = prior.encode(fixed_levels(np.asarray(code).reshape(-1), bits), bits)
            ec = replace(c, dtype="entropy", payload=coded, version=LAYERED_VERSION)
            if len(pack(ec)) < len(pack(c)):  # the extension byte costs one: raw wins on unlikely codes
                return ec
        return c

    def variants_for(self, o: CompressOptions) -> list[Variant]:
        """The neural rungs ``o`` allows: the model's ladder, or only ``o.dtype`` / ``o.bits`` /
        ``o.prefix`` when given (a prefix or fixed width this model cannot store is refused)."""
        r = self.resolved
        if o.dtype is None:
            variants = self.variants()
        elif o.dtype == "fixed":
            if self.train_config.mapping.code_bound != "tanh":
                raise OptionError("dtype", f"fixed needs a model with bounded codes (mapping.code_bound=tanh); "
                                           f"{r.uri} has unbounded codes: use f32, f16 or int8")
            variants = [v for v in self.variants() if v.bits == int(o.bits or self.variants()[0].bits)]
        else:
            variants = [Variant(o.dtype, o.quant, 0)]
        if o.bits is not None and o.dtype is None:
            variants = [v for v in variants if v.bits == int(o.bits)] or variants[:1]
        if o.prefix is not None:
            if int(o.prefix) not in self.prefixes:
                raise OptionError("prefix", f"{o.prefix}: this model stores code prefixes of "
                                            f"{', '.join(map(str, self.prefixes)) or 'its whole code only'}")
            variants = [v for v in variants if v.prefix == int(o.prefix)] or [
                Variant("fixed", "none", int(o.bits or self.variants()[0].bits), int(o.prefix))]
        return variants

    def compress_asset(self, data: np.ndarray, options: CompressOptions | None = None, *,
                       attributes: dict | None = None, **settings) -> CompressResult:
        """One raw asset (any frame) → .sq3d bytes. ``options`` (or its fields as keywords:
        ``min_quality=None, effort=0``) say how (``codec.options``). The handler validates the asset
        and brings it to the pair's size first (point clouds larger than the pair's count: a seeded
        subset; grids: resampled to R).

        Candidates are the neural rungs ``variants_for`` allows, the kind's classical codec at each of
        its rates, and the enhancement layer; ``codec.rd_search`` chooses among them. Point clouds:
        the classical codec codes *every* input point (the neural rungs its resample), and every
        candidate's quality is measured against the input as given. ``attributes``
        (``squeeze3d.codec.attributes``: colour, intensity, aligned with ``data``) are kept by every
        candidate: Draco codes them itself; the octree and the neural rungs code their transfer to the
        decoded points (``attributes.encode_for_points``), counted in the file's bytes."""
        from squeeze3d.codec.classical import classical_for
        from squeeze3d.codec.rd_search import RDSearch

        o = CompressOptions.of(options, **settings).validate()
        cc = classical_for(self.handler, o.classical, has_attributes=bool(attributes))
        h = self.handler
        prepared = h.prepare(data, self.pair)
        full = h.prepare_classical(data, self.pair)  # point clouds: every input point
        full = prepared if full is None else full
        attrs = attributes_.check(attributes, len(full)) if attributes else {}
        t0 = time.perf_counter()
        norm, centre, scale = h.normalise(prepared)
        # the gate measures against the input as given, in the neural frame
        ref = norm if full is prepared else h.normalise_with(full, centre, scale)
        code = self.refine(norm, self.encode(norm), o.steps)
        common = dict(pair=self.pair.name, model_version=None, model_hash=self.resolved.weights_hash[:8],
                      centre=tuple(float(v) for v in centre), scale=float(scale))
        variants = self.variants_for(o)
        neural = [self.neural_container(code, v, common, entropy=o.dtype is None) for v in variants]
        encode_ms = (time.perf_counter() - t0) * 1e3
        search = RDSearch(self, cc, norm, ref, full, attrs, common, o)
        if not o.gated:
            off = search.gate_off(code, variants, neural, OFF_BUDGET_BYTES)
            return search.verified(CompressResult(pack(off), off, False, None, None, encode_ms, 0.0))
        t0 = time.perf_counter()
        if o.target_bytes is not None:
            (data_, chosen, q), neural_q = search.under_budget(neural, o.target_bytes)
        else:
            (data_, chosen, q), neural_q = search.at_floor(neural, float(o.min_quality))
        return search.verified(CompressResult(data_, chosen, chosen.codec == "fallback", neural_q, q, encode_ms,
                                              (time.perf_counter() - t0) * 1e3))

    # ---------------------------------------------------------------- decompress
    def padded(self, code: np.ndarray) -> np.ndarray:
        """A stored code prefix back to the model's code shape (the missing tail reads as zeros)."""
        full = math.prod(self.code_shape)
        if code.size < full:
            code = np.concatenate([np.asarray(code, np.float32).reshape(-1), np.zeros(full - code.size, np.float32)])
        return np.asarray(code).reshape(self.code_shape)

    def check_identity(self, c: Container, where: str = "") -> None:
        r = self.resolved
        if c.pair != self.pair.name:
            raise ContainerError(f"{where}compressed for pair {c.pair!r}, but the model given is for pair "
                                 f"{self.pair.name!r}")
        if not c.matches_weights(r.weights_hash):
            hint = (f"--model {c.model_version}" if c.model_version else
                    "--model PATH (its checkpoint directory), or the registry that holds it")
            raise ContainerError(
                f"{where}compressed with model {c.model_identity} but decompressing with {r.identity} "
                f"({r.uri}); they differ, so the code would decode to a wrong shape. Pass the compressing "
                f"model with {hint}")

    def decode_container(self, c: Container, where: str = "", levels: int | None = None) -> np.ndarray:
        """Neural container → the asset in the original frame (identity checked first); ``levels``:
        decode only that many levels of its enhancement layer (progressive)."""
        self.check_identity(c, where)
        prefix = 0
        if c.version >= 2 and c.d_code == math.prod(self.code_shape):
            c = replace(c, code_shape=self.code_shape)  # version 2 stores the count; the model the shape
        elif c.version >= 2 and c.d_code in self.prefixes:
            prefix = c.d_code  # a nested code's prefix: the rest of the code reads as zeros
        if tuple(c.code_shape) != self.code_shape and not prefix:
            raise ContainerError(f"{where}code shape {c.code_shape} does not match the model's {self.code_shape}")
        if c.num_points != self.asset_size:
            unit = "points" if self.pair.asset_kind == "point_cloud" else "as its size"
            raise ContainerError(f"{where}header says {c.num_points} {unit} but pair {c.pair} generates "
                                 f"{self.asset_size}")
        recon = self.decode_asset(self.padded(self.code_of(c)))
        if c.enhancement:  # the octree layer, coded with this decode as its context, replaces it
            from squeeze3d.codec import octree

            recon = octree.decode_points(c.enhancement, prior=np.asarray(recon, np.float32), max_level=levels)
        return self.handler.denormalise(recon, c.centre, c.scale)


def get_codec(pair: str = DEFAULT_PAIR, model: str | None = None, device: str = "cpu") -> Codec:
    """A process-wide ``Codec`` per (pair, model reference, device): batch calls share loaded models."""
    return _cached(("codec", pair, model, str(device)), lambda: Codec(pair, model, device))


# -------------------------------------------------------------------------------- public functions


def compress_points(points: np.ndarray, options: CompressOptions | None = None, *, pair: str = DEFAULT_PAIR,
                    model: str | None = None, device: str = "cpu", **settings) -> CompressResult:
    """``[N, 3]`` points in any frame → ``CompressResult`` (``.data`` is the .sq3d bytes). ``options``
    or its fields as keywords (``min_quality=35.0``): ``codec.options.CompressOptions``."""
    return get_codec(pair, model, device).compress_asset(points, CompressOptions.of(options, **settings))


def compress_asset(data: np.ndarray, options: CompressOptions | None = None, *, pair: str = DEFAULT_PAIR,
                   model: str | None = None, device: str = "cpu", **settings) -> CompressResult:
    """One asset of the pair's kind (``[N, 3]`` points, ``[4, R, R, R]`` grid) → ``CompressResult``."""
    return get_codec(pair, model, device).compress_asset(data, CompressOptions.of(options, **settings))


def check_sq3d_output(output: Path, input_path: Path) -> None:
    if output.suffix.lower() != CONTAINER_EXT:
        raise InputError(f"{output}: the output must end in {CONTAINER_EXT}")
    if output.is_dir():
        raise InputError(f"{output}: is a directory")
    if output.resolve() == input_path.resolve():
        raise InputError(f"{output}: output would overwrite the input")


def compress_file(input: str | Path, output: str | Path, options: CompressOptions | None = None, *,
                  pair: str = DEFAULT_PAIR, model: str | None = None, device: str = "cpu", seed: int = 0,
                  overwrite: bool = True, drop_attributes: bool = False, **settings) -> CompressResult:
    """Read an asset file through the pair's handler (meshes sampled to the pair's point count with
    ``seed``; grids resampled to its resolution), compress it with ``options`` (or its fields as
    keywords) and write ``output`` (.sq3d) atomically (``overwrite=False``: never over an existing
    file). Nothing is written if anything fails.

    Point clouds: every point and the attributes the codec keeps (colour, intensity) go to the
    codec; per-point data no mode keeps (normals, labels, ...) are refused in one line unless
    ``drop_attributes`` (which also drops colour and intensity: geometry only)."""
    o = CompressOptions.of(options, **settings).validate()  # before any file is read
    inp, out = Path(input), Path(output)
    check_sq3d_output(out, inp)
    codec = get_codec(pair, model, device)
    asset = codec.handler.read(inp, codec.pair, seed)
    data, attrs = attributes_.for_codec(asset, inp, drop_attributes)
    res = codec.compress_asset(data, o, attributes=attrs)
    res.asset = asset
    try:  # overwrite=False: refused atomically at the rename, so a file that appeared meanwhile survives
        res.output = atomic_write_bytes(out, res.data, overwrite=overwrite)
    except FileExistsError:
        raise InputError(f"{out}: already exists; pass --force to overwrite it") from None
    return res


