"""The prompt table: the on-disk contract between the prompt stage and the pair builder.

``<output>/prompts.parquet`` (one file; a few thousand short strings) and ``<output>/summary.json``
(the run summary: counts, drop reasons, timings). ``<output>`` is a local directory or
``s3://bucket/prefix`` (``squeeze3d.storage``). Columns (``SCHEMA_VERSION`` 1), in request order:

- ``prompt_id`` string: ``s<seed>-r<request_index>``, deterministic, unique within a table;
- ``prompt`` string: the cleaned prompt (one sentence, ends with a period);
- ``category``, ``style``, ``material`` string: the seed topic the request was built from;
- ``request_index`` int64, ``seed`` int64: the request's position and its derived sampling seed;
- ``backend`` string (``template`` | ``vllm``), ``model`` string (model identity);
- ``mentions_category`` bool: the prompt names its category (always true for ``template``).

The Parquet key-value metadata ``squeeze3d`` holds a JSON object: schema version, run seed,
topic fingerprint, embedding model and near-duplicate threshold.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from squeeze3d import storage
from squeeze3d.errors import UserError

SCHEMA_VERSION = 1
TABLE_NAME = "prompts.parquet"
SUMMARY_NAME = "summary.json"
METADATA_KEY = b"squeeze3d"

SCHEMA = pa.schema([
    pa.field("prompt_id", pa.string(), nullable=False),
    pa.field("prompt", pa.string(), nullable=False),
    pa.field("category", pa.string(), nullable=False),
    pa.field("style", pa.string(), nullable=False),
    pa.field("material", pa.string(), nullable=False),
    pa.field("request_index", pa.int64(), nullable=False),
    pa.field("seed", pa.int64(), nullable=False),
    pa.field("backend", pa.string(), nullable=False),
    pa.field("model", pa.string(), nullable=False),
    pa.field("mentions_category", pa.bool_(), nullable=False),
])
COLUMNS = tuple(SCHEMA.names)


class PromptTableError(UserError):
    """A prompt table that is missing, unreadable or does not match the schema."""


def prompt_id(run_seed: int, request_index: int) -> str:
    return f"s{int(run_seed)}-r{int(request_index):06d}"


def table_content_hash(prompt_ids: Sequence[str], prompts: Sequence[str]) -> str:
    """sha256 over (prompt_id, prompt) in table order: the table's identity, independent of the
    Parquet encoding or where the file lives."""
    h = hashlib.sha256()
    for pid, p in zip(prompt_ids, prompts):
        h.update(f"{pid}\t{p}\n".encode())
    return h.hexdigest()


def to_arrow(rows: list[dict], metadata: dict | None = None) -> pa.Table:
    for i, r in enumerate(rows):
        bad = [c for c in COLUMNS if r.get(c) is None or (c in ("prompt_id", "prompt") and not r[c])]
        if bad:
            raise PromptTableError(f"row {i}: missing {bad}")
    cols = {name: [r[name] for r in rows] for name in COLUMNS}
    table = pa.Table.from_pydict(cols, schema=SCHEMA)
    meta = {"schema_version": SCHEMA_VERSION, **(metadata or {})}
    return table.replace_schema_metadata({METADATA_KEY: json.dumps(meta, sort_keys=True).encode()})


def write_prompt_table(output: str, rows: list[dict], metadata: dict | None = None,
                       summary: dict | None = None) -> storage.Location:
    """Write ``prompts.parquet`` (and ``summary.json``) under ``output``; each file appears whole
    or not at all. Returns the table's location."""
    out = storage.resolve(output)
    buf = io.BytesIO()
    pq.write_table(to_arrow(rows, metadata), buf, compression="zstd")
    loc = out.join(TABLE_NAME)
    storage.write_bytes_atomic(loc, buf.getvalue())
    if summary is not None:
        storage.write_bytes_atomic(out.join(SUMMARY_NAME), json.dumps(summary, indent=2, sort_keys=True).encode())
    return loc


def _table_location(uri: str) -> storage.Location:
    loc = storage.resolve(uri)
    if loc.path.endswith(".parquet"):
        return loc
    return loc.join(TABLE_NAME)


def read_prompt_table_arrow(uri: str) -> pa.Table:
    """The table at ``uri`` (a prompt-table directory or the ``.parquet`` file), schema-checked."""
    try:
        loc = _table_location(uri)
    except storage.StorageError as e:
        raise PromptTableError(str(e)) from e
    if not storage.is_file(loc):
        raise PromptTableError(f"{loc.uri}: no prompt table here; build one with jobs/build_prompts.py")
    try:
        table = pq.read_table(io.BytesIO(storage.read_bytes(loc)))
    except Exception as e:  # pyarrow raises several types for corrupt files
        raise PromptTableError(f"{loc.uri}: not a readable Parquet file: {e}") from e
    meta = json.loads((table.schema.metadata or {}).get(METADATA_KEY, b"{}"))
    version = meta.get("schema_version")
    if version != SCHEMA_VERSION:
        raise PromptTableError(f"{loc.uri}: prompt table schema version {version!r}, this code reads "
                               f"{SCHEMA_VERSION}")
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise PromptTableError(f"{loc.uri}: missing columns {missing}")
    return table.select(list(COLUMNS))


def read_prompt_table(uri: str) -> list[dict]:
    """Rows of the prompt table at ``uri`` as dicts (keys: ``COLUMNS``), in request order."""
    return read_prompt_table_arrow(uri).to_pylist()


def read_table_metadata(uri: str) -> dict:
    return json.loads((read_prompt_table_arrow(uri).schema.metadata or {}).get(METADATA_KEY, b"{}"))


def expand_prompts(rows: list[dict], samples_per_prompt: int) -> list[str]:
    """The builder's condition list: each prompt ``samples_per_prompt`` times, prompt-major
    (``[p0, p0, .., p1, p1, ..]``), so sample index ``i`` is conditioned on
    ``rows[i // samples_per_prompt]``. The paper uses 2500 prompts x 4 samples."""
    if int(samples_per_prompt) < 1:
        raise UserError(f"samples_per_prompt must be >= 1, got {samples_per_prompt}")
    if not rows:
        raise PromptTableError("the prompt table is empty; nothing to condition on")
    return [r["prompt"] for r in rows for _ in range(int(samples_per_prompt))]


def expand_prompt_ids(rows: list[dict], samples_per_prompt: int) -> list[tuple[str, int]]:
    """``(prompt_id, sample_index)`` aligned with ``expand_prompts``: which prompt and which of
    its ``k`` samples each condition is (for provenance columns or a manifest)."""
    k = int(samples_per_prompt)
    return [(r["prompt_id"], j) for r in rows for j in range(k)]


def read_summary(uri: str) -> dict | None:
    """The run summary (``summary.json``) beside the table at ``uri``, or None if there is none."""
    loc = _table_location(uri)
    # the summary sits beside prompts.parquet (write_prompt_table)
    s = storage.Location(loc.uri[: -len(loc.name)] + SUMMARY_NAME, loc.fs, loc.path[: -len(loc.name)] + SUMMARY_NAME)
    if not storage.is_file(s):
        return None
    try:
        return json.loads(storage.read_bytes(s))
    except ValueError as e:
        raise PromptTableError(f"{s.uri}: not valid JSON: {e}") from e


def describe_table(uri: str, limit: int = 5) -> dict:
    """What ``squeeze3d prompts show`` prints: counts per topic, backend and model identity, the
    content hash the pair builder records (``table_sha256``), the run's drop counts if its summary
    is there, and the first ``limit`` prompts."""
    from collections import Counter

    t = read_prompt_table_arrow(uri)
    meta = json.loads((t.schema.metadata or {}).get(METADATA_KEY, b"{}"))
    cols = {c: t.column(c).to_pylist() for c in ("prompt_id", "prompt", "category", "style", "material",
                                                  "backend", "model", "mentions_category")}
    summary = read_summary(uri)
    out = {
        "uri": _table_location(uri).uri, "num_prompts": t.num_rows,
        "table_sha256": table_content_hash(cols["prompt_id"], cols["prompt"]),
        "backend": dict(Counter(cols["backend"]).most_common()),
        "model": dict(Counter(cols["model"]).most_common()),
        "metadata": meta,
        "per_topic": {k: dict(Counter(cols[k]).most_common()) for k in ("category", "style", "material")},
        "mentions_category": round(sum(cols["mentions_category"]) / t.num_rows, 4) if t.num_rows else 0.0,
        "first": [{"prompt_id": i, "prompt": p} for i, p in zip(cols["prompt_id"][:limit], cols["prompt"][:limit])],
    }
    if summary is not None:
        out["run"] = {k: summary.get(k) for k in ("status", "num_prompts_requested", "num_requests", "dropped",
                                                  "surplus", "shortfall", "diversity", "prompts_per_s", "error")
                      if k in summary}
    return out
