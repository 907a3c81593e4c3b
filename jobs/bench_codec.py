"""The codec against Draco on held-out corpus test objects: the rate-distortion table and plot, the
BD-rate of the neural rate ladder against Draco, the gate's fallback count, and the --target-bytes
choice. Numbers for the README (codec issue, item 8).

    python jobs/bench_codec.py --limit 96 --min-quality 27 --target-bytes 250 --json .state/bench/codec.json
"""

import argparse
import json
import os

from squeeze3d.codec.evaluate import GATE_METHOD, evaluate
from squeeze3d.metrics.bdrate import bd_rate


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pair", default="pointnet_lion")
    ap.add_argument("--model", default=None, help="default: the champion, else the shipped model")
    ap.add_argument("--limit", type=int, default=96)
    ap.add_argument("--min-quality", type=float, default=27.0)
    ap.add_argument("--target-bytes", type=int, default=250)
    ap.add_argument("--out", default=".state/bench/codec")
    ap.add_argument("--json", default=".state/bench/codec.json")
    a = ap.parse_args()
    rep = evaluate(pair=a.pair, model=a.model, limit=a.limit, out_dir=a.out, min_quality=a.min_quality,
                   draco_bits=tuple(range(14, 0, -1)), target_bytes=a.target_bytes)
    print(rep.markdown)
    q = rep.handler.primary_metric
    draco = [r for r in rep.rows if r["method"].startswith("draco-")]
    ladder = [r for r in rep.rows if r["method"].startswith("sq3d-fixed")]
    bd = bd_rate([r["bytes"] for r in draco], [r[q] for r in draco], [r["bytes"] for r in ladder],
                 [r[q] for r in ladder]) if ladder else None
    gate = next((r for r in rep.rows if r["method"] == GATE_METHOD), None)
    out = {"pair": a.pair, "objects": gate["objects"] if gate else None, "model": rep.model_identity,
           "load_avg_1m": os.getloadavg()[0], "bd_rate_vs_draco": bd,
           "gate": gate, "fallbacks": gate["fallbacks"] if gate else None, "rows": rep.rows, "rd_png": str(rep.rd_png)}
    print(f"BD-rate of the neural ladder vs Draco (piecewise-linear, overlapping {q} range): "
          f"{'n/a (no overlap)' if bd is None else f'{100 * bd:+.1f} %'}")
    print(f"gate at {a.min_quality} dB: {gate['fallbacks'] if gate else '?'} of {gate['objects'] if gate else '?'} objects fell back")
    with open(a.json, "w") as f:
        json.dump(out, f, indent=2, default=float)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
