"""The build's Ray side: joining (or starting) Ray, checking the cluster can hold the actor pools, the
Ray Data pipeline (``GenerateStage`` then ``EncodeStage`` actor pools) and the driver's shard assembly,
which writes each shard atomically as soon as all its rows are in."""

from __future__ import annotations

import hashlib
import time

import numpy as np
import pyarrow as pa

from squeeze3d import storage
from squeeze3d.synth import schema
from squeeze3d.synth.build_config import BuildConfig, BuildConfigError
from squeeze3d.synth.conditions import ConditionSource
from squeeze3d.synth.manifest import ShardEntry
from squeeze3d.synth.resume import Plan


def ensure_ray(address: str | None) -> bool:
    """Join the cluster we run on (a job has RAY_ADDRESS set) or start an embedded one (laptop).
    Returns True when this process started Ray itself, i.e. resources are fixed and will not grow."""
    import ray

    if not ray.is_initialized():
        ray.init(address=address, logging_level="WARNING")
    try:
        node = ray._private.worker._global_node  # set when this process started the head node
        return bool(node is not None and node.head)
    except AttributeError:
        return False


def check_resources(cfg: BuildConfig, strict: bool, log) -> None:
    import ray

    total = ray.cluster_resources()
    need_cpu = (cfg.generator_workers + cfg.encoder_workers) * cfg.cpus_per_worker
    need_gpu = (cfg.generator_workers + cfg.encoder_workers) * cfg.gpus_per_worker
    short = []
    if need_cpu > total.get("CPU", 0) + 1e-9:
        short.append(f"{need_cpu:g} CPUs (cluster has {total.get('CPU', 0):g})")
    if need_gpu > total.get("GPU", 0) + 1e-9:
        short.append(f"{need_gpu:g} GPUs (cluster has {total.get('GPU', 0):g})")
    if not short:
        return
    msg = (f"the actor pools need {' and '.join(short)}: lower --generator-workers/--encoder-workers/"
           "--gpus-per-worker or cpus_per_worker")
    if strict:
        raise BuildConfigError(msg)
    log(f"warning: {msg}; waiting for the cluster to scale up")


class ShardBuffer:
    """Rows of one shard arriving in any order and any batching; complete when every row is in."""

    def __init__(self, lo: int, hi: int, ze_shape, zg_shape):
        n = hi - lo
        self.lo, self.hi = lo, hi
        self.z_e = np.empty((n, *ze_shape), np.float32)
        self.z_g = np.empty((n, *zg_shape), np.float32)
        self.ids = np.zeros(n, np.int64)
        self.cond: list = [None] * n
        self.filled = np.zeros(n, bool)

    def add(self, idx: np.ndarray, rows: np.ndarray, batch: dict) -> None:
        pos = idx - self.lo
        self.z_e[pos] = batch["z_e"][rows]
        self.z_g[pos] = batch["z_g"][rows]
        self.ids[pos] = batch["sample_id"][rows]
        cond = batch["condition"][rows]
        for p, c in zip(pos.tolist(), cond):
            self.cond[p] = c
        self.filled[pos] = True  # a retried duplicate just overwrites its own slot

    @property
    def complete(self) -> bool:
        return bool(self.filled.all())


def write_shard(plan: Plan, k: int, buf: ShardBuffer) -> ShardEntry:
    cfg = plan.cfg
    expected = schema.sample_ids(cfg.seed, np.arange(buf.lo, buf.hi))
    if not np.array_equal(buf.ids, expected):
        raise RuntimeError(f"shard {k}: sample ids from the pipeline do not match (seed, index)")
    splits = schema.split_names(expected)
    sch = schema.shard_schema(plan.source.arrow_type, plan.want["z_e_shape"], plan.want["z_g_shape"])
    table = pa.table({
        "sample_id": pa.array(expected, pa.int64()),
        "condition": pa.array(buf.cond, plan.source.arrow_type),
        "z_e": schema.tensor_array(buf.z_e),
        "z_g": schema.tensor_array(buf.z_g),
        "split": pa.array(splits.tolist(), pa.string()),
    }, schema=sch)
    fingerprint = {**plan.want, "shard_index": k, "first_index": buf.lo, "rows": buf.hi - buf.lo}
    data = schema.encode_shard(table, fingerprint)
    name = schema.shard_name(k)
    storage.write_bytes_atomic(plan.root.join(schema.SHARDS_DIR, name), data)
    sp = splits.tolist()
    return ShardEntry(index=k, path=f"{schema.SHARDS_DIR}/{name}", first_index=buf.lo, rows=buf.hi - buf.lo,
                      bytes=len(data), sha256=hashlib.sha256(data).hexdigest(),
                      split_counts={s: sp.count(s) for s in schema.SPLITS})


def make_input_tables(cfg: BuildConfig, source: ConditionSource, shards: list[int]) -> list[pa.Table]:
    """One small table per shard to compute: ``index``, ``sample_id`` and the source's driver-side
    columns (noise seeds). One block per shard keeps Ray Data's work units aligned with shards."""
    tables = []
    for k in shards:
        lo, hi = cfg.shard_range(k)
        idx = np.arange(lo, hi, dtype=np.int64)
        ids = schema.sample_ids(cfg.seed, idx)
        tables.append(pa.table({"index": idx, "sample_id": ids, **source.input_columns(ids, idx)}))
    return tables


def make_pipeline(cfg: BuildConfig, source: ConditionSource, shards: list[int]):
    """The Ray Data dataset producing rows ``index, sample_id, condition, z_g, z_e, node_g, node_e``."""
    import ray.data
    from ray.data import ActorPoolStrategy

    from squeeze3d.pairs import get_pair
    from squeeze3d.synth.stages import EncodeStage, GenerateStage

    spec = get_pair(cfg.pair)
    # from_blocks keeps one block per shard and needs no metadata tasks (from_arrow launches some)
    ds = ray.data.from_blocks(make_input_tables(cfg, source, shards))
    ds = source.attach(ds)
    gpu = {"num_gpus": cfg.gpus_per_worker} if cfg.gpus_per_worker > 0 else {}
    ds = ds.map_batches(GenerateStage, batch_size=cfg.generator_batch_size, batch_format="numpy",
                        compute=ActorPoolStrategy(size=cfg.generator_workers), num_cpus=cfg.cpus_per_worker,
                        fn_constructor_kwargs={"pair": cfg.pair, "device": cfg.device,
                                               "condition_kind": spec.condition_kind,
                                               "cpus": cfg.cpus_per_worker, "source": source,
                                               "options": cfg.generator_options}, **gpu)
    ds = ds.map_batches(EncodeStage, batch_size=cfg.encoder_batch_size, batch_format="numpy",
                        compute=ActorPoolStrategy(size=cfg.encoder_workers), num_cpus=cfg.cpus_per_worker,
                        fn_constructor_kwargs={"pair": cfg.pair, "device": cfg.device,
                                               "cpus": cfg.cpus_per_worker}, **gpu)
    return ds


def run_pipeline(plan: Plan, written: dict, nodes: dict, log, on_shard) -> None:
    import ray.data

    cfg = plan.cfg
    todo = set(plan.todo)
    rows_todo = sum(cfg.shard_range(k)[1] - cfg.shard_range(k)[0] for k in plan.todo)
    ctx = ray.data.DataContext.get_current()
    old_bars = ctx.enable_progress_bars
    ctx.enable_progress_bars = False  # our own progress lines read better in job logs
    try:
        ds = make_pipeline(cfg, plan.source, plan.todo)
        buffers: dict[int, ShardBuffer] = {}
        done_rows, t0, last = 0, time.perf_counter(), 0.0
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            idx = batch["index"]
            for stage, col in (("generate", "node_g"), ("encode", "node_e")):
                for node, n in zip(*np.unique(batch[col], return_counts=True)):
                    nodes[stage][str(node)] = nodes[stage].get(str(node), 0) + int(n)
            shard_of = idx // cfg.shard_rows
            for k in np.unique(shard_of).tolist():
                if k not in todo:
                    raise RuntimeError(f"pipeline returned rows of shard {k}, which was not requested")
                rows = np.nonzero(shard_of == k)[0]
                if k not in buffers:
                    buffers[k] = ShardBuffer(*cfg.shard_range(k), plan.want["z_e_shape"], plan.want["z_g_shape"])
                buffers[k].add(idx[rows], rows, batch)
                if buffers[k].complete:
                    entry = write_shard(plan, k, buffers.pop(k))
                    written[k] = entry
                    todo.discard(k)
                    done_rows += entry.rows
                    if on_shard is not None:
                        on_shard(entry)
            now = time.perf_counter()
            if now - last > 5 or not todo:
                last = now
                el = now - t0
                log(f"{done_rows}/{rows_todo} rows, {len(written)}/{len(plan.todo)} shards written, "
                    f"{done_rows / el if el > 0 else 0:.3g} rows/s")
    finally:
        ctx.enable_progress_bars = old_bars
