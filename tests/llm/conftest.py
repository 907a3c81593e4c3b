"""Fixtures for the vLLM-on-CPU tests (``make test-llm``, run in ``.venv-llm``).

``tiny_llama`` builds a random-weight Llama and a BPE tokenizer in a temporary directory
(``squeeze3d.prompts.tiny_llm``: hidden 128, 2 heads of 64, 1 KV head, 2 layers, Llama-3 chat
template). Its replies are gibberish: the tests check the engine path, the schema and the
accounting, not prompt quality. Without vLLM (the main venv) every test here is skipped.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("vllm", reason="vLLM tests run in .venv-llm: make test-llm")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    from squeeze3d.prompts.tiny_llm import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-random-llama")


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for the vLLM tests: engine actor (1 CPU) + embedding actor (0.5) +
    light stages (0.25 each) fit its 2 CPUs. Unlike the main suite's fixture it runs without the
    dashboard: nothing here needs Ray's state API, and .venv-llm need not carry its packages."""
    import ray

    started = False
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                 object_store_memory=200 * 1024 * 1024, logging_level="WARNING")
        started = True
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="session", autouse=True)
def _ray(ray_session):
    yield ray_session
