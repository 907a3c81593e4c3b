"""``build_dataset``: the distributed synthetic-pair builder (one library call behind the job).

Pipeline (Ray Data, streaming)::

    sample ids + conditions ──► GenerateStage actors ──► EncodeStage actors ──► driver: shard assembly
     (planned on the driver)     (map_batches, pool)       (map_batches, pool)     ──► Parquet shard files
                                                                                   ──► manifest.json (last)

Shards are the unit of idempotence: shard k holds sample indices ``[k*R, min((k+1)*R, N))``; it
exists only once fully written (atomic write) and carries the build fingerprint in its metadata.
A re-run (same arguments) reuses every finished shard and computes only the missing ones, so a
killed run followed by a re-run ends with exactly N unique samples. The manifest is written last;
its presence means the dataset is complete.

Shards are assembled on the driver because shard membership is fixed by sample index while Ray Data
is free to re-batch rows between stages; only latents (not assets) reach the driver, so it is cheap.
On a cluster the same code runs unchanged: ``ray.init()`` joins the cluster the job runs on.

The parts: ``synth.build_config`` (settings, per-pair defaults, the loader; re-exported here),
``synth.resume`` (the plan: validation, fingerprint, reuse of an earlier run's shards) and
``synth.pipeline`` (Ray: the actor pools and the driver's shard assembly).
"""

from __future__ import annotations

import dataclasses
import datetime
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from squeeze3d import storage
from squeeze3d.synth import schema
from squeeze3d.synth.build_config import (  # noqa: F401  (the builder's public names, re-exported)
    DATASETS_DIR_ENV,
    FIELDS,
    BuildConfig,
    BuildConfigError,
    check_config,
    defaults_file,
    load_defaults,
    resolve_config,
)
from squeeze3d.synth.manifest import Manifest, ShardEntry, manifest_location, write_manifest
from squeeze3d.synth.pipeline import (  # noqa: F401  (make_*: re-exported)
    check_resources,
    ensure_ray,
    make_input_tables,
    make_pipeline,
    run_pipeline,
)
from squeeze3d.synth.resume import plan_build, reasons_text, rejected_of


@dataclass
class BuildSummary:
    output: str
    manifest: str
    rows: int
    shards: int
    shards_written: int
    shards_reused: int
    bytes: int
    seconds: float
    rows_computed: int
    rows_per_s: float
    """Rows computed in this run / wall time of the run."""
    nodes: dict = field(default_factory=dict)
    rejected_conditions: dict = field(default_factory=dict)
    """Prompts left out because G cannot take them: ``{"count", "reasons", "prompt_ids"}`` ({} if none)."""

    def describe(self) -> str:
        left_out = (f", {self.rejected_conditions['count']} prompts left out ({reasons_text(self.rejected_conditions)})"
                    if self.rejected_conditions.get("count") else "")
        return (f"{self.rows} rows in {self.shards} shards ({self.shards_written} written, "
                f"{self.shards_reused} reused), {self.bytes / 1e6:.2f} MB, {self.seconds:.1f} s, "
                f"{self.rows_per_s:.3g} rows/s{left_out} -> {self.output} (manifest: {self.manifest})")


def _log_default(msg: str) -> None:
    from squeeze3d.redact import mask_credentials

    print(f"[build_dataset] {mask_credentials(msg)}", flush=True)


def build_dataset(pair: str, *, overwrite: bool = False, datasets_dir: str | Path | None = None,
                  ray_address: str | None = None, log: Callable[[str], None] = _log_default,
                  on_shard: Callable[[ShardEntry], None] | None = None, **settings) -> BuildSummary:
    """Build (or finish) the (z_E, z_G) dataset of ``pair`` at ``output``; see the module docstring.

    ``settings`` are ``BuildConfig`` fields (``num_samples``, ``output``, ``seed``, ``shard_rows``,
    ``generator_workers``, ...); ``None`` or absent ones come from ``<pair>.yaml`` (``defaults_file``).
    ``prompts`` (text-conditioned pairs) is a prompt table URI; each prompt is sampled
    ``samples_per_prompt`` times. Raises ``BuildConfigError`` (nothing written) for bad arguments, an
    unusable output, or an output holding a different build unless ``overwrite``; ``TypeError`` for a
    setting that is not a ``BuildConfig`` field. ``on_shard`` is called after each new shard is durably
    written.
    """
    t0 = time.perf_counter()
    unknown = sorted(set(settings) - (FIELDS - {"pair"}))
    if unknown:
        raise TypeError(f"build_dataset() got unknown build settings {unknown}; allowed: {sorted(FIELDS - {'pair'})}")
    try:
        cfg = resolve_config(pair, datasets_dir, **settings)
    except TypeError as e:  # a YAML value of the wrong type
        raise BuildConfigError(str(e)) from e
    plan = plan_build(cfg, overwrite, log)
    if plan.finished is not None:
        # Nothing to do; leave the manifest byte-identical (its hash is training provenance).
        man = plan.finished
        summary = BuildSummary(output=plan.root.uri, manifest=manifest_location(plan.root).uri,
                               rows=man.counts["total"], shards=len(man.shards), shards_written=0,
                               shards_reused=len(man.shards), bytes=sum(e.bytes for e in man.shards),
                               seconds=time.perf_counter() - t0, rows_computed=0, rows_per_s=0.0,
                               rejected_conditions=rejected_of(plan.source))
        log("already complete: " + summary.describe())
        return summary
    started_ray = ensure_ray(ray_address)
    check_resources(cfg, strict=started_ray, log=log)

    if plan.clear_first:
        log(f"--overwrite: removing the previous dataset at {plan.root.uri}")
        storage.delete_file(manifest_location(plan.root))
        storage.delete_dir(plan.root.join(schema.SHARDS_DIR))
    elif plan.todo:
        # The old manifest (if any) would describe shards we are about to rewrite.
        storage.delete_file(manifest_location(plan.root))
    storage.remove_stale_temps(plan.root.join(schema.SHARDS_DIR))

    log(f"pair={cfg.pair} N={cfg.num_samples} seed={cfg.seed} shards={cfg.num_shards}x{cfg.shard_rows} "
        f"output={plan.root.uri}: {len(plan.reuse)} shards done, {len(plan.todo)} to compute")
    written: dict[int, ShardEntry] = {}
    nodes: dict = {"generate": {}, "encode": {}}
    t_run = time.perf_counter()
    if plan.todo:
        run_pipeline(plan, written, nodes, log, on_shard)
    run_s = time.perf_counter() - t_run

    entries = {**plan.reuse, **written}
    missing = [k for k in range(cfg.num_shards) if k not in entries]
    if missing:
        raise RuntimeError(f"pipeline finished without shards {missing[:10]}; re-run to complete them")
    shards = [entries[k] for k in range(cfg.num_shards)]
    counts = {"total": sum(s.rows for s in shards)}
    for sp in schema.SPLITS:
        counts[sp] = sum(s.split_counts.get(sp, 0) for s in shards)
    if counts["total"] != cfg.num_samples:
        raise RuntimeError(f"shards hold {counts['total']} rows, expected {cfg.num_samples}")
    rows_computed = sum(s.rows for s in written.values())
    import ray

    manifest = Manifest(
        pair=cfg.pair, seed=cfg.seed, num_samples=cfg.num_samples, shard_rows=cfg.shard_rows,
        z_e_shape=plan.want["z_e_shape"], z_g_shape=plan.want["z_g_shape"], encoder=plan.encoder,
        generator=plan.generator, condition=plan.want["condition"], counts=counts, shards=shards,
        build={"created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "shards_written": len(written), "shards_reused": len(plan.reuse),
               "rows_computed": rows_computed, "pipeline_seconds": round(run_s, 3),
               "rows_per_s": round(rows_computed / run_s, 1) if run_s > 0 and rows_computed else 0.0,
               "nodes": nodes, "settings": _masked_settings(cfg),
               "versions": {"squeeze3d": _version(), "ray": ray.__version__, "pyarrow": pa.__version__}},
    )
    mloc = write_manifest(plan.root, manifest)
    seconds = time.perf_counter() - t0
    summary = BuildSummary(output=plan.root.uri, manifest=mloc.uri, rows=counts["total"], shards=len(shards),
                           shards_written=len(written), shards_reused=len(plan.reuse),
                           bytes=sum(s.bytes for s in shards), seconds=seconds, rows_computed=rows_computed,
                           rows_per_s=rows_computed / seconds if seconds > 0 else 0.0, nodes=nodes,
                           rejected_conditions=rejected_of(plan.source))
    log("done: " + summary.describe())
    return summary


def _masked_settings(cfg: BuildConfig) -> dict:
    """The build's settings as the manifest records them, an output URI's credentials masked."""
    from squeeze3d.redact import mask_credentials

    return {k: mask_credentials(v) if isinstance(v, str) else v for k, v in dataclasses.asdict(cfg).items()}


def _version() -> str:
    import squeeze3d

    return squeeze3d.__version__
