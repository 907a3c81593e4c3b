"""``validate_dataset`` and ``dataset_stats``: tests for data, run by users and by the builder's tests.

Validation re-reads every byte: manifest consistency, shard checksums and sizes, Parquet schema and
tensor shapes, NaN/Inf, row and split counts, and that sample ids are exactly those of (seed, index)
-- so "N unique rows, none duplicated or lost" is checked, not assumed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from squeeze3d import storage
from squeeze3d.synth import schema
from squeeze3d.synth.conditions import arrow_type_for
from squeeze3d.synth.manifest import ManifestError, fingerprint_of, read_manifest


@dataclass
class ValidationReport:
    uri: str
    problems: list[str] = field(default_factory=list)
    rows: int = 0
    shards: int = 0
    bytes: int = 0
    split_counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def describe(self) -> str:
        head = (f"{self.uri}: {self.rows} rows, {self.shards} shards, {self.bytes / 1e6:.2f} MB, splits "
                + ", ".join(f"{k}={v}" for k, v in self.split_counts.items()))
        if self.ok:
            return head + "\nOK"
        return head + f"\n{len(self.problems)} problem(s):\n" + "\n".join(f"  - {p}" for p in self.problems)


def validate_dataset(uri: str, max_problems: int = 50) -> ValidationReport:
    try:
        root = storage.resolve(uri)
    except storage.StorageError as e:
        return ValidationReport(str(uri), [str(e)])
    rep = ValidationReport(root.uri)

    def problem(msg: str) -> None:
        if len(rep.problems) < max_problems:
            rep.problems.append(msg)

    try:
        man = read_manifest(root)
    except ManifestError as e:
        problem(str(e))
        return rep
    fp = fingerprint_of(man)
    try:
        cond_type = arrow_type_for(man.condition.get("kind", ""))
    except ValueError as e:
        problem(f"manifest condition: {e}")
        return rep
    want_schema = schema.shard_schema(cond_type, man.z_e_shape, man.z_g_shape)

    num_shards = -(-man.num_samples // man.shard_rows)
    if [s.index for s in man.shards] != list(range(num_shards)):
        problem(f"manifest lists shards {[s.index for s in man.shards][:20]}, expected 0..{num_shards - 1}")
    if man.counts.get("total") != man.num_samples:
        problem(f"manifest counts.total={man.counts.get('total')} but num_samples={man.num_samples}")
    if sum(man.counts.get(sp, 0) for sp in schema.SPLITS) != man.counts.get("total"):
        problem("manifest split counts do not add up to counts.total")

    listed = {s.path for s in man.shards}
    for loc, _ in storage.list_files(root.join(schema.SHARDS_DIR), ".parquet"):
        if f"{schema.SHARDS_DIR}/{loc.name}" not in listed:
            problem(f"{loc.name}: shard file not listed in the manifest")

    seen_ids: list[np.ndarray] = []
    split_counts = dict.fromkeys(schema.SPLITS, 0)
    for s in man.shards:
        loc = root.join(*s.path.split("/"))
        lo, hi = s.index * man.shard_rows, min((s.index + 1) * man.shard_rows, man.num_samples)
        if (s.first_index, s.rows) != (lo, hi - lo):
            problem(f"{s.path}: manifest says rows {s.first_index}+{s.rows}, expected {lo}+{hi - lo}")
        if not storage.is_file(loc):
            problem(f"{s.path}: missing")
            continue
        data = storage.read_bytes(loc)
        rep.bytes += len(data)
        if len(data) != s.bytes:
            problem(f"{s.path}: {len(data)} bytes, manifest says {s.bytes}")
        if hashlib.sha256(data).hexdigest() != s.sha256:
            problem(f"{s.path}: sha256 mismatch (file changed or corrupt)")
        try:
            pf = schema.open_shard(data)
            table = pf.read()
        except (OSError, pa.ArrowInvalid) as e:
            problem(f"{s.path}: unreadable Parquet ({e})")
            continue
        shard_fp = schema.shard_fingerprint(pf.metadata) or {}
        if {k: shard_fp.get(k) for k in fp} != fp:
            problem(f"{s.path}: fingerprint in the file does not match the manifest")
        if not table.schema.remove_metadata().equals(want_schema):
            problem(f"{s.path}: schema {table.schema.remove_metadata()} differs from the expected {want_schema}")
            continue
        if table.num_rows != s.rows:
            problem(f"{s.path}: {table.num_rows} rows, manifest says {s.rows}")
        for col, shape in (("z_e", man.z_e_shape), ("z_g", man.z_g_shape)):
            arr = schema.column_to_numpy(table.column(col), shape)
            bad = int((~np.isfinite(arr)).reshape(len(arr), -1).any(axis=1).sum())
            if bad:
                problem(f"{s.path}: {bad} rows with NaN/Inf in {col}")
        ids = table.column("sample_id").to_numpy()
        seen_ids.append(ids)
        if not np.array_equal(ids, schema.sample_ids(man.seed, np.arange(lo, lo + len(ids)))):
            problem(f"{s.path}: sample ids are not those of seed {man.seed}, indices {lo}..{hi - 1}")
        splits = table.column("split").to_pylist()
        if splits != schema.split_names(ids).tolist():
            problem(f"{s.path}: split column does not match the hash of sample_id")
        counts = {sp: splits.count(sp) for sp in schema.SPLITS}
        if counts != s.split_counts:
            problem(f"{s.path}: split counts {counts}, manifest says {s.split_counts}")
        for sp in schema.SPLITS:
            split_counts[sp] += counts[sp]
        rep.rows += table.num_rows
        rep.shards += 1

    all_ids = np.concatenate(seen_ids) if seen_ids else np.zeros(0, np.int64)
    dup = len(all_ids) - len(np.unique(all_ids))
    if dup:
        problem(f"{dup} duplicated sample ids")
    if rep.rows != man.num_samples:
        problem(f"{rep.rows} rows readable, manifest promises {man.num_samples}")
    if {sp: man.counts.get(sp) for sp in schema.SPLITS} != split_counts:
        problem(f"split counts {split_counts} differ from the manifest's {man.counts}")
    rep.split_counts = split_counts
    return rep


def _latent_stats(x: np.ndarray) -> dict:
    flat = x.reshape(len(x), -1).astype(np.float64)
    std = flat.std(axis=0)
    cov_eig = np.clip(np.linalg.eigvalsh(np.cov(flat, rowvar=False)), 0, None) if len(flat) > 1 \
        and flat.shape[1] <= 4096 else None
    d_eff = float(cov_eig.sum() ** 2 / (cov_eig ** 2).sum()) if cov_eig is not None and cov_eig.any() else None
    return {"dim": int(flat.shape[1]), "mean": float(flat.mean()), "std": float(flat.std()),
            "dim_std_min": float(std.min()), "dim_std_max": float(std.max()),
            "norm_mean": float(np.linalg.norm(flat, axis=1).mean()), "min": float(flat.min()),
            "max": float(flat.max()), "d_eff": d_eff}


def dataset_stats(uri: str, png: str | None = None, num_preview: int = 6) -> dict:
    """Rows per split and latent statistics; with ``png``, a picture of a few samples decoded by the
    pair's generator from their stored z_G (point clouds) plus latent histograms."""
    from squeeze3d.synth.read import open_dataset, read_table

    root, man = open_dataset(uri)
    table = read_table(uri, columns=("z_e", "z_g", "split"))
    z_e = schema.column_to_numpy(table.column("z_e"), man.z_e_shape)
    z_g = schema.column_to_numpy(table.column("z_g"), man.z_g_shape)
    splits = table.column("split").to_pylist()
    stats = {"uri": root.uri, "pair": man.pair, "rows": table.num_rows,
             "splits": {sp: splits.count(sp) for sp in schema.SPLITS},
             "z_e": _latent_stats(z_e), "z_g": _latent_stats(z_g)}
    if png:
        stats["png"] = _render(man, z_e, z_g, png, num_preview)
    return stats


def _render(man, z_e: np.ndarray, z_g: np.ndarray, png: str, k: int) -> str:
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from squeeze3d.pairs import get_pair

    spec = get_pair(man.pair)
    k = min(k, len(z_g))
    assets = None
    if spec.asset_kind == "point_cloud" and k:
        gen = spec.build_generator("cpu")
        assets = gen.decode(torch.from_numpy(np.array(z_g[:k], dtype=np.float32))).numpy()
    fig = plt.figure(figsize=(3 * max(k, 2), 6.2))
    fig.suptitle(f"{man.pair}: {len(z_g)} rows, seed {man.seed}")
    for i in range(k if assets is not None else 0):
        ax = fig.add_subplot(2, max(k, 2), i + 1, projection="3d")
        p = assets[i]
        ax.scatter(p[:, 0], p[:, 1], p[:, 2], s=1, c=p[:, 2], cmap="viridis")
        ax.set_title(f"row {i}", fontsize=8)
        ax.set_axis_off()
    for j, (name, x) in enumerate((("z_E", z_e), ("z_G", z_g))):
        ax = fig.add_subplot(2, 2, 3 + j)
        ax.hist(x.reshape(-1), bins=80, color="C0" if j == 0 else "C1")
        ax.set_title(f"{name} values ({x.shape[1:]} per row)", fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(png)), exist_ok=True)
    fig.savefig(png, dpi=80)
    plt.close(fig)
    return os.path.abspath(png)
