"""(z_E, z_G) pairs of *real* corpus objects, for ceilings: z_E from the frozen encoder of the
object's points, z_G = G's VAE posterior of the same points (canonical order). Cached as ``.npz``
under the state folder; deterministic from (count, level).

Used by ``jobs/bench_ceilings.py`` to measure where quality is lost (E, the code, or G) with the same
``fit`` loop, losses and metrics as training on synthetic pairs.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch


def corpus_pairs(count: int, level: str = "global", cache_dir: str | Path | None = None, log=print) -> dict:
    """Objects ``0..count-1``: ``points [n, 2048, 3]``, ``z_e``, ``z_g``, ``splits`` (0/1/2)."""
    from squeeze3d.corpora import points as corpus
    from squeeze3d.tracking import state_dir
    from squeeze3d.zoo.lion.model import LionGenerator, load_lion
    from squeeze3d.zoo.pointnet2.model import PointNet2Encoder

    d = Path(cache_dir) if cache_dir else state_dir() / "cache"
    path = d / f"corpus_pairs_{level}_{count}.npz"
    if path.is_file():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    enc = PointNet2Encoder("cpu", level=level)
    model, configs = load_lion(with_priors=False)
    gen = LionGenerator("cpu", model=model, configs=configs)
    pts = np.zeros((count, 2048, 3), np.float32)
    z_e, z_g = [], []
    t0 = time.perf_counter()
    for s in range(0, count, 32):
        idx = range(s, min(count, s + 32))
        x = torch.from_numpy(np.stack([corpus.make_shape(corpus.DEFAULT_SEED, i, 2048).points for i in idx]))
        pts[s:s + len(idx)] = x.numpy()
        z_e.append(enc.encode(x).numpy().astype(np.float16 if level != "global" else np.float32))
        z_g.append(gen.encode_latents(x).numpy())
        if s % 640 == 0:
            log(f"  corpus pairs {s}/{count} ({time.perf_counter() - t0:.0f}s)")
    out = {"points": pts, "z_e": np.concatenate(z_e), "z_g": np.concatenate(z_g),
           "splits": np.array([corpus.SPLITS.index(corpus.split_of(i)) for i in range(count)])}
    d.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **out)
    tmp.replace(path)
    return out
