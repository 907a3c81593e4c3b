"""Sweep d_C and λ_gram for a pair with Ray Tune (ASHA), register and promote the best.

    python jobs/sweep.py --pair pointnet_lion --data .state/data/pointnet_lion [--space tuning/pointnet_lion.yaml]
"""

import argparse
import sys
from pathlib import Path

from squeeze3d.config import train_config_for_pair
from squeeze3d.errors import run_main
from squeeze3d.pairs.declared import PAIR_HELP, pair_arg, search_space_path
from squeeze3d.tracking import state_dir, tracking_uri
from squeeze3d.train.data import open_training_data
from squeeze3d.train.ray_train import connect_ray
from squeeze3d.train.sweep import SearchSpace, run_sweep


def build_parser() -> argparse.ArgumentParser:
    """The job's flags (also used by tests/unit/test_infra_manifests.py to check RayJob entrypoints)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pair", required=True, type=pair_arg, help=PAIR_HELP)
    ap.add_argument("--data", required=True, help="dataset URI written by jobs/build_dataset.py (path or s3://)")
    ap.add_argument("--space", default=None, help="search space YAML (default: tuning/<pair>.yaml, else the pair file's tuning:)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="base config override")
    ap.add_argument("--workers", type=int, default=1, help="Ray Train workers per trial")
    ap.add_argument("--use-gpu", action="store_true")
    ap.add_argument("--storage", default=None, help="Ray storage for trial checkpoints (path or s3://)")
    ap.add_argument("--out", default=None, help="where the d_C plot goes (default: <state dir>/sweeps)")
    ap.add_argument("--no-register", action="store_true")
    return ap


def main() -> int:
    a = build_parser().parse_args()
    space = SearchSpace.from_yaml(a.space or search_space_path(a.pair, Path(__file__).resolve().parents[1] / "tuning"))
    cfg = train_config_for_pair(a.pair, extra=space.base, sets=a.set)
    connect_ray()
    datasets, info = open_training_data(a.data, a.pair)
    out = run_sweep(cfg, space, datasets, info, workers=a.workers, use_gpu=a.use_gpu, storage_path=a.storage,
                    out_dir=a.out or state_dir() / "sweeps", register=not a.no_register)
    best = out.best or {}
    print(f"best: d_code={best.get('d_code')} lambda_gram={best.get('lambda_gram')}  model version "
          f"{out.model_version or '-'} ({out.reason})  plot {out.plot}  sweep run {out.parent_run_id}  ({out.wall_s:.0f}s)")
    print(f"outputs: trials {a.storage or state_dir() / 'ray_results'}  tracking {tracking_uri()}")
    return 0 if out.best else 1


if __name__ == "__main__":
    sys.exit(run_main(main, "sweep"))
