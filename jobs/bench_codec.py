"""The codec against Draco on held-out objects: the real-object corpus' test split (`squeeze3d corpus
fetch`) and the procedural corpus' test split. Per object: every rung of the neural ladder, the gated
file, Draco at 1..14 bits; summary: median D1-PSNR and bytes of the gate-off file, how often the gate
keeps the neural file, how often a file is larger than bare Draco at equal quality, BD-rate of the
neural ladder against Draco over 25-35 dB (per object, median), and compress time per object.

    python jobs/bench_codec.py --sources real,corpus --limit 117 --json .state/bench/codec.json
    python jobs/bench_codec.py --sources real --limit 24 --efforts 0,20,40,80   # time vs quality

D1-PSNR: p2point, symmetric worst direction, peak = the input's bounding-box diagonal
(``squeeze3d.metrics.pointcloud``), against the 2048-point resample the codec keeps.
"""

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

from squeeze3d.codec.evaluate import GATE_METHOD, evaluate
from squeeze3d.metrics.bdrate import bd_rate

REAL_SOURCES = ("sweethome3d", "flightgear")
"""Real objects only (pybullet's random shapes are left out of the real-object numbers)."""


def real_inputs(dest: Path, limit: int, n_points: int = 2048) -> Path:
    """The real corpus' test objects as ``.npy`` clouds in their own frame (metres), one seeded
    surface sampling each: what a user's file would hold."""
    from squeeze3d.realcorpus import load_index, load_mesh, sample_points, select

    dest.mkdir(parents=True, exist_ok=True)
    index = load_index()
    for o in select(index, "test", sources=REAL_SOURCES)[:limit]:
        f = dest / (o["id"].replace("/", "__") + ".npy")
        if not f.exists():
            np.save(f, sample_points(load_mesh(o, index), n_points, seed=0).astype(np.float32))
    return dest


def summarise(rep, floor: float, off_method: str) -> dict:
    q = rep.handler.primary_metric
    by_obj: dict[str, dict[str, dict]] = {}
    for o in rep.objects:
        by_obj.setdefault(o["object"], {})[o["method"]] = o
    bds, larger, kept, times, rows = [], 0, 0, [], []
    for name, m in by_obj.items():
        draco = [r for k, r in m.items() if k.startswith("draco-")]
        ladder = [r for k, r in m.items() if k.startswith("sq3d-fixed")]
        bd = bd_rate([r["bytes"] for r in draco], [r[q] for r in draco], [r["bytes"] for r in ladder],
                     [r[q] for r in ladder], quality_range=(25.0, 35.0))
        if bd is not None:
            bds.append(bd)
        gate = m[GATE_METHOD]
        kept += not gate["fallback"]
        times.append(gate["compress_ms"])
        # bare Draco at equal quality: its smallest file at least as good as ours
        ok = [r["bytes"] for r in draco if r[q] >= gate[q] - 1e-9]
        if ok and gate["bytes"] > min(ok):
            larger += 1
        off = m.get(off_method, {})
        rows.append({"object": name, "off_bytes": off.get("bytes"), "off_d1": off.get(q), "gate_bytes": gate["bytes"],
                     "gate_d1": gate[q], "gate_fallback": gate["fallback"], "bd_rate": bd,
                     "draco_bytes_at_30": min((r["bytes"] for r in draco if r[q] >= floor), default=None)})
    offq = [r["off_d1"] for r in rows if r["off_d1"] is not None]
    return {"objects": len(by_obj), "gate_off": {"method": off_method,
                                                  "median_bytes": statistics.median(r["off_bytes"] for r in rows),
                                                  "median_d1_psnr": statistics.median(offq)},
            "gate": {"floor_db": floor, "neural_kept": kept, "larger_than_bare_draco": larger,
                     "median_bytes": statistics.median(r["gate_bytes"] for r in rows),
                     "median_compress_ms": statistics.median(times)},
            "bd_rate_25_35_median": statistics.median(bds) if bds else None, "bd_rate_objects": len(bds),
            "per_object": rows}


def posterior_ceiling(pair: str, files: list[Path]) -> float:
    """Median D1-PSNR of G reconstructing each input from its own VAE posterior: the quality any
    code could reach through this G (the codec's ceiling)."""
    import torch

    from squeeze3d.codec.compressor import get_codec
    from squeeze3d.metrics.pointcloud import d1_psnr

    codec = get_codec(pair)
    g, h = codec.generator, codec.handler
    out = []
    for f in files:
        norm = torch.from_numpy(h.normalise(h.read(f, codec.pair).data)[0])[None]
        out.append(float(d1_psnr(norm, g.decode(g.encode_latents(norm)).cpu())))
    return statistics.median(out)


def off_method(pair: str, model) -> str:
    """The rung ``--min-quality off`` writes (by the codec's own rule), as the evaluation names it."""
    from squeeze3d.codec.compressor import get_codec
    from squeeze3d.codec.evaluate import variant_name
    from squeeze3d.pairs import get_pair

    codec = get_codec(pair, model)
    pts = get_pair(pair).heldout_assets(1)[0].numpy()
    c = codec.compress_asset(pts, min_quality=None, effort=0).container
    return variant_name(c.dtype, c.quant, c.draco_bits, c.d_code if codec.prefixes else 0)


def get_generator_cls(pair: str):
    from squeeze3d.codec.compressor import get_codec

    return type(get_codec(pair).generator)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--pair", default="pointnet_lion")
    ap.add_argument("--model", default=None, help="default: the champion, else the shipped model")
    ap.add_argument("--sources", default="real,corpus", help="real (corpus test split), corpus (procedural test split)")
    ap.add_argument("--limit", type=int, default=117)
    ap.add_argument("--min-quality", type=float, default=30.0)
    ap.add_argument("--efforts", default=None, help="comma list: time vs quality of the refinement instead")
    ap.add_argument("--out", default=".state/bench/codec")
    ap.add_argument("--json", default=".state/bench/codec.json")
    a = ap.parse_args()
    out: dict = {"pair": a.pair, "load_avg_start": os.getloadavg(), "sources": {}}
    method = off_method(a.pair, a.model)
    for src in a.sources.split(","):
        inputs = real_inputs(Path(a.out) / "real_inputs", a.limit) if src == "real" else None
        efforts = [int(e) for e in a.efforts.split(",")] if a.efforts else [None]
        for effort in efforts:
            t0 = time.perf_counter()
            rep = evaluate(pair=a.pair, model=a.model, split="test", input_dir=inputs, limit=a.limit,
                           out_dir=f"{a.out}/{src}{'' if effort is None else f'-e{effort}'}",
                           min_quality=a.min_quality, draco_bits=tuple(range(14, 0, -1)), previews=False,
                           effort=effort)
            s = summarise(rep, a.min_quality, method)
            if inputs is not None and hasattr(get_generator_cls(a.pair), "encode_latents"):
                s["g_posterior_median_d1_psnr"] = posterior_ceiling(a.pair, sorted(inputs.glob("*.npy"))[:a.limit])
            s.update(wall_s=time.perf_counter() - t0, load_avg=os.getloadavg(), model=rep.model_identity,
                     effort=effort, rows=rep.rows, rd_png=str(rep.rd_png), table=str(rep.markdown_path))
            key = src if effort is None else f"{src}-effort{effort}"
            out["sources"][key] = s
            g = s["gate"]
            bd = s["bd_rate_25_35_median"]
            bd_text = "n/a" if bd is None else f"{100 * bd:+.1f} %"
            print(f"{key}: {s['objects']} objects; gate off ({method}): median {s['gate_off']['median_bytes']:.0f} B at "
                  f"{s['gate_off']['median_d1_psnr']:.2f} dB; gate {a.min_quality:g} dB: neural kept on "
                  f"{g['neural_kept']}/{s['objects']}, larger than bare Draco: {g['larger_than_bare_draco']}, median "
                  f"{g['median_bytes']:.0f} B; BD-rate 25-35 dB (median per object): "
                  f"{bd_text}; "
                  f"compress {g['median_compress_ms'] / 1e3:.2f} s/object (median); load {os.getloadavg()[0]:.2f}")
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    with open(a.json, "w") as f:
        json.dump(out, f, indent=2, default=float)
    for key, s in out["sources"].items():
        print(f"table ({key}): {s['table']}  (rate-distortion plot: {s['rd_png']})")
    print(f"json: {a.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
