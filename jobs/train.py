"""Fit the mapping networks of a pair with Ray Train, track in MLflow, register the result.

    python jobs/train.py --pair pointnet_lion --data .state/data/pointnet_lion [--set optim.epochs=50]
    ray job submit --working-dir . -- python jobs/train.py --pair pointnet_lion --data s3://bucket/pairs
"""

import argparse
import sys

from squeeze3d.config import train_config_for_pair
from squeeze3d.errors import UserError, run_main
from squeeze3d.pairs.declared import PAIR_HELP, pair_arg
from squeeze3d.train.data import open_training_data
from squeeze3d.train.ray_train import connect_ray
from squeeze3d.train.run import run_training


def build_parser() -> argparse.ArgumentParser:
    """The job's flags (also used by tests/unit/test_infra_manifests.py to check RayJob entrypoints)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pair", required=True, type=pair_arg, help=PAIR_HELP)
    ap.add_argument("--data", required=True, help="dataset URI written by jobs/build_dataset.py (path or s3://)")
    ap.add_argument("--config", default=None, help="YAML with training-config overrides")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    ap.add_argument("--workers", type=int, default=1, help="Ray Train workers (0: run in the driver process)")
    ap.add_argument("--use-gpu", action="store_true", help="one GPU per worker")
    ap.add_argument("--storage", default=None, help="Ray Train checkpoint storage (path or s3://)")
    ap.add_argument("--max-failures", type=int, default=1, help="worker failures to recover from")
    ap.add_argument("--heldout", type=int, default=64, help="held-out corpus assets for the test metrics")
    ap.add_argument("--no-register", action="store_true", help="track in MLflow but do not register")
    return ap


def main() -> int:
    a = build_parser().parse_args()
    cfg = train_config_for_pair(a.pair, a.config, a.set)
    if a.workers < 0:
        raise UserError("--workers must be >= 0")
    connect_ray()
    datasets, info = open_training_data(a.data, a.pair)
    out = run_training(cfg, datasets, info, workers=a.workers, use_gpu=a.use_gpu, storage_path=a.storage,
                       max_failures=a.max_failures, register=not a.no_register, heldout_rows=a.heldout)
    print(f"outputs: checkpoint {out.extra.get('checkpoint_uri', out.checkpoint_dir)}  mlflow run {out.mlflow_run_id}  "
          f"model version {out.model_version or '-'}  ({out.wall_s:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "train"))
