"""Build a prompt table for text-conditioned pairs: seed topics -> LLM or template -> clean,
de-duplicated prompts in ``<output>/prompts.parquet`` (+ ``summary.json``).
Same as ``squeeze3d prompts build``.

  python jobs/build_prompts.py --num-prompts 2500 --output s3://bucket/prompts/llama3 \\
      --backend vllm --model s3://bucket/models/Meta-Llama-3-8B-Instruct --gpus-per-replica 1 --concurrency 4
  python jobs/build_prompts.py --num-prompts 200 --output .state/prompts          # template, anywhere

Exit status: 0 ok, 1 the run came up short (see the summary), 2 bad arguments/inputs or an engine
that could not run (e.g. a model that does not fit; summary.json says why, no table is written).
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from squeeze3d.prompts.cli import add_build_arguments, run_build

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_build_arguments(p)
    a = p.parse_args(argv)
    return run_build(a)


if __name__ == "__main__":  # vLLM's engine processes re-import the main module: keep the guard
    from squeeze3d.errors import run_main

    sys.exit(run_main(main, "build_prompts"))
