"""Codec evaluation: the neural codec (each dtype, and gated with the Draco fallback) side by side with
Draco at several bit depths and with the resampling floor, on the same objects in one run.

Objects: the procedural corpus split (``split``; meshes written once to ``<out>/inputs/`` so every
method reads the same files through ``squeeze3d.io``) or the supported files in ``input_dir``.

Per object, the reference is the asset as the codec sees it: the mesh sampled to the pair's point
count with ``seed`` (a cloud: subsampled to it). Metrics are computed in the reference's unit-sphere
frame (bounding-box centre, farthest point at radius 1), so Chamfer values are comparable across
objects; D1-PSNR does not depend on the frame:

- D1-PSNR (MPEG p2point): mse = max of the two directed mean squared nearest-neighbour distances,
  PSNR = 10·log10(peak² / mse), peak = the reference's bounding-box diagonal
  (``squeeze3d.metrics.pointcloud``).
- Chamfer: sum of the two directed mean squared nearest-neighbour distances.
- bytes: the whole .sq3d file (header included) for the neural codec; the Draco bitstream alone for
  Draco (no container), so the comparison favours Draco by the header size.
- CR raw: num_points · 3 · 4 bytes (float32 xyz) / bytes; CR file: the input file's size / bytes
  (both as ratios of the means over objects).
- compress / decompress ms: median wall time per object, batch size 1, models already loaded; neural
  compress = normalise → E → F_E → quantise → pack (without the gate), decompress = parse → check →
  dequantise → F_D → G → denormalise; the gated row's compress time includes the gate.
- resampling floor: a second, independent surface sampling of the same mesh (seed + 1) scored like a
  reconstruction: the best any codec can do when it reproduces the surface rather than the samples.
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
import torch

from squeeze3d.codec import DEFAULT_DTYPE, DEFAULT_MIN_QUALITY_DB, DEFAULT_PAIR, DEFAULT_QUANT, draco
from squeeze3d.codec.compressor import decompress_bytes, get_codec
from squeeze3d.errors import UserError
from squeeze3d.io import atomic_write_bytes, list_inputs, read_asset
from squeeze3d.metrics.pointcloud import chamfer, d1_psnr

NEURAL_VARIANTS = (("f32", "per_vector"), ("f16", "per_vector"), ("int8", "per_vector"), ("int8", "per_group"))
COLUMNS = ("method", "objects", "bytes", "cr_raw", "cr_file", "chamfer", "d1_psnr", "compress_ms",
           "decompress_ms", "fallbacks")


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

    def row(self, method: str) -> dict:
        return next(r for r in self.rows if r["method"] == method)


def variant_name(dtype: str, quant: str) -> str:
    return f"sq3d-{dtype}" + (f"-{quant.replace('_', '')}" if dtype == "int8" else "")


def corpus_inputs(split: str, limit: int, dest: Path, log: Callable[[str], None] = print) -> list[Path]:
    """The first ``limit`` objects of a procedural corpus split as PLY meshes in ``dest`` (written once).

    The only place the codec depends on the corpus (``squeeze3d.zoo.corpus``)."""
    from squeeze3d.zoo import corpus

    out, idx = [], 0
    dest.mkdir(parents=True, exist_ok=True)
    while len(out) < limit:
        if corpus.split_of(idx) == split:
            path = dest / f"{split}_{idx:05d}_{corpus.CATEGORIES[corpus.category_of(idx)]}.ply"
            if not path.exists():
                mesh, _ = corpus.make_mesh(corpus.DEFAULT_SEED, idx)
                atomic_write_bytes(path, mesh.export(file_type="ply"))
            out.append(path)
        idx += 1
    log(f"{len(out)} {split}-split corpus meshes in {dest}")
    return out


def _metrics(ref: np.ndarray, test: np.ndarray) -> tuple[float, float]:
    """(Chamfer, D1-PSNR) in the reference's unit-sphere frame."""
    centre = (ref.max(0) + ref.min(0)) / 2
    scale = max(float(np.linalg.norm(ref - centre, axis=1).max()), 1e-12)
    a = torch.from_numpy(((ref - centre) / scale).astype(np.float32))[None]
    b = torch.from_numpy(((test - centre) / scale).astype(np.float32))[None]
    return float(chamfer(a, b)[0]), float(d1_psnr(a, b)[0])


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1e3


def evaluate(pair: str = DEFAULT_PAIR, model: str | None = None, split: str = "test", input_dir: str | Path | None = None,
             limit: int = 48, out_dir: str | Path = ".state/eval", min_quality: float | None = DEFAULT_MIN_QUALITY_DB,
             variants=NEURAL_VARIANTS, draco_bits=draco.BASELINE_BITS, level: int = draco.DEFAULT_LEVEL,
             device: str = "cpu", seed: int = 0, previews: bool = True,
             log: Callable[[str], None] = print) -> EvalReport:
    """Run every method on every object; write ``report.md``, ``summary.csv``, ``objects.csv``,
    ``rate_distortion.png`` and ``previews/<object>.png`` (original vs the gated codec output) into
    ``out_dir``. Returns the report (also printed by ``squeeze3d eval``)."""
    from tqdm import tqdm

    if limit < 1:
        raise UserError(f"--limit must be at least 1, got {limit}")
    out = Path(out_dir)
    codec = get_codec(pair, model, device)
    resolved = codec.resolved
    # decompression resolves the model the way a receiver would: by the version in the file, or the path
    dec_model = model if model is not None else (resolved.version or str(resolved.path))
    if input_dir is not None:
        files = list_inputs(input_dir)[:limit]
        if not files:
            raise UserError(f"{input_dir}: no supported input files")
        source = str(input_dir)
    else:
        files = corpus_inputs(split, limit, out / "inputs", log)
        source = f"procedural corpus, {split} split"
    n_pts = int(codec.pair.num_points)

    objects: list[dict] = []
    codes: list[np.ndarray] = []
    preview_paths: list[Path] = []
    warm = False
    for f in tqdm(files, desc="eval", unit="obj", disable=len(files) < 2):
        try:
            asset = read_asset(f, n_pts, seed)
        except UserError as e:
            log(f"skipping {f.name}: {e}")
            continue
        ref = asset.points
        raw_bytes = len(ref) * 12

        def add(method, nbytes, test, c_ms, d_ms, fallback=False, _f=f, _a=asset, _ref=ref, _raw=raw_bytes):
            ch, ps = _metrics(_ref, test)
            objects.append({"object": _f.name, "method": method, "bytes": nbytes, "raw_bytes": _raw,
                            "file_bytes": _a.file_bytes, "chamfer": ch, "d1_psnr": ps, "compress_ms": c_ms,
                            "decompress_ms": d_ms, "fallback": int(fallback)})

        if not warm:  # first call loads models and warms kernels: keep it out of the timings
            decompress_bytes(codec.compress_points(ref, DEFAULT_DTYPE, DEFAULT_QUANT, min_quality).data,
                             model=dec_model, device=device)
            warm = True
        for dtype, quant in variants:
            res = codec.compress_points(ref, dtype, quant, None)
            t0 = time.perf_counter()
            dec = decompress_bytes(res.data, model=dec_model, device=device)
            add(variant_name(dtype, quant), res.nbytes, dec.points, res.encode_ms, _ms(t0))
            if dtype == "f32":
                codes.append(np.frombuffer(res.container.payload, "<f4"))
        if min_quality is not None:
            res = codec.compress_points(ref, DEFAULT_DTYPE, DEFAULT_QUANT, min_quality)
            t0 = time.perf_counter()
            dec = decompress_bytes(res.data, model=dec_model, device=device)
            add(f"sq3d-{DEFAULT_DTYPE}+gate", res.nbytes, dec.points, res.encode_ms + res.gate_ms, _ms(t0),
                res.fallback)
            label = (f"Draco {res.container.draco_bits}-bit fallback" if res.fallback
                     else f"neural {DEFAULT_DTYPE}")
        else:
            label = variant_name(dtype, quant)
        shown, shown_bytes = dec.points, res.nbytes
        for bits in draco_bits:
            t0 = time.perf_counter()
            blob = draco.encode_points(ref, bits, level)
            c_ms = _ms(t0)
            t0 = time.perf_counter()
            pts = draco.decode_points(blob)
            add(f"draco-{bits}", len(blob), pts, c_ms, _ms(t0))
        if asset.kind == "mesh":
            add("resample-floor", raw_bytes, read_asset(f, n_pts, seed + 1).points, math.nan, math.nan)
        if previews:
            _, ps = _metrics(ref, shown)
            preview_paths.append(_preview(out / "previews" / f"{f.stem}.png", ref, shown,
                                          f"{f.name}: {label}, {shown_bytes} B, D1-PSNR {ps:.1f} dB"))
    if not objects:
        raise UserError("no object could be evaluated")
    rows = _summarise(objects)
    std = np.stack(codes).std(axis=0) if len(codes) >= 2 else None
    std_range = (float(std.min()), float(std.max())) if std is not None else None
    fallbacks = sum(o["fallback"] for o in objects)
    rep = EvalReport(pair=codec.pair.name, model_identity=resolved.identity, source=source, rows=rows,
                     objects=objects, markdown="", out_dir=out, markdown_path=out / "report.md",
                     csv_path=out / "summary.csv", objects_csv_path=out / "objects.csv",
                     rd_png=out / "rate_distortion.png", preview_dir=out / "previews", previews=preview_paths,
                     fallbacks=fallbacks, code_std_range=std_range)
    rep.markdown = to_markdown(rep, min_quality)
    atomic_write_bytes(rep.markdown_path, rep.markdown.encode())
    atomic_write_bytes(rep.csv_path, _csv(rows, COLUMNS))
    atomic_write_bytes(rep.objects_csv_path, _csv(objects, list(objects[0])))
    _rd_plot(rep, min_quality)
    return rep


def _preview(path: Path, ref: np.ndarray, recon: np.ndarray, title: str) -> Path:
    from squeeze3d.metrics.render import render_before_after

    return render_before_after(path, ref, recon, title=title)


def _summarise(objects: list[dict]) -> list[dict]:
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
                     "chamfer": mean("chamfer"), "d1_psnr": mean("d1_psnr"), "compress_ms": med("compress_ms"),
                     "decompress_ms": med("decompress_ms"), "fallbacks": sum(r["fallback"] for r in rs)})
    return rows


def _fmt(v, nd=2) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "—"
        return f"{v:.{nd}f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
    return str(v)


def to_markdown(rep: EvalReport, min_quality: float | None) -> str:
    head = ["method", "objects", "bytes", "CR raw", "CR file", "Chamfer", "D1-PSNR dB", "compress ms",
            "decompress ms", "fallbacks"]
    lines = [f"## Codec evaluation: pair `{rep.pair}`, model `{rep.model_identity}`", "",
             f"Objects: {len({o['object'] for o in rep.objects})} from {rep.source}. Quality floor: "
             f"{'off' if min_quality is None else f'{min_quality:g} dB'}; fell back to Draco: {rep.fallbacks}.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rep.rows:
        vals = [r["method"], r["objects"], _fmt(r["bytes"], 1), _fmt(r["cr_raw"], 1), _fmt(r["cr_file"], 1),
                _fmt(r["chamfer"], 5), _fmt(r["d1_psnr"]), _fmt(r["compress_ms"], 1), _fmt(r["decompress_ms"], 1),
                r["fallbacks"]]
        lines.append("| " + " | ".join(map(str, vals)) + " |")
    base = next((r for r in rep.rows if r["method"] == "sq3d-f32"), None)
    neural = [r for r in rep.rows if r["method"].startswith("sq3d-") and "+gate" not in r["method"]]
    if base and len(neural) > 1:
        lines += ["", "Quantisation (neural only, no gate): bytes and D1-PSNR loss against f32", "",
                  "| dtype | bytes | D1-PSNR dB | loss vs f32 dB |", "|---|---|---|---|"]
        for r in neural:
            lines.append(f"| {r['method']} | {r['bytes']:.0f} | {r['d1_psnr']:.2f} | "
                         f"{base['d1_psnr'] - r['d1_psnr']:.3f} |")
    if rep.code_std_range:
        lo, hi = rep.code_std_range
        lines += ["", f"Code dimensions' std over these objects: {lo:.3g} … {hi:.3g} (ratio {hi / max(lo, 1e-12):.2f})."]
    lines += ["", "Definitions: D1-PSNR = MPEG p2point, peak = reference bounding-box diagonal; Chamfer = sum of "
              "both directed mean squared NN distances in the reference's unit-sphere frame; neural bytes include "
              "the .sq3d header, Draco bytes are the bare bitstream; ms = median per object on this machine."]
    return "\n".join(lines) + "\n"


def _csv(rows: list[dict], columns) -> bytes:
    buf = _io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue().encode()


def _rd_plot(rep: EvalReport, min_quality: float | None) -> Path:
    from squeeze3d.metrics.render import plot_rate_distortion

    dr = [r for r in rep.rows if r["method"].startswith("draco-")]
    series = {"Draco (level 10)": ([r["bytes"] for r in dr], [r["d1_psnr"] for r in dr])}
    for r in rep.rows:
        if r["method"].startswith("sq3d-"):
            series[r["method"]] = ([r["bytes"]], [r["d1_psnr"]])
    floor = next((r["d1_psnr"] for r in rep.rows if r["method"] == "resample-floor"), None)
    return plot_rate_distortion(rep.rd_png, series, floor_db=floor,
                                title=f"{rep.pair} ({rep.model_identity}), {len({o['object'] for o in rep.objects})} objects")
