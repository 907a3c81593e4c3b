"""Measure Ray Train overhead: plain single-process fit vs TorchTrainer, same epochs and data.

    python jobs/bench_train.py [--pair debug] [--n 2000] [--epochs 20] [--workers 1]
"""

import argparse
import sys

from squeeze3d.train.bench import bench_train_overhead


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pair", default="debug")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--synthetic", action="store_true", help="random latents of the pair's shapes (no G/E)")
    a = ap.parse_args()
    bench_train_overhead(a.pair, a.n, a.epochs, a.workers, a.set, synthetic=a.synthetic)
    return 0


if __name__ == "__main__":
    sys.exit(main())
