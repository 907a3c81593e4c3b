"""Ray Tune sweep over d_C and λ_gram (Ray 2.60's Tune-over-Train pattern).

Each trial is a Tune *function* that builds and fits a ``TorchTrainer`` and forwards the workers'
reports to Tune with ``TuneReportCallback``; ASHA stops weak trials early on the validation end-task
metric. Every trial is an MLflow run nested under the sweep's run. When all trials are done, the best
(by the pair's objective) is registered and promoted if it beats the champion.

Needs the Ray dashboard (state API) on the cluster: when ASHA stops a trial, Tune kills the trial
actor and with it the Train controller; Ray Train's PlacementGroupCleaner then frees the workers'
resources, and it finds dead controllers through the state API.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from squeeze3d.config import ConfigError, TrainConfig, resolve, to_dict


@dataclass
class SearchSpace:
    d_code: list[int]
    lambda_gram: tuple[float, float]
    num_samples: int
    max_concurrent: int
    grace_period: int
    reduction_factor: int
    base: dict[str, Any]
    loss: dict[str, tuple[str, list[float]]] = field(default_factory=dict)
    """Extra axes over loss weights: ``space.loss.<field>: {choice: [...]} | {loguniform: [lo, hi]}``
    (e.g. ``lambda_output``, ``lambda_set``, ``lambda_gen``: the set-aware objective's weights)."""
    d_code_grid: bool = False
    """``d_code: {grid: [...]}`` tries every value (``num_samples`` times each, λ_gram sampled each
    time) — the d_C ablation; ``{choice: [...]}`` samples them."""
    mapping: dict[str, tuple[str, list[Any]]] = field(default_factory=dict)
    """Axes over the mapping's code size where d_code does not set it (unet3d):
    ``space.mapping.<field>: {choice: [...]} | {grid: [...]}``, e.g. ``code_channels`` and
    ``unet_channels`` (its length sets the bottleneck resolution: z grid / 2^levels). With these,
    ``space.d_code`` may be left out; the table's d_code is then the number of code values."""

    @classmethod
    def from_yaml(cls, path: str | Path) -> SearchSpace:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"search space {p} does not exist")
        doc = yaml.safe_load(p.read_text()) or {}
        from squeeze3d.config import LossConfig, MappingConfig

        mknown = {f.name for f in fields(MappingConfig)} - {"arch", "d_code"}
        mapping: dict[str, tuple[str, list[Any]]] = {}
        space = doc.get("space") if isinstance(doc.get("space"), dict) else {}
        for key, spec in (space.get("mapping") or {}).items():
            kind = next(iter(spec), None) if isinstance(spec, dict) and len(spec) == 1 else None
            if key not in mknown or kind not in ("choice", "grid") or not isinstance(spec[kind], list) or not spec[kind]:
                raise ConfigError(f"{p}: space.mapping.{key} must be a MappingConfig field ({', '.join(sorted(mknown))}) "
                                  "with {choice: [...]} or {grid: [...]}")
            mapping[key] = (kind, list(spec[kind]))
        try:
            lo, hi = (float(x) for x in space["lambda_gram"]["loguniform"])
            if "d_code" in space or not mapping:
                grid = "grid" in space["d_code"]
                d_code = [int(x) for x in space["d_code"]["grid" if grid else "choice"]]
            else:
                grid, d_code = False, []
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"{p}: expected space.d_code.choice or space.d_code.grid (list of ints; optional with "
                              f"space.mapping axes) and space.lambda_gram.loguniform ([low, high]); problem: {e!r}") from e
        if not (0 < lo < hi) or (not mapping and not d_code) or (d_code and min(d_code) < 1):
            raise ConfigError(f"{p}: need 0 < lambda_gram low < high and positive d_code choices")
        loss: dict[str, tuple[str, list[float]]] = {}

        known = {f.name for f in fields(LossConfig)}
        for key, spec in (space.get("loss") or {}).items():
            kind = next(iter(spec), None) if isinstance(spec, dict) and len(spec) == 1 else None
            if key not in known or kind not in ("choice", "loguniform"):
                raise ConfigError(f"{p}: space.loss.{key} must be a LossConfig field ({', '.join(sorted(known))}) "
                                  "with {choice: [...]} or {loguniform: [low, high]}")
            loss[key] = (kind, [float(x) for x in spec[kind]])
        tune_doc = doc.get("tune", {})
        return cls(d_code, (lo, hi), int(tune_doc.get("num_samples", 4)), int(tune_doc.get("max_concurrent", 1)),
                   int(tune_doc.get("grace_period", 2)), int(tune_doc.get("reduction_factor", 2)),
                   doc.get("base", {}), loss, grid, mapping)

    def param_space(self) -> dict[str, Any]:
        """Ray Tune's ``param_space`` of these axes."""
        import ray.tune

        out: dict[str, Any] = {"lambda_gram": ray.tune.loguniform(*self.lambda_gram)}
        if self.d_code:
            out["d_code"] = (ray.tune.grid_search if self.d_code_grid else ray.tune.choice)(self.d_code)
        out.update({f"loss.{k}": (ray.tune.choice(v) if kind == "choice" else ray.tune.loguniform(*v))
                    for k, (kind, v) in self.loss.items()})
        out.update({f"mapping.{k}": (ray.tune.choice(v) if kind == "choice" else ray.tune.grid_search(v))
                    for k, (kind, v) in self.mapping.items()})
        return out


def trial_overrides(config: dict[str, Any]) -> dict[str, Any]:
    """A trial's sampled values as training-config overrides (d_C, λ_gram, ``loss.*`` and
    ``mapping.*`` axes)."""
    loss = {"lambda_gram": float(config["lambda_gram"])}
    loss.update({k.split(".", 1)[1]: float(v) for k, v in config.items() if k.startswith("loss.")})
    mapping = {k.split(".", 1)[1]: v for k, v in config.items() if k.startswith("mapping.")}
    if config.get("d_code") is not None:
        mapping["d_code"] = int(config["d_code"])
    return {"mapping": mapping, "loss": loss}


def code_values(cfg: TrainConfig) -> int:
    """d_C as the registry tags it: the number of values in one code, whatever the architecture."""
    from squeeze3d.mapping import code_shape
    from squeeze3d.mapping.common import numel
    from squeeze3d.pairs import get_pair

    return int(numel(code_shape(cfg.mapping, get_pair(cfg.pair).z_e_shape)))


def _trial(config: dict[str, Any], datasets=None, data_info=None, base_cfg=None, settings=None) -> None:
    """One Tune trial: a TorchTrainer fit with this trial's d_C and λ_gram."""
    import mlflow
    import ray.tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from squeeze3d.tracking import configure, experiment_id, flat_params
    from squeeze3d.train.ray_train import build_trainer

    cfg = resolve([base_cfg, trial_overrides(config)])
    uri = configure(settings["tracking_uri"])
    exp = experiment_id(f"squeeze3d-{cfg.pair}", uri)
    trial_name = ray.tune.get_context().get_trial_name()
    with mlflow.start_run(experiment_id=exp, run_name=trial_name,
                          tags={"mlflow.parentRunId": settings["parent_run_id"], "pair": cfg.pair,
                                "sweep_trial": ray.tune.get_context().get_trial_id()}) as run:
        mlflow.log_params(flat_params(to_dict(cfg)))
        trainer = build_trainer(cfg, datasets, workers=settings["workers"], use_gpu=settings["use_gpu"],
                                storage_path=settings["storage_path"], name=trial_name, max_failures=0,
                                loop_config={"mlflow_run_id": run.info.run_id, "tracking_uri": uri,
                                             "heldout_rows": settings["heldout_rows"],
                                             "endtask_rows": settings["endtask_rows"],
                                             "meta": {"pair": cfg.pair, **data_info}},
                                callbacks=[TuneReportCallback()])
        trainer.fit()  # metrics reach Tune through TuneReportCallback, epoch by epoch


@dataclass
class SweepOutcome:
    table: list[dict[str, Any]]
    best: dict[str, Any] | None
    model_version: str | None
    promoted: bool
    reason: str
    parent_run_id: str
    plot: Path | None
    wall_s: float


def run_sweep(base_cfg: TrainConfig, space: SearchSpace, datasets: dict[str, Any], data_info: dict[str, Any], *,
              workers: int = 1, use_gpu: bool = False, storage_path: str | None = None, out_dir: str | Path = ".",
              heldout_rows: int = 64, endtask_rows: int = 32, register: bool = True, log=print) -> SweepOutcome:
    import mlflow
    import ray.tune
    from ray.tune.schedulers import ASHAScheduler

    from squeeze3d import registry
    from squeeze3d.pairs import get_pair
    from squeeze3d.tracking import configure, experiment_id, state_dir
    from squeeze3d.train.ray_train import ray_storage
    from squeeze3d.train.run import registry_tags

    pair = get_pair(base_cfg.pair)
    uri = configure()
    exp = experiment_id(pair.model_name)
    storage = storage_path or str(state_dir() / "ray_results")
    storage_root, storage_fs = ray_storage(storage)  # s3:// → explicit endpoint/credentials
    t0 = time.perf_counter()
    asha_metric = f"val_{pair.objective}"
    with mlflow.start_run(experiment_id=exp, run_name=f"sweep-{pair.name}-{int(time.time())}",
                          tags={"pair": pair.name, "kind": "sweep"}) as parent:
        mlflow.log_params({"space.d_code": str(space.d_code), "space.lambda_gram": str(space.lambda_gram),
                           "space.mapping": str(space.mapping),
                           "num_samples": space.num_samples, "epochs": base_cfg.optim.epochs})
        settings = {"parent_run_id": parent.info.run_id, "tracking_uri": uri, "workers": workers, "use_gpu": use_gpu,
                    "storage_path": storage, "heldout_rows": heldout_rows, "endtask_rows": endtask_rows}
        # Read the (small) latent tables once, before any trial holds CPUs: each trial's function
        # (0.01 CPU) plus its Train worker (1 CPU) leave 0.99 of 2 CPUs, too little for a 1-CPU
        # Parquet read task, so a lazily-read dataset would wait forever on a 2-CPU cluster.
        datasets = {k: v.materialize() for k, v in datasets.items()}
        trainable = ray.tune.with_parameters(_trial, datasets=datasets, data_info=data_info,
                                             base_cfg=to_dict(base_cfg), settings=settings)
        # the trial function only drives a TorchTrainer: it needs (almost) no CPU of its own, so the
        # training worker and Ray Data get the cores (Tune refuses an empty request, hence 0.01)
        trainable = ray.tune.with_resources(trainable, {"cpu": 0.01})
        tuner = ray.tune.Tuner(
            trainable,
            param_space=space.param_space(),
            tune_config=ray.tune.TuneConfig(
                metric=asha_metric, mode=pair.objective_mode, num_samples=space.num_samples,
                max_concurrent_trials=space.max_concurrent,
                # max_t one past the last epoch: trials that run to the end return by themselves
                # instead of being stopped by Tune while their TorchTrainer shuts down
                scheduler=ASHAScheduler(max_t=base_cfg.optim.epochs + 1, grace_period=space.grace_period,
                                        reduction_factor=space.reduction_factor, time_attr="training_iteration")),
            run_config=ray.tune.RunConfig(name=f"sweep-{pair.name}-{int(time.time())}",
                                          storage_path=storage_root, storage_filesystem=storage_fs),
        )
        grid = tuner.fit()
        table = []
        for r in grid:
            m = r.metrics or {}
            table.append({"trial": m.get("trial_id", "?"),
                          "d_code": code_values(resolve([to_dict(base_cfg), trial_overrides(r.config)])),
                          "lambda_gram": r.config.get("lambda_gram"), "epochs": int(m.get("epoch", -1)) + 1,
                          **{k: v for k, v in r.config.items() if k.startswith(("loss.", "mapping."))},
                          **{k: m.get(k) for k in (asha_metric, pair.objective_metric, "val_mse", "val_rate", "d_eff", "kappa")},
                          "status": "error" if r.error else ("stopped" if int(m.get("epoch", -1)) + 1 <
                                                             base_cfg.optim.epochs else "done"),
                          "_checkpoint": r.checkpoint})
        done = [t for t in table if t["status"] == "done" and t.get(pair.objective_metric) is not None
                and math.isfinite(t[pair.objective_metric])]
        best = None
        if done:
            best = max(done, key=lambda t: t[pair.objective_metric] * (1 if pair.objective_mode == "max" else -1))
        plot = _plot_objective(table, pair.objective_metric, Path(out_dir) / f"sweep_{pair.name}_dcode.png")
        if plot:
            mlflow.log_artifact(str(plot))
        version, promoted, reason = None, False, "no finished trial"
        if best is not None:
            mlflow.log_metric(f"best_{pair.objective_metric}", best[pair.objective_metric])
            mlflow.log_params({"best_d_code": best["d_code"], "best_lambda_gram": best["lambda_gram"]})
            if register:
                trial_run = _trial_run_id(parent.info.run_id, best["trial"])
                cfg = resolve([to_dict(base_cfg), trial_overrides(best)])
                info, promoted, reason = registry.register(
                    pair.name, trial_run, "mapping",
                    registry_tags(cfg, {k: v for k, v in best.items() if isinstance(v, float)}, data_info, None)
                    | {"sweep_run_id": parent.info.run_id}, best[pair.objective_metric])
                version = info.version
    outcome = SweepOutcome(table=[{k: v for k, v in t.items() if not k.startswith("_")} for t in table], best=best
                           and {k: v for k, v in best.items() if not k.startswith("_")}, model_version=version,
                           promoted=promoted, reason=reason, parent_run_id=parent.info.run_id, plot=plot,
                           wall_s=time.perf_counter() - t0)
    log(format_table(outcome.table, [asha_metric, pair.objective_metric]))
    return outcome


def _trial_run_id(parent_run_id: str, trial_id: str) -> str:
    from mlflow import MlflowClient

    from squeeze3d.tracking import tracking_uri

    client = MlflowClient(tracking_uri=tracking_uri())
    parent = client.get_run(parent_run_id)
    runs = client.search_runs([parent.info.experiment_id],
                              filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}' AND "
                                            f"tags.sweep_trial = '{trial_id}'")
    if not runs:
        raise RuntimeError(f"no MLflow run found for sweep trial {trial_id}")
    return runs[0].info.run_id


def format_table(rows: list[dict[str, Any]], metrics: list[str]) -> str:
    axes = sorted({k for r in rows for k in r if k.startswith(("loss.", "mapping."))})
    # the code's bits per trial when a trial trained for rate (loss.lambda_rate): quality against bytes
    rate = ["val_rate"] if any(r.get("val_rate") is not None for r in rows) else []
    cols = ["trial", "d_code", "lambda_gram", *axes, "epochs", *dict.fromkeys(metrics), "val_mse", *rate, "d_eff",
            "status"]

    def cell(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    rows_s = [[cell(r.get(c)) for c in cols] for r in rows]
    w = [max(len(c), *(len(r[i]) for r in rows_s)) if rows_s else len(c) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w[i]) for i, c in enumerate(cols))]
    lines += ["  ".join(v.ljust(w[i]) for i, v in enumerate(r)) for r in rows_s]
    return "\n".join(lines)


def _plot_objective(rows: list[dict[str, Any]], metric: str, path: Path) -> Path | None:
    """The objective against d_C (the paper's Table 9 ablation), one point per finished trial."""
    pts = [(r["d_code"], r.get(metric)) for r in rows if isinstance(r.get(metric), float)]
    if not pts:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.scatter([p[0] for p in pts], [p[1] for p in pts])
    best_by_d: dict[int, float] = {}
    for d, v in pts:
        best_by_d[d] = max(best_by_d.get(d, -math.inf), v)
    ds = sorted(best_by_d)
    ax.plot(ds, [best_by_d[d] for d in ds], "-", alpha=0.6)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("d_C (code size)")
    ax.set_ylabel(metric)
    ax.set_title("objective vs code size")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
