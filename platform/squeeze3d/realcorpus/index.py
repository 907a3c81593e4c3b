"""``index.json`` of the real-object corpus and its object-level split.

The split of an object depends on its id alone: the first 8 bytes of ``sha256(id)`` as an integer,
modulo 10 -> 0..7 train, 8 val, 9 test. Adding or removing objects (or whole sources) never moves
another object between splits."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from squeeze3d.errors import UserError

INDEX_NAME = "index.json"
INDEX_VERSION = 1
SPLITS = ("train", "val", "test")


def split_of(object_id: str) -> str:
    slot = int.from_bytes(hashlib.sha256(object_id.encode("utf-8")).digest()[:8], "big") % 10
    return "train" if slot < 8 else ("val" if slot == 8 else "test")


def mesh_file_for(object_id: str) -> str:
    """Path of an object's mesh relative to the corpus dir (ids hold ``#``, spaces, accents...)."""
    source = object_id.split("/", 1)[0]
    return f"meshes/{source}/{hashlib.sha256(object_id.encode('utf-8')).hexdigest()[:20]}.npz"


def corpus_dir(cache: str | Path | None = None) -> Path:
    """``cache``, else ``$SQUEEZE3D_CORPUS_DIR``, else ``~/.cache/squeeze3d/realcorpus`` (the
    procedural corpus already caches its points in ``~/.cache/squeeze3d/corpus``)."""
    if cache is not None:
        return Path(cache).expanduser()
    env = os.environ.get("SQUEEZE3D_CORPUS_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "squeeze3d" / "realcorpus"


def write_index(root: Path, sources: dict, objects: list[dict]) -> Path:
    objects = sorted(objects, key=lambda o: o["id"])
    doc = {"version": INDEX_VERSION, "split_rule": "sha256(id)[:8] % 10: 0-7 train, 8 val, 9 test",
           "up_axis": "z", "units": "metres", "sources": dict(sorted(sources.items())), "objects": objects}
    path = root / INDEX_NAME
    tmp = path.with_name(INDEX_NAME + ".part")
    tmp.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def load_index(root: str | Path | None = None) -> dict:
    """The parsed ``index.json`` of the corpus at ``root`` (default ``fetch.corpus_dir()``), with
    ``root`` added; a missing index is a ``UserError`` saying how to build it."""
    root = corpus_dir(root)
    path = root / INDEX_NAME
    if not path.exists():
        raise UserError(f"no real-object corpus at {root}: run `squeeze3d corpus fetch` (or `make corpus`) first")
    doc = json.loads(path.read_text(encoding="utf-8"))
    if doc.get("version") != INDEX_VERSION:
        raise UserError(f"{path}: index version {doc.get('version')} is not {INDEX_VERSION}; run `squeeze3d corpus fetch` again")
    doc["root"] = str(root)
    return doc


def select(index: dict, split: str | None = None, sources=None, categories=None) -> list[dict]:
    """Index entries (sorted by id) of one split (``None``: all), optionally limited to sources and
    categories."""
    if split is not None and split not in SPLITS:
        raise UserError(f"unknown split {split!r}; expected one of {SPLITS}")
    src = {sources} if isinstance(sources, str) else (set(sources) if sources else None)
    cat = {categories} if isinstance(categories, str) else (set(categories) if categories else None)
    return [o for o in index["objects"]
            if (split is None or o["split"] == split) and (src is None or o["source"] in src)
            and (cat is None or o["category"] in cat)]
