"""Condition sources: what the generator is sampled from when building training pairs.

A source turns sample ids into a ``condition`` column in two steps, so cheap and expensive sources
share one pipeline shape:

- ``input_columns(ids)`` runs on the driver while planning (cheap, deterministic: noise seeds, or
  the index of a prompt template);
- ``attach(ds)`` may add Ray Data stages that need workers (an LLM writing prompts, a renderer making
  condition images); it must leave a ``condition`` column of ``arrow_type`` on every row.

``describe()`` is recorded in the manifest and in each shard's fingerprint: two builds with different
condition sources never mix shards. Adding a source = a class here + one line in ``_SOURCES``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from squeeze3d.synth import schema


class ConditionSource:
    kind: str = ""
    arrow_type: pa.DataType = pa.null()

    def describe(self) -> dict:
        return {"kind": self.kind}

    def input_columns(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        return {}

    def attach(self, ds):
        """Extra Ray Data stages producing ``condition``; identity for driver-side sources."""
        return ds

    def for_generator(self, column: np.ndarray) -> Sequence[Any]:
        """Column values of a batch -> the ``conditions`` argument of ``Generator.sample``."""
        return column.tolist()


class NoiseSeeds(ConditionSource):
    """Unconditional generators: one integer seed per sample, derived from its id, so a sample is
    reproducible on any worker, any batch size and any device."""

    kind = "noise"
    arrow_type = pa.int64()

    def describe(self) -> dict:
        return {"kind": self.kind, "derivation": "splitmix64(sample_id ^ salt) >> 1"}

    def input_columns(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        return {"condition": schema.noise_seeds(ids)}

    def for_generator(self, column: np.ndarray) -> list[int]:
        return [int(s) for s in column]


_SOURCES: dict[str, type[ConditionSource]] = {
    "noise": NoiseSeeds,
    # "prompt": an LLM prompt source (vLLM / ray.data.llm) plugs in here,
    # "image": a rendered-condition source plugs in here.
}


class UnsupportedConditionError(ValueError):
    pass


def source_for(condition_kind: str) -> ConditionSource:
    """The default condition source for a pair's ``condition_kind``."""
    if condition_kind not in _SOURCES:
        raise UnsupportedConditionError(
            f"no condition source for condition kind {condition_kind!r} yet (available: "
            f"{', '.join(sorted(_SOURCES))}); add one in squeeze3d/synth/conditions.py")
    return _SOURCES[condition_kind]()
