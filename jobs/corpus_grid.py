"""Write a PNG grid of procedural corpus samples: one row per category.

    python jobs/corpus_grid.py --out corpus_grid.png --per-category 6
"""

from __future__ import annotations

import argparse

from squeeze3d.corpora.plots import write_corpus_grid
from squeeze3d.corpora.points import DEFAULT_SEED


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="corpus_grid.png", help="PNG path to write")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED, help="corpus seed")
    ap.add_argument("--per-category", type=int, default=6, help="objects per category (columns)")
    ap.add_argument("--points", type=int, default=2048, help="surface points per object")
    args = ap.parse_args(argv)
    print(write_corpus_grid(args.out, seed=args.seed, per_category=args.per_category, num_points=args.points))


if __name__ == "__main__":
    main()
