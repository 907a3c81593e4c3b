"""`make demo STACK=local`: the whole loop through the local stack (`make stack-up` first).

    python jobs/demo_stack.py [--pair pointnet_lion] [--samples 160] [--epochs 3] [--sweep-trials 2]

ray job submit build_dataset → ray job submit train → make sweep → registry lookup → compress and
decompress a held-out shape; data, checkpoints and models on the stack's S3, tracking on its server.
"""

import argparse
import sys
from pathlib import Path

from squeeze3d import stack
from squeeze3d.errors import run_main
from squeeze3d.stack_demo import StackDemoConfig, run_stack_demo


def main() -> int:
    d = StackDemoConfig()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=str(stack.DEFAULT_DIR), help="the stack's folder")
    ap.add_argument("--pair", default=d.pair)
    ap.add_argument("--samples", type=int, default=d.samples, help="rows the build job writes")
    ap.add_argument("--shard-rows", type=int, default=d.shard_rows)
    ap.add_argument("--epochs", type=int, default=d.epochs, help="train job epochs")
    ap.add_argument("--sweep-trials", type=int, default=d.sweep_trials)
    ap.add_argument("--sweep-epochs", type=int, default=d.sweep_epochs)
    ap.add_argument("--heldout", type=int, default=d.heldout, help="held-out assets for test metrics")
    a = ap.parse_args()
    cfg = StackDemoConfig(pair=a.pair, samples=a.samples, shard_rows=a.shard_rows, epochs=a.epochs,
                          sweep_trials=a.sweep_trials, sweep_epochs=a.sweep_epochs, heldout=a.heldout)
    run_stack_demo(Path(a.dir), cfg)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "demo_stack"))
