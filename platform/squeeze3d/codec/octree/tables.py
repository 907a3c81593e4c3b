"""Integer probability tables of the octree coder: counted on training clouds, smoothed, stored.

A table holds, for every context id (``context.N_CONTEXTS``), P(occupied) × 65536 as a 16-bit
integer. Two tables ship: ``classical`` (no neural prior: the G-PCC-class path) and ``neural`` (the
enhancement layer, whose contexts see the decoder's neural reconstruction). They are counted on the
real-object corpus' train split and the procedural corpus' train split (``fit.py``, recipe
``jobs/fit_octree_tables.py``) and stored as one safetensors file with a JSON sidecar; they never
change at run time, so encoder and decoder always agree.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from importlib import resources
from pathlib import Path

import numpy as np

from squeeze3d.codec.octree.context import AXIS_STATES, LEVEL_BINS, N_CONTEXTS, NEURAL_BINS, SIB_BINS

TABLE_NAMES = ("classical", "neural")
P_MIN, P_MAX = 16, 65536 - 16  # never certain: a context unseen in training costs at most 12 bits
SMOOTHING = 2.0


def smooth(n0: np.ndarray, n1: np.ndarray) -> np.ndarray:
    """Counts per context → uint16 P(1)·65536, backing off from sparse contexts to coarser ones:
    (sibling count, k) → (+ axis state) → (+ level) → (+ neural bin)."""
    shape = (LEVEL_BINS, NEURAL_BINS, SIB_BINS, 8, AXIS_STATES)
    c0 = n0.reshape(shape).astype(np.float64)
    c1 = n1.reshape(shape).astype(np.float64)
    a = SMOOTHING

    def est(k1, k0, prior):
        return (k1 + a * prior) / (k1 + k0 + a)

    s1, s0 = c1.sum(axis=(0, 1, 4), keepdims=True), c0.sum(axis=(0, 1, 4), keepdims=True)
    p = (s1 + 1) / (s1 + s0 + 2)
    p = est(c1.sum(axis=(0, 1), keepdims=True), c0.sum(axis=(0, 1), keepdims=True), p)
    p = est(c1.sum(axis=1, keepdims=True), c0.sum(axis=1, keepdims=True), p)
    p = est(c1, c0, p)
    q = np.clip(np.round(p * 65536), P_MIN, P_MAX).astype(np.uint16)
    return q.reshape(N_CONTEXTS)


def default_path() -> Path:
    return Path(str(resources.files("squeeze3d.codec.octree") / "tables.safetensors"))


def save_tables(tables: dict[str, np.ndarray], path: str | Path, meta: dict) -> str:
    """Write the tables (atomically) and a JSON sidecar; returns the sha256 of the safetensors file."""
    from safetensors.numpy import save_file

    path = Path(path)
    tmp = path.with_suffix(".tmp")
    save_file({k: np.ascontiguousarray(v, np.uint16) for k, v in tables.items()}, str(tmp),
              metadata={"n_contexts": str(N_CONTEXTS)})
    os.replace(tmp, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    side = path.with_suffix(".json")
    side.write_text(json.dumps({**meta, "sha256": digest, "n_contexts": N_CONTEXTS}, indent=2) + "\n")
    return digest


@functools.lru_cache(maxsize=4)
def load_tables(path: str | None = None) -> dict[str, np.ndarray]:
    """The shipped tables (or those at ``path``), checked against the context layout."""
    from safetensors.numpy import load_file

    p = Path(path) if path else default_path()
    if not p.is_file():
        raise FileNotFoundError(f"octree context tables missing: {p} (rebuild: python jobs/fit_octree_tables.py)")
    t = load_file(str(p))
    for name in TABLE_NAMES:
        if name not in t or t[name].shape != (N_CONTEXTS,) or t[name].dtype != np.uint16:
            raise ValueError(f"{p}: table {name!r} does not match this build's {N_CONTEXTS} contexts")
    return t


def table(name: str) -> np.ndarray:
    return load_tables()[name]


def tables_hash() -> str:
    return hashlib.sha256(default_path().read_bytes()).hexdigest()
