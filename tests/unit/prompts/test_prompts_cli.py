"""``squeeze3d prompts build|show`` and the run-level failure accounting: an engine/actor that
cannot run is one clear error (exit 2) with a failed summary.json and no table."""

from __future__ import annotations

import json

import pytest

from squeeze3d.cli import main


def test_show_refuses_a_missing_table_and_bad_limit(tmp_path, capsys):
    assert main(["prompts", "show", str(tmp_path / "none")]) == 2
    assert "no prompt table here" in capsys.readouterr().err
    assert main(["prompts", "show", str(tmp_path), "--limit", "-1"]) == 2
    assert "--limit" in capsys.readouterr().err


def test_vllm_without_a_usable_model_exits_2_before_any_work(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["prompts", "build", "--num-prompts", "4", "--output", str(out), "--backend", "vllm",
                 "--model", str(tmp_path / "missing")]) == 2
    assert "no such directory" in capsys.readouterr().err and not out.exists()
    assert main(["prompts", "build", "--num-prompts", "4", "--output", str(out), "--backend", "vllm",
                 "--model", str(tmp_path / "missing"), "--max-engine-restarts", "-1"]) == 2
    assert "--max-engine-restarts" in capsys.readouterr().err and not out.exists()


@pytest.mark.slow
def test_build_then_show(ray_session, tmp_path, capsys):
    out = tmp_path / "p"
    assert main(["prompts", "build", "--num-prompts", "20", "--output", str(out), "--samples-per-prompt", "2",
                 "--seed", "4"]) == 0
    capsys.readouterr()
    assert main(["prompts", "show", str(out), "--json", "--limit", "3"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["num_prompts"] == 20 and d["backend"] == {"template": 20}
    assert d["model"] == {"template-grammar-v1": 20} and d["metadata"]["samples_per_prompt"] == 2
    assert all(sum(c.values()) == 20 for c in d["per_topic"].values())
    assert len(d["first"]) == 3 and d["run"]["status"] == "ok" and d["run"]["num_requests"] == 30
    assert d["run"]["dropped"] == json.loads((out / "summary.json").read_text())["dropped"]
    from squeeze3d.synth.conditions import source_for

    assert source_for("prompt", prompts=str(out)).describe()["table_sha256"] == d["table_sha256"]
    assert main(["prompts", "show", str(out / "prompts.parquet"), "--limit", "2"]) == 0
    text = capsys.readouterr().out
    assert "prompts=20" in text and "per category" in text and "run: ok, 20/20 prompts from 30 requests" in text
    assert sum(1 for ln in text.splitlines() if ln.strip().startswith("s4-r")) == 2
    (out / "summary.json").unlink()
    assert main(["prompts", "show", str(out)]) == 0
    assert "run summary: none" in capsys.readouterr().out


@pytest.mark.slow
def test_a_stage_that_cannot_start_is_one_clear_error_and_no_table(ray_session, tmp_path, capsys, monkeypatch):
    # An embedding model whose files exist but are corrupt: the actor dies in its constructor, like
    # a vLLM engine that cannot load its model. Ray Data gives up at once; the run must end with
    # exit 2, a failed summary saying why, and no table.
    bad = tmp_path / "minilm"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8,
                                                 "num_attention_heads": 2, "num_hidden_layers": 1}))
    (bad / "model.safetensors").write_bytes(b"not safetensors")
    (bad / "tokenizer.json").write_text("{}")
    monkeypatch.setenv("SQUEEZE3D_MINILM_DIR", str(bad))
    out = tmp_path / "p"
    assert main(["prompts", "build", "--num-prompts", "10", "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "the template stage failed, no prompt table written" in err and "Traceback" not in err
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "failed" and s["dropped"] == {"engine_error": 15} and s["error"]
    assert not (out / "prompts.parquet").exists()
