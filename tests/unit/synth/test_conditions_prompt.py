"""The prompt condition source and the ``debug_text`` pair, without Ray: index -> (prompt, repeat)
mapping, table identity, defaults and the refusals of a prompt table that does not fit the build."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from squeeze3d.prompts import table
from squeeze3d.synth import schema
from squeeze3d.synth.build import BuildConfigError, build_dataset
from squeeze3d.synth.conditions import (
    NoiseSeeds,
    PromptConditions,
    PromptSourceError,
    arrow_type_for,
    source_for,
)

ROOT = Path(__file__).resolve().parents[3]


def _rows(n, word="chair"):
    return [{"prompt_id": table.prompt_id(7, i), "prompt": f"A modern {word} number {i}.", "category": word,
             "style": "modern", "material": "oak", "request_index": i, "seed": 100 + i, "backend": "template",
             "model": "template-grammar-v1", "mentions_category": True} for i in range(n)]


@pytest.fixture()
def prompt_table(tmp_path):
    out = tmp_path / "prompts"
    table.write_prompt_table(str(out), _rows(5), {"samples_per_prompt": 3})
    return str(out)


def test_index_maps_to_prompt_and_repeat(prompt_table):
    src = source_for("prompt", prompts=prompt_table)
    assert isinstance(src, PromptConditions) and src.samples_per_prompt == 3  # the table's k
    assert src.num_conditions == 15
    idx = np.arange(15)
    ids = schema.sample_ids(0, idx)
    cond = src.input_columns(ids, idx)["condition"].tolist()
    assert cond == table.expand_prompts(_rows(5), 3)
    assert src.provenance(np.array([0, 4, 14])) == [("s7-r000000", 0), ("s7-r000001", 1), ("s7-r000004", 2)]
    # any sub-range (a shard, a batch) gives the same values as the whole
    assert src.input_columns(ids[6:9], idx[6:9])["condition"].tolist() == cond[6:9]
    with pytest.raises(IndexError):
        src.locate(np.array([15]))
    # generator conditions: (prompt, per-sample seed from the sample id); repeats differ in seed only
    gc = src.generator_conditions({"sample_id": ids[:3], "condition": np.array(cond[:3], dtype=object)})
    assert [p for p, _ in gc] == [cond[0]] * 3
    assert [s for _, s in gc] == schema.noise_seeds(ids[:3]).tolist() and len({s for _, s in gc}) == 3
    assert source_for("prompt", prompts=prompt_table, samples_per_prompt=2).num_conditions == 10


def test_identity_follows_table_content_not_location(prompt_table, tmp_path):
    a = source_for("prompt", prompts=prompt_table).describe()
    copy = tmp_path / "elsewhere"
    copy.mkdir()
    (copy / "prompts.parquet").write_bytes((Path(prompt_table) / "prompts.parquet").read_bytes())
    assert source_for("prompt", prompts=str(copy)).describe() == a
    table.write_prompt_table(str(tmp_path / "other"), _rows(5, "vase"), {"samples_per_prompt": 3})
    b = source_for("prompt", prompts=str(tmp_path / "other")).describe()
    assert a["kind"] == b["kind"] == "prompt" and a["num_prompts"] == 5 == b["num_prompts"]
    assert len(a["table_sha256"]) == 64 and a["table_sha256"] != b["table_sha256"]
    assert source_for("prompt", prompts=prompt_table, samples_per_prompt=4).describe() != a
    assert arrow_type_for("prompt") == PromptConditions.arrow_type and arrow_type_for("noise") == NoiseSeeds.arrow_type


def test_source_refusals(prompt_table, tmp_path):
    with pytest.raises(PromptSourceError, match="text-conditioned: pass --prompts"):
        source_for("prompt")
    with pytest.raises(PromptSourceError, match="text-conditioned pairs only"):
        source_for("noise", prompts=prompt_table)
    with pytest.raises(PromptSourceError, match="positive integer"):
        source_for("prompt", prompts=prompt_table, samples_per_prompt=0)
    with pytest.raises(table.PromptTableError, match="no prompt table here"):
        source_for("prompt", prompts=str(tmp_path / "nothing"))


def test_debug_text_generator_is_deterministic_and_prompt_driven():
    from squeeze3d.pairs import get_pair

    p = get_pair("debug_text")
    assert p.condition_kind == "prompt"
    gen, enc = p.build_generator("cpu"), p.build_encoder("cpu")
    conds = [("A red oak chair.", 1), ("A red oak chair.", 2), ("A glass vase with handles.", 1)]
    z, x = gen.sample(conds)
    assert z.shape == (3, *p.z_g_shape) and x.shape == (3, p.num_points, 3)
    assert enc.encode(x).shape == (3, *p.z_e_shape)
    z1, _ = gen.sample([conds[2]])
    assert torch.equal(z1[0], z[2])  # a sample depends only on its own condition
    assert not torch.equal(z[0], z[1])  # same prompt, another seed: another sample
    # z_G = text mean of the prompt + 0.5 * N(0, I; seed), and different prompts have distinct means
    from squeeze3d.zoo.base import seeded_normal

    means = gen.text_means(["A red oak chair.", "A glass vase with handles."])
    assert torch.allclose(z[0], means[0] + 0.5 * seeded_normal([1], p.z_g_shape, torch.device("cpu"))[0])
    assert (means[0] - means[1]).norm() > 1.0
    assert torch.equal(gen.sample(["A red oak chair."])[0], gen.sample([("A red oak chair.", 0)])[0])
    with pytest.raises(TypeError, match="text-conditioned"):
        gen.sample([3])  # a noise seed is not a prompt
    assert gen.weights_hash() == p.build_generator("cpu").weights_hash()
    assert gen.weights_hash() != get_pair("debug").build_generator("cpu").weights_hash()


@pytest.mark.parametrize("kw, match", [
    (dict(pair="debug", prompts="PT"), "text-conditioned pairs only"),
    (dict(pair="debug_text", prompts=""), "pass --prompts"),
    (dict(pair="debug_text", prompts="PT", num_samples=16), r"exceeds the 5 prompts x 3 samples"),
    (dict(pair="debug_text", prompts="PT", samples_per_prompt=0), "positive integer"),
    (dict(pair="debug_text", prompts="PT", num_samples=0), "num-samples must be a positive"),
    (dict(pair="debug_text", prompts="MISSING"), "no prompt table here"),
])
def test_builder_refuses_mismatched_prompt_settings(prompt_table, tmp_path, kw, match):
    out = tmp_path / "never"
    kw = {**kw, "prompts": {"PT": prompt_table, "MISSING": str(tmp_path / "x")}.get(kw["prompts"], kw["prompts"])}
    with pytest.raises(BuildConfigError, match=match):
        build_dataset(kw.pop("pair"), output=str(out), log=lambda m: None,
                      datasets_dir=str(tmp_path / "no-defaults"), **kw)
    assert not out.exists()


def test_job_script_exit_2_for_a_prompt_table_on_a_noise_pair(prompt_table, tmp_path):
    out = tmp_path / "never"
    r = subprocess.run([sys.executable, str(ROOT / "jobs" / "build_dataset.py"), "--pair", "debug", "--output",
                        str(out), "--prompts", prompt_table], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "text-conditioned pairs only" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()
