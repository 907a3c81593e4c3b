"""Prompt generation for text-conditioned pairs (issue 8): seed topics -> LLM (vLLM via
``ray.data.llm``) or template grammar -> parse/clean -> de-duplicate -> Parquet prompt table.

Public API: ``build_prompts`` (library call behind ``jobs/build_prompts.py``), ``read_prompt_table``
and ``expand_prompts`` (what the pair builder's prompt condition source calls). Heavy modules
(Ray, torch, vLLM) are imported inside functions.
"""

from squeeze3d.prompts.pipeline import BACKENDS, BuildOptions, build_prompts
from squeeze3d.prompts.table import COLUMNS, SCHEMA, expand_prompt_ids, expand_prompts, read_prompt_table

__all__ = ["BACKENDS", "COLUMNS", "SCHEMA", "BuildOptions", "build_prompts", "expand_prompt_ids",
           "expand_prompts", "read_prompt_table"]
