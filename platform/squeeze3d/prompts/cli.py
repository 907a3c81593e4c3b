"""``squeeze3d prompts build|show``: make a prompt table (same flags as ``jobs/build_prompts.py``,
which is a shell over ``add_build_arguments`` + ``run_build``) and summarise one."""

from __future__ import annotations

import argparse
import json


def add_build_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--num-prompts", type=int, required=True, help="distinct prompts wanted (paper: 2500)")
    p.add_argument("--output", required=True, help="directory or s3://bucket/prefix for the prompt table")
    p.add_argument("--backend", choices=("template", "vllm"), default="template")
    p.add_argument("--model", default=None, help="vllm: local model directory or s3:// prefix")
    p.add_argument("--samples-per-prompt", type=int, default=4, help="k, recorded for the pair builder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--oversample", type=float, default=1.5, help="requests per wanted prompt")
    p.add_argument("--near-threshold", type=float, default=None,
                   help="cosine similarity that makes a near-duplicate (default 0.9, all-MiniLM-L6-v2)")
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
    g.add_argument("--max-engine-restarts", type=int, default=2,
                   help="restarts of a dead engine replica before the run fails (never loops forever)")


def run_build(a: argparse.Namespace) -> int:
    """Run the build; print the summary. 0 ok, 1 short of --num-prompts; ``UserError`` (exit 2) for
    bad arguments/inputs and for an engine that cannot run (e.g. a model that does not fit)."""
    from squeeze3d.prompts import BuildOptions, build_prompts
    from squeeze3d.prompts.llm import LLMOptions

    llm = LLMOptions(model=a.model or "", gpus_per_replica=a.gpus_per_replica, concurrency=a.concurrency,
                     batch_size=a.batch_size, max_tokens=a.max_tokens, temperature=a.temperature,
                     max_model_len=a.max_model_len, gpu_memory_utilization=a.gpu_memory_utilization,
                     max_engine_restarts=a.max_engine_restarts)
    opts = BuildOptions(seed=a.seed, oversample=a.oversample, topics_dir=a.topics,
                        **({} if a.near_threshold is None else {"near_threshold": a.near_threshold}))
    summary = build_prompts(a.num_prompts, a.output, backend=a.backend, model=a.model,
                            samples_per_prompt=a.samples_per_prompt, options=opts, llm=llm)
    print(json.dumps(summary, indent=2, sort_keys=True))
    where = summary.get("table") or f"{summary['output']} (summary.json only)"
    print(f"{summary['status']}: {summary.get('num_prompts', 0)}/{summary['num_prompts_requested']} prompts "
          f"-> {where}; dropped {summary.get('dropped', {})}")
    return 0 if summary["status"] == "ok" else 1


def _fmt_counts(counts: dict, top: int = 8) -> str:
    items = list(counts.items())
    more = f", ... (+{len(items) - top})" if len(items) > top else ""
    return ", ".join(f"{k} {v}" for k, v in items[:top]) + more


def _cmd_show(a: argparse.Namespace) -> int:
    from squeeze3d.errors import UserError
    from squeeze3d.prompts.table import describe_table

    if a.limit < 0:
        raise UserError(f"--limit must be >= 0, got {a.limit}")
    d = describe_table(a.uri, limit=a.limit)
    if a.json:
        print(json.dumps(d, indent=2))
        return 0
    m = d["metadata"]
    print(f"{d['uri']}  prompts={d['num_prompts']}  table_sha256={d['table_sha256'][:16]}")
    print(f"  backend: {_fmt_counts(d['backend'])}   model: {_fmt_counts(d['model'])}")
    print(f"  seed={m.get('seed')}  samples_per_prompt={m.get('samples_per_prompt')}  "
          f"topics={m.get('topics_fingerprint')}  near_threshold={m.get('near_threshold')}  "
          f"mentions_category={d['mentions_category']:.0%}")
    for k, counts in d["per_topic"].items():
        print(f"  per {k} ({len(counts)}): {_fmt_counts(counts)}")
    run = d.get("run")
    if run is None:
        print("  run summary: none (no summary.json beside the table)")
    else:
        dropped = run.get("dropped") or {}
        print(f"  run: {run.get('status')}, {d['num_prompts']}/{run.get('num_prompts_requested')} prompts from "
              f"{run.get('num_requests')} requests; dropped {sum(dropped.values())}"
              + (f" ({', '.join(f'{k}: {v}' for k, v in dropped.items())})" if dropped else "")
              + (f", {run['surplus']} surplus unused" if run.get("surplus") else ""))
        if run.get("diversity"):
            print("  diversity: " + ", ".join(f"{k}={v}" for k, v in run["diversity"].items()))
    for r in d["first"]:
        print(f"  {r['prompt_id']}  {r['prompt']}")
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("prompts", help="build or describe a prompt table for text-conditioned pairs")
    psub = p.add_subparsers(dest="prompts_command", metavar="ACTION")
    psub.required = True

    b = psub.add_parser("build", help="seed topics -> template grammar or vLLM -> clean, de-duplicated prompt "
                                      "table (exit 1 when short of --num-prompts)")
    add_build_arguments(b)
    b.set_defaults(func=run_build)

    s = psub.add_parser("show", help="counts per topic, backend, model identity, drop counts, first prompts")
    s.add_argument("uri", help="prompt table: a directory (or its prompts.parquet), local or s3://")
    s.add_argument("--limit", type=int, default=5, help="prompts to print (default %(default)s)")
    s.add_argument("--json", action="store_true", help="print the description as JSON")
    s.set_defaults(func=_cmd_show)
