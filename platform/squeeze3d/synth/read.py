"""Readers for finished synthetic datasets (what the training stage consumes).

- ``load_split(uri, split)``: ``(z_e, z_g)`` float32 tensors in sample-index order, plain pyarrow
  (no Ray), for single-device training and tests;
- ``read_dataset(uri, split)``: a streaming ``ray.data.Dataset`` for Ray Train.

Both go through the manifest, so an unfinished build (no manifest yet) is refused instead of
silently training on part of the data.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from squeeze3d import storage
from squeeze3d.synth import schema
from squeeze3d.synth.manifest import Manifest, read_manifest


def open_dataset(uri: str) -> tuple[storage.Location, Manifest]:
    root = storage.resolve(uri)
    return root, read_manifest(root)


def _check_split(split: str | None) -> None:
    if split is not None and split not in schema.SPLITS:
        raise ValueError(f"unknown split {split!r}; one of {', '.join(schema.SPLITS)}")


def read_table(uri: str, split: str | None = None,
               columns: Sequence[str] = ("sample_id", "z_e", "z_g", "split")) -> pa.Table:
    """All shards (or one split) as one Arrow table, in sample-index order."""
    _check_split(split)
    root, man = open_dataset(uri)
    cols = list(dict.fromkeys([*columns, "split"])) if split is not None else list(columns)
    tables = []
    for s in man.shards:
        loc = root.join(*s.path.split("/"))
        with loc.fs.open_input_file(loc.path) as f:
            t = pq.read_table(f, columns=cols)
        if split is not None:
            t = t.filter(pc.equal(t.column("split"), split)).select(list(columns))
        tables.append(t)
    return pa.concat_tables(tables)


def load_split(uri: str, split: str = "train", device: str = "cpu"):
    """``(z_e [n, *z_E], z_g [n, *z_G])`` float32 torch tensors of one split."""
    import torch

    _, man = open_dataset(uri)
    t = read_table(uri, split, columns=("z_e", "z_g"))
    z_e = schema.column_to_numpy(t.column("z_e"), man.z_e_shape) if t.num_rows else \
        np.zeros((0, *man.z_e_shape), np.float32)
    z_g = schema.column_to_numpy(t.column("z_g"), man.z_g_shape) if t.num_rows else \
        np.zeros((0, *man.z_g_shape), np.float32)
    # Arrow buffers are read-only; torch needs writable memory, so copy once here
    return (torch.from_numpy(np.require(z_e, np.float32, ["C_CONTIGUOUS", "WRITEABLE"])).to(device),
            torch.from_numpy(np.require(z_g, np.float32, ["C_CONTIGUOUS", "WRITEABLE"])).to(device))


def read_dataset(uri: str, split: str | None = None,
                 columns: Sequence[str] = ("sample_id", "z_e", "z_g", "split")):
    """A ``ray.data.Dataset`` over the shards of a finished dataset (optionally one split).

    Tensor columns arrive as ``[batch, *shape]`` arrays (``iter_batches``/``iter_torch_batches``).
    The filesystem object travels with the read tasks, so S3 endpoints/credentials resolved here
    also reach the workers.
    """
    import ray.data

    _check_split(split)
    root, man = open_dataset(uri)
    paths = [root.join(*s.path.split("/")).path for s in man.shards]
    cols = list(columns)
    if split is not None and "split" not in cols:
        cols.append("split")
    ds = ray.data.read_parquet(paths, filesystem=root.fs).select_columns(cols)
    if split is not None:
        from ray.data.expressions import col

        ds = ds.filter(expr=col("split") == split)
        if "split" not in columns:
            ds = ds.select_columns(list(columns))
    return ds
