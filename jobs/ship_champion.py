"""Reproduce a pair's shipped champion from its recipe: build the pairs (Ray Data), fit (Ray Train),
register (MLflow), export f16 weights into the package.

    python jobs/ship_champion.py --recipe jobs/recipes/pointnet_lion_champion.yaml
    python jobs/ship_champion.py --register-shipped pointnet_lion   # put the shipped model in the registry
    python jobs/ship_champion.py --recipe jobs/recipes/pointnet_lion_rate.yaml \
        --set loss.lambda_rate=1e-4 --export-dir .state/models/pointnet_lion_rate1e-4   # one more lambda
"""

import argparse
import sys

from squeeze3d.errors import run_main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--recipe", help="recipe YAML (jobs/recipes/)")
    g.add_argument("--register-shipped", metavar="PAIR", help="register the pair's shipped model")
    ap.add_argument("--workers", type=int, default=1, help="Ray Train workers")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="training-config override on top of the recipe's (repeatable), e.g. loss.lambda_rate=1e-4")
    ap.add_argument("--export-dir", default=None, help="where the weights go (default: the recipe's export.dir)")
    a = ap.parse_args()
    from squeeze3d.train import champion

    if a.recipe:
        s = champion.ship(a.recipe, workers=a.workers, sets=a.set, export_dir=a.export_dir)
        print({k: s[k] for k in ("pair", "rows", "build_s", "train_s", "metrics")})
    else:
        champion.register_shipped(a.register_shipped)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "ship_champion"))
