"""The shipped champion: a recipe file → Ray Data build → Ray Train fit → registry → an f16 copy
inside the package (so a fresh clone compresses with no training), and the way back: registering
the shipped copy in a registry that has no champion yet (``make demo`` does it).

The recipe (``jobs/recipes/<pair>_champion.yaml``) holds ``pair``, ``build`` (``build_dataset``
arguments), ``train`` (training-config overrides) and ``export`` (``dir``, ``fp16``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import yaml

from squeeze3d.errors import UserError


def load_recipe(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"recipe {p}: no such file")
    doc = yaml.safe_load(p.read_text()) or {}
    missing = [k for k in ("pair", "build", "train", "export") if k not in doc]
    if missing:
        raise UserError(f"recipe {p}: missing section(s) {', '.join(missing)}")
    return doc


def ship(recipe_path: str | Path, *, workers: int = 1, sets: list[str] | None = None,
         export_dir: str | Path | None = None, log=print) -> dict[str, Any]:
    """Run the recipe end to end; returns the summary also written beside the exported weights.
    ``sets``: training-config overrides on top of the recipe's (``loss.lambda_rate=1e-4``);
    ``export_dir``: where the weights go instead of the recipe's ``export.dir``."""
    from squeeze3d import storage
    from squeeze3d.config import train_config_for_pair
    from squeeze3d.mapping.checkpoint import CheckpointError, export_checkpoint, read_config
    from squeeze3d.synth.build import build_dataset
    from squeeze3d.train.data import open_training_data
    from squeeze3d.train.ray_train import ARTIFACT_PATH, connect_ray
    from squeeze3d.train.run import run_training

    r = load_recipe(recipe_path)
    pair, b = r["pair"], dict(r["build"])
    start = (r["train"] or {}).get("init_from")
    if start:  # before minutes of building pairs
        try:
            read_config(Path(start))
        except CheckpointError as e:
            raise UserError(f"recipe {recipe_path}: init_from {e}; run the recipe that exports it first") from None
    t0 = time.perf_counter()
    out_uri = b["output"]
    if not storage.exists(storage.resolve(out_uri).join("manifest.json")):
        log(f"building {b.get('num_samples')} pairs into {out_uri}")
        build_dataset(pair, **b)  # resumes: finished shards are kept
    build_s = time.perf_counter() - t0
    from squeeze3d.tracking import state_dir

    cfg_path = state_dir() / "recipes" / f"{pair}_train.yaml"
    cfg_path.parent.mkdir(parents=True, exist_ok=True)
    cfg_path.write_text(yaml.safe_dump(r["train"]))
    cfg = train_config_for_pair(pair, cfg_path, sets)
    connect_ray()
    datasets, info = open_training_data(out_uri, pair)
    outcome = run_training(cfg, datasets, info, workers=workers, heldout_rows=96, log=log)
    if outcome.checkpoint_dir is None:
        raise RuntimeError("training produced no checkpoint")
    dest = Path(export_dir or r["export"]["dir"])
    export_checkpoint(Path(outcome.checkpoint_dir) / ARTIFACT_PATH, dest, fp16=bool(r["export"].get("fp16", True)),
                      meta={"recipe": str(recipe_path), "dataset_manifest_hash": info.get("manifest_hash", "")})
    summary = {"pair": pair, "recipe": str(recipe_path), "rows": dict(info.get("counts", {})),
               "build_s": round(build_s, 1),
               "train_s": round(outcome.wall_s, 1), "model_version": outcome.model_version,
               "metrics": {k: v for k, v in outcome.metrics.items() if k.startswith(("val_", "test_"))},
               "metrics_note": "measured on the float32 weights during training; the shipped copy is float16"}
    (dest / "ship_summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    log(f"exported {dest} ({sum(f.stat().st_size for f in dest.iterdir()) / 1e6:.1f} MB)")
    return summary


def register_shipped(pair_name: str, log=print):
    """Register the pair's shipped model as a registry version (promoted only if it beats the
    champion on the pair's objective, as every version). Returns (VersionInfo, promoted, reason)."""
    import mlflow

    from squeeze3d import registry
    from squeeze3d.codec.models import shipped_path
    from squeeze3d.mapping.checkpoint import read_config
    from squeeze3d.pairs import get_pair
    from squeeze3d.tracking import configure, experiment_id
    from squeeze3d.train.ray_train import ARTIFACT_PATH
    from squeeze3d.train.run import registry_tags

    pair = get_pair(pair_name)
    path = shipped_path(pair)
    if path is None:
        raise UserError(f"pair {pair_name} ships no model")
    doc = read_config(path)
    summary_file = path / "ship_summary.json"
    metrics = json.loads(summary_file.read_text()).get("metrics", {}) if summary_file.is_file() else {}
    objective = metrics.get(pair.objective_metric)
    if objective is None:
        raise UserError(f"{summary_file}: no {pair.objective_metric} recorded for the shipped model")
    from squeeze3d.config import TrainConfig, from_dict

    cfg = from_dict(TrainConfig, doc["train_config"])
    configure()
    with mlflow.start_run(experiment_id=experiment_id(pair.model_name), run_name="shipped-champion",
                          tags={"pair": pair_name, "source": "shipped"}) as run:
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
        mlflow.log_artifacts(str(path), ARTIFACT_PATH)
        run_id = run.info.run_id
    data_info = {"manifest_hash": doc.get("meta", {}).get("dataset_manifest_hash", "")}
    out = registry.register(pair_name, run_id, ARTIFACT_PATH,
                            registry_tags(cfg, metrics, data_info, doc["weights_hash"]), float(objective))
    log(f"registered the shipped {pair_name} model as models:/{out[0].name}/{out[0].version} ({out[2]})")
    return out
