"""Prompt table -> pair builder on the session's real Ray: a template prompt table (the real
``build_prompts`` pipeline) conditions the ``debug_text`` pair; each prompt appears exactly k times,
rows are reproducible and recomputable, resume works and the manifest names the table."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from squeeze3d.prompts import BuildOptions, build_prompts, read_prompt_table
from squeeze3d.prompts.table import table_content_hash
from squeeze3d.synth import schema
from squeeze3d.synth.build import BuildConfigError, build_dataset
from squeeze3d.synth.validate import validate_dataset

pytestmark = [pytest.mark.slow, pytest.mark.integration]

K = 3
SMALL = dict(shard_rows=10, generator_workers=1, encoder_workers=1, generator_batch_size=8,
             encoder_batch_size=8, cpus_per_worker=0.5)


def _digests(d: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((d / "shards").glob("*.parquet"))}


def _conditions(d: Path) -> list[str]:
    return [c for p in sorted((d / "shards").glob("*.parquet")) for c in pq.read_table(p)["condition"].to_pylist()]


@pytest.fixture(scope="module")
def prompts(ray_session, tmp_path_factory):
    out = tmp_path_factory.mktemp("prompts") / "t"
    s = build_prompts(11, str(out), samples_per_prompt=K, options=BuildOptions(seed=5))
    assert s["status"] == "ok" and s["num_prompts"] == 11
    return out


def test_prompt_table_conditions_debug_text_k_times_and_resumes(prompts, tmp_path):
    rows = read_prompt_table(str(prompts))
    out = tmp_path / "ds"
    s = build_dataset("debug_text", output=str(out), prompts=str(prompts), seed=2, log=lambda m: None, **SMALL)
    assert (s.rows, s.shards, s.shards_written) == (11 * K, 4, 4)  # N defaults to n_prompts * k (table's k)
    man = json.loads((out / "manifest.json").read_text())
    cond = man["condition"]
    assert cond["kind"] == "prompt" and cond["samples_per_prompt"] == K and cond["num_prompts"] == 11
    assert cond["table_sha256"] == table_content_hash([r["prompt_id"] for r in rows], [r["prompt"] for r in rows])
    assert man["build"]["settings"]["prompts"] == str(prompts)
    assert validate_dataset(str(out)).ok

    got = _conditions(out)
    assert got == [r["prompt"] for r in rows for _ in range(K)]  # prompt-major, in table order
    assert Counter(got) == {r["prompt"]: K for r in rows}

    # every row is G(prompt, noise_seed(sample_id)) then E, recomputable in-process: up to float32
    # round-off, since the row came from a Ray worker whose torch thread count (and CPU kernels) may differ
    from squeeze3d.pairs import get_pair

    spec = get_pair("debug_text")
    gen, enc = spec.build_generator("cpu"), spec.build_encoder("cpu")
    t = pq.read_table(out / "shards" / "shard-000001.parquet")
    ids = t["sample_id"].to_numpy()
    assert np.array_equal(ids, schema.sample_ids(2, np.arange(10, 20)))
    z_g, assets = gen.sample(list(zip(t["condition"].to_pylist(), schema.noise_seeds(ids).tolist())))
    z_e = enc.encode(assets)
    torch.testing.assert_close(torch.from_numpy(schema.column_to_numpy(t["z_g"], (16,))), z_g,
                               rtol=1e-4, atol=1e-4 * float(z_g.abs().max()))
    torch.testing.assert_close(torch.from_numpy(schema.column_to_numpy(t["z_e"], (32,))), z_e,
                               rtol=1e-4, atol=1e-4 * float(z_e.abs().max()))

    # resume: a lost shard (and the manifest) is recomputed byte-identically, the rest reused (guaranteed:
    # same machine, Ray workers of the same thread count, each sample computed alone)
    before = _digests(out)
    (out / "shards" / "shard-000002.parquet").unlink()
    (out / "manifest.json").unlink()
    s2 = build_dataset("debug_text", output=str(out), prompts=str(prompts), seed=2, log=lambda m: None, **SMALL)
    assert (s2.shards_written, s2.shards_reused) == (1, 3) and _digests(out) == before
    assert json.loads((out / "manifest.json").read_text())["condition"] == cond

    # another table (or another k) is another dataset: refused, not mixed
    with pytest.raises(BuildConfigError, match="different dataset"):
        build_dataset("debug_text", output=str(out), prompts=str(prompts), samples_per_prompt=2, seed=2,
                      log=lambda m: None, **SMALL)


def test_rebuild_elsewhere_is_identical_and_num_samples_takes_a_prefix(prompts, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    build_dataset("debug_text", output=str(a), prompts=str(prompts), samples_per_prompt=2, num_samples=15,
                  seed=1, log=lambda m: None, **SMALL)
    build_dataset("debug_text", output=str(b), prompts=str(prompts), samples_per_prompt=2, num_samples=15,
                  seed=1, log=lambda m: None, **{**SMALL, "generator_batch_size": 5, "encoder_batch_size": 3})
    # batching changes no id, prompt or split; latents are computed one sample at a time in workers of the
    # same thread count, so they agree; compared up to float32 round-off all the same (1e-4 relative)
    assert sorted(_digests(a)) == sorted(_digests(b))
    for name in _digests(a):
        ta, tb = pq.read_table(a / "shards" / name), pq.read_table(b / "shards" / name)
        for col in ("sample_id", "condition", "split"):
            assert ta[col].to_pylist() == tb[col].to_pylist()
        for col, shape in (("z_g", (16,)), ("z_e", (32,))):
            za, zb = schema.column_to_numpy(ta[col], shape), schema.column_to_numpy(tb[col], shape)
            np.testing.assert_allclose(za, zb, rtol=1e-4, atol=1e-4 * float(np.abs(za).max()))
    rows = read_prompt_table(str(prompts))
    assert _conditions(a) == [r["prompt"] for r in rows for _ in range(2)][:15]
