"""Codec evaluation: the neural codec (each dtype, and gated with the kind's fallback) side by side with
the asset kind's classical baselines, on the same objects in one run.

Everything kind-specific comes from the pair's handler (``squeeze3d.assets``): which files are read,
the metrics, the baselines, the previews. Point clouds: Draco at several bit depths and the
resampling floor; Chamfer + D1-PSNR. Radiance fields: raw float16 + zstd, quantise + zstd at a few
bit depths and prune + VQ (VQRF-style) at two rates; render PSNR + MS-SSIM.

Objects: the procedural corpus split (``split``; written once to ``<out>/inputs/`` so every method
reads the same files through the handler) or the supported files in ``input_dir``.

Per object, the reference is the asset as the codec sees it (point clouds: the mesh sampled to the
pair's point count with ``seed``; grids: resampled to the pair's resolution). Columns:

- bytes: the whole .sq3d file (header included) for the neural codec; the bare payload for the
  baselines (no container), so the comparison favours the baselines by the header size.
- CR raw: the float32 asset (num_points·3·4 or 4·R³·4 bytes) / bytes; CR file: the input file's size
  / bytes (both as ratios of the means over objects).
- compress / decompress ms: median wall time per object, batch size 1, models already loaded; neural
  compress = normalise → E → F_E → quantise → pack (without the gate), decompress = parse → check →
  dequantise → F_D → G → denormalise; the gated row's compress time includes the gate.
- the kind's metrics (see the handler's ``definitions``, printed under the table).
"""

from __future__ import annotations

import csv
import io as _io
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from squeeze3d.baselines import draco
from squeeze3d.codec import DEFAULT_MIN_QUALITY_DB, DEFAULT_PAIR
from squeeze3d.codec.compressor import get_codec
from squeeze3d.codec.decompress import decompress_bytes
from squeeze3d.errors import UserError
from squeeze3d.io import atomic_write_bytes, list_inputs

NEURAL_VARIANTS = (("f32", "per_vector"), ("f16", "per_vector"), ("int8", "per_vector"), ("int8", "per_group"))
COLUMNS = ("method", "objects", "bytes", "cr_raw", "cr_file", "chamfer", "d1_psnr", "compress_ms",
           "decompress_ms", "fallbacks")
"""Summary columns of a point-cloud evaluation (other kinds swap in their metrics: ``columns``)."""


COLOUR_KEY = "colour_y_psnr"
"""Colour PSNR on Y (``codec.attributes``) of the .sq3d rows when the inputs carry colour (NaN else)."""


def columns(handler, colour: bool = False) -> tuple[str, ...]:
    return ("method", "objects", "bytes", "cr_raw", "cr_file", *(m.key for m in handler.metric_columns),
            *((COLOUR_KEY,) if colour else ()), "compress_ms", "decompress_ms", "fallbacks")


def _has_colour(rows) -> bool:
    return any(np.isfinite(r.get(COLOUR_KEY, math.nan)) for r in rows)


def _reference_attributes(asset, ref) -> dict:
    """The attributes of the evaluated resample (a subset of the cloud's points): colour only."""
    attrs = getattr(asset, "attributes", None) or {}
    cloud = getattr(asset, "cloud", None)
    if "colour" not in attrs or cloud is None:
        return {}
    from scipy.spatial import cKDTree

    idx = cKDTree(np.asarray(cloud, np.float64)).query(np.asarray(ref, np.float64))[1]
    return {"colour": attrs["colour"][idx]}


def _colour_of(res) -> float:
    return float((res.attribute_psnr or {}).get("colour", math.nan))


@dataclass
class EvalReport:
    pair: str
    model_identity: str
    source: str
    rows: list[dict]
    """One summary row per method (``COLUMNS``)."""
    objects: list[dict]
    """One row per (object, method)."""
    markdown: str
    out_dir: Path
    markdown_path: Path
    csv_path: Path
    objects_csv_path: Path
    rd_png: Path
    preview_dir: Path
    previews: list[Path] = field(default_factory=list)
    fallbacks: int = 0
    code_std_range: tuple[float, float] | None = None
    handler: object | None = field(default=None, repr=False)
    """The asset kind's handler (``squeeze3d.assets``): metric columns, definitions, plot series."""

    def row(self, method: str) -> dict:
        return next(r for r in self.rows if r["method"] == method)


def variant_name(dtype: str, quant: str, bits: int = 0, prefix: int = 0) -> str:
    if dtype == "fixed":
        return f"sq3d-fixed{bits}" + (f"x{prefix}" if prefix else "")
    return f"sq3d-{dtype}" + (f"-{quant.replace('_', '')}" if dtype == "int8" else "")


GATE_METHOD = "sq3d+gate"
"""The row of what ``squeeze3d compress`` writes: the rate-distortion choice at the quality floor."""


def corpus_inputs(split: str, limit: int, dest: Path, log: Callable[[str], None] = print,
                  pair: str = DEFAULT_PAIR) -> list[Path]:
    """The first ``limit`` objects of the pair's procedural corpus split as files in ``dest`` (written
    once), through the pair's asset handler."""
    from squeeze3d.assets import handler_for
    from squeeze3d.pairs import get_pair

    spec = get_pair(pair)
    return handler_for(spec.asset_kind).corpus_inputs(spec, split, limit, dest, log)


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1e3


def evaluate(pair: str = DEFAULT_PAIR, model: str | None = None, split: str = "test", input_dir: str | Path | None = None,
             limit: int = 48, out_dir: str | Path = ".state/eval", min_quality: float | None = DEFAULT_MIN_QUALITY_DB,
             variants=None, draco_bits=draco.BASELINE_BITS, level: int = draco.DEFAULT_LEVEL,
             device: str = "cpu", seed: int = 0, previews: bool = True, target_bytes: int | None = None,
             effort: int | None = None, log: Callable[[str], None] = print) -> EvalReport:
    """Run every method on every object; write ``report.md``, ``summary.csv``, ``objects.csv``,
    ``rate_distortion.png`` and ``previews/<object>.png`` (original vs the gated codec output) into
    ``out_dir``. Returns the report (also printed by ``squeeze3d eval``)."""
    from tqdm import tqdm

    if limit < 1:
        raise UserError(f"--limit must be at least 1, got {limit}")
    out = Path(out_dir)
    codec = get_codec(pair, model, device)
    h = codec.handler
    resolved = codec.resolved
    # decompression resolves the model the way a receiver would: by the version in the file, or the path
    dec_model = model if model is not None else (resolved.version or str(resolved.path))
    if input_dir is not None:
        files = list_inputs(input_dir, h.input_exts)[:limit]
        if not files:
            raise UserError(f"{input_dir}: no supported input files")
        source = str(input_dir)
    else:
        files = h.corpus_inputs(codec.pair, split, limit, out / "inputs", log)
        source = f"procedural corpus, {split} split"
    options = {"draco_bits": draco_bits, "level": level}
    # the model's own rate ladder (bounded codes: fixed-range k bits) plus f32 (for the code spread);
    # unbounded models: the classic dtype variants
    if variants is None:
        ladder = [tuple(v) for v in codec.variants()]
        run_variants = (ladder + [("f32", "none", 0, 0)] if ladder[0][0] == "fixed"
                        else [(d, q, 0, 0) for d, q in NEURAL_VARIANTS])
    else:
        run_variants = [(v[0], v[1], v[2] if len(v) > 2 else 0, v[3] if len(v) > 3 else 0) for v in variants]

    objects: list[dict] = []
    codes: list[np.ndarray] = []
    preview_paths: list[Path] = []
    warm = False
    for f in tqdm(files, desc="eval", unit="obj", disable=len(files) < 2):
        try:
            asset = h.read(f, codec.pair, seed)
        except UserError as e:
            log(f"skipping {f.name}: {e}")
            continue
        ref = asset.data
        raw_bytes = h.raw_bytes(ref)
        ctx = h.metric_context(ref)
        # coloured inputs: the .sq3d rows keep the colour (its bytes counted), the baselines do not
        akw = {"attributes": a} if (a := _reference_attributes(asset, ref)) else {}

        def add(method, nbytes, test, c_ms, d_ms, fallback=False, colour=math.nan, _f=f, _a=asset, _ctx=ctx,
                _raw=raw_bytes):
            objects.append({"object": _f.name, "method": method, "bytes": nbytes, "raw_bytes": _raw,
                            "file_bytes": _a.file_bytes, **h.eval_metrics(_ctx, test), COLOUR_KEY: colour,
                            "compress_ms": c_ms, "decompress_ms": d_ms, "fallback": int(fallback)})

        if not warm:  # first call loads models and warms kernels: keep it out of the timings
            decompress_bytes(codec.compress_asset(ref, min_quality=None, effort=0).data,
                             model=dec_model, device=device)
            warm = True
        # the gated file first: its compress time then includes the refinement search, which the
        # per-rung calls below reuse (``Codec.refine`` remembers it per input)
        gate_shown = None
        if min_quality is not None:
            res = codec.compress_asset(ref, min_quality=min_quality, effort=effort, **akw)
            t0 = time.perf_counter()
            dec = decompress_bytes(res.data, model=dec_model, device=device)
            add(GATE_METHOD, res.nbytes, dec.data, res.encode_ms + res.gate_ms, _ms(t0), res.fallback,
                _colour_of(res))
            label = res.variant  # ``fallback octree``, ``fallback 4-bit`` (Draco), ``neural entropy-6``, ...
            gate_shown = (dec.data, res.nbytes)
        for dtype, quant, bits, prefix in run_variants:
            res = codec.compress_asset(ref, dtype=dtype, quant=quant, min_quality=None, bits=bits or None,
                                       prefix=prefix or None, effort=effort, **akw)
            t0 = time.perf_counter()
            dec = decompress_bytes(res.data, model=dec_model, device=device)
            add(variant_name(dtype, quant, bits, prefix), res.nbytes, dec.data, res.encode_ms, _ms(t0),
                colour=_colour_of(res))
            if dtype == "f32":
                codes.append(np.frombuffer(res.container.payload, "<f4"))
        if gate_shown is None:
            label = variant_name(dtype, quant, bits, prefix)
        shown, shown_bytes = (dec.data, res.nbytes) if gate_shown is None else gate_shown
        if target_bytes is not None:  # the rate knob: best quality within the byte budget
            tb = codec.compress_asset(ref, min_quality=None, target_bytes=target_bytes, effort=effort)
            t0 = time.perf_counter()
            tdec = decompress_bytes(tb.data, model=dec_model, device=device)
            add(f"sq3d@{target_bytes}B", tb.nbytes, tdec.data, tb.encode_ms + tb.gate_ms, _ms(t0), tb.fallback)
        for bl in h.baselines(asset, ref, codec.pair, seed, options):
            add(bl.method, bl.nbytes, bl.reconstruction, bl.compress_ms, bl.decompress_ms)
        if previews:
            q = h.eval_metrics(ctx, shown)[h.primary_metric]
            preview_paths.append(h.preview(out / "previews" / f"{f.stem}.png", ref, shown,
                                           f"{f.name}: {label}, {shown_bytes} B, {h.quality_name} {q:.1f} dB"))
    if not objects:
        raise UserError("no object could be evaluated")
    rows = _summarise(objects, h)
    std = np.stack(codes).std(axis=0) if len(codes) >= 2 else None
    std_range = (float(std.min()), float(std.max())) if std is not None else None
    fallbacks = sum(o["fallback"] for o in objects)
    rep = EvalReport(pair=codec.pair.name, model_identity=resolved.identity, source=source, rows=rows,
                     objects=objects, markdown="", out_dir=out, markdown_path=out / "report.md",
                     csv_path=out / "summary.csv", objects_csv_path=out / "objects.csv",
                     rd_png=out / "rate_distortion.png", preview_dir=out / "previews", previews=preview_paths,
                     fallbacks=fallbacks, code_std_range=std_range, handler=h)
    rep.markdown = to_markdown(rep, min_quality)
    atomic_write_bytes(rep.markdown_path, rep.markdown.encode())
    atomic_write_bytes(rep.csv_path, _csv(rows, columns(h, _has_colour(rows))))
    atomic_write_bytes(rep.objects_csv_path, _csv(objects, list(objects[0])))
    _rd_plot(rep, min_quality)
    return rep


def _summarise(objects: list[dict], handler) -> list[dict]:
    methods = list(dict.fromkeys(o["method"] for o in objects))
    rows = []
    for m in methods:
        rs = [o for o in objects if o["method"] == m]
        mean = lambda k, rs=rs: float(np.mean([r[k] for r in rs]))  # noqa: E731
        med = lambda k, rs=rs: (statistics.median([r[k] for r in rs])  # noqa: E731
                                if not any(math.isnan(r[k]) for r in rs) else math.nan)
        files = [r["file_bytes"] for r in rs if r["file_bytes"]]
        rows.append({"method": m, "objects": len(rs), "bytes": mean("bytes"),
                     "cr_raw": mean("raw_bytes") / mean("bytes"),
                     "cr_file": (float(np.mean(files)) / mean("bytes")) if files and m != "resample-floor" else math.nan,
                     **{c.key: mean(c.key) for c in handler.metric_columns},
                     COLOUR_KEY: (float(np.mean(cs)) if (cs := [r[COLOUR_KEY] for r in rs
                                                                if np.isfinite(r.get(COLOUR_KEY, math.nan))])
                                  else math.nan),
                     "compress_ms": med("compress_ms"),
                     "decompress_ms": med("decompress_ms"), "fallbacks": sum(r["fallback"] for r in rs)})
    return rows


def _fmt(v, nd=2) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "—"
        return f"{v:.{nd}f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
    return str(v)


def _handler(rep: EvalReport):
    if rep.handler is not None:
        return rep.handler
    from squeeze3d.assets import handler_for

    return handler_for("point_cloud")


def to_markdown(rep: EvalReport, min_quality: float | None) -> str:
    h = _handler(rep)
    mcols = h.metric_columns
    prim = h.primary_metric
    prim_head = next(c.header for c in mcols if c.key == prim)
    colour = _has_colour(rep.rows)
    head = ["method", "objects", "bytes", "CR raw", "CR file", *(c.header for c in mcols),
            *(("colour Y-PSNR dB",) if colour else ()), "compress ms", "decompress ms", "fallbacks"]
    lines = [f"## Codec evaluation: pair `{rep.pair}`, model `{rep.model_identity}`", "",
             f"Objects: {len({o['object'] for o in rep.objects})} from {rep.source}. Quality floor "
             f"({h.quality_name}): {'off' if min_quality is None else f'{min_quality:g} dB'}; fell back to "
             f"the classical codec: {rep.fallbacks}.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rep.rows:
        vals = [r["method"], r["objects"], _fmt(r["bytes"], 1), _fmt(r["cr_raw"], 1), _fmt(r["cr_file"], 1),
                *(_fmt(r[c.key], c.digits) for c in mcols), *((_fmt(r[COLOUR_KEY], 2),) if colour else ()),
                _fmt(r["compress_ms"], 1),
                _fmt(r["decompress_ms"], 1), r["fallbacks"]]
        lines.append("| " + " | ".join(map(str, vals)) + " |")
    base = next((r for r in rep.rows if r["method"] == "sq3d-f32"), None)
    neural = [r for r in rep.rows if r["method"].startswith("sq3d-") and "+gate" not in r["method"]]
    if base and len(neural) > 1:
        lines += ["", f"Quantisation (neural only, no gate): bytes and {prim_head} loss against f32", "",
                  f"| dtype | bytes | {prim_head} | loss vs f32 dB |", "|---|---|---|---|"]
        for r in neural:
            lines.append(f"| {r['method']} | {r['bytes']:.0f} | {r[prim]:.2f} | {base[prim] - r[prim]:.3f} |")
    if rep.code_std_range:
        lo, hi = rep.code_std_range
        lines += ["", f"Code dimensions' std over these objects: {lo:.3g} … {hi:.3g} (ratio {hi / max(lo, 1e-12):.2f})."]
    lines += ["", h.definitions()]
    if colour:
        lines += ["", "Colour: the inputs carry per-point colour; the .sq3d rows keep it (their bytes include it) and "
                  "report colour PSNR on Y (BT.709 luma, peak 255, nearest-neighbour matching both ways, the worse "
                  "direction); the classical baselines are geometry only."]
    return "\n".join(lines) + "\n"


def _csv(rows: list[dict], columns) -> bytes:
    buf = _io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue().encode()


def _rd_plot(rep: EvalReport, min_quality: float | None) -> Path:
    from squeeze3d.metrics.render import plot_rate_distortion

    h = _handler(rep)
    prim = h.primary_metric
    series, floor = h.rd_series(rep.rows)
    for r in rep.rows:
        if r["method"].startswith("sq3d-"):
            series[r["method"]] = ([r["bytes"]], [r[prim]])
    ylabel = next(c.header for c in h.metric_columns if c.key == prim).replace(" dB", " (dB)")
    return plot_rate_distortion(rep.rd_png, series, floor_db=floor, ylabel=ylabel,
                                title=f"{rep.pair} ({rep.model_identity}), {len({o['object'] for o in rep.objects})} objects")
