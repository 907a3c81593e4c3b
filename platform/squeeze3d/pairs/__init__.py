"""Pair registry: name -> module path. Modules are imported only when a pair is asked for, so heavy
model code stays out of drivers that only need names (Ray's release-harness pattern)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from squeeze3d.errors import user_error

if TYPE_CHECKING:
    from squeeze3d.pairs.base import PairSpec

# Adding a pair: write squeeze3d/pairs/<name>.py defining PAIR, then add one line here.
_REGISTRY: dict[str, str] = {
    "debug": "squeeze3d.pairs.debug",
    "debug_mesh": "squeeze3d.pairs.debug_mesh",
    "debug_text": "squeeze3d.pairs.debug_text",
    "meshanything_shape": "squeeze3d.pairs.meshanything_shape",
    "nerfmae": "squeeze3d.pairs.nerfmae",
    "pointnet_lion": "squeeze3d.pairs.pointnet_lion",
}


@user_error
class UnknownPairError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return self.args[0]


def names() -> list[str]:
    """The registered pairs (``all_names`` adds the pairs declared in files)."""
    return sorted(_REGISTRY)


def all_names() -> list[str]:
    """Registered pairs and pairs declared in files (``pairs.declared``)."""
    from squeeze3d.pairs import declared

    return sorted({*_REGISTRY, *declared.names()})


def get_pair(name: str) -> PairSpec:
    """The ``PairSpec`` registered as ``name``, declared in a pair file named ``name``, or declared in
    the pair file at path ``name`` (``pairs.declared``); unknown names raise an error listing the known ones."""
    if name not in _REGISTRY:
        from squeeze3d.pairs import declared

        path = name if declared.looks_like_path(name) else declared.find(name)
        if path is None:
            raise UnknownPairError(f"unknown pair {name!r}; registered pairs: {', '.join(names())}; declared in pair "
                                   f"files: {', '.join(declared.names()) or 'none'} (or pass one: --pair path/to/pair.yaml)")
        from squeeze3d.pairs.declared_spec import load_file

        return load_file(path)
    spec = importlib.import_module(_REGISTRY[name]).PAIR
    if spec.name != name:
        raise RuntimeError(f"pair module {_REGISTRY[name]} defines {spec.name!r}, registered as {name!r}")
    return spec


def __getattr__(name: str):
    # PairSpec's module imports torch (through the zoo and asset contracts); the names and the
    # registry do not need it, so reading a .sq3d header (its pair tag) stays torch-free
    if name == "PairSpec":
        from squeeze3d.pairs.base import PairSpec

        return PairSpec
    raise AttributeError(f"module 'squeeze3d.pairs' has no attribute {name!r}")


__all__ = ["PairSpec", "UnknownPairError", "all_names", "get_pair", "names"]
