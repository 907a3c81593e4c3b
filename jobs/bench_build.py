"""Measure the dataset builder: efficiency vs a bare in-process loop, and 1 vs 2 worker nodes.

    python jobs/bench_build.py --pair debug --n 20000                 # both measurements
    python jobs/bench_build.py --pair pointnet_lion --n 128 --only efficiency --shard-rows 32

Definitions are in squeeze3d/synth/bench.py. Results print as JSON (and go to --json if given).
Run it on an otherwise idle machine: both numbers are ratios of wall-clock times.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pair", default="debug")
    p.add_argument("--n", type=int, default=20000, help="samples per run")
    p.add_argument("--batch-size", type=int, default=None, help="rows per G and E call (default: the "
                   "pair's builder defaults, squeeze3d/data/datasets/<pair>.yaml)")
    p.add_argument("--shard-rows", type=int, default=None)
    p.add_argument("--only", choices=("efficiency", "nodes"), default=None)
    p.add_argument("--json", default=None, help="also write the results here")
    a = p.parse_args(argv)

    from squeeze3d.synth import bench

    load = os.getloadavg()
    res = {"load_avg_before": load}
    if a.only in (None, "efficiency"):
        res["efficiency"] = bench.efficiency(a.pair, a.n, a.batch_size, a.shard_rows)
        print(f"efficiency ({a.pair}, N={a.n}): {res['efficiency']['efficiency']:.2f} "
              f"(steady state {res['efficiency']['efficiency_steady']:.2f})", flush=True)
    if a.only in (None, "nodes"):
        res["nodes"] = bench.node_scaling(a.pair, a.n, a.batch_size, a.shard_rows)
        print(f"2 nodes / 1 node rows/s ({a.pair}, N={a.n}): {res['nodes']['speedup']:.2f} "
              f"(steady state {res['nodes']['speedup_steady']:.2f})", flush=True)
    res["load_avg_after"] = os.getloadavg()
    text = json.dumps(res, indent=2, default=str)
    print(text)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
