"""Measure the prompt stage per backend: prompts/s, distinct-1/2 and mean pairwise embedding
distance (all-MiniLM-L6-v2). ``vllm-cpu`` runs the tiny random Llama (gibberish by construction:
a plumbing and throughput check of the real engine path, not a quality number); it needs the
``.venv-llm`` environment (``make setup-llm``) and is skipped elsewhere.

  .venv-llm/bin/python jobs/bench_prompts.py --num-prompts 200 --out .state/bench/prompts.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path


def run(backend: str, n: int, workdir: Path, seed: int) -> dict:
    from squeeze3d.prompts import BuildOptions, build_prompts
    from squeeze3d.prompts.llm import LLMOptions
    from squeeze3d.prompts.pipeline import RunFailed

    kw = {}
    if backend == "vllm-cpu":
        from squeeze3d.prompts.tiny_llm import build_tiny_llama

        model = build_tiny_llama(workdir / "tiny-random-llama")
        kw = {"backend": "vllm", "model": str(model),
              "llm": LLMOptions(gpus_per_replica=0, max_tokens=48, max_model_len=512, batch_size=32)}
    t0 = time.perf_counter()
    try:
        s = build_prompts(n, str(workdir / backend), options=BuildOptions(seed=seed), **kw)
    except RunFailed as e:  # an engine that could not run: record the failed summary, go on
        s = e.summary
    wall = time.perf_counter() - t0
    return {"backend": backend, "status": s["status"], "prompts": s.get("num_prompts", 0),
            "requests": s["num_requests"], "wall_s": round(wall, 1), "pipeline_s": s.get("seconds", {}).get("pipeline"),
            "prompts_per_s": round(s.get("num_prompts", 0) / wall, 2),
            "requests_per_s": round(s["num_requests"] / wall, 2),
            "dropped": s.get("dropped", {}), **s.get("diversity", {}), "error": s.get("error")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-prompts", type=int, default=200)
    p.add_argument("--backends", default="template,vllm-cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=".state/bench/prompts.json")
    a = p.parse_args(argv)

    import ray

    ray.init(include_dashboard=False, log_to_driver=False)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for b in a.backends.split(","):
            if b == "vllm-cpu" and importlib.util.find_spec("vllm") is None:
                print(f"skip {b}: vllm is not installed here (make setup-llm; run with .venv-llm/bin/python)")
                continue
            results.append(run(b, a.num_prompts, Path(tmp), a.seed))
            print(json.dumps(results[-1]), flush=True)
    cols = ("backend", "status", "prompts", "wall_s", "prompts_per_s", "distinct_1", "distinct_2",
            "mean_pairwise_embedding_distance")
    print("\n" + " | ".join(cols))
    for r in results:
        print(" | ".join(str(r.get(c)) for c in cols))
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"num_prompts": a.num_prompts, "seed": a.seed, "results": results}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":  # vLLM's engine processes re-import the main module: keep the guard
    sys.exit(main())
