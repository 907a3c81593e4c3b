"""The dataset manifest: written last and atomically, so its presence means "this build finished".

``manifest.json`` sits beside ``shards/`` and names everything a consumer needs to trust the data:
pair, schema version, encoder and generator weight hashes, seed, counts per split and the shard list
with row counts, sizes and sha256 checksums. Plain JSON (never pickle): users receive it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from squeeze3d import storage
from squeeze3d.synth import schema

FORMAT = "squeeze3d-synth-dataset"

# Fields that identify *what* a build produces; a re-run must match all of them to reuse shards.
FINGERPRINT_KEYS = ("schema_version", "pair", "seed", "num_samples", "shard_rows", "encoder_hash",
                    "generator_hash", "condition", "z_e_shape", "z_g_shape")


@dataclass
class ShardEntry:
    index: int
    path: str
    """Relative to the dataset root, e.g. ``shards/shard-000003.parquet``."""
    first_index: int
    rows: int
    bytes: int
    sha256: str
    split_counts: dict[str, int]


@dataclass
class Manifest:
    pair: str
    seed: int
    num_samples: int
    shard_rows: int
    z_e_shape: list[int]
    z_g_shape: list[int]
    encoder: dict
    """``{"name": ..., "weights_hash": sha256}``"""
    generator: dict
    condition: dict
    """The condition source's ``describe()``."""
    counts: dict[str, int]
    """``total`` and one entry per split."""
    shards: list[ShardEntry]
    build: dict = field(default_factory=dict)
    """Informational: timings, rows/s, nodes that did the work, library versions."""
    schema_version: int = schema.SCHEMA_VERSION
    format: str = FORMAT

    def fingerprint(self) -> dict:
        return fingerprint_of(self)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str = "manifest") -> Manifest:
        try:
            d = json.loads(text)
        except ValueError as e:
            raise ManifestError(f"{where}: not valid JSON ({e})") from e
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ManifestError(f"{where}: not a squeeze3d synthetic-dataset manifest")
        if d.get("schema_version") != schema.SCHEMA_VERSION:
            raise ManifestError(f"{where}: schema version {d.get('schema_version')!r}, this library reads "
                                f"{schema.SCHEMA_VERSION}; rebuild the dataset or upgrade squeeze3d")
        try:
            d["shards"] = [ShardEntry(**s) for s in d["shards"]]
            return cls(**d)
        except (KeyError, TypeError) as e:
            raise ManifestError(f"{where}: malformed manifest ({e})") from e


class ManifestError(ValueError):
    pass


def fingerprint_of(obj) -> dict:
    """The identity fields of a manifest or of a planned build (any object/dict with the keys)."""
    get = obj.get if isinstance(obj, dict) else (lambda k: getattr(obj, k))
    fp = {}
    for k in FINGERPRINT_KEYS:
        if k == "encoder_hash" and not isinstance(obj, dict):
            fp[k] = obj.encoder["weights_hash"]
        elif k == "generator_hash" and not isinstance(obj, dict):
            fp[k] = obj.generator["weights_hash"]
        else:
            fp[k] = get(k)
    fp["z_e_shape"] = list(fp["z_e_shape"])
    fp["z_g_shape"] = list(fp["z_g_shape"])
    return fp


def describe_difference(have: dict, want: dict) -> str:
    diffs = [f"{k}: has {_short(have.get(k))}, requested {_short(want.get(k))}"
             for k in FINGERPRINT_KEYS if have.get(k) != want.get(k)]
    return "; ".join(diffs)


def _short(v) -> str:
    s = str(v)
    return s[:12] + "…" if isinstance(v, str) and len(s) == 64 else s


def manifest_location(root: storage.Location) -> storage.Location:
    return root.join(schema.MANIFEST_NAME)


def read_manifest(root: storage.Location) -> Manifest:
    loc = manifest_location(root)
    if not storage.is_file(loc):
        raise ManifestError(f"{root.uri}: no {schema.MANIFEST_NAME}; not a finished squeeze3d dataset "
                            "(build it, or re-run the build to finish it)")
    return Manifest.from_json(storage.read_bytes(loc).decode(), where=loc.uri)


def write_manifest(root: storage.Location, manifest: Manifest) -> storage.Location:
    loc = manifest_location(root)
    storage.write_bytes_atomic(loc, manifest.to_json().encode())
    return loc
