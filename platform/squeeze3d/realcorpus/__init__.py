"""The real-object corpus: furniture, buildings, vehicles and shapes from pinned Debian packages
(and pybullet's wheel), converted to meshes with an index and a fixed object-level split.

``squeeze3d corpus fetch`` builds it (docs/corpus.md); training reads it through::

    from squeeze3d.realcorpus import load_index, load_mesh, sample_points, point_cache, Augment
    train = point_cache("train", n_points=2048, views=4, seed=0, augment=Augment())  # [M, 4, 2048, 3]

Names are imported on first use, so the CLI's start (which lists ``squeeze3d corpus``) stays light.
"""

import importlib

_API = {
    "fetch": "fetch",
    "SPLITS": "index", "corpus_dir": "index", "load_index": "index", "select": "index", "split_of": "index",
    "Augment": "points", "load_mesh": "points", "object_views": "points", "point_cache": "points",
    "sample_points": "points",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(f"squeeze3d.realcorpus.{_API[name]}"), name)
    raise AttributeError(f"module 'squeeze3d.realcorpus' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_API])
