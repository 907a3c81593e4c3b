"""Prompt generation for text-conditioned pairs (issue 8): seed topics -> LLM (vLLM via
``ray.data.llm``) or template grammar -> parse/clean -> de-duplicate -> Parquet prompt table.

Public API: ``build_prompts`` (library call behind ``jobs/build_prompts.py`` and ``squeeze3d
prompts build``), ``read_prompt_table`` and ``expand_prompts``; the pair builder's prompt condition
source is ``squeeze3d.synth.conditions.PromptConditions``. Names are resolved lazily (PEP 562) so
that ``squeeze3d --help`` does not import numpy/pyarrow through this package; heavy modules (Ray,
torch, vLLM) are imported inside functions.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "BACKENDS": "pipeline", "BuildOptions": "pipeline", "build_prompts": "pipeline",
    "COLUMNS": "table", "SCHEMA": "table", "expand_prompt_ids": "table", "expand_prompts": "table",
    "read_prompt_table": "table",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"squeeze3d.prompts.{_EXPORTS[name]}"), name)
