"""Build a prompt table for text-conditioned pairs: seed topics -> LLM or template -> clean,
de-duplicated prompts in ``<output>/prompts.parquet`` (+ ``summary.json``).

  python jobs/build_prompts.py --num-prompts 2500 --output s3://bucket/prompts/llama3 \\
      --backend vllm --model s3://bucket/models/Meta-Llama-3-8B-Instruct --gpus-per-replica 1 --concurrency 4
  python jobs/build_prompts.py --num-prompts 200 --output .state/prompts          # template, anywhere

Exit status: 0 ok, 1 the run failed or came up short (see the summary), 2 bad arguments/inputs.
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    from squeeze3d.prompts.dedup import DEFAULT_NEAR_THRESHOLD

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-prompts", type=int, required=True, help="distinct prompts wanted (paper: 2500)")
    p.add_argument("--output", required=True, help="directory or s3://bucket/prefix for the prompt table")
    p.add_argument("--backend", choices=("template", "vllm"), default="template")
    p.add_argument("--model", default=None, help="vllm: local model directory or s3:// prefix")
    p.add_argument("--samples-per-prompt", type=int, default=4, help="k, recorded for the pair builder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--oversample", type=float, default=1.5, help="requests per wanted prompt")
    p.add_argument("--near-threshold", type=float, default=DEFAULT_NEAR_THRESHOLD,
                   help="cosine similarity that makes a near-duplicate")
    p.add_argument("--topics", default=None, help="directory with categories/styles/materials.yaml")
    g = p.add_argument_group("vllm backend")
    g.add_argument("--gpus-per-replica", type=int, default=1, help="tensor parallel size; 0 = vLLM on CPU")
    g.add_argument("--concurrency", type=int, default=1, help="engine replicas")
    g.add_argument("--batch-size", type=int, default=64)
    g.add_argument("--max-tokens", type=int, default=64)
    g.add_argument("--temperature", type=float, default=0.9)
    g.add_argument("--max-model-len", type=int, default=1024)
    g.add_argument("--gpu-memory-utilization", type=float, default=None,
                   help="share of GPU memory (CPU: of RAM) for vLLM")
    a = p.parse_args(argv)

    from squeeze3d.errors import UserError
    from squeeze3d.prompts import BuildOptions, build_prompts
    from squeeze3d.prompts.llm import LLMOptions

    llm = LLMOptions(model=a.model or "", gpus_per_replica=a.gpus_per_replica, concurrency=a.concurrency,
                     batch_size=a.batch_size, max_tokens=a.max_tokens, temperature=a.temperature,
                     max_model_len=a.max_model_len, gpu_memory_utilization=a.gpu_memory_utilization)
    opts = BuildOptions(seed=a.seed, oversample=a.oversample, near_threshold=a.near_threshold,
                        topics_dir=a.topics)
    try:
        summary = build_prompts(a.num_prompts, a.output, backend=a.backend, model=a.model,
                                samples_per_prompt=a.samples_per_prompt, options=opts, llm=llm)
    except UserError as e:
        print(f"build_prompts: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2, sort_keys=True))
    where = summary.get("table") or f"{summary['output']} (summary.json only)"
    print(f"{summary['status']}: {summary.get('num_prompts', 0)}/{summary['num_prompts_requested']} prompts "
          f"-> {where}; dropped {summary.get('dropped', {})}")
    return 0 if summary["status"] == "ok" else 1


if __name__ == "__main__":  # vLLM's engine processes re-import the main module: keep the guard
    sys.exit(main())
