"""Training data of the mini Shap-E: signed distances and colours around textured corpus objects.

For each object of ``mesh_corpus`` (normalised to the unit sphere, so it lies inside Shap-E's
[-1, 1]³ volume) we draw query points the way SDF auto-decoders do, most of them where the surface
is (that is where the marching-cubes zero level and the colours are decided):
  40 % surface + N(0, 0.01²), 35 % surface + N(0, 0.05²), 25 % uniform in [-1, 1]³,
with the signed distance (``meshdata.signed_distance``: negative inside) and the colour of the
nearest surface sample. Cached once per (seed, count, queries) as ``.npz`` (no pickle: captions are
a fixed-width unicode array).
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

_FRACTIONS = (0.40, 0.35)  # near (σ 0.01), mid (σ 0.05); the rest uniform
_SIGMAS = (0.01, 0.05)
_DENSE = 16384


def object_queries(seed: int, index: int, queries: int) -> dict[str, np.ndarray]:
    """Query points, signed distances and colours of corpus object ``index`` (deterministic)."""
    shape = mesh_corpus.make_textured(seed, index)
    rng = np.random.default_rng([int(seed), int(index), 11])
    dense = sample_surface(shape.mesh, _DENSE, seed=int(rng.integers(2**31)))
    n_near, n_mid = int(queries * _FRACTIONS[0]), int(queries * _FRACTIONS[1])
    n_uni = queries - n_near - n_mid
    pick = rng.integers(len(dense), size=n_near + n_mid)
    jitter = np.concatenate([rng.normal(0, _SIGMAS[0], (n_near, 3)), rng.normal(0, _SIGMAS[1], (n_mid, 3))])
    pts = np.concatenate([dense[pick, :3] + jitter, rng.uniform(-1, 1, (n_uni, 3))]).astype(np.float32)
    sdf, rgb = signed_distance(shape.mesh, pts, dense=dense)
    return {"points": pts, "sdf": sdf, "rgb": rgb.astype(np.float32), "label": np.int64(shape.label),
            "caption": shape.caption}


def cache_path(seed: int, count: int, queries: int) -> Path:
    key = hashlib.sha256(f"shap_e-v1|{seed}|{count}|{queries}".encode()).hexdigest()[:12]
    return corpus.corpus_cache_dir() / f"shap_e_s{seed}_n{count}_q{queries}_{key}.npz"


def build(count: int, queries: int = 4096, seed: int = corpus.DEFAULT_SEED,
          progress: Callable[[int, int], None] | None = None) -> dict[str, np.ndarray]:
    """Queries of objects ``0..count-1`` (all splits; ``splits``: 0 train, 1 val, 2 test), cached."""
    path = cache_path(seed, count, queries)
    if path.exists():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    out = {"points": np.zeros((count, queries, 3), np.float32), "sdf": np.zeros((count, queries), np.float32),
           "rgb": np.zeros((count, queries, 3), np.float32), "labels": np.zeros(count, np.int64)}
    captions = []
    for i in range(count):
        q = object_queries(seed, i, queries)
        out["points"][i], out["sdf"][i], out["rgb"][i], out["labels"][i] = q["points"], q["sdf"], q["rgb"], q["label"]
        captions.append(q["caption"])
        if progress is not None:
            progress(i + 1, count)
    out["captions"] = np.array(captions, dtype="<U160")
    out["splits"] = np.array([corpus.SPLITS.index(corpus.split_of(i)) for i in range(count)], np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **out)
    os.replace(tmp, path)  # atomic: a half-written cache is never read
    return out


if __name__ == "__main__":  # background pre-build: python -m squeeze3d.zoo_training.shap_e_data COUNT
    import sys
    import time

    import torch

    torch.set_num_threads(1)
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1440
    t0 = time.time()
    build(n, progress=lambda i, c: print(f"{i}/{c} {time.time() - t0:.0f}s", flush=True) if i % 50 == 0 else None)
    print("done", time.time() - t0, flush=True)
