"""`make demo`: the core method end to end on the embedded default pair.

    python jobs/demo.py [--pair debug] [--epochs N] [--device cpu]
"""

import argparse
import sys

from squeeze3d.demo import run_core_demo
from squeeze3d.pairs import UnknownPairError


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pair", default="debug")
    ap.add_argument("--epochs", type=int, default=None, help="override the pair's default epochs")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=".state/demo", help="where the mapping checkpoint goes")
    a = ap.parse_args()
    try:
        run_core_demo(a.pair, epochs=a.epochs, device=a.device, out_dir=a.out)
    except UnknownPairError as e:
        print(f"demo: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
