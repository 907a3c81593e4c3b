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
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from squeeze3d import storage
from squeeze3d.errors import UserError, user_error
from squeeze3d.synth import schema
from squeeze3d.synth.conditions import (
    ConditionSource,
    PromptConditions,
    PromptSourceError,
    UnsupportedConditionError,
    source_for,
)
from squeeze3d.synth.manifest import (
    Manifest,
    ManifestError,
    ShardEntry,
    describe_difference,
    fingerprint_of,
    manifest_location,
    read_manifest,
    write_manifest,
)


@user_error
class BuildConfigError(ValueError):
    """Bad arguments or an output that cannot be used; nothing has been written."""


@dataclass
class BuildConfig:
    """Builder settings; defaults per pair come from ``<pair>.yaml`` (``defaults_file``: shipped in
    ``squeeze3d/data/datasets/``, or ``./datasets/`` of the working directory)."""

    pair: str
    """Registered pair name (``squeeze3d pairs``)."""
    num_samples: int = 1024
    """N: rows in the finished dataset. With a prompt table and no explicit value: n_prompts * k."""
    output: str = ""
    """Local directory or ``s3://bucket/prefix``."""
    seed: int = 0
    """Sample ids, conditions and splits derive from (seed, index)."""
    shard_rows: int = 1024
    """R: rows per Parquet shard (the unit of resume)."""
    generator_workers: int = 1
    """Generator actors in the pool."""
    encoder_workers: int = 1
    """Encoder actors in the pool."""
    generator_batch_size: int = 256
    """Rows per generator call (GPU memory bound on real models)."""
    encoder_batch_size: int = 256
    """Rows per encoder call."""
    cpus_per_worker: float = 1.0
    """Logical CPUs reserved per actor (fractions let G and E share a core)."""
    gpus_per_worker: float = 0.0
    """GPUs per actor; > 0 puts the models on ``cuda``. Same code path on CPU."""
    prompts: str = ""
    """Text-conditioned pairs: the prompt table (``jobs/build_prompts.py`` output; local or s3://)."""
    samples_per_prompt: int | None = None
    """k: samples per prompt (None: the k the table was built for, else 4)."""
    generator_options: dict = field(default_factory=dict)
    """Keyword options for the pair's generator (``PairSpec.build_generator(device, **options)``),
    e.g. ``pointnet_lion``'s ``real_share`` (recipes set them; the generator's identity hash covers
    them, so shards built under other options are never reused)."""

    @property
    def device(self) -> str:
        return "cuda" if self.gpus_per_worker > 0 else "cpu"

    @property
    def num_shards(self) -> int:
        return math.ceil(self.num_samples / self.shard_rows)

    def shard_range(self, k: int) -> tuple[int, int]:
        return k * self.shard_rows, min((k + 1) * self.shard_rows, self.num_samples)


FIELDS = {f.name for f in dataclasses.fields(BuildConfig)}


DATASETS_DIR_ENV = "SQUEEZE3D_DATASETS_DIR"


def defaults_file(pair: str, datasets_dir: str | Path | None = None) -> Path | None:
    """Where the builder defaults of ``pair`` are: ``<datasets_dir>/<pair>.yaml`` when a folder is
    given; else the first that exists of ``$SQUEEZE3D_DATASETS_DIR/<pair>.yaml``,
    ``./datasets/<pair>.yaml`` of the working directory (a user's own pair, or an edited copy) and the
    file shipped with the package (``squeeze3d/data/datasets/<pair>.yaml``). None when there is none."""
    name = f"{pair}.yaml"
    if datasets_dir:
        candidates = [Path(datasets_dir) / name]
    else:
        from squeeze3d.package_data import shipped_path

        env = os.environ.get(DATASETS_DIR_ENV)
        candidates = [*([Path(env) / name] if env else []), Path("datasets") / name,
                      shipped_path("datasets", name)]
    return next((c for c in candidates if c.is_file()), None)


def load_defaults(pair: str, datasets_dir: str | Path | None = None) -> dict:
    """Builder defaults from ``<pair>.yaml`` (``defaults_file``; ``{}`` when there is none)."""
    import yaml

    path = defaults_file(pair, datasets_dir)
    if path is None:
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    section = data.get("build", data) if isinstance(data, dict) else None
    if not isinstance(section, dict):
        raise BuildConfigError(f"{path}: expected a mapping (optionally under 'build:')")
    unknown = sorted(set(section) - FIELDS)
    if unknown:
        raise BuildConfigError(f"{path}: unknown keys {unknown}; allowed: {sorted(FIELDS - {'pair'})}")
    return section


def resolve_config(pair: str, datasets_dir: str | Path | None = None, **overrides) -> BuildConfig:
    """Dataclass defaults < ``<pair>.yaml`` (``defaults_file``) < explicit (non-None) ``overrides``."""
    unknown = sorted(set(overrides) - FIELDS)
    if unknown:
        raise TypeError(f"unknown build settings {unknown}")
    values = {**load_defaults(pair, datasets_dir), **{k: v for k, v in overrides.items() if v is not None}}
    values.pop("pair", None)
    if values.get("prompts") and "num_samples" not in values:
        values["num_samples"] = None  # resolved from the prompt table in _plan: n_prompts * k
    cfg = BuildConfig(pair=pair, **values)
    if not cfg.output:
        cfg.output = os.path.join(".state", "data", pair)  # where `make train` looks by default
    return cfg


def _generator(spec, device: str, options: dict):
    """The pair's generator with the build's ``generator_options`` (a bad option is a config error)."""
    try:
        return spec.build_generator(device, **options) if options else spec.build_generator(device)
    except TypeError as e:
        raise BuildConfigError(f"generator_options {sorted(options)} are not accepted by pair {spec.name}: {e}") from e
    except (ValueError, OSError) as e:
        raise BuildConfigError(f"pair {spec.name}: cannot build its generator with {options}: {e}") from e


def check_config(cfg: BuildConfig) -> None:
    def need(ok: bool, msg: str):
        if not ok:
            raise BuildConfigError(msg)

    need(isinstance(cfg.num_samples, int) and cfg.num_samples > 0,
         f"--num-samples must be a positive integer, got {cfg.num_samples!r}")
    need(isinstance(cfg.shard_rows, int) and cfg.shard_rows > 0,
         f"--shard-rows must be a positive integer, got {cfg.shard_rows!r}")
    need(isinstance(cfg.seed, int) and 0 <= cfg.seed < 2**63, f"--seed must be an integer in [0, 2^63), got {cfg.seed!r}")
    for name in ("generator_workers", "encoder_workers", "generator_batch_size", "encoder_batch_size"):
        v = getattr(cfg, name)
        need(isinstance(v, int) and v > 0, f"--{name.replace('_', '-')} must be a positive integer, got {v!r}")
    need(cfg.cpus_per_worker > 0, f"cpus_per_worker must be > 0, got {cfg.cpus_per_worker!r}")
    need(cfg.gpus_per_worker >= 0, f"--gpus-per-worker must be >= 0, got {cfg.gpus_per_worker!r}")
    need(isinstance(cfg.generator_options, dict), f"generator_options must be a mapping, got {cfg.generator_options!r}")


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
        left_out = (f", {self.rejected_conditions['count']} prompts left out ({_reasons(self.rejected_conditions)})"
                    if self.rejected_conditions.get("count") else "")
        return (f"{self.rows} rows in {self.shards} shards ({self.shards_written} written, "
                f"{self.shards_reused} reused), {self.bytes / 1e6:.2f} MB, {self.seconds:.1f} s, "
                f"{self.rows_per_s:.3g} rows/s{left_out} -> {self.output} (manifest: {self.manifest})")


def _reasons(rejected: dict) -> str:
    return ", ".join(f"{n} {why}" for why, n in sorted(rejected.get("reasons", {}).items()))


def _rejected(source: ConditionSource) -> dict:
    rej = getattr(source, "rejected", None) or {}
    return dict(rej) if rej.get("count") else {}


@dataclass
class _Plan:
    cfg: BuildConfig
    root: storage.Location
    source: ConditionSource
    want: dict
    """Fingerprint of the requested build."""
    encoder: dict
    generator: dict
    reuse: dict[int, ShardEntry]
    todo: list[int]
    clear_first: bool
    """Delete our previous files (``--overwrite`` of a different or forced build)."""
    finished: Manifest | None = None
    """The output's manifest when it already describes exactly this build, complete."""


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
    plan = _plan(cfg, overwrite, log)
    if plan.finished is not None:
        # Nothing to do; leave the manifest byte-identical (its hash is training provenance).
        man = plan.finished
        summary = BuildSummary(output=plan.root.uri, manifest=manifest_location(plan.root).uri,
                               rows=man.counts["total"], shards=len(man.shards), shards_written=0,
                               shards_reused=len(man.shards), bytes=sum(e.bytes for e in man.shards),
                               seconds=time.perf_counter() - t0, rows_computed=0, rows_per_s=0.0,
                               rejected_conditions=_rejected(plan.source))
        log("already complete: " + summary.describe())
        return summary
    started_ray = _ensure_ray(ray_address)
    _check_resources(cfg, strict=started_ray, log=log)

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
        _run_pipeline(plan, written, nodes, log, on_shard)
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
                           rejected_conditions=_rejected(plan.source))
    log("done: " + summary.describe())
    return summary


def _masked_settings(cfg: BuildConfig) -> dict:
    """The build's settings as the manifest records them, an output URI's credentials masked."""
    from squeeze3d.redact import mask_credentials

    return {k: mask_credentials(v) if isinstance(v, str) else v for k, v in dataclasses.asdict(cfg).items()}


def _version() -> str:
    import squeeze3d

    return squeeze3d.__version__


def _plan(cfg: BuildConfig, overwrite: bool, log) -> _Plan:
    """Validate everything and decide what to compute, without writing anything."""
    from squeeze3d.pairs import UnknownPairError, get_pair

    try:
        spec = get_pair(cfg.pair)
    except UnknownPairError as e:
        raise BuildConfigError(str(e)) from e
    try:
        source = source_for(spec.condition_kind, prompts=cfg.prompts or None,
                            samples_per_prompt=cfg.samples_per_prompt, problem=spec.condition_problem)
    except (UnsupportedConditionError, PromptSourceError, UserError) as e:
        raise BuildConfigError(f"pair {cfg.pair!r}: {e}") from e
    if isinstance(source, PromptConditions):
        if source.rejected["count"]:
            log(f"{source.rejected['count']} of {source.rejected['count'] + len(source.prompts)} prompts left out: "
                f"the generator cannot take them ({_reasons(source.rejected)}); see the manifest's "
                "condition.rejected_prompts")
        cfg.samples_per_prompt = source.samples_per_prompt
        if cfg.num_samples is None:
            cfg.num_samples = source.num_conditions
        if isinstance(cfg.num_samples, int) and cfg.num_samples > source.num_conditions:
            raise BuildConfigError(
                f"--num-samples {cfg.num_samples} exceeds the {len(source.prompts)} prompts x "
                f"{source.samples_per_prompt} samples of {cfg.prompts} ({source.num_conditions}); raise "
                "--samples-per-prompt or build a bigger prompt table")
    check_config(cfg)
    try:
        root = storage.resolve(cfg.output)
        storage.check_writable(root)
    except storage.StorageError as e:
        raise BuildConfigError(f"output not usable: {e}") from e

    # Weight identities go into the fingerprint, so shards from other weights are never reused.
    enc, gen = spec.build_encoder("cpu"), _generator(spec, "cpu", cfg.generator_options)
    encoder = {"name": getattr(enc, "name", type(enc).__name__), "weights_hash": enc.weights_hash()}
    generator = {"name": getattr(gen, "name", type(gen).__name__), "weights_hash": gen.weights_hash()}
    want = {"schema_version": schema.SCHEMA_VERSION, "pair": cfg.pair, "seed": cfg.seed,
            "num_samples": cfg.num_samples, "shard_rows": cfg.shard_rows,
            "encoder_hash": encoder["weights_hash"], "generator_hash": generator["weights_hash"],
            "condition": source.describe(), "z_e_shape": list(spec.z_e_shape),
            "z_g_shape": list(spec.z_g_shape)}

    shards_dir = root.join(schema.SHARDS_DIR)
    files = {schema.shard_index(loc.name): (loc, size) for loc, size in storage.list_files(shards_dir, ".parquet")}
    files.pop(None, None)
    manifest, have = None, None
    if storage.is_file(manifest_location(root)):
        try:
            manifest = read_manifest(root)
            have = fingerprint_of(manifest)
        except ManifestError as e:
            if not overwrite:
                raise BuildConfigError(f"{root.uri} holds an unreadable manifest ({e}); pass --overwrite to "
                                       "replace it or choose another --output") from e
            have = {"manifest": "unreadable"}
    foreign = have is not None and have != want
    # A file at a shard name whose footer cannot be read is damage (shards are written atomically),
    # recomputed when something shows the folder holds this build; readable shards must all be ours.
    # A shard whose fingerprint is damaged or names another build is recomputed when the folder
    # otherwise proves to be this build's (its manifest, or another shard); only a folder with nothing
    # of ours is "a different dataset" (one flipped byte in a footer used to refuse the whole resume).
    unreadable: list[str] = []
    mismatched: dict[str, dict] = {}
    ours = manifest is not None and not foreign
    if not foreign:
        for loc, _ in sorted(files.values(), key=lambda v: v[0].name):
            fp = _footer_fingerprint(loc)
            if fp is None:
                unreadable.append(loc.name)
                continue
            fp_id = {kk: vv for kk, vv in fp.items() if kk in want}
            if fp_id != want:
                mismatched[loc.name] = fp_id
                continue
            ours = True
        if mismatched and not ours:
            name, fp_id = next(iter(mismatched.items()))
            have, foreign = fp_id or {"shard": f"{name} without a squeeze3d fingerprint"}, True
    if foreign and not overwrite:
        diff = describe_difference(have, want) if "pair" in have else str(have)
        raise BuildConfigError(f"{root.uri} already holds a different dataset ({diff}); pass --overwrite to "
                               "replace it, or choose another --output")
    if unreadable and not ours and not overwrite:
        raise BuildConfigError(f"{root.uri} holds {', '.join(unreadable[:3])}, which "
                               f"{'is not a readable Parquet file' if len(unreadable) == 1 else 'are not readable Parquet files'}"
                               ", and nothing that shows it is this build; pass --overwrite to replace it, or choose "
                               "another --output")
    if overwrite:
        return _Plan(cfg, root, source, want, encoder, generator, {}, list(range(cfg.num_shards)),
                     clear_first=bool(files) or manifest is not None or have is not None)

    reuse: dict[int, ShardEntry] = {}
    by_manifest = {s.index: s for s in manifest.shards} if manifest is not None else {}
    check = _SampleCheck(cfg, source, enc, gen, want["z_e_shape"], want["z_g_shape"])
    for k, (loc, _) in sorted(files.items()):
        if k >= cfg.num_shards:
            continue
        if loc.name in unreadable:
            log(f"shard {loc.name}: unreadable (truncated or corrupt); recomputing it")
            continue
        if loc.name in mismatched:
            fp_id = mismatched[loc.name]
            why = (f"names another build ({describe_difference(fp_id, want)})" if "pair" in fp_id
                   else "is missing or damaged")
            log(f"shard {loc.name}: its squeeze3d fingerprint {why}, in a folder of this build; recomputing it")
            continue
        try:
            data = storage.read_bytes(loc)
        except OSError as e:
            log(f"shard {loc.name}: cannot be read ({e}); recomputing it")
            continue
        entry = by_manifest.get(k)
        if entry is not None:
            if entry.bytes == len(data) and hashlib.sha256(data).hexdigest() == entry.sha256:
                reuse[k] = entry  # the manifest vouches for exactly these bytes
                continue
            why = "its sha256 does not match the manifest (changed or corrupt)"
        else:  # a killed run's shard: no checksum to trust, so check its content
            entry, why = _inspect_shard(cfg, k, loc, data, check)
            if entry is not None:
                reuse[k] = entry
                continue
        log(f"shard {loc.name}: {why}; recomputing it")
    todo = [k for k in range(cfg.num_shards) if k not in reuse]
    finished = manifest if manifest is not None and not todo and \
        all(reuse[s.index] is s for s in manifest.shards) else None
    return _Plan(cfg, root, source, want, encoder, generator, reuse, todo, clear_first=False,
                 finished=finished)


def _footer_fingerprint(loc: storage.Location) -> dict | None:
    """The build fingerprint in a shard's footer; None when the footer cannot be read."""
    try:
        with loc.fs.open_input_file(loc.path) as f:
            return schema.shard_fingerprint(pq.read_metadata(f)) or {}  # {}: Parquet, but not ours
    except (OSError, pa.ArrowInvalid):
        return None


class _SampleCheck:
    """Recompute a few rows of a shard in this process (sample ids fix each row's condition and
    noise) and compare them with the stored ones: a shard with no manifest checksum is reused only
    if they agree. Rows are compared to 1% of their norm: float32 results differ slightly across
    devices and batch sizes, while damage or another build's rows differ by far more (bit-level damage
    is caught before this by the Parquet page checksums)."""

    RTOL = 1e-2

    def __init__(self, cfg: BuildConfig, source: ConditionSource, encoder, generator, z_e_shape, z_g_shape):
        self.cfg, self.source, self.encoder, self.generator = cfg, source, encoder, generator
        self.shapes = {"z_e": z_e_shape, "z_g": z_g_shape}

    @staticmethod
    def positions(n: int) -> list[int]:
        return sorted({0, n // 2, n - 1})

    def mismatch(self, table: pa.Table, lo: int) -> str | None:
        import torch

        pos = self.positions(table.num_rows)
        idx = np.asarray([lo + p for p in pos], dtype=np.int64)
        ids = schema.sample_ids(self.cfg.seed, idx)
        batch = {"index": idx, "sample_id": ids, **self.source.input_columns(ids, idx)}
        with torch.no_grad():
            z_g, assets = self.generator.sample(self.source.generator_conditions(batch))
            z_e = self.encoder.encode(assets)
        rows = table.take(pa.array(pos))
        if rows.column("condition").to_pylist() != np.asarray(batch["condition"]).tolist():
            return f"its conditions at rows {pos} differ from those of seed {self.cfg.seed}"
        for name, want in (("z_g", z_g), ("z_e", z_e)):
            have = schema.column_to_numpy(rows.column(name), self.shapes[name]).reshape(len(pos), -1)
            want = want.detach().cpu().numpy().astype(np.float32).reshape(len(pos), -1)
            err = np.linalg.norm(have - want, axis=1)
            bad = ~(err <= self.RTOL * np.linalg.norm(want, axis=1) + 1e-6)  # NaN counts as bad
            if bad.any():
                return f"its {name} at rows {[p for p, b in zip(pos, bad) if b]} differs from a recomputation"
        return None


def _inspect_shard(cfg: BuildConfig, k: int, loc: storage.Location, data: bytes,
                   check: _SampleCheck) -> tuple[ShardEntry | None, str]:
    """Re-derive the manifest entry of a shard left by an earlier (killed) run: (entry, "") when it
    can be reused, else (None, why not)."""
    lo, hi = cfg.shard_range(k)
    try:
        table = schema.open_shard(data).read()
    except (OSError, pa.ArrowInvalid) as e:
        return None, f"unreadable ({str(e).splitlines()[0][:200]})"
    ids = table.column("sample_id").to_numpy()
    if len(ids) != hi - lo or not np.array_equal(ids, schema.sample_ids(cfg.seed, np.arange(lo, hi))):
        return None, f"its sample ids are not those of seed {cfg.seed}, indices {lo}..{hi - 1}"
    why = check.mismatch(table, lo)
    if why is not None:
        return None, why
    splits = table.column("split").to_pylist()
    return ShardEntry(index=k, path=f"{schema.SHARDS_DIR}/{loc.name}", first_index=lo, rows=hi - lo,
                      bytes=len(data), sha256=hashlib.sha256(data).hexdigest(),
                      split_counts={sp: splits.count(sp) for sp in schema.SPLITS}), ""


def _ensure_ray(address: str | None) -> bool:
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


def _check_resources(cfg: BuildConfig, strict: bool, log) -> None:
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


class _ShardBuffer:
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


def _write_shard(plan: _Plan, k: int, buf: _ShardBuffer) -> ShardEntry:
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


def _run_pipeline(plan: _Plan, written: dict, nodes: dict, log, on_shard) -> None:
    import ray.data

    cfg = plan.cfg
    todo = set(plan.todo)
    rows_todo = sum(cfg.shard_range(k)[1] - cfg.shard_range(k)[0] for k in plan.todo)
    ctx = ray.data.DataContext.get_current()
    old_bars = ctx.enable_progress_bars
    ctx.enable_progress_bars = False  # our own progress lines read better in job logs
    try:
        ds = make_pipeline(cfg, plan.source, plan.todo)
        buffers: dict[int, _ShardBuffer] = {}
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
                    buffers[k] = _ShardBuffer(*cfg.shard_range(k), plan.want["z_e_shape"], plan.want["z_g_shape"])
                buffers[k].add(idx[rows], rows, batch)
                if buffers[k].complete:
                    entry = _write_shard(plan, k, buffers.pop(k))
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
