"""The dataset builder's settings: ``BuildConfig``, where each pair's defaults come from, and the one
loader (dataclass defaults < ``<pair>.yaml`` < explicit overrides) that ``build_dataset``, the job's
flags (``squeeze3d.config_flags``) and the benchmarks share."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from squeeze3d.errors import user_error


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
