"""Where a generator's *posterior* training samples come from: objects G reconstructs (its VAE
posterior) so that training pairs sit where real inputs are, not only where G's prior samples.

- ``procedural_cloud``: a train-split object of the procedural corpus (``squeeze3d.corpora.points``).
- ``real_cloud``: a train-split object of the real-object corpus (``squeeze3d.realcorpus``, built by
  ``squeeze3d corpus fetch`` from Debian packages), with the augmentations real assets need: a
  random rotation (half upright, turned about the up axis; half any orientation, as scans and CAD
  files arrive in arbitrary frames) and an anisotropic scale (0.6-1.4 per axis, which also makes
  thin parts thinner). Val/test objects are never drawn.

Every draw is a pure function of (seed, settings): builds are reproducible and resumable.
"""

from __future__ import annotations

import functools

import numpy as np

PROCEDURAL_STREAM, REAL_STREAM = 0x5054, 0x5245
REAL_SOURCES = ("sweethome3d", "flightgear")
"""Real objects only: pybullet's random shapes (also in the corpus) are not drawn."""


def procedural_cloud(seed: int, corpus_seed: int, num_points: int) -> np.ndarray:
    """``[num_points, 3]`` float32: a train-split procedural object chosen by ``seed``."""
    from squeeze3d.corpora import points as corpus

    rng = np.random.default_rng([int(seed) & (2**63 - 1), PROCEDURAL_STREAM])
    while True:  # 80 % of indices are train: a couple of draws at most, deterministic in the seed
        index = int(rng.integers(0, 1 << 30))
        if corpus.split_of(index) == "train":
            break
    shape = corpus.make_shape(corpus_seed, index, num_points, sample_stream=1 + int(rng.integers(1000)))
    return shape.points


@functools.lru_cache(maxsize=2)
def _real_train(num_points: int, views: int) -> tuple[np.ndarray, str]:
    """The real corpus' train split as surface samples ``[M, views, num_points, 3]`` (unit sphere,
    z up) and the corpus identity (its index hash): loaded once per process."""
    import hashlib
    import json

    from squeeze3d import realcorpus

    index = realcorpus.load_index()
    train = realcorpus.select(index, "train", sources=REAL_SOURCES)
    if not train:
        raise ValueError("the real-object corpus has no train objects: run `squeeze3d corpus fetch` first")
    clouds = realcorpus.point_cache("train", n_points=num_points, views=views, seed=0, augment=None,
                                    sources=REAL_SOURCES)
    ident = json.dumps([(o["id"], o["file"], o["n_faces"]) for o in train], sort_keys=True)
    return clouds, hashlib.sha256(ident.encode()).hexdigest()[:16]


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """Half the draws upright (about z), half uniform on SO(3) (QR of a Gaussian matrix)."""
    if rng.random() < 0.5:
        a = rng.uniform(0, 2 * np.pi)
        c, s = np.cos(a), np.sin(a)
        return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def augment(points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Anisotropic scale, then a rotation, then the unit-sphere normalisation again."""
    p = points * rng.uniform(0.6, 1.4, size=3)
    p = p @ random_rotation(rng).T
    p = p - (p.max(0) + p.min(0)) / 2
    return (p / max(np.linalg.norm(p, axis=1).max(), 1e-12)).astype(np.float32)


def real_cloud(seed: int, num_points: int, views: int = 4) -> np.ndarray:
    """``[num_points, 3]`` float32: a train-split real object chosen by ``seed``, augmented."""
    clouds, _ = _real_train(num_points, views)
    rng = np.random.default_rng([int(seed) & (2**63 - 1), REAL_STREAM])
    obj, view = int(rng.integers(len(clouds))), int(rng.integers(clouds.shape[1]))
    return augment(np.asarray(clouds[obj, view], np.float64), rng)


def real_identity(num_points: int, views: int = 4) -> str:
    """The real corpus' identity as the generator's hash records it."""
    return _real_train(num_points, views)[1]
