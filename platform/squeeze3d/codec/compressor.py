"""Compress and decompress assets with a pair's mapping networks, with a quality-gated classical fallback.

    compress:   asset → normalise (kind-specific; centre + scale kept) → E → F_E → quantise → .sq3d
                [gate: dequantise → F_D → G → quality vs the input; below the floor → the kind's
                 classical codec at the fewest bits that meet it, container marked ``fallback``]
    decompress: .sq3d → check (CRC, pair, model identity) → dequantise → F_D → G → denormalise
                (fallback: classical decode → denormalise; no model needed)

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
different object, and Draco reaches the floor with 3-4 bits. Radiance fields: render PSNR (8 views,
64 px); 30 dB is a render that differs from the original only in fine detail. ``min_quality=None``
turns the gate off.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from squeeze3d.assets import handler_for
from squeeze3d.assets.base import all_output_exts
from squeeze3d.codec import (
    DEFAULT_DTYPE,
    DEFAULT_EFFORT,
    DEFAULT_MIN_QUALITY_DB,
    DEFAULT_PAIR,
    DEFAULT_QUANT,
    OFF_BUDGET_BYTES,
)
from squeeze3d.codec import attributes as attributes_
from squeeze3d.codec.container import (
    FORMAT_VERSION,
    LAYERED_VERSION,
    LEVEL_DTYPES,
    Container,
    ContainerError,
    pack,
    read_container,
    unpack,
    with_attributes,
)
from squeeze3d.codec.quantise import (
    DTYPE_CHOICES,
    QUANT_CHOICES,
    dequantise,
    fixed_levels,
    from_levels,
    quantise,
)
from squeeze3d.codec.refine import RATE_WEIGHT
from squeeze3d.errors import UserError
from squeeze3d.io import InputError, atomic_write_bytes

CONTAINER_EXT = ".sq3d"


def pair_for_codec(name: str):
    """The registered pair ``name``, checked for the codec (an unknown or unloadable pair is a user error)."""
    from squeeze3d.pairs import UnknownPairError, get_pair

    try:
        pair = get_pair(name)
    except UnknownPairError as e:
        raise UserError(str(e)) from None
    except ImportError as e:  # a registered pair whose module is not importable in this build
        raise UserError(f"pair {name!r} is registered but cannot be loaded: {e}") from None
    handler_for(pair.asset_kind).check_pair(pair)
    return pair


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


@dataclass
class CompressResult:
    data: bytes
    """The .sq3d bytes."""
    container: Container
    fallback: bool
    """True when the neural reconstruction missed the floor and the classical codec was used."""
    neural_psnr: float | None
    """Gate metric (D1-PSNR / render PSNR) of the neural reconstruction vs the input (None: gate off)."""
    psnr: float | None
    """Gate metric of what decompression will produce (neural or fallback; None: gate off)."""
    encode_ms: float
    """Normalise → E → F_E → quantise → pack (no gate)."""
    gate_ms: float
    """Gate: decode + measure (+ the fallback's search when falling back)."""
    asset: object | None = None
    """What ``compress_file`` read (``squeeze3d.io.Asset`` or the kind's equivalent: ``.data``, ``.file_bytes``)."""
    output: Path | None = None
    decoded_points: int | None = None
    """Point clouds: how many points the file decodes to (the resample for neural files; every input
    point, less exact duplicates on the grid, for classical ones)."""
    attribute_psnr: dict | None = None
    """Per kept attribute: PSNR of what decompression gives vs the input (``colour``: on Y, BT.709,
    peak 255; ``intensity``: peak 65535); None when the file keeps none."""

    @property
    def attributes(self) -> tuple[str, ...]:
        return tuple(self.container.attributes)

    @property
    def nbytes(self) -> int:
        return len(self.data)

    @property
    def variant(self) -> str:
        """Which candidate the rate-distortion choice kept (``neural fixed-6``, ``fallback 4-bit``, ...)."""
        return _label(self.container)


@dataclass
class DecompressResult:
    data: np.ndarray
    """The asset in the original frame: ``[num_points, 3]`` points, a ``[4, R, R, R]`` grid (float32)
    or a ``squeeze3d.meshdata.Mesh``."""
    container: Container
    decode_ms: float
    output: Path | None = None
    attributes: dict | None = None
    """Point clouds: the per-point attributes the file keeps (``colour`` uint8 [N, 3], ``intensity``
    uint16 [N]), aligned with ``data``."""

    @property
    def points(self) -> np.ndarray:
        """Alias of ``data`` (point clouds; kept for callers of the point-cloud API)."""
        return self.data


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
        return np.asarray(self.decode_asset(self._padded(q)), np.float32)

    def rung_file(self, code: np.ndarray, prefix: int, bits: int, centre, scale: float) -> bytes:
        """The .sq3d bytes of one neural rung (no gate): what ``compress`` writes for it."""
        r = self.resolved
        common = dict(pair=self.pair.name, model_version=None, model_hash=r.weights_hash[:8],
                      centre=tuple(float(v) for v in centre), scale=float(scale))
        return pack(self._neural(code, Variant("fixed", "none", int(bits), int(prefix)), common))

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

    def _neural(self, code: np.ndarray, v: Variant, common: dict, entropy: bool = True) -> Container:
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

    def compress_asset(self, data: np.ndarray, dtype: str | None = DEFAULT_DTYPE, quant: str = DEFAULT_QUANT,
                       min_quality: float | None = DEFAULT_MIN_QUALITY_DB, target_bytes: int | None = None,
                       bits: int | None = None, *, effort: int | None = None,
                       prefix: int | None = None, classical: str | None = None,
                       attributes: dict | None = None) -> CompressResult:
        """One raw asset (any frame) → .sq3d bytes. The handler validates it and brings it to the pair's
        size first (point clouds larger than the pair's count: a seeded subset; grids: resampled to R);
        the gate measures against that.

        Candidates are the model's neural variants (``variants``; or only ``dtype``/``bits`` when given)
        and the kind's classical codec at each of its rates. Rate-distortion choice:
        ``target_bytes``: the best quality whose file fits; otherwise the *smallest* file that meets
        ``min_quality`` (the floor), the best quality if none does. ``min_quality=None`` and no target:
        the model's largest variant (nested codes: the largest of at most ``OFF_BUDGET_BYTES``), unmeasured.

        ``effort``: test-time refinement steps (``codec.refine``; None: ``DEFAULT_EFFORT``, 0: off);
        ``prefix``: store only this many code numbers (nested-code models); ``classical``: the kind's
        classical codec (``codec.classical``; point clouds: ``octree`` by default, ``draco`` when the
        cloud keeps attributes, which Draco codes itself).

        Point clouds: the classical codec codes *every* input point (the neural rungs its resample),
        and every candidate's quality is measured against the input as given. ``attributes``
        (``squeeze3d.codec.attributes``: colour, intensity, aligned with ``data``) are kept by every
        candidate: Draco codes them itself; the octree and the neural rungs code their transfer to the
        decoded points (``attributes.encode_for_points``), counted in the file's bytes."""
        from squeeze3d.codec.classical import classical_for

        cc = classical_for(self.handler, classical, has_attributes=bool(attributes))
        effort = DEFAULT_EFFORT if effort is None else int(effort)
        if effort < 0:
            raise UserError(f"--effort must be >= 0 refinement steps, got {effort}")
        if dtype is not None and dtype not in DTYPE_CHOICES:
            raise UserError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPE_CHOICES)}")
        if quant not in QUANT_CHOICES and not (dtype not in (None, "int8") and quant == "none"):
            raise UserError(f"unknown quantisation {quant!r}; choose one of {', '.join(QUANT_CHOICES)}")
        if min_quality is not None and not np.isfinite(min_quality):
            raise UserError(f"--min-quality must be a finite number of dB, got {min_quality}")
        if target_bytes is not None and int(target_bytes) < 1:
            raise UserError(f"--target-bytes must be a positive number of bytes, got {target_bytes}")
        h = self.handler
        prepared = h.prepare(data, self.pair)
        full = h.prepare_classical(data, self.pair)  # point clouds: every input point
        full = prepared if full is None else full
        attrs = attributes_.check(attributes, len(full)) if attributes else {}
        t0 = time.perf_counter()
        norm, centre, scale = h.normalise(prepared)
        # the gate measures against the input as given, in the neural frame
        ref = norm if full is prepared else h.normalise_with(full, centre, scale)
        code = self.refine(norm, self.encode(norm), effort)
        r = self.resolved
        common = dict(pair=self.pair.name, model_version=None, model_hash=r.weights_hash[:8],
                      centre=tuple(float(v) for v in centre), scale=float(scale))
        if dtype is None:
            variants = self.variants()
        elif dtype == "fixed":
            if self.train_config.mapping.code_bound != "tanh":
                raise UserError(f"--dtype fixed needs a model with bounded codes (mapping.code_bound=tanh); "
                                f"{r.uri} has unbounded codes: use f32, f16 or int8")
            variants = [v for v in self.variants() if v.bits == int(bits or self.variants()[0].bits)]
        else:
            variants = [Variant(dtype, quant, 0)]
        if bits is not None and dtype is None:
            variants = [v for v in variants if v.bits == int(bits)] or variants[:1]
        if prefix is not None:
            if int(prefix) not in self.prefixes:
                raise UserError(f"--prefix {prefix}: this model stores code prefixes of "
                                f"{', '.join(map(str, self.prefixes)) or 'its whole code only'}")
            variants = [v for v in variants if v.prefix == int(prefix)] or [
                Variant("fixed", "none", int(bits or self.variants()[0].bits), int(prefix))]
        neural = [self._neural(code, v, common, entropy=dtype is None) for v in variants]
        encode_ms = (time.perf_counter() - t0) * 1e3
        memo: dict[bytes, tuple] = {}
        colour_floor = DEFAULT_MIN_QUALITY_DB if min_quality is None else float(min_quality)

        def decoded(c: Container) -> tuple:
            # rungs whose codes dequantise to the same values decode to the same asset: decoded once
            code = self._padded(self.code_of(c))
            key = np.ascontiguousarray(code, np.float32).tobytes()
            if key not in memo:
                memo[key] = (self.decode_asset(code), {})
            return memo[key]

        def with_attrs(c: Container) -> Container:
            """A neural candidate keeping the attributes: their transfer to its decoded points."""
            if not attrs:
                return c
            asset, seen = decoded(c)
            if "attr" not in seen:
                seen["attr"] = attributes_.encode_for_points(asset, ref, attrs, colour_floor)[0]
            return with_attributes(c, attrs, seen["attr"])

        if min_quality is None and target_bytes is None:
            off = neural[0]
            if self.prefixes and prefix is None:
                # nested codes: the largest rung whose raw levels fit the budget, then stored as the
                # code prior codes it (the rung is chosen as without a prior: the ladder is flat above
                # it, so a prior's savings go to a smaller file rather than to a longer code)
                fits = [c for v, c in zip(variants, neural)
                        if len(pack(self._neural(code, v, common, entropy=False))) <= OFF_BUDGET_BYTES]
                off = fits[0] if fits else neural[-1]
            off = with_attrs(off)
            return self._checked(CompressResult(pack(off), off, False, None, None, encode_ms, 0.0),
                                 full, attrs, ref, decoded)

        t0 = time.perf_counter()

        def measure(c: Container) -> tuple[bytes, Container, float]:
            asset, seen = decoded(c)
            if "q" not in seen:
                seen["q"] = float(h.quality(ref, asset))
            c = with_attrs(c)
            return pack(c), c, seen["q"]

        # A classical codec that keeps its own frame (Draco) codes the asset as prepared, and the
        # file then stores no normalisation (container modes 6/7): never larger than the bare codec.
        # Its quality is the same either way (D1-PSNR is invariant to the normalisation).
        own = cc.own_frame
        classical_in = full if own else norm
        akw = {"attributes": attrs} if attrs and cc.coder == "draco" else {}  # Draco codes them itself

        def fallback(blob: bytes, b: int) -> Container:
            if own:
                octree = cc.coder == "octree"
                c = Container(codec="fallback", num_points=0, code_shape=(), dtype="none", quant="none",
                              draco_bits=b, payload=blob, pair=self.pair.name, model_version=None,
                              model_hash="00000000", centre=(0.0, 0.0, 0.0), scale=1.0, own_frame=True,
                              coder=cc.coder, version=LAYERED_VERSION if octree else FORMAT_VERSION)
            else:
                c = Container(codec="fallback", num_points=self.asset_size, code_shape=(), dtype="none",
                              quant="none", draco_bits=b, payload=blob, **common)
            if attrs and not akw:  # the octree's points are the input's own: each keeps its colour
                payload, _ = attributes_.encode_for_points(cc.decode(blob, b), full, attrs, exact=True)
                return with_attributes(c, attrs, payload)
            return with_attributes(c, attrs)

        top = measure(neural[0])  # the model's largest variant: its quality is the reported neural one
        neural_q = top[2]
        if target_bytes is not None:
            cands = [top] + [measure(c) for c in neural[1:]]
            for blob, b, q in cc.ladder(classical_in, **akw):
                c = fallback(blob, b)
                cands.append((pack(c), c, float(q)))
            fits = [x for x in cands if len(x[0]) <= int(target_bytes)]
            if not fits:
                smallest = min(cands, key=lambda x: len(x[0]))
                raise UserError(f"no variant fits in {target_bytes} bytes: the smallest is {len(smallest[0])} bytes "
                                f"({_label(smallest[1])})")
            data_, chosen, q = max(fits, key=lambda x: (x[2], -len(x[0])))
        else:
            # The smallest file that meets the floor (neural first on a tie), else the best quality.
            # Measured lazily, smallest candidate first: fewer bits never decode better than more
            # bits of the same code (the ladder is monotone), so when the largest neural variant
            # misses the floor the smaller ones are not decoded, and the classical codec is only
            # searched when its smallest file could beat the neural one.
            cands = [top]
            kept = None
            if neural_q >= min_quality:
                for c in sorted(neural[1:], key=lambda c: len(pack(c))):
                    x = measure(c)
                    cands.append(x)
                    if x[2] >= min_quality and len(x[0]) < len(top[0]):
                        kept = x
                        break
                kept = kept or top
            if kept is None or len(pack(fallback(cc.smallest(classical_in, **akw), 1))) < len(kept[0]):
                blob, b, fq = cc.at_floor(classical_in, float(min_quality), **akw)  # fewest classical bits meeting the floor
                fb = fallback(blob, b)
                cands.append((pack(fb), fb, float(fq)))
            if cc.coder == "octree" and not attrs and neural[-1].dtype in LEVEL_DTYPES:
                # the enhancement layer: the shortest rung + an octree coded with its decode as context.
                # The context saves at most ~10 % of the octree's bytes (measured: 1-5 %), so it is only
                # tried when that could pay for the rung and its header
                base = min(neural, key=lambda c: len(pack(c)))
                met = [len(x[0]) for x in cands if x[2] >= min_quality]
                octree_payload = len(cands[-1][1].payload) if cands[-1][1].coder == "octree" else 0
                if not met or min(met) > len(pack(base)) + 1 + 0.9 * octree_payload:
                    cands.append(self._enhanced(base, ref, float(min_quality), decoded))
            ok = [x for x in cands if x[2] >= min_quality]
            data_, chosen, q = min(ok, key=lambda x: len(x[0])) if ok else max(cands, key=lambda x: x[2])
        return self._checked(CompressResult(data_, chosen, chosen.codec == "fallback", neural_q, q, encode_ms,
                                            (time.perf_counter() - t0) * 1e3), full, attrs, ref, decoded)

    def _enhanced(self, base: Container, ref: np.ndarray, floor_db: float, decoded) -> tuple[bytes, Container, float]:
        """The shortest neural rung plus an octree enhancement layer of the input (normalised frame)
        coded with that rung's decode as context (``codec.octree``): the coarsest grid meeting the floor."""
        from squeeze3d.codec import octree

        prior = np.asarray(decoded(base)[0], np.float32)
        blob, _, q = octree.encode_min_quality(np.asarray(ref), floor_db, self.handler.quality, prior=prior)
        c = replace(base, version=LAYERED_VERSION, enhancement=blob)
        return pack(c), c, float(q)

    def _checked(self, res: CompressResult, full=None, attrs: dict | None = None, ref=None,
                 decoded=None) -> CompressResult:
        """A file compress writes must decompress: parse it back, and decode a classical payload
        (cheap; neural payloads are checked by the parse: their decode is the model's). Point
        clouds: count the points it decodes to, and measure the kept attributes against the input."""
        c = unpack(res.data)
        h = self.handler
        try:
            if c.codec == "fallback":
                pts, got = _classical_decode(h, c)
            else:
                pts, got = None, {}
        except ContainerError as e:
            raise UserError(f"internal error: the classical codec wrote a payload it cannot read ({e}); "
                            "nothing was written") from None
        if h.kind != "point_cloud":
            return res
        if c.codec == "neural" and c.enhancement:
            from squeeze3d.codec import octree

            res.decoded_points = len(octree.decode_points(c.enhancement, prior=np.asarray(decoded(c)[0], np.float32)))
        elif c.codec == "neural":
            res.decoded_points = self.asset_size
            if c.attributes and decoded is not None:
                pts = decoded(c)[0]  # the normalised decode, in the frame of ``ref``
                got = attributes_.decode_for_points(c.attr_payload, pts, c.attributes)
                res.attribute_psnr = attributes_.attribute_psnr(ref, attrs, pts, got)
        else:
            res.decoded_points = len(pts)
            if c.attributes:
                where = full if c.own_frame else ref
                res.attribute_psnr = attributes_.attribute_psnr(where, attrs, pts, got)
        return res

    def compress_points(self, points: np.ndarray, dtype: str | None = DEFAULT_DTYPE, quant: str = DEFAULT_QUANT,
                        min_quality: float | None = DEFAULT_MIN_QUALITY_DB, **kw) -> CompressResult:
        """Raw ``[N, 3]`` points (any frame) → .sq3d bytes (``compress_asset`` under its older name)."""
        return self.compress_asset(points, dtype, quant, min_quality, **kw)

    # ---------------------------------------------------------------- decompress
    def _padded(self, code: np.ndarray) -> np.ndarray:
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
        recon = self.decode_asset(self._padded(self.code_of(c)))
        if c.enhancement:  # the octree layer, coded with this decode as its context, replaces it
            from squeeze3d.codec import octree

            recon = octree.decode_points(c.enhancement, prior=np.asarray(recon, np.float32), max_level=levels)
        return self.handler.denormalise(recon, c.centre, c.scale)


def get_codec(pair: str = DEFAULT_PAIR, model: str | None = None, device: str = "cpu") -> Codec:
    """A process-wide ``Codec`` per (pair, model reference, device): batch calls share loaded models."""
    return _cached(("codec", pair, model, str(device)), lambda: Codec(pair, model, device))


def _label(c: Container) -> str:
    """A variant's name for messages and tables: ``neural fixed-6``, ``neural int8``, ``fallback 4-bit``."""
    if c.codec == "fallback":
        return "fallback octree" if c.coder == "octree" else f"fallback {c.draco_bits}-bit"
    tail = " + octree" if c.enhancement else ""
    return f"neural {c.dtype}{'-' + str(c.draco_bits) if c.dtype in LEVEL_DTYPES else ''}{tail}"


def _classical_decode(h, c: Container) -> tuple[np.ndarray, dict]:
    """A fallback payload → (its points, in the payload's frame; the attributes the file keeps)."""
    from squeeze3d.codec.classical import for_container

    if c.attributes and not c.attr_payload:  # the classical payload carries them (Draco)
        return h.fallback_decode_attributes(c.payload, c.attributes)
    pts = for_container(h, c.coder).decode(c.payload, c.draco_bits)
    return pts, (attributes_.decode_for_points(c.attr_payload, pts, c.attributes) if c.attributes else {})


def _decode_any(c: Container, model: str | None, device: str, where: str = "") -> np.ndarray:
    return _decode_with_attributes(c, model, device, where)[0]


def _check_levels(c: Container, levels: int | None, where: str = "") -> None:
    if levels is None:
        return
    if int(levels) < 0:
        raise UserError(f"--levels must be >= 0 octree levels, got {levels}")
    if not (c.coder == "octree" or c.enhancement):
        raise UserError(f"{where}--levels: this file has no octree layer to decode progressively "
                        f"({_label(c)})")
    if c.attributes:
        raise UserError(f"{where}--levels: the file's {', '.join(c.attributes)} is coded for its full-resolution "
                        "points; decode it whole")


def _decode_with_attributes(c: Container, model: str | None, device: str, where: str = "",
                            levels: int | None = None) -> tuple[np.ndarray, dict]:
    """The asset in its original frame and the per-point attributes the file keeps; ``levels``:
    only that many levels of an octree layer (a coarser cloud: progressive decode)."""
    _check_levels(c, levels, where)
    if not c.attributes:
        return _decode_geometry(c, model, device, where, levels), {}
    if c.codec == "fallback" and not c.attr_payload:  # the classical payload carries them
        h = handler_for(pair_for_codec(c.pair).asset_kind)
        try:
            pts, attrs = h.fallback_decode_attributes(c.payload, c.attributes)
        except ContainerError as e:
            raise ContainerError(f"{where}{e}") from None
        return (pts.astype(np.float32) if c.own_frame else h.denormalise(pts, c.centre, c.scale)), attrs
    pts = _decode_geometry(c, model, device, where)
    try:
        return pts, attributes_.decode_for_points(c.attr_payload, pts, c.attributes)
    except ContainerError as e:
        raise ContainerError(f"{where}{e}") from None


def _decode_geometry(c: Container, model: str | None, device: str, where: str = "",
                     levels: int | None = None) -> np.ndarray:
    if c.codec == "fallback":
        pair = pair_for_codec(c.pair)  # an unknown pair is an error even though the fallback needs no model
        h = handler_for(pair.asset_kind)
        from squeeze3d.codec.classical import for_container

        try:  # no count check: Draco and the octree merge duplicate points: their count wins
            codec = for_container(h, c.coder)
            decoded = (codec.decode(c.payload, c.draco_bits) if levels is None else
                       codec.decode(c.payload, c.draco_bits, max_level=levels))
        except ContainerError as e:
            raise ContainerError(f"{where}{e}") from None
        return decoded.astype(np.float32) if c.own_frame else h.denormalise(decoded, c.centre, c.scale)
    return get_codec(c.pair, model_for(c, model, where), device).decode_container(c, where, levels)


def model_for(c: Container, model: str | None, where: str = "") -> str:
    """The model reference that decodes ``c``: the one given, else the one the file names (version 2:
    found by its weights-hash prefix among the shipped model and the registry; see ``codec.models``)."""
    if model is not None:
        return model
    if c.version >= 2:
        from squeeze3d.codec.models import resolve_for_hash

        try:
            return str(resolve_for_hash(pair_for_codec(c.pair), c.model_hash).path)
        except UserError as e:
            raise UserError(f"{where}{e}") from None
    if c.model_version is None:
        raise UserError(f"{where}compressed with a mapping checkpoint given by path (identity "
                        f"{c.model_identity}); pass that checkpoint with --model PATH")
    return str(c.model_version)


# -------------------------------------------------------------------------------- public functions


def compress_points(points: np.ndarray, *, pair: str = DEFAULT_PAIR, model: str | None = None,
                    dtype: str | None = DEFAULT_DTYPE, quant: str = DEFAULT_QUANT,
                    min_quality: float | None = DEFAULT_MIN_QUALITY_DB, device: str = "cpu",
                    target_bytes: int | None = None, bits: int | None = None, effort: int | None = None,
                    prefix: int | None = None, classical: str | None = None) -> CompressResult:
    """``[N, 3]`` points in any frame → ``CompressResult`` (``.data`` is the .sq3d bytes)."""
    return get_codec(pair, model, device).compress_asset(points, dtype, quant, min_quality, target_bytes, bits,
                                                         effort=effort, prefix=prefix, classical=classical)


def compress_asset(data: np.ndarray, *, pair: str = DEFAULT_PAIR, model: str | None = None,
                   dtype: str | None = DEFAULT_DTYPE, quant: str = DEFAULT_QUANT,
                   min_quality: float | None = DEFAULT_MIN_QUALITY_DB, device: str = "cpu",
                   target_bytes: int | None = None, bits: int | None = None, effort: int | None = None,
                   prefix: int | None = None, classical: str | None = None) -> CompressResult:
    """One asset of the pair's kind (``[N, 3]`` points, ``[4, R, R, R]`` grid) → ``CompressResult``."""
    return get_codec(pair, model, device).compress_asset(data, dtype, quant, min_quality, target_bytes, bits,
                                                         effort=effort, prefix=prefix, classical=classical)


def decompress_bytes(data: bytes, *, model: str | None = None, device: str = "cpu",
                     levels: int | None = None) -> DecompressResult:
    """.sq3d bytes → the asset in the original frame (and its kept attributes). ``model`` defaults to
    the registry version recorded in the file; any other model is refused unless its weights hash
    matches. ``levels``: decode only that many levels of the file's octree layer (progressive)."""
    c = unpack(data)
    t0 = time.perf_counter()
    out, attrs = _decode_with_attributes(c, model, device, levels=levels)
    return DecompressResult(out, c, (time.perf_counter() - t0) * 1e3, attributes=attrs)


decompress_asset = decompress_bytes


def check_sq3d_output(output: Path, input_path: Path) -> None:
    if output.suffix.lower() != CONTAINER_EXT:
        raise InputError(f"{output}: the output must end in {CONTAINER_EXT}")
    if output.is_dir():
        raise InputError(f"{output}: is a directory")
    if output.resolve() == input_path.resolve():
        raise InputError(f"{output}: output would overwrite the input")


def compress_file(input: str | Path, output: str | Path, *, pair: str = DEFAULT_PAIR, model: str | None = None,
                  dtype: str = DEFAULT_DTYPE, quant: str = DEFAULT_QUANT,
                  min_quality: float | None = DEFAULT_MIN_QUALITY_DB, device: str = "cpu",
                  seed: int = 0, target_bytes: int | None = None, bits: int | None = None,
                  overwrite: bool = True, effort: int | None = None, prefix: int | None = None,
                  classical: str | None = None, drop_attributes: bool = False) -> CompressResult:
    """Read an asset file through the pair's handler (meshes sampled to the pair's point count with
    ``seed``; grids resampled to its resolution), compress it and write ``output`` (.sq3d)
    atomically (``overwrite=False``: never over an existing file). Nothing is written if anything fails.

    Point clouds: every point and the attributes the codec keeps (colour, intensity) go to the
    codec; per-point data no mode keeps (normals, labels, ...) are refused in one line unless
    ``drop_attributes`` (which also drops colour and intensity: geometry only)."""
    inp, out = Path(input), Path(output)
    check_sq3d_output(out, inp)
    codec = get_codec(pair, model, device)
    asset = codec.handler.read(inp, codec.pair, seed)
    data, attrs = attributes_.for_codec(asset, inp, drop_attributes)
    res = codec.compress_asset(data, dtype, quant, min_quality, target_bytes, bits, effort=effort, prefix=prefix,
                               classical=classical, attributes=attrs)
    res.asset = asset
    try:  # overwrite=False: refused atomically at the rename, so a file that appeared meanwhile survives
        res.output = atomic_write_bytes(out, res.data, overwrite=overwrite)
    except FileExistsError:
        raise InputError(f"{out}: already exists; pass --force to overwrite it") from None
    return res


def decompress_file(input: str | Path, output: str | Path, *, model: str | None = None,
                    device: str = "cpu", drop_attributes: bool = False, levels: int | None = None) -> DecompressResult:
    """.sq3d → an asset file, written atomically; the format follows the extension and the pair's
    kind (point clouds: .ply | .pcd | .las | .npz | .obj, with the attributes the file keeps;
    radiance fields: .npz in NeRF-MAE layout | .npy). A format that cannot hold a kept attribute
    (intensity in .obj) is refused before decoding, unless ``drop_attributes``."""
    out = check_any_output_path(output)
    c = read_container(input)
    h = handler_for(pair_for_codec(c.pair).asset_kind)
    h.check_output_path(out)
    attributes_.check_output(out, c.attributes, drop_attributes, where=f"{input}: ")
    t0 = time.perf_counter()
    data, attrs = _decode_with_attributes(c, model, device, where=f"{input}: ", levels=levels)
    ms = (time.perf_counter() - t0) * 1e3
    attrs = {} if drop_attributes else attrs
    return DecompressResult(data, c, ms, h.write(out, data, attrs), attributes=attrs)


def check_any_output_path(path: str | Path) -> Path:
    """Cheap output check before the pair (and so the kind) is known: an extension some kind writes."""
    p = Path(path)
    if p.suffix.lower() not in all_output_exts():
        raise InputError(f"{p}: unsupported output format {p.suffix or '(no extension)'!r}; "
                         f"use one of {', '.join(all_output_exts())}")
    if p.is_dir():
        raise InputError(f"{p}: is a directory")
    return p

