"""Codec benchmark: the neural codec (f32/f16/int8, gated) vs Draco 14…3 bits and the resampling floor.

    python jobs/bench_codec.py [--pair pointnet_lion] [--model models:/squeeze3d-P@champion|VERSION|PATH]
                               [--split test | --input DIR] [--limit 48] [--out .state/bench_codec]

Prints the Markdown table (with the dtype comparison) and where the CSV and PNGs went.
"""

import argparse
import sys

from squeeze3d.codec import DEFAULT_MIN_QUALITY_DB, DEFAULT_PAIR
from squeeze3d.errors import UserError


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pair", default=DEFAULT_PAIR)
    ap.add_argument("--model", default=None)
    ap.add_argument("--split", default="test", choices=["train", "val", "test"])
    ap.add_argument("--input", default=None, help="a directory of assets instead of the corpus split")
    ap.add_argument("--limit", type=int, default=48)
    ap.add_argument("--min-quality", type=float, default=DEFAULT_MIN_QUALITY_DB)
    ap.add_argument("--out", default=".state/bench_codec")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-previews", action="store_true")
    a = ap.parse_args()
    from squeeze3d.codec.evaluate import evaluate

    try:
        rep = evaluate(pair=a.pair, model=a.model, split=a.split, input_dir=a.input, limit=a.limit, out_dir=a.out,
                       min_quality=a.min_quality, device=a.device, previews=not a.no_previews,
                       log=lambda m: print(m, file=sys.stderr))
    except UserError as e:
        print(f"bench_codec: error: {e}", file=sys.stderr)
        return 2
    print(rep.markdown)
    print(f"csv: {rep.csv_path}  per-object: {rep.objects_csv_path}\nrate-distortion: {rep.rd_png}\n"
          f"previews: {rep.preview_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
