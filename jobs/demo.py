"""`make demo`: the main job on the embedded default pair, on this machine.

    python jobs/demo.py                      # build → Ray Train + MLflow → champion → codec vs Draco
    python jobs/demo.py --core --pair debug  # the core method in one process (no Ray, no MLflow)
"""

import argparse
import sys
import time
from pathlib import Path

from squeeze3d.codec import DEFAULT_PAIR
from squeeze3d.console import StageConsole
from squeeze3d.demo import run_core_demo, run_platform_demo
from squeeze3d.errors import run_main
from squeeze3d.tracking import state_dir

RECIPES = Path(__file__).resolve().parent / "recipes"  # the champion recipes beside this script


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pair", default=DEFAULT_PAIR)
    ap.add_argument("--core", action="store_true", help="in-process core method only")
    ap.add_argument("--samples", type=int, default=600, help="latent pairs to build")
    ap.add_argument("--epochs", type=int, default=None, help="training epochs")
    ap.add_argument("--d-code", type=int, default=128, help="code size d_C for the demo model")
    ap.add_argument("--eval", type=int, default=24, help="held-out shapes to compress")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=".state/demo")
    ap.add_argument("--verbose", action="store_true", help="show the libraries' output (Ray, MLflow) instead of "
                    "sending it to .state/logs/")
    a = ap.parse_args()
    if a.core:
        run_core_demo(a.pair, epochs=a.epochs, device=a.device, out_dir=a.out)
        return 0
    log_path = state_dir() / "logs" / f"demo-{a.pair}-{time.strftime('%Y%m%d-%H%M%S')}.log"
    console = StageConsole(log_path, total_stages=4, verbose=a.verbose)
    console.print(f"squeeze3d demo: {a.pair} on this machine (the libraries' logs: {log_path})")
    def run() -> int:
        run_platform_demo(a.pair, num_samples=a.samples, epochs=20 if a.epochs is None else a.epochs,
                          d_code=a.d_code, eval_limit=a.eval, out_dir=a.out, console=console, recipes_dir=RECIPES)
        return 0  # the report is printed stage by stage; the exit status is success

    try:  # errors go to the console (and its log), not around it
        return run_main(run, "demo", report=console.print)
    finally:
        console.close()


if __name__ == "__main__":
    sys.exit(run_main(main, "demo"))
