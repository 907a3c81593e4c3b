"""Training data of the mini MeshAnything shape autoencoder, built once from the textured corpus
and cached as ``.npz`` chunks under ``corpus.corpus_cache_dir()``.

Per corpus object (``mesh_corpus.make_textured``):
- ``surface [N, 9]``: the platform's mesh asset tensor (``sample_surface(mesh, N, seed=0)``: xyz,
  normal, rgb), the encoder's input;
- ``targets [N, 9]``: an independent surface sampling (seed 1): colour-head queries, and the
  centres of the near-surface occupancy queries (so the decoder is not asked about the very points
  the encoder saw);
- ``occ_pts [Q, 3]`` / ``occ [Q]``: occupancy queries (half near the surface, half uniform in
  [-1, 1]^3, as Michelangelo's "near/far" volume samples) with inside/outside labels.

Chunks of ``CHUNK`` objects are the unit of caching: an interrupted build keeps what it finished,
and a larger ``count`` reuses the chunks a smaller one wrote. Generating an object costs ~0.1 s on
this CPU (corpus boolean union + inside tests): a few minutes per thousand that retraining skips.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from squeeze3d.corpora import meshes as mesh_corpus
from squeeze3d.corpora import points as corpus
from squeeze3d.meshdata import sample_surface, signed_distance

CHUNK = 100
NUM_SURFACE = 2048
"""Points per asset (the platform's mesh asset tensor ``[N, 9]``)."""
NUM_NEAR = 2048
NUM_UNIFORM = 2048
NEAR_SIGMAS = (0.01, 0.05)
"""Gaussian offsets of near-surface queries (half each): the thin band decides the surface's position,
the wider one its rough extent."""
_STREAM_OCC = 11  # rng stream for occupancy queries (corpus streams 0/1/7 are taken)
_VERSION = "v2"


def object_arrays(seed: int, index: int) -> dict[str, np.ndarray]:
    """The cached arrays of one corpus object (deterministic in ``(seed, index)``)."""
    shape = mesh_corpus.make_textured(seed, index)
    surface = sample_surface(shape.mesh, NUM_SURFACE, seed=0)
    targets = sample_surface(shape.mesh, NUM_SURFACE, seed=1)
    rng = np.random.default_rng([int(seed), int(index), _STREAM_OCC])
    centres = targets[rng.choice(NUM_SURFACE, NUM_NEAR, replace=NUM_NEAR > NUM_SURFACE), :3]
    sig = np.repeat(np.asarray(NEAR_SIGMAS, np.float32), [NUM_NEAR // 2, NUM_NEAR - NUM_NEAR // 2])
    near = centres + rng.normal(size=(NUM_NEAR, 3)).astype(np.float32) * sig[:, None]
    uniform = rng.uniform(-1, 1, size=(NUM_UNIFORM, 3)).astype(np.float32)
    occ_pts = np.concatenate([near, uniform]).astype(np.float32)
    # the sign of meshdata's signed distance: normal votes of the nearest surface samples, the
    # winding number only where they disagree (same labels as winding numbers alone, ~10x faster)
    occ = signed_distance(shape.mesh, occ_pts)[0] < 0
    return {"surface": surface, "targets": targets, "occ_pts": occ_pts, "occ": occ,
            "labels": np.int64(shape.label), "splits": np.int64(corpus.SPLITS.index(shape.split))}


def _chunk_path(cache_dir: Path, seed: int, start: int) -> Path:
    key = hashlib.sha256(f"{_VERSION}|{seed}|{start}|{CHUNK}|{NUM_SURFACE}|{NUM_NEAR}|{NUM_UNIFORM}|"
                         f"{NEAR_SIGMAS}".encode()).hexdigest()[:12]
    return cache_dir / f"meshanything_s{seed}_{start:06d}_{key}.npz"


def _build_chunk(seed: int, start: int, path: Path) -> dict[str, np.ndarray]:
    rows = [object_arrays(seed, i) for i in range(start, start + CHUNK)]
    out = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **out)
    os.replace(tmp, path)  # atomic: a half-written chunk is never read
    return out


def build_mesh_cache(count: int, seed: int = corpus.DEFAULT_SEED, cache_dir: str | Path | None = None,
                     progress: Callable[[int, int], None] | None = None) -> dict[str, np.ndarray]:
    """Arrays of corpus objects ``0..count-1`` (``count`` rounded up to whole chunks, then cut):
    ``surface [count, N, 9]``, ``targets [count, N, 9]``, ``occ_pts [count, Q, 3]``, ``occ [count, Q]``
    (bool), ``labels [count]``, ``splits [count]`` (0 train, 1 val, 2 test)."""
    cache = Path(cache_dir) if cache_dir is not None else corpus.corpus_cache_dir()
    parts = []
    for start in range(0, int(count), CHUNK):
        path = _chunk_path(cache, seed, start)
        if path.exists():
            with np.load(path) as z:
                parts.append({k: z[k] for k in z.files})
        else:
            parts.append(_build_chunk(seed, start, path))
        if progress is not None:
            progress(min(start + CHUNK, count), count)
    return {k: np.concatenate([p[k] for p in parts])[:count] for k in parts[0]}


if __name__ == "__main__":  # pre-build the cache in the background: python -m squeeze3d.zoo_training.meshanything_data N
    import sys
    import time

    import torch

    torch.set_num_threads(1)
    t0 = time.time()
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1600
    build_mesh_cache(n, progress=lambda i, c: print(f"cache {i}/{c} ({time.time() - t0:.0f}s)", flush=True))
