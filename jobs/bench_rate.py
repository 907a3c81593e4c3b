"""Training for rate, measured: one fit per λ_rate on the same synthetic pairs, held-out codes coded
with a prior fitted on each model's training codes, and decoded to measure quality.

    python jobs/bench_rate.py [--pair pointnet_lion] [--lambdas 0,1e-3,1e-2] [--n 600] [--test 64] [--epochs 10]

The config is the demo's (the pair's champion recipe at demo size: d_C 128, AdamW on CPU). Prints one
row per λ: latent MSE, the training histogram's bits, prior-coded bytes and D1-PSNR at 8 and 4 bits.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--pair", default="pointnet_lion")
    ap.add_argument("--lambdas", default="0,1e-3,1e-2", help="comma list of loss.lambda_rate values")
    ap.add_argument("--n", type=int, default=600, help="training pairs")
    ap.add_argument("--test", type=int, default=64, help="held-out pairs (the next noise seeds)")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--d-code", type=int, default=128)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    ap.add_argument("--json", default=None, help="also write the rows here")
    a = ap.parse_args()
    from squeeze3d.config import parse_sets, resolve, to_dict
    from squeeze3d.demo import demo_train_config
    from squeeze3d.train.rate_bench import rate_curve

    cfg = demo_train_config(a.pair, epochs=a.epochs, d_code=a.d_code, recipes_dir=ROOT / "jobs" / "recipes")
    cfg = resolve([to_dict(cfg), parse_sets(a.set)])
    load0 = os.getloadavg()
    rows = rate_curve(cfg, [float(v) for v in a.lambdas.split(",")], a.n, a.test)
    print(f"load average {load0[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({"pair": a.pair, "n": a.n, "test": a.test, "epochs": a.epochs,
                                            "load_avg": [load0, os.getloadavg()], "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    from squeeze3d.errors import run_main

    sys.exit(run_main(main, "bench_rate"))
