"""The rate–distortion choice: of one asset's candidate files, the one the options ask for.

Candidates are the neural rungs the codec built (``Codec.compress_asset``), the kind's classical
codec at its rates, and (point clouds, octree) the shortest rung plus an octree enhancement layer.

- gate off (no floor, no byte target): a file within ``OFF_BUDGET_BYTES``, unmeasured: point clouds
  the shortest rung plus the finest octree enhancement layer that fits; otherwise (or a rung asked
  for) the model's rung (nested codes: the largest whose raw file fits, stored as the prior codes it);
- ``target_bytes``: the best quality whose file fits;
- otherwise the *smallest* file meeting the floor (neural first on a tie), else the best quality.

Every candidate's quality is measured against the input as given (``ref``, in the neural frame), and
rungs whose codes dequantise to the same numbers are decoded once.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from squeeze3d.codec import DEFAULT_MIN_QUALITY_DB
from squeeze3d.codec import attributes as attributes_
from squeeze3d.codec.container import (
    FORMAT_VERSION,
    LAYERED_VERSION,
    LEVEL_DTYPES,
    Container,
    ContainerError,
    pack,
    unpack,
    with_attributes,
)
from squeeze3d.codec.options import CompressOptions
from squeeze3d.codec.results import label
from squeeze3d.errors import UserError

Candidate = tuple[bytes, Container, float]
"""(file bytes, its container, its quality)."""


class RDSearch:
    """One asset's candidates for ``codec`` (a ``Codec``) and classical codec ``cc``.

    ``norm``: the pair-sized asset in the neural frame; ``ref``: the input as given, in that frame;
    ``full``: the input as given in its own frame (what an own-frame classical codec codes);
    ``attrs``: per-point attributes every candidate keeps; ``common``: the container fields of a
    neural file (pair, model hash, normalisation)."""

    def __init__(self, codec, cc, norm, ref, full, attrs: dict, common: dict, options: CompressOptions):
        self.codec, self.cc, self.h = codec, cc, codec.handler
        self.norm, self.ref, self.full, self.attrs, self.common = norm, ref, full, attrs, common
        self.o = options
        self.colour_floor = DEFAULT_MIN_QUALITY_DB if options.min_quality is None else float(options.min_quality)
        self.memo: dict[bytes, tuple] = {}
        # A classical codec that keeps its own frame (Draco) codes the asset as given, and the file
        # then stores no normalisation (container modes 6/7): never larger than the bare codec. Its
        # quality is the same either way (D1-PSNR is invariant to the normalisation).
        self.classical_in = full if cc.own_frame else norm
        self.akw = {"attributes": attrs} if attrs and cc.coder == "draco" else {}  # Draco codes them itself

    # ------------------------------------------------------------------ candidates
    def decoded(self, c: Container) -> tuple:
        """``(asset, scratch)`` of a neural candidate; rungs with the same dequantised code share it."""
        code = self.codec.padded(self.codec.code_of(c))
        key = np.ascontiguousarray(code, np.float32).tobytes()
        if key not in self.memo:
            self.memo[key] = (self.codec.decode_asset(code), {})
        return self.memo[key]

    def with_attrs(self, c: Container) -> Container:
        """A neural candidate keeping the attributes: their transfer to its decoded points."""
        if not self.attrs:
            return c
        asset, seen = self.decoded(c)
        if "attr" not in seen:
            seen["attr"] = attributes_.encode_for_points(asset, self.ref, self.attrs, self.colour_floor)[0]
        return with_attributes(c, self.attrs, seen["attr"])

    def measure(self, c: Container) -> Candidate:
        asset, seen = self.decoded(c)
        if "q" not in seen:
            seen["q"] = float(self.h.quality(self.ref, asset))
        c = self.with_attrs(c)
        return pack(c), c, seen["q"]

    def fallback(self, blob: bytes, b: int) -> Container:
        """A classical payload as a file (own frame or the neural one), keeping the attributes."""
        if self.cc.own_frame:
            octree = self.cc.coder == "octree"
            c = Container(codec="fallback", num_points=0, code_shape=(), dtype="none", quant="none",
                          draco_bits=b, payload=blob, pair=self.codec.pair.name, model_version=None,
                          model_hash="00000000", centre=(0.0, 0.0, 0.0), scale=1.0, own_frame=True,
                          coder=self.cc.coder, version=LAYERED_VERSION if octree else FORMAT_VERSION)
        else:
            c = Container(codec="fallback", num_points=self.codec.asset_size, code_shape=(), dtype="none",
                          quant="none", draco_bits=b, payload=blob, **self.common)
        if self.attrs and not self.akw:  # the octree's points are the input's own: each keeps its colour
            payload, _ = attributes_.encode_for_points(self.cc.decode(blob, b), self.full, self.attrs, exact=True)
            return with_attributes(c, self.attrs, payload)
        return with_attributes(c, self.attrs)

    def enhanced(self, base: Container, floor_db: float) -> Candidate:
        """The shortest neural rung plus an octree enhancement layer of the input (normalised frame)
        coded with that rung's decode as context (``codec.octree``): the coarsest grid meeting the floor."""
        from squeeze3d.codec import octree

        prior = np.asarray(self.decoded(base)[0], np.float32)
        blob, _, q = octree.encode_min_quality(np.asarray(self.ref), floor_db, self.h.quality, prior=prior)
        c = replace(base, version=LAYERED_VERSION, enhancement=blob)
        return pack(c), c, float(q)

    def layer_base(self, neural: list[Container]) -> Container | None:
        """The rung an octree enhancement layer goes on (the shortest), or None when this asset
        cannot have one (no octree classical codec, kept attributes, or codes without k-bit levels)."""
        if self.cc.coder != "octree" or self.attrs or neural[-1].dtype not in LEVEL_DTYPES:
            return None
        return min(neural, key=lambda c: len(pack(c)))

    def enhanced_within(self, base: Container, budget: int) -> Container | None:
        """``base`` plus the finest octree enhancement layer whose file fits ``budget`` bytes,
        unmeasured; None when none fits."""
        from squeeze3d.codec import octree

        # the file is the layered container (the code, a varint of its length) plus the layer's bytes
        overhead = len(pack(replace(base, version=LAYERED_VERSION, enhancement=b"\0"))) - 1
        if budget <= overhead:
            return None
        prior = np.asarray(self.decoded(base)[0], np.float32)
        got = octree.encode_max_bytes(np.asarray(self.ref), budget - overhead, prior=prior)
        return None if got is None else replace(base, version=LAYERED_VERSION, enhancement=got[0])

    # ------------------------------------------------------------------ choices
    def gate_off(self, code: np.ndarray, variants: list, neural: list[Container], budget: int) -> Container:
        """The file written unmeasured, within ``budget`` bytes (``OFF_BUDGET_BYTES``).

        Point clouds coded with the octree (no attributes, no rung asked for): the layered stream,
        the shortest rung plus the finest octree enhancement layer that fits, chosen by size alone
        (``octree.encode_max_bytes``; decoder-side smoothing on). The neural ladder is flat above its
        shortest rung (F_D's range), so the budget buys more in the enhancement layer than in a
        longer code (measured on train objects: docs/benchmarks.md).
        Otherwise, or when no enhancement fits: the model's rung, the largest whose raw levels fit
        ``budget`` for nested codes, stored as the code prior codes it (the rung is chosen as without
        a prior: a prior's savings go to a smaller file rather than to a longer code)."""
        o = self.o
        base = self.layer_base(neural)
        if base is not None and o.dtype is None and o.bits is None and o.prefix is None:  # no rung asked for
            layered = self.enhanced_within(base, budget)
            if layered is not None:
                return layered
        off = neural[0]
        if self.codec.prefixes and o.prefix is None:
            fits = [c for v, c in zip(variants, neural)
                    if len(pack(self.codec.neural_container(code, v, self.common, entropy=False))) <= budget]
            off = fits[0] if fits else neural[-1]
        return self.with_attrs(off)

    def under_budget(self, neural: list[Container], target_bytes: int) -> tuple[Candidate, float]:
        """The best quality whose file fits ``target_bytes`` (every candidate measured), and the
        largest neural rung's quality."""
        top = self.measure(neural[0])
        cands = [top] + [self.measure(c) for c in neural[1:]]
        for blob, b, q in self.cc.ladder(self.classical_in, **self.akw):
            c = self.fallback(blob, b)
            cands.append((pack(c), c, float(q)))
        fits = [x for x in cands if len(x[0]) <= int(target_bytes)]
        if not fits:
            smallest = min(cands, key=lambda x: len(x[0]))
            raise UserError(f"no variant fits in {target_bytes} bytes: the smallest is {len(smallest[0])} bytes "
                            f"({label(smallest[1])})")
        return max(fits, key=lambda x: (x[2], -len(x[0]))), top[2]

    def at_floor(self, neural: list[Container], floor: float) -> tuple[Candidate, float]:
        """The smallest file meeting ``floor`` (neural first on a tie), else the best quality; and the
        largest neural rung's quality.

        Measured lazily, smallest candidate first: fewer bits never decode better than more bits of
        the same code (the ladder is monotone), so when the largest neural rung misses the floor the
        smaller ones are not decoded, and the classical codec is only searched when its smallest file
        could beat the neural one."""
        top = self.measure(neural[0])
        cands, kept = [top], None
        if top[2] >= floor:
            for c in sorted(neural[1:], key=lambda c: len(pack(c))):
                x = self.measure(c)
                cands.append(x)
                if x[2] >= floor and len(x[0]) < len(top[0]):
                    kept = x
                    break
            kept = kept or top
        if kept is None or len(pack(self.fallback(self.cc.smallest(self.classical_in, **self.akw), 1))) < len(kept[0]):
            blob, b, fq = self.cc.at_floor(self.classical_in, float(floor), **self.akw)  # fewest classical bits
            fb = self.fallback(blob, b)
            cands.append((pack(fb), fb, float(fq)))
        base = self.layer_base(neural)
        if base is not None:
            # the enhancement layer: the shortest rung + an octree coded with its decode as context.
            # The context saves at most ~10 % of the octree's bytes (measured: 1-5 %), so it is only
            # tried when that could pay for the rung and its header
            met = [len(x[0]) for x in cands if x[2] >= floor]
            octree_payload = len(cands[-1][1].payload) if cands[-1][1].coder == "octree" else 0
            if not met or min(met) > len(pack(base)) + 1 + 0.9 * octree_payload:
                cands.append(self.enhanced(base, float(floor)))
        ok = [x for x in cands if x[2] >= floor]
        return (min(ok, key=lambda x: len(x[0])) if ok else max(cands, key=lambda x: x[2])), top[2]

    # ------------------------------------------------------------------ the written file
    def verified(self, res):
        """A file compress writes must decompress: parse ``res.data`` (a ``CompressResult``) back and
        decode a classical payload (cheap; neural payloads are checked by the parse: their decode is
        the model's). Point clouds: count the points it decodes to, and measure the kept attributes
        against the input."""
        from squeeze3d.codec.classical import decode_payload

        c = unpack(res.data)
        try:
            pts, got = decode_payload(self.h, c) if c.codec == "fallback" else (None, {})
        except ContainerError as e:
            raise UserError(f"internal error: the classical codec wrote a payload it cannot read ({e}); "
                            "nothing was written") from None
        if self.h.kind != "point_cloud":
            return res
        if c.codec == "neural" and c.enhancement:
            from squeeze3d.codec import octree

            prior = np.asarray(self.decoded(c)[0], np.float32)
            res.decoded_points = len(octree.decode_points(c.enhancement, prior=prior))
        elif c.codec == "neural":
            res.decoded_points = self.codec.asset_size
            if c.attributes:
                pts = self.decoded(c)[0]  # the normalised decode, in the frame of ``ref``
                got = attributes_.decode_for_points(c.attr_payload, pts, c.attributes)
                res.attribute_psnr = attributes_.attribute_psnr(self.ref, self.attrs, pts, got)
        else:
            res.decoded_points = len(pts)
            if c.attributes:
                where = self.full if c.own_frame else self.ref
                res.attribute_psnr = attributes_.attribute_psnr(where, self.attrs, pts, got)
        return res
