"""Shard schema, sample ids and splits: the on-disk contract of a synthetic (z_E, z_G) dataset.

One shard = one Parquet file holding sample indices ``[k*R, min((k+1)*R, N))`` in index order.
Columns (``SCHEMA_VERSION`` 1):

- ``sample_id`` int64: a bijective 64-bit mix of (seed, index), so ids never collide within a build
  and any worker can recompute them;
- ``condition``: what G was sampled from (int64 noise seed | string prompt | binary image);
- ``z_e``, ``z_g``: float32 fixed-shape tensor columns (Arrow's canonical ``arrow.fixed_shape_tensor``
  extension, readable by plain pyarrow, Ray Data and anything that falls back to fixed-size lists);
- ``split``: ``train`` | ``val`` | ``test``, 80/10/10 by a hash of ``sample_id`` (stable when N grows).

Every shard also carries the build fingerprint in its Parquet key-value metadata, so a re-run can tell
its own finished shards from someone else's without a manifest.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA_VERSION = 1
COLUMNS = ("sample_id", "condition", "z_e", "z_g", "split")
SPLITS = ("train", "val", "test")
SPLIT_PERCENT = (80, 10, 10)
SHARDS_DIR = "shards"
MANIFEST_NAME = "manifest.json"
METADATA_KEY = b"squeeze3d"

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)
_SPLIT_SALT = np.uint64(0x5EED5EED5EED5EED)
_COND_SALT = np.uint64(0xC0DEC0DEC0DEC0DE)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: a bijection on uint64 with good avalanche (uint64 math wraps)."""
    x = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def sample_ids(seed: int, indices: np.ndarray | Sequence[int]) -> np.ndarray:
    """Deterministic int64 ids for sample ``indices`` of a build with ``seed``; distinct indices
    give distinct ids (bijective mix), so a build can never hold duplicate ids."""
    key = _splitmix64(np.array([seed], dtype=np.uint64))[0]
    idx = np.asarray(indices, dtype=np.uint64)
    return _splitmix64(idx ^ key).view(np.int64)


def split_codes(ids: np.ndarray) -> np.ndarray:
    """0/1/2 (train/val/test) per sample id, 80/10/10 by hash."""
    h = _splitmix64(np.asarray(ids, dtype=np.int64).view(np.uint64) ^ _SPLIT_SALT) % np.uint64(100)
    h = h.astype(np.int64)
    edges = np.cumsum(SPLIT_PERCENT)
    return np.searchsorted(edges, h, side="right").astype(np.int8)


def split_names(ids: np.ndarray) -> np.ndarray:
    return np.array(SPLITS, dtype=object)[split_codes(ids)]


def noise_seeds(ids: np.ndarray) -> np.ndarray:
    """Per-sample non-negative 63-bit generator seeds derived from sample ids."""
    return (_splitmix64(np.asarray(ids, dtype=np.int64).view(np.uint64) ^ _COND_SALT)
            >> np.uint64(1)).astype(np.int64)


def tensor_type(shape: Sequence[int]) -> pa.DataType:
    return pa.fixed_shape_tensor(pa.float32(), list(shape))


def shard_schema(condition_type: pa.DataType, z_e_shape: Sequence[int], z_g_shape: Sequence[int]
                 ) -> pa.Schema:
    return pa.schema([
        pa.field("sample_id", pa.int64(), nullable=False),
        pa.field("condition", condition_type, nullable=False),
        pa.field("z_e", tensor_type(z_e_shape), nullable=False),
        pa.field("z_g", tensor_type(z_g_shape), nullable=False),
        pa.field("split", pa.string(), nullable=False),
    ])


def tensor_array(x: np.ndarray) -> pa.Array:
    return pa.FixedShapeTensorArray.from_numpy_ndarray(np.ascontiguousarray(x, dtype=np.float32))


def column_to_numpy(col: pa.ChunkedArray | pa.Array, shape: Sequence[int]) -> np.ndarray:
    """A tensor column (canonical extension, Ray's tensor extension or a plain fixed-size list,
    depending on who wrote/read it) -> ``float32 [rows, *shape]``."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    if isinstance(col, pa.ExtensionArray):
        col = col.storage
    if pa.types.is_fixed_size_list(col.type) or pa.types.is_list(col.type):
        flat = col.flatten()
        while pa.types.is_fixed_size_list(flat.type) or pa.types.is_list(flat.type):
            flat = flat.flatten()
        values = flat.to_numpy(zero_copy_only=False)
        return values.astype(np.float32, copy=False).reshape(len(col), *shape)
    raise TypeError(f"not a tensor column: {col.type}")


def shard_name(index: int) -> str:
    return f"shard-{index:06d}.parquet"


def shard_index(name: str) -> int | None:
    """``shard-000012.parquet`` -> 12; anything else -> None."""
    if not (name.startswith("shard-") and name.endswith(".parquet")):
        return None
    digits = name[len("shard-"):-len(".parquet")]
    return int(digits) if digits.isdigit() else None


def encode_shard(table: pa.Table, fingerprint: dict) -> bytes:
    """Parquet bytes of one shard with the build fingerprint in its key-value metadata."""
    meta = dict(table.schema.metadata or {})
    meta[METADATA_KEY] = json.dumps(fingerprint, sort_keys=True).encode()
    buf = io.BytesIO()
    # page checksums (CRC32): a flipped byte in the data makes the shard unreadable rather than
    # silently different (readers pass page_checksum_verification=True, see read_shard)
    pq.write_table(table.replace_schema_metadata(meta), buf, compression="snappy", write_page_checksum=True)
    return buf.getvalue()


def open_shard(data: bytes) -> pq.ParquetFile:
    """A shard's bytes as a ParquetFile that verifies page checksums (shards written before checksums
    were added carry none and read as before)."""
    return pq.ParquetFile(pa.BufferReader(data), page_checksum_verification=True)


def shard_fingerprint(metadata: pq.FileMetaData | pa.Schema) -> dict | None:
    meta = metadata.metadata if metadata is not None else None
    if not meta or METADATA_KEY not in meta:
        return None
    try:
        return json.loads(meta[METADATA_KEY])
    except ValueError:
        return None
