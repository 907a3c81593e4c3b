"""Seed topics for prompt generation: object categories, styles and materials.

They live as YAML under ``squeeze3d/data/prompts/`` (``categories.yaml``, ``styles.yaml``,
``materials.yaml``); every request of a run gets one (category, style, material) triple, chosen
deterministically from the run seed and the request index so that two runs with the same seed ask
exactly the same questions.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from squeeze3d.errors import UserError

TOPIC_FILES = ("categories", "styles", "materials")
_NAME_RE = re.compile(r"^[a-z][a-z0-9 '\-]*[a-z0-9]$")


class TopicsError(UserError):
    """A topic vocabulary that is missing or malformed."""


@dataclass(frozen=True)
class Category:
    name: str
    corpus: bool = False
    """True for the categories of the procedural mini-zoo corpus."""
    details: tuple[str, ...] = ()
    """Optional part phrases ("four slender legs") used by the template grammar."""


@dataclass(frozen=True)
class Topics:
    categories: tuple[Category, ...]
    styles: tuple[str, ...]
    materials: tuple[str, ...]
    source: str = field(default="", compare=False)
    """Directory the vocabularies were read from (shown in run summaries)."""

    def category(self, name: str) -> Category:
        for c in self.categories:
            if c.name == name:
                return c
        raise KeyError(name)

    def fingerprint(self) -> str:
        """Short hash of the vocabularies, recorded in the prompt table's metadata."""
        h = hashlib.sha256()
        for c in self.categories:
            h.update(f"c:{c.name}:{'|'.join(c.details)}\n".encode())
        for s in self.styles:
            h.update(f"s:{s}\n".encode())
        for m in self.materials:
            h.update(f"m:{m}\n".encode())
        return h.hexdigest()[:16]


def default_topics_dir() -> Path:
    """The vocabularies shipped with the package (``squeeze3d/data/prompts``);
    ``SQUEEZE3D_PROMPT_TOPICS`` overrides."""
    env = os.environ.get("SQUEEZE3D_PROMPT_TOPICS")
    if env:
        return Path(env)
    from squeeze3d.package_data import shipped_path

    return shipped_path("prompts")


def _check_name(value, where: str) -> str:
    if not isinstance(value, str) or not _NAME_RE.match(value.strip()):
        raise TopicsError(f"{where}: {value!r} is not a valid topic (lower-case words, digits, '-', "
                          "apostrophes and spaces)")
    return value.strip()


def _load_items(path: Path, kind: str) -> list:
    if not path.is_file():
        raise TopicsError(f"{path}: missing; the prompt topics need {', '.join(f + '.yaml' for f in TOPIC_FILES)}")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise TopicsError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(doc, dict) or doc.get("kind") != kind or not isinstance(doc.get("items"), list):
        raise TopicsError(f"{path}: expected a mapping with `kind: {kind}` and a list `items`")
    if not doc["items"]:
        raise TopicsError(f"{path}: `items` is empty")
    return doc["items"]


def _unique(names: list[str], path: Path) -> None:
    seen = set()
    for n in names:
        if n in seen:
            raise TopicsError(f"{path}: {n!r} is listed twice")
        seen.add(n)


def load_topics(directory: str | os.PathLike | None = None) -> Topics:
    """Read and validate the three vocabularies; any problem is a ``TopicsError`` naming the file."""
    d = Path(directory) if directory is not None else default_topics_dir()
    if not d.is_dir():
        raise TopicsError(f"{d}: topic directory not found; pass --topics DIR (with "
                          f"{', '.join(f + '.yaml' for f in TOPIC_FILES)})")
    cats = []
    path = d / "categories.yaml"
    for i, item in enumerate(_load_items(path, "categories")):
        where = f"{path}: items[{i}]"
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict) or "name" not in item:
            raise TopicsError(f"{where}: expected a name or a mapping with `name`")
        unknown = set(item) - {"name", "corpus", "details"}
        if unknown:
            raise TopicsError(f"{where}: unknown keys {sorted(unknown)} (allowed: name, corpus, details)")
        details = item.get("details") or []
        if not isinstance(details, list) or not all(isinstance(x, str) and x.strip() for x in details):
            raise TopicsError(f"{where}: `details` must be a list of phrases")
        cats.append(Category(_check_name(item["name"], where), bool(item.get("corpus", False)),
                             tuple(x.strip() for x in details)))
    _unique([c.name for c in cats], path)
    lists = {}
    for kind in ("styles", "materials"):
        path = d / f"{kind}.yaml"
        names = [_check_name(x, f"{path}: items[{i}]") for i, x in enumerate(_load_items(path, kind))]
        _unique(names, path)
        lists[kind] = tuple(names)
    return Topics(tuple(cats), lists["styles"], lists["materials"], source=str(d))


def derive_seed(run_seed: int, index: int, salt: str = "request") -> int:
    """A 31-bit seed from (run seed, index): stable across processes and Python versions
    (unlike ``hash``), independent for neighbouring indices, and accepted by vLLM."""
    digest = hashlib.blake2b(f"{salt}:{int(run_seed)}:{int(index)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFFFFFF


def topic_for(topics: Topics, run_seed: int, index: int) -> dict:
    """The (category, style, material) of request ``index``. Categories cycle through a seeded
    permutation so every category gets an equal share; style and material are seeded draws."""
    import numpy as np

    n = len(topics.categories)
    rounds, pos = divmod(index, n)
    perm = np.random.default_rng([int(run_seed) & 0x7FFFFFFF, rounds, 7]).permutation(n)
    rng = np.random.default_rng(derive_seed(run_seed, index, "topic"))
    return {
        "category": topics.categories[int(perm[pos])].name,
        "style": topics.styles[int(rng.integers(len(topics.styles)))],
        "material": topics.materials[int(rng.integers(len(topics.materials)))],
    }
