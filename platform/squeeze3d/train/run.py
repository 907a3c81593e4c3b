"""Driver side of one training run: MLflow run → TorchTrainer fit → register in the model registry."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from squeeze3d.config import TrainConfig, to_dict
from squeeze3d.redact import mask_credentials
from squeeze3d.train.ray_train import ARTIFACT_PATH, TrainOutcome, build_trainer, storage_uri


def registry_tags(cfg: TrainConfig, metrics: dict[str, float], data_info: dict[str, Any],
                  weights_hash: str | None) -> dict[str, str]:
    from squeeze3d.mapping import code_shape
    from squeeze3d.mapping.common import numel
    from squeeze3d.pairs import get_pair

    # d_C = numbers in the code, whatever the architecture (unet3d: code_channels × code grid)
    shape = code_shape(cfg.mapping, get_pair(cfg.pair).z_e_shape)
    tags = {"pair": cfg.pair, "arch": cfg.mapping.arch, "d_code": str(numel(shape)),
            "code_shape": "x".join(map(str, shape)),
            "lambda_gram": repr(cfg.loss.lambda_gram), "gram_variant": cfg.loss.gram_variant,
            "encoder_hash": str(data_info.get("encoder_hash", "")),
            "generator_hash": str(data_info.get("generator_hash", "")),
            "dataset_manifest_hash": str(data_info.get("manifest_hash", "")),
            "dataset_uri": mask_credentials(str(data_info.get("uri", ""))), "weights_hash": weights_hash or ""}
    for k, v in metrics.items():
        if k.startswith(("val_", "test_")):
            tags[k] = f"{v:.6g}"
    return tags


def run_training(cfg: TrainConfig, datasets: dict[str, Any], data_info: dict[str, Any], *, workers: int = 1,
                 use_gpu: bool = False, storage_path: str | None = None, max_failures: int = 1,
                 register: bool = True, heldout_rows: int = 64, endtask_rows: int = 64,
                 parent_run_id: str | None = None, run_name: str | None = None, log=print) -> TrainOutcome:
    """Fit F_E/F_D with Ray Train on ``datasets`` ({"train", "val"} Ray datasets of z_e/z_g rows),
    track it in MLflow and (optionally) register + promote it."""
    import mlflow

    from squeeze3d import registry
    from squeeze3d.mapping.checkpoint import read_config
    from squeeze3d.pairs import get_pair
    from squeeze3d.tracking import configure, experiment_id, flat_params

    pair = get_pair(cfg.pair)
    if cfg.init_from:  # checked here, not as a traceback in a worker; workers run in their own
        read_config(Path(cfg.init_from))  # directory, so they get an absolute path
        cfg = replace(cfg, init_from=str(Path(cfg.init_from).resolve()))
    uri = configure()
    exp = experiment_id(pair.model_name)
    tags = {"pair": cfg.pair, "dataset_uri": mask_credentials(str(data_info.get("uri", ""))),
            "dataset_manifest_hash": str(data_info.get("manifest_hash", ""))}
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    t0 = time.perf_counter()
    with mlflow.start_run(experiment_id=exp, run_name=run_name, tags=tags) as run:
        mlflow.log_params(flat_params(to_dict(cfg)))
        mlflow.log_text(json.dumps(to_dict(cfg), indent=2), "train_config.json")
        trainer = build_trainer(cfg, datasets, workers=workers, use_gpu=use_gpu, storage_path=storage_path,
                                max_failures=max_failures, name=run_name,
                                loop_config={"mlflow_run_id": run.info.run_id, "tracking_uri": uri,
                                             "heldout_rows": heldout_rows, "endtask_rows": endtask_rows,
                                             "meta": {"pair": cfg.pair, **data_info}})
        result = trainer.fit()
        metrics = dict(result.metrics or {})
        run_id = run.info.run_id
    out = TrainOutcome(metrics=metrics, checkpoint_dir=None, mlflow_run_id=run_id,
                       wall_s=time.perf_counter() - t0)
    if result.checkpoint is not None:
        with result.checkpoint.as_directory() as d:
            out.extra["weights_hash"] = read_config(Path(d) / ARTIFACT_PATH)["weights_hash"]
            out.checkpoint_dir = Path(result.checkpoint.path)
            out.extra["checkpoint_uri"] = storage_uri(result.checkpoint.path, result.checkpoint.filesystem)
    log(f"trained {cfg.pair}: epochs={int(metrics.get('epoch', -1)) + 1}  "
        + "  ".join(f"{k}={v:.4g}" for k, v in metrics.items() if k.startswith(("val_", "test_", "d_eff"))))
    log(f"mlflow run: {run_id}  ({uri})")
    if register:
        objective = metrics.get(pair.objective_metric)
        if objective is None:
            raise RuntimeError(f"training did not report the pair's objective {pair.objective_metric!r}")
        info, promoted, reason = registry.register(
            cfg.pair, run_id, ARTIFACT_PATH, registry_tags(cfg, metrics, data_info, out.extra.get("weights_hash")),
            objective)
        out.model_version, out.promoted, out.reason = info.version, promoted, reason
        log(f"registered models:/{info.name}/{info.version}; champion {'→ this version' if promoted else 'unchanged'}"
            f" ({reason})")
    return out
