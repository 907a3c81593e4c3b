"""Condition sources: what the generator is sampled from when building training pairs.

A source turns sample ids into a ``condition`` column in two steps, so cheap and expensive sources
share one pipeline shape:

- ``input_columns(ids, indices)`` runs on the driver while planning (cheap, deterministic: noise
  seeds, or the prompt a sample index maps to);
- ``attach(ds)`` may add Ray Data stages that need workers (a renderer making condition images);
  it must leave a ``condition`` column of ``arrow_type`` on every row.

``generator_conditions(batch)`` turns a batch's columns into the ``conditions`` argument of
``Generator.sample`` on the generator actors. ``describe()`` is recorded in the manifest and in each
shard's fingerprint: two builds with different condition sources (or different prompt tables) never
mix shards. Adding a source = a class here + one line in ``_SOURCES``.
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

    def input_columns(self, ids: np.ndarray, indices: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Driver-side columns for samples ``ids`` (at build positions ``indices``)."""
        return {}

    def attach(self, ds):
        """Extra Ray Data stages producing ``condition``; identity for driver-side sources."""
        return ds

    def for_generator(self, column: np.ndarray) -> Sequence[Any]:
        """Column values of a batch -> the ``conditions`` argument of ``Generator.sample``."""
        return column.tolist()

    def generator_conditions(self, batch: dict[str, np.ndarray]) -> Sequence[Any]:
        """A whole batch (``sample_id``, ``condition``, ...) -> ``Generator.sample`` conditions."""
        return self.for_generator(batch["condition"])


class NoiseSeeds(ConditionSource):
    """Unconditional generators: one integer seed per sample, derived from its id, so a sample is
    reproducible on any worker, any batch size and any device."""

    kind = "noise"
    arrow_type = pa.int64()

    def describe(self) -> dict:
        return {"kind": self.kind, "derivation": "splitmix64(sample_id ^ salt) >> 1"}

    def input_columns(self, ids: np.ndarray, indices: np.ndarray | None = None) -> dict[str, np.ndarray]:
        return {"condition": schema.noise_seeds(ids)}

    def for_generator(self, column: np.ndarray) -> list[int]:
        return [int(s) for s in column]


class PromptConditions(ConditionSource):
    """Text-conditioned generators: the prompt table of ``jobs/build_prompts.py``, each prompt
    ``samples_per_prompt`` (k) times. Sample index ``i`` is prompt ``i // k``, repeat ``i % k``
    (prompt-major, as ``prompts.expand_prompts``), so any worker can recompute a sample's prompt from
    its index alone, and a shorter build is a prefix of a longer one.

    The ``condition`` column holds the prompt text (shard schema v1 unchanged). What makes the k
    repeats of a prompt differ is a per-sample generator seed derived from the sample id exactly as
    noise seeds are (``schema.noise_seeds``), so it is recomputable from the stored ``sample_id``;
    the generator receives ``(prompt, seed)`` pairs. ``describe()`` carries the table's content hash,
    so shards built from different tables (or another k) never mix.

    ``problem`` (the pair's ``PairSpec.condition_problem``): prompts it names a reason for (empty,
    too long for G) are left out before the index mapping, so G never sees them; ``rejected`` counts
    them by reason (recorded by ``describe()``, hence in the manifest). The table hash stays the whole
    table's.
    """

    kind = "prompt"
    arrow_type = pa.string()

    def __init__(self, uri: str, samples_per_prompt: int | None = None, problem=None):
        import json

        from squeeze3d.prompts.table import METADATA_KEY, read_prompt_table_arrow, table_content_hash

        table = read_prompt_table_arrow(uri)  # PromptTableError (a UserError) when unusable
        meta = json.loads((table.schema.metadata or {}).get(METADATA_KEY, b"{}"))
        # Default k: what the table was built for (build_prompts --samples-per-prompt), else the paper's 4.
        k = samples_per_prompt if samples_per_prompt is not None else meta.get("samples_per_prompt", 4)
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise PromptSourceError(f"--samples-per-prompt must be a positive integer, got {k!r}")
        if table.num_rows == 0:
            raise PromptSourceError(f"{uri}: the prompt table is empty; nothing to condition on")
        self.uri = uri
        self.samples_per_prompt = k
        self.prompts: list[str] = table.column("prompt").to_pylist()
        self.prompt_ids: list[str] = table.column("prompt_id").to_pylist()
        self.table_sha256 = table_content_hash(self.prompt_ids, self.prompts)
        self.rejected: dict = {"count": 0, "reasons": {}, "prompt_ids": []}
        if problem is not None:
            keep = []
            for i, p in enumerate(self.prompts):
                why = problem(p)
                if why is None:
                    keep.append(i)
                    continue
                self.rejected["count"] += 1
                self.rejected["reasons"][why] = self.rejected["reasons"].get(why, 0) + 1
                if len(self.rejected["prompt_ids"]) < 20:  # a sample to look up in the table
                    self.rejected["prompt_ids"].append(self.prompt_ids[i])
            if not keep:
                raise PromptSourceError(f"{uri}: none of the {len(self.prompts)} prompts can condition this "
                                        f"pair's generator ({self.rejected['reasons']})")
            self.prompts = [self.prompts[i] for i in keep]
            self.prompt_ids = [self.prompt_ids[i] for i in keep]
        self.backends = sorted(set(table.column("backend").to_pylist()))
        self.models = sorted(set(table.column("model").to_pylist()))

    @property
    def num_conditions(self) -> int:
        """n_prompts * k: the default (and largest) number of samples of a build."""
        return len(self.prompts) * self.samples_per_prompt

    def describe(self) -> dict:
        # No URI here: the same table copied to S3 is the same build.
        out = {"kind": self.kind, "table_sha256": self.table_sha256, "num_prompts": len(self.prompts),
               "samples_per_prompt": self.samples_per_prompt, "backend": self.backends, "model": self.models,
               "mapping": "index i -> prompt i // k, repeat i % k",
               "seed_derivation": "splitmix64(sample_id ^ salt) >> 1"}
        if self.rejected["count"]:  # only then: fingerprints of tables without rejects are unchanged
            out["rejected_prompts"] = self.rejected
            out["mapping"] = "index i -> usable prompt i // k, repeat i % k (rejected prompts left out)"
        return out

    def locate(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sample indices -> (row in the prompt table, repeat number)."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_conditions):
            raise IndexError(f"sample index outside [0, {self.num_conditions}) for {len(self.prompts)} "
                             f"prompts x {self.samples_per_prompt}")
        return idx // self.samples_per_prompt, idx % self.samples_per_prompt

    def provenance(self, indices: np.ndarray) -> list[tuple[str, int]]:
        """``(prompt_id, repeat)`` of each sample index."""
        rows, reps = self.locate(indices)
        return [(self.prompt_ids[r], int(j)) for r, j in zip(rows.tolist(), reps.tolist())]

    def input_columns(self, ids: np.ndarray, indices: np.ndarray | None = None) -> dict[str, np.ndarray]:
        if indices is None:
            raise TypeError("PromptConditions.input_columns needs the sample indices (prompt = index // k)")
        rows, _ = self.locate(indices)
        return {"condition": np.array([self.prompts[r] for r in rows.tolist()], dtype=object)}

    def generator_conditions(self, batch: dict[str, np.ndarray]) -> list[tuple[str, int]]:
        seeds = schema.noise_seeds(np.asarray(batch["sample_id"], dtype=np.int64))
        return [(str(p), int(s)) for p, s in zip(batch["condition"], seeds)]


class PromptSourceError(ValueError):
    """A prompt-table setting that does not fit the pair or the build."""


_SOURCES: dict[str, type[ConditionSource]] = {
    "noise": NoiseSeeds,
    "prompt": PromptConditions,
    # "image": a rendered-condition source plugs in here.
}


class UnsupportedConditionError(ValueError):
    pass


def arrow_type_for(condition_kind: str) -> pa.DataType:
    """The ``condition`` column type of a condition kind (for readers and validation)."""
    if condition_kind not in _SOURCES:
        raise UnsupportedConditionError(f"unknown condition kind {condition_kind!r} (available: "
                                        f"{', '.join(sorted(_SOURCES))})")
    return _SOURCES[condition_kind].arrow_type


def source_for(condition_kind: str, prompts: str | None = None,
               samples_per_prompt: int | None = None, problem=None) -> ConditionSource:
    """The condition source for a pair's ``condition_kind``: noise seeds, or the prompt table at
    ``prompts`` (local or s3://) expanded ``samples_per_prompt`` times (default: the k the table was
    built for, else 4 as in the paper).
    A prompt table given to a noise pair, or none for a prompt pair, is a ``PromptSourceError``.
    ``problem``: the pair's ``condition_problem`` (prompt tables: unusable prompts are left out)."""
    if condition_kind not in _SOURCES:
        raise UnsupportedConditionError(
            f"no condition source for condition kind {condition_kind!r} yet (available: "
            f"{', '.join(sorted(_SOURCES))}); add one in squeeze3d/synth/conditions.py")
    if condition_kind == "prompt":
        if not prompts:
            raise PromptSourceError("this pair is text-conditioned: pass --prompts URI (a prompt table from "
                                    "jobs/build_prompts.py or `squeeze3d prompts build`)")
        return PromptConditions(prompts, samples_per_prompt, problem=problem)
    if prompts or samples_per_prompt is not None:
        raise PromptSourceError(f"--prompts/--samples-per-prompt apply to text-conditioned pairs only; this "
                                f"pair's condition kind is {condition_kind!r}")
    return _SOURCES[condition_kind]()
