"""``build_prompts`` end to end on the template backend (real local Ray, real MiniLM), and bad
inputs: found before Ray starts (exit 2, nothing written) or counted in the summary."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from squeeze3d.errors import UserError
from squeeze3d.prompts import BuildOptions, build_prompts, read_prompt_table
from squeeze3d.prompts import llm as llm_mod
from squeeze3d.prompts.parse import PARSE_REASONS
from squeeze3d.prompts.template import template_reply
from squeeze3d.prompts.topics import derive_seed, load_topics, topic_for

ROOT = Path(__file__).resolve().parents[3]


def _accounting_holds(s):
    parse_drops = sum(v for k, v in s["dropped"].items() if k in PARSE_REASONS or k == "inference_error")
    assert s["replies_parsed"] + parse_drops == s["num_requests"]
    dups = s["dropped"].get("duplicate_exact", 0) + s["dropped"].get("duplicate_near", 0)
    assert s["replies_parsed"] == s["num_prompts"] + dups + s["surplus"]


@pytest.mark.slow
def test_template_pipeline_end_to_end(ray_session, tmp_path):
    out = tmp_path / "prompts"
    s = build_prompts(120, str(out), samples_per_prompt=4, options=BuildOptions(seed=3))
    assert s["status"] == "ok" and s["num_prompts"] == 120 and s["num_requests"] == 180
    _accounting_holds(s)
    assert json.loads((out / "summary.json").read_text()) == s
    rows = read_prompt_table(str(out))
    assert len(rows) == 120 and len({r["prompt_id"] for r in rows}) == 120
    assert [r["request_index"] for r in rows] == sorted(r["request_index"] for r in rows)
    # reproducible: every row is the pure function of (run seed, request index)
    t = load_topics()
    for r in rows[:40]:
        topic = topic_for(t, 3, r["request_index"])
        assert {k: r[k] for k in topic} == topic and r["seed"] == derive_seed(3, r["request_index"])
        assert r["prompt"] == template_reply(t, topic, r["seed"])
        assert r["backend"] == "template" and r["mentions_category"]
    d = s["diversity"]
    assert 0 < d["distinct_1"] < d["distinct_2"] <= 1 and 0.3 < d["mean_pairwise_embedding_distance"] < 1


@pytest.mark.slow
def test_unusable_replies_are_counted_not_fatal(ray_session, tmp_path):
    # A category name of 45 words makes every reply for it too long: those requests are dropped
    # with reason too_long, the rest of the run goes on.
    topics = tmp_path / "topics"
    topics.mkdir()
    long_name = " ".join(["enormous"] * 45)
    (topics / "categories.yaml").write_text(f"kind: categories\nitems: [mug, vase, '{long_name}']\n")
    (topics / "styles.yaml").write_text("kind: styles\nitems: [modern, rustic, retro, ornate]\n")
    (topics / "materials.yaml").write_text("kind: materials\nitems: [oak, glass, copper, felt, clay]\n")
    s = build_prompts(30, str(tmp_path / "out"), options=BuildOptions(seed=1, topics_dir=str(topics)))
    assert s["dropped"]["too_long"] == 15  # a third of 45 requests (categories cycle evenly)
    _accounting_holds(s)
    rows = read_prompt_table(str(tmp_path / "out"))
    assert rows and all("enormous" not in r["prompt"] for r in rows)
    assert s["status"] in ("ok", "short") and s["shortfall"] == 30 - len(rows)


def test_missing_or_bad_model_is_found_before_any_work(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(llm_mod.ModelNotFound, match="needs --model"):
        build_prompts(10, str(out), backend="vllm")
    with pytest.raises(llm_mod.ModelNotFound, match="no such directory"):
        build_prompts(10, str(out), backend="vllm", model=str(tmp_path / "nope"))
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    with pytest.raises(llm_mod.ModelNotFound, match=r"missing tokenizer.json, \*.safetensors"):
        build_prompts(10, str(out), backend="vllm", model=str(tmp_path / "m"))
    with pytest.raises(UserError, match="unknown backend"):
        build_prompts(10, str(out), backend="gpt")
    with pytest.raises(UserError, match="--num-prompts"):
        build_prompts(0, str(out))
    assert not out.exists()


def test_model_that_does_not_fit(tmp_path):
    m = tmp_path / "big"
    m.mkdir()
    (m / "config.json").write_text('{"_name_or_path": "big-llama"}')
    (m / "tokenizer.json").write_text("{}")
    (m / "model.safetensors").write_bytes(b"\0" * 4096)
    opts = llm_mod.LLMOptions(model=str(m), gpus_per_replica=0, gpu_memory_utilization=0.5)
    with pytest.raises(llm_mod.ModelDoesNotFit, match="do not fit"):
        llm_mod.check_model(opts, total_memory_bytes=4096)
    info = llm_mod.check_model(opts, total_memory_bytes=10**9)
    assert info["weight_bytes"] == 4096 and info["identity"].startswith("big-llama@")
    # on GPUs the budget is unknown on the driver: the engine reports it, the run counts it
    assert llm_mod.check_model(llm_mod.LLMOptions(model=str(m), gpus_per_replica=1), 1)["weight_bytes"] == 4096


def test_job_bad_arguments_exit_2_with_one_line(tmp_path):
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "jobs/build_prompts.py", "--num-prompts", "5", "--output", str(out),
                        "--backend", "vllm", "--model", str(tmp_path / "missing")],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [f"build_prompts: error: --model {tmp_path / 'missing'}: no such "
                                             "directory (or it is empty); pass a local model directory or "
                                             "s3://bucket/prefix holding config.json, the tokenizer and *.safetensors"]
    assert not out.exists()
