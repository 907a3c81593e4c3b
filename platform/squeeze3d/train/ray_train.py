"""Ray Train wiring: a ``TorchTrainer`` whose workers run the single-device ``fit`` loop.

Data: each worker reads its shard of the ``train`` dataset through Ray Data
(``get_dataset_shard`` → ``iter_torch_batches``); ``val`` is not split, so rank 0 validates on all of
it. Latent pairs are small, so by default a worker caches its shard in memory during the first epoch
and reshuffles it locally afterwards (``cache_shards``); turn that off for shards that do not fit.
Checkpoints: every epoch, rank 0 writes a mapping checkpoint (safetensors + JSON, with optimiser
state) that Ray Train persists; after a worker failure (``FailureConfig``) the loop resumes from the
latest one. MLflow: the driver creates the run; rank 0 logs per-epoch metrics and, at the end, the
final checkpoint as the run's ``mapping`` artifact; the driver registers it.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from squeeze3d.config import TrainConfig, from_dict, to_dict
from squeeze3d.train.loop import TensorPairs, fit, latent_stats

ARTIFACT_PATH = "mapping"
HEALTH_CHECK_ENV, HEALTH_CHECK_INTERVAL_S = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.25"


class RayShardPairs:
    """Batch source over a Ray Data shard (a ``DataIterator``, or a ``Dataset`` in local mode)."""

    def __init__(self, shard: Any, z_e_shape: tuple[int, ...], z_g_shape: tuple[int, ...], batch_size: int,
                 *, shuffle: bool = True, drop_last: bool = True, seed: int = 0, cache: bool = True):
        self.shard, self.batch_size = shard, batch_size
        self.z_e_shape, self.z_g_shape = tuple(z_e_shape), tuple(z_g_shape)
        self.shuffle, self.drop_last, self.seed, self.cache = shuffle, drop_last, seed, cache
        self._cached: TensorPairs | None = None

    def _stream(self, batch_size: int, shuffle_buffer: int | None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for b in self.shard.iter_torch_batches(batch_size=batch_size, dtypes=torch.float32,
                                               local_shuffle_buffer_size=shuffle_buffer,
                                               drop_last=self.drop_last and not self.cache):
            z_e, z_g = b["z_e"], b["z_g"]
            yield z_e.reshape(len(z_e), *self.z_e_shape), z_g.reshape(len(z_g), *self.z_g_shape)

    def tensors(self) -> TensorPairs:
        """The whole shard in memory (read once)."""
        if self._cached is None:
            parts = list(self._stream(1024, None))
            if not parts:
                raise ValueError("this worker's dataset shard is empty: fewer rows than workers?")
            z_e = torch.cat([p[0] for p in parts])
            z_g = torch.cat([p[1] for p in parts])
            self._cached = TensorPairs(z_e, z_g, self.batch_size, shuffle=self.shuffle, drop_last=self.drop_last,
                                       seed=self.seed)
        return self._cached

    def batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.cache:
            yield from self.tensors().batches(epoch)
        else:
            yield from self._stream(self.batch_size, 4 * self.batch_size if self.shuffle else None)


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Runs on every Ray Train worker. ``config`` is plain data (JSON-able) built by ``run_training``."""
    import ray.train
    import ray.train.torch

    from squeeze3d.pairs import get_pair
    from squeeze3d.tracking import RunLogger
    from squeeze3d.train.endtask import heldout_metrics, validation_metrics

    cfg: TrainConfig = from_dict(TrainConfig, config["train_config"])
    pair = get_pair(cfg.pair)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    if config.get("use_gpu"):
        cfg.device = str(ray.train.torch.get_device())
    torch.set_num_threads(max(1, int(config.get("torch_threads", 1))))

    bs = cfg.optim.batch_size
    train = RayShardPairs(ray.train.get_dataset_shard("train"), pair.z_e_shape, pair.z_g_shape, bs,
                          seed=cfg.seed + rank, cache=config.get("cache_shards", True))
    val = RayShardPairs(ray.train.get_dataset_shard("val"), pair.z_e_shape, pair.z_g_shape, 256,
                        shuffle=False, drop_last=False, cache=True)
    stats = tuple(torch.tensor(s) for s in config["stats"]) if config.get("stats") else None
    logger = RunLogger(config.get("mlflow_run_id") if rank == 0 else None, config.get("tracking_uri"))
    n_end = int(config.get("endtask_rows", 64))
    generator = pair.build_generator(cfg.device) if rank == 0 and n_end > 0 else None
    val_t = val.tensors() if rank == 0 else None
    last_epoch = cfg.optim.epochs - 1

    def on_epoch_end(epoch: int, metrics: dict[str, float], save) -> None:
        if rank == 0 and n_end > 0:
            metrics.update(validation_metrics(pair, result_holder["f_e"], result_holder["f_d"],
                                              val_t.z_e[:n_end], val_t.z_g[:n_end], generator=generator))
        if rank == 0 and epoch == last_epoch:
            metrics.update(heldout_metrics(pair, result_holder["f_e"], result_holder["f_d"],
                                           int(config.get("heldout_rows", 0)), generator=generator))
        logger.metrics(metrics, epoch)
        if rank != 0:
            ray.train.report(metrics)
            return
        # Checkpoints upload in the background (Ray deletes the local copy once persisted), so an
        # epoch does not wait for a multi-hundred-MB copy (weights + AdamW state at pointnet_lion
        # sizes); the last one is synchronous so the run ends with it persisted.
        tmp = tempfile.mkdtemp(prefix="s3d-ckpt-")
        path = save(Path(tmp) / ARTIFACT_PATH)
        if epoch == last_epoch:
            logger.artifacts(path, ARTIFACT_PATH)
        mode = ray.train.CheckpointUploadMode.SYNC if epoch == last_epoch else ray.train.CheckpointUploadMode.ASYNC
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp), checkpoint_upload_mode=mode,
                         delete_local_checkpoint_after_upload=True)

    # fit builds the modules; the callback needs them for end-task metrics, so capture them via
    # prepare_model (called once, with the final initial weights) rather than rebuilding.
    result_holder: dict[str, Any] = {}

    def prepare(model: torch.nn.Module) -> torch.nn.Module:
        result_holder["f_e"], result_holder["f_d"] = model.f_e, model.f_d
        return ray.train.torch.prepare_model(model) if world > 1 else model

    resume_ck = ray.train.get_checkpoint()
    if resume_ck is not None:
        with resume_ck.as_directory() as d:
            fit(cfg, pair.z_e_shape, pair.z_g_shape, train, val, resume=Path(d) / ARTIFACT_PATH,
                on_epoch_end=on_epoch_end, meta=config.get("meta"), stats=stats, prepare_model=prepare)
    else:
        fit(cfg, pair.z_e_shape, pair.z_g_shape, train, val, on_epoch_end=on_epoch_end, meta=config.get("meta"),
            stats=stats, prepare_model=prepare)


def dataset_stats(ds, z_e_shape, z_g_shape) -> list[list[float]]:
    """Latent statistics over a Ray dataset, on the driver, so every worker standardises alike."""
    src = RayShardPairs(ds, z_e_shape, z_g_shape, 1024, shuffle=False, drop_last=False, cache=False)
    return [t.tolist() for t in latent_stats(src)]


@dataclass
class TrainOutcome:
    metrics: dict[str, float]
    checkpoint_dir: Path | None
    mlflow_run_id: str | None
    model_version: str | None = None
    promoted: bool = False
    reason: str = ""
    wall_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def ray_storage(storage_path: str | None) -> tuple[str, Any]:
    """``(storage_path, storage_filesystem)`` for a Ray ``RunConfig``. ``s3://`` URIs get an explicit
    pyarrow filesystem built like every other S3 access here (``squeeze3d.storage``: endpoint from
    ``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL``, explicit credentials), so checkpoints go to the same
    store as the datasets; local paths (default ``<state>/ray_results``) need none."""
    from squeeze3d.tracking import state_dir

    uri = storage_path or str(state_dir() / "ray_results")
    if uri.startswith(("s3://", "s3a://")):
        from squeeze3d import storage

        loc = storage.resolve(uri)
        return loc.path, loc.fs
    return uri, None


def storage_uri(path: str, filesystem: Any) -> str:
    """A path on a Ray storage filesystem as users see it (``s3://bucket/key`` for S3)."""
    return f"s3://{path}" if filesystem is not None and filesystem.type_name == "s3" else str(path)


def _node_cpus() -> float:
    import os

    import ray

    try:
        return float(ray.cluster_resources().get("CPU", os.cpu_count() or 1)) if ray.is_initialized() else (os.cpu_count() or 1)
    except Exception:  # noqa: BLE001 - only a thread-count hint
        return float(os.cpu_count() or 1)


def build_trainer(cfg: TrainConfig, datasets: dict[str, Any], *, workers: int = 1, use_gpu: bool = False,
                  storage_path: str | None = None, name: str | None = None, max_failures: int = 1,
                  loop_config: dict[str, Any] | None = None, callbacks: list | None = None):
    """A ``TorchTrainer`` for the mapping networks. ``workers=0`` runs the loop in-process."""
    import ray.train
    from ray.train.torch import TorchTrainer

    from squeeze3d.pairs import get_pair

    # Each ray.train.report() waits for the controller's next poll of the workers, every
    # RAY_TRAIN_HEALTH_CHECK_INTERVAL_S (2 s by default): with one report per epoch that was ~2 s per
    # epoch of pure waiting (20 bare reports: 50 s; at 0.25 s: 14 s). Ray propagates the variable
    # from this driver to the controller and workers; an explicit setting wins.
    os.environ.setdefault(HEALTH_CHECK_ENV, HEALTH_CHECK_INTERVAL_S)
    pair = get_pair(cfg.pair)
    path, filesystem = ray_storage(storage_path)
    if "train" not in datasets or "val" not in datasets:
        raise ValueError(f"need 'train' and 'val' datasets, got {sorted(datasets)}")
    config = {"train_config": to_dict(cfg), "use_gpu": use_gpu,
              # (a fine-tune keeps its start's normalisation: no pass over the data for it)
              "stats": None if cfg.init_from else dataset_stats(datasets["train"], pair.z_e_shape, pair.z_g_shape),
              # intra-op threads per worker: the node's CPUs shared by its workers (Ray's default of
              # one thread left a 1-worker fit on a 2-core machine at half speed)
              "torch_threads": max(1, int(_node_cpus() // max(1, workers))), **(loop_config or {})}
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=config,
        scaling_config=ray.train.ScalingConfig(num_workers=workers, use_gpu=use_gpu),
        datasets=datasets,
        dataset_config=ray.train.DataConfig(datasets_to_split=["train"]),
        run_config=ray.train.RunConfig(
            name=name or f"{pair.name}-{int(time.time())}",
            storage_path=path,
            storage_filesystem=filesystem,
            failure_config=ray.train.FailureConfig(max_failures=max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            callbacks=callbacks or None,
        ),
    )


def connect_ray(address: str | None = None) -> None:
    """Join the cluster a job was submitted to (``RAY_ADDRESS``), or start a local instance; Ray Data
    progress bars off (they flood job logs)."""
    import ray
    import ray.data

    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address, log_to_driver=True)
        else:
            start_local_ray()
    ray.data.DataContext.get_current().enable_progress_bars = False


def start_local_ray(**init_kwargs) -> str:
    """Start a private local Ray instance whose own processes can find it again.

    Ray Train's PlacementGroupCleaner (and anything else using the state API from inside an actor)
    resolves the cluster with ``address="auto"``, which scans the machine and fails with "Found
    multiple active Ray instances" as soon as a second Ray runs here (a test session, another
    user's job). So the GCS port is chosen up front (``RAY_GCS_SERVER_PORT``) and every task and
    actor of this job gets ``RAY_ADDRESS`` pointing at it through the job's runtime env. Returns the
    GCS address."""
    import socket

    import ray
    from ray._private.services import get_node_ip_address

    with socket.socket() as s:
        s.bind(("", 0))
        port = s.getsockname()[1]
    gcs = f"{get_node_ip_address()}:{port}"
    runtime_env = dict(init_kwargs.pop("runtime_env", None) or {})
    runtime_env["env_vars"] = {**runtime_env.get("env_vars", {}), "RAY_ADDRESS": gcs}
    old = os.environ.get("RAY_GCS_SERVER_PORT")
    os.environ["RAY_GCS_SERVER_PORT"] = str(port)
    try:
        ray.init(address="local", runtime_env=runtime_env, **{"log_to_driver": True, **init_kwargs})
    finally:
        if old is None:
            os.environ.pop("RAY_GCS_SERVER_PORT", None)
        else:
            os.environ["RAY_GCS_SERVER_PORT"] = old
    return ray.get_runtime_context().gcs_address
