"""What a build has to compute, decided before anything is written: the settings and the output are
checked, the requested build's fingerprint is compared with what the output holds, and every shard an
earlier (possibly killed) run left is reused only if the manifest's checksum vouches for it or a
recomputation of a few of its rows agrees (``SampleCheck``); the rest is the plan's ``todo``."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from squeeze3d import storage
from squeeze3d.errors import UserError
from squeeze3d.synth import schema
from squeeze3d.synth.build_config import BuildConfig, BuildConfigError, check_config
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
)


def reasons_text(rejected: dict) -> str:
    return ", ".join(f"{n} {why}" for why, n in sorted(rejected.get("reasons", {}).items()))


def rejected_of(source: ConditionSource) -> dict:
    rej = getattr(source, "rejected", None) or {}
    return dict(rej) if rej.get("count") else {}


@dataclass
class Plan:
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


def build_generator(spec, device: str, options: dict):
    """The pair's generator with the build's ``generator_options`` (a bad option is a config error)."""
    try:
        return spec.build_generator(device, **options) if options else spec.build_generator(device)
    except TypeError as e:
        raise BuildConfigError(f"generator_options {sorted(options)} are not accepted by pair {spec.name}: {e}") from e
    except (ValueError, OSError) as e:
        raise BuildConfigError(f"pair {spec.name}: cannot build its generator with {options}: {e}") from e


def plan_build(cfg: BuildConfig, overwrite: bool, log) -> Plan:
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
                f"the generator cannot take them ({reasons_text(source.rejected)}); see the manifest's "
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
    enc, gen = spec.build_encoder("cpu"), build_generator(spec, "cpu", cfg.generator_options)
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
            fp = footer_fingerprint(loc)
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
        return Plan(cfg, root, source, want, encoder, generator, {}, list(range(cfg.num_shards)),
                     clear_first=bool(files) or manifest is not None or have is not None)

    reuse: dict[int, ShardEntry] = {}
    by_manifest = {s.index: s for s in manifest.shards} if manifest is not None else {}
    check = SampleCheck(cfg, source, enc, gen, want["z_e_shape"], want["z_g_shape"])
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
            entry, why = inspect_shard(cfg, k, loc, data, check)
            if entry is not None:
                reuse[k] = entry
                continue
        log(f"shard {loc.name}: {why}; recomputing it")
    todo = [k for k in range(cfg.num_shards) if k not in reuse]
    finished = manifest if manifest is not None and not todo and \
        all(reuse[s.index] is s for s in manifest.shards) else None
    return Plan(cfg, root, source, want, encoder, generator, reuse, todo, clear_first=False,
                 finished=finished)


def footer_fingerprint(loc: storage.Location) -> dict | None:
    """The build fingerprint in a shard's footer; None when the footer cannot be read."""
    try:
        with loc.fs.open_input_file(loc.path) as f:
            return schema.shard_fingerprint(pq.read_metadata(f)) or {}  # {}: Parquet, but not ours
    except (OSError, pa.ArrowInvalid):
        return None


class SampleCheck:
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


def inspect_shard(cfg: BuildConfig, k: int, loc: storage.Location, data: bytes,
                   check: SampleCheck) -> tuple[ShardEntry | None, str]:
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
