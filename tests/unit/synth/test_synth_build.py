"""The builder on the session's local Ray with the debug pair: content, idempotence, refusals,
partial-state recovery, validation, readers and the user-facing commands."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from squeeze3d.synth import schema
from squeeze3d.synth.build import BuildConfigError, build_dataset
from squeeze3d.synth.read import load_split, read_dataset
from squeeze3d.synth.validate import validate_dataset

# Each build starts Ray actors (seconds each on 2 shared cores): kept out of `make test-fast`.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]
SMALL = dict(num_samples=50, shard_rows=16, generator_workers=1, encoder_workers=1,
             generator_batch_size=8, encoder_batch_size=12, cpus_per_worker=0.5)


def _digests(d: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((d / "shards").glob("*.parquet"))}


@pytest.fixture(scope="module")
def built(ray_session, tmp_path_factory):
    out = tmp_path_factory.mktemp("ds") / "debug"
    summary = build_dataset("debug", output=str(out), seed=3, log=lambda m: None, **SMALL)
    return out, summary


def test_build_writes_exact_shards_and_manifest(built):
    out, s = built
    man = json.loads((out / "manifest.json").read_text())
    assert (s.rows, s.shards, s.shards_written, s.shards_reused) == (50, 4, 4, 0)
    assert [e["rows"] for e in man["shards"]] == [16, 16, 16, 2]
    assert man["pair"] == "debug" and man["seed"] == 3 and man["schema_version"] == schema.SCHEMA_VERSION
    assert man["counts"]["total"] == 50 == sum(man["counts"][k] for k in schema.SPLITS)
    assert len(man["encoder"]["weights_hash"]) == 64 and len(man["generator"]["weights_hash"]) == 64
    assert sum(man["build"]["nodes"]["generate"].values()) == 50
    assert validate_dataset(str(out)).ok


def test_rows_equal_an_in_process_G_then_E(built):
    from squeeze3d.pairs import get_pair

    out, _ = built
    t = pq.read_table(out / "shards" / "shard-000001.parquet")
    ids = schema.sample_ids(3, np.arange(16, 32))
    np.testing.assert_array_equal(t.column("sample_id").to_numpy(), ids)
    spec = get_pair("debug")
    z_g, assets = spec.build_generator("cpu").sample(schema.noise_seeds(ids).tolist())
    z_e = spec.build_encoder("cpu").encode(assets)
    # the shard was written by Ray workers, whose torch thread count (and CPU kernels) may differ from
    # this process's: equal up to float32 round-off (1e-4 relative, and of the largest value)
    np.testing.assert_allclose(schema.column_to_numpy(t.column("z_g"), (16,)), z_g.numpy(), rtol=1e-4,
                               atol=1e-4 * float(z_g.abs().max()))
    np.testing.assert_allclose(schema.column_to_numpy(t.column("z_e"), (32,)), z_e.numpy(), rtol=1e-4,
                               atol=1e-4 * float(z_e.abs().max()))


def test_rerun_skips_finished_shards(built):
    out, _ = built
    before, manifest = _digests(out), (out / "manifest.json").read_bytes()
    s = build_dataset("debug", output=str(out), seed=3, log=lambda m: None, **SMALL)
    assert (s.shards_written, s.shards_reused, s.rows_computed, s.rows) == (0, 4, 0, 50)
    assert _digests(out) == before
    assert (out / "manifest.json").read_bytes() == manifest  # its hash is training provenance


def test_readers(built, ray_session):
    out, _ = built
    man = json.loads((out / "manifest.json").read_text())
    sizes = {}
    for split in schema.SPLITS:
        z_e, z_g = load_split(str(out), split)
        assert z_e.dtype == torch.float32 and z_e.shape[1:] == (32,) and z_g.shape[1:] == (16,)
        sizes[split] = len(z_e)
    assert sizes == {k: man["counts"][k] for k in schema.SPLITS}
    ds = read_dataset(str(out), "train")
    batch = next(iter(ds.iter_batches(batch_size=1000, batch_format="numpy")))
    assert batch["z_e"].shape == (man["counts"]["train"], 32) and set(batch["split"]) == {"train"}
    with pytest.raises(ValueError, match="unknown split"):
        load_split(str(out), "training")


@pytest.mark.parametrize("kw, match", [
    (dict(pair="no_such_pair"), "registered pairs: debug"),
    (dict(num_samples=0), "num-samples"),
    (dict(num_samples=-5), "num-samples"),
    (dict(shard_rows=0), "shard-rows"),
    (dict(generator_workers=0), "generator-workers"),
])
def test_bad_arguments_write_nothing(tmp_path, kw, match):
    out = tmp_path / "never"
    args = {"pair": "debug", **SMALL, **kw}
    with pytest.raises(BuildConfigError, match=match):
        build_dataset(args.pop("pair"), output=str(out), log=lambda m: None, **args)
    assert not out.exists()


def test_unwritable_output_is_refused(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(BuildConfigError, match="not a directory"):
        build_dataset("debug", output=str(blocker / "ds"), log=lambda m: None, **SMALL)


def test_resources_beyond_an_embedded_cluster_are_refused(ray_session, tmp_path):
    with pytest.raises(BuildConfigError, match="GPUs"):
        build_dataset("debug", output=str(tmp_path / "g"), log=lambda m: None, **{**SMALL, "gpus_per_worker": 1})
    assert not (tmp_path / "g").exists()


def test_other_build_is_refused_then_overwritten(built, tmp_path):
    src, _ = built
    out = tmp_path / "copy"
    shutil.copytree(src, out)
    before = _digests(out)
    with pytest.raises(BuildConfigError, match=r"seed: has 3, requested 4.*--overwrite"):
        build_dataset("debug", output=str(out), seed=4, log=lambda m: None, **SMALL)
    assert _digests(out) == before
    small = {**SMALL, "num_samples": 20}
    s = build_dataset("debug", output=str(out), seed=4, overwrite=True, log=lambda m: None, **small)
    assert (s.rows, s.shards) == (20, 2) and sorted(_digests(out)) == [schema.shard_name(0), schema.shard_name(1)]
    assert json.loads((out / "manifest.json").read_text())["seed"] == 4
    assert validate_dataset(str(out)).ok


def test_partial_state_is_repaired(built, tmp_path):
    src, _ = built
    out = tmp_path / "partial"
    shutil.copytree(src, out)
    before = _digests(out)
    (out / "manifest.json").unlink()  # a killed run has no manifest yet
    (out / "shards" / schema.shard_name(1)).unlink()  # never finished
    (out / "shards" / schema.shard_name(2)).write_bytes(b"PAR1 truncated")  # damage at a shard name
    (out / "shards" / f"{schema.shard_name(3)}.tmp-deadbeef").write_bytes(b"half")  # a killed writer's temp
    logs: list[str] = []
    s = build_dataset("debug", output=str(out), seed=3, log=logs.append, **SMALL)
    assert (s.shards_written, s.shards_reused) == (2, 2), logs
    assert f"shard {schema.shard_name(2)}: unreadable (truncated or corrupt); recomputing it" in logs
    after = _digests(out)
    assert after[schema.shard_name(0)] == before[schema.shard_name(0)]  # its sampled rows recompute the same
    assert sorted(os.listdir(out / "shards")) == [schema.shard_name(k) for k in range(4)]
    rep = validate_dataset(str(out))
    assert rep.ok, rep.describe()
    assert rep.rows == 50


def test_unreadable_files_alone_are_not_taken_for_this_build(tmp_path):
    out = tmp_path / "garbage"
    (out / "shards").mkdir(parents=True)
    (out / "shards" / schema.shard_name(0)).write_bytes(b"PAR1 truncated")
    with pytest.raises(BuildConfigError, match=r"shard-000000.parquet, which is not a readable Parquet file.*--overwrite"):
        build_dataset("debug", output=str(out), seed=3, log=lambda m: None, **SMALL)
    assert (out / "shards" / schema.shard_name(0)).read_bytes() == b"PAR1 truncated"


def _flip_bytes(path: Path, column: str, n: int = 8) -> None:
    """Corrupt ``n`` bytes in the middle of a column's data (as a bad disk or a careless edit would)."""
    md = pq.ParquetFile(path).metadata
    names = [md.schema.column(i).path.split(".")[0] for i in range(md.num_columns)]
    chunk = md.row_group(0).column(names.index(column))
    data = bytearray(path.read_bytes())
    start = min(o for o in (chunk.dictionary_page_offset, chunk.data_page_offset) if o is not None)
    mid = start + chunk.total_compressed_size // 2
    for i in range(mid, mid + n):
        data[i] ^= 0xA5
    path.write_bytes(bytes(data))


def _table_close(a: Path, b: Path) -> None:
    ta, tb = pq.read_table(a), pq.read_table(b)
    assert ta.column("sample_id").equals(tb.column("sample_id"))
    for col, shape in (("z_e", (32,)), ("z_g", (16,))):
        np.testing.assert_allclose(schema.column_to_numpy(ta.column(col), shape),
                                   schema.column_to_numpy(tb.column(col), shape), rtol=1e-4, atol=1e-4)


def test_resume_without_manifest_recomputes_damaged_or_altered_shards(built, tmp_path):
    """Issue 26.1: resume must not launder a corrupted shard into a new manifest."""
    src, _ = built
    out = tmp_path / "laundered"
    shutil.copytree(src, out)
    before = _digests(out)
    (out / "manifest.json").unlink()
    _flip_bytes(out / "shards" / schema.shard_name(1), "z_g")  # bit damage: page checksums catch it
    _rewrite_shard(out / "shards" / schema.shard_name(2),  # readable, our fingerprint, other numbers
                   lambda t: t.set_column(t.schema.get_field_index("z_e"), t.schema.field("z_e"),
                                          schema.tensor_array(1.5 * schema.column_to_numpy(t.column("z_e"), (32,)))))
    logs: list[str] = []
    s = build_dataset("debug", output=str(out), seed=3, log=logs.append, **SMALL)
    assert (s.shards_written, s.shards_reused) == (2, 2), logs
    assert any(m.startswith(f"shard {schema.shard_name(1)}: unreadable") and m.endswith("recomputing it")
               for m in logs), logs
    assert f"shard {schema.shard_name(2)}: its z_e at rows [0, 8, 15] differs from a recomputation; recomputing it" \
        in logs, logs
    after = _digests(out)
    assert {k: after[k] for k in (schema.shard_name(0), schema.shard_name(3))} == \
        {k: before[k] for k in (schema.shard_name(0), schema.shard_name(3))}
    for k in (1, 2):
        _table_close(out / "shards" / schema.shard_name(k), src / "shards" / schema.shard_name(k))
    rep = validate_dataset(str(out))
    assert rep.ok, rep.describe()


def test_rerun_over_damaged_shards_recomputes_them(built, tmp_path):
    """Issues 26.2 and 26.3: a shard whose sha256 no longer matches the manifest, or that is cut short,
    is recomputed (one line says which and why), never reported as "already complete" or as another
    dataset."""
    src, _ = built
    out = tmp_path / "damaged"
    shutil.copytree(src, out)
    _flip_bytes(out / "shards" / schema.shard_name(1), "z_e")
    last = out / "shards" / schema.shard_name(3)
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # truncated
    assert not validate_dataset(str(out)).ok
    logs: list[str] = []
    s = build_dataset("debug", output=str(out), seed=3, log=logs.append, **SMALL)
    assert (s.shards_written, s.shards_reused) == (2, 2), logs
    assert not any(m.startswith("already complete") for m in logs)
    assert f"shard {schema.shard_name(1)}: its sha256 does not match the manifest (changed or corrupt); " \
           "recomputing it" in logs, logs
    assert f"shard {schema.shard_name(3)}: unreadable (truncated or corrupt); recomputing it" in logs, logs
    rep = validate_dataset(str(out))
    assert rep.ok, rep.describe()
    _table_close(out / "shards" / schema.shard_name(1), src / "shards" / schema.shard_name(1))


def test_validate_catches_flipped_bytes_even_with_a_matching_checksum(built, tmp_path):
    src, _ = built
    out = tmp_path / "flipped"
    shutil.copytree(src, out)
    path = out / "shards" / schema.shard_name(0)
    _flip_bytes(path, "z_e")
    man = json.loads((out / "manifest.json").read_text())
    data = path.read_bytes()
    man["shards"][0].update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    (out / "manifest.json").write_text(json.dumps(man))
    text = validate_dataset(str(out)).describe()
    assert "unreadable Parquet" in text, text


def _rewrite_shard(path: Path, mutate) -> None:
    f = pq.ParquetFile(path)
    fp = schema.shard_fingerprint(f.metadata)
    t = f.read()
    path.write_bytes(schema.encode_shard(mutate(t).replace_schema_metadata(None), fp))


def test_validate_reports_corruption(built, tmp_path):
    src, _ = built
    out = tmp_path / "bad"
    shutil.copytree(src, out)
    man = json.loads((out / "manifest.json").read_text())

    def poison(t: pa.Table) -> pa.Table:
        z = schema.column_to_numpy(t.column("z_e"), (32,)).copy()
        z[3, 5] = np.nan
        ids = t.column("sample_id").to_numpy().copy()
        ids[1] = ids[0]
        t = t.set_column(t.schema.get_field_index("z_e"), t.schema.field("z_e"), schema.tensor_array(z))
        return t.set_column(0, t.schema.field("sample_id"), pa.array(ids))

    _rewrite_shard(out / "shards" / schema.shard_name(0), poison)
    (out / "shards" / schema.shard_name(9)).write_bytes(b"stray")
    rep = validate_dataset(str(out))
    text = rep.describe()
    assert not rep.ok
    for needle in ("sha256 mismatch", "NaN/Inf in z_e", "sample ids are not those", "duplicated sample ids",
                   "not listed in the manifest"):
        assert needle in text, text
    # fix the manifest's checksum: the content checks must still fail on their own
    data = (out / "shards" / schema.shard_name(0)).read_bytes()
    man["shards"][0].update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    (out / "manifest.json").write_text(json.dumps(man))
    (out / "shards" / schema.shard_name(9)).unlink()
    text = validate_dataset(str(out)).describe()
    assert "sha256" not in text and "NaN/Inf in z_e" in text


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "squeeze3d", *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)


def test_dataset_cli(built, tmp_path):
    out, _ = built
    r = _cli("dataset", "validate", str(out))
    assert r.returncode == 0 and "OK" in r.stdout, r.stdout + r.stderr
    png = tmp_path / "s.png"
    r = _cli("dataset", "stats", str(out), "--png", str(png), "--samples", "3")
    assert r.returncode == 0, r.stderr
    assert "rows=50" in r.stdout and "z_e: dim=32" in r.stdout and png.stat().st_size > 1000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = _cli("dataset", "validate", str(tmp_path / "nothing"))
    assert r.returncode == 1 and "no manifest.json" in r.stdout
    r = _cli("dataset", "stats", str(tmp_path / "nothing"))
    assert r.returncode == 2 and "no manifest.json" in r.stderr


def test_job_script_bad_arguments_exit_2_and_write_nothing(tmp_path):
    out = tmp_path / "o"
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cases = ((["--pair", "nope", "--output", str(out)], "registered pairs: debug"),
             (["--pair", "debug", "--num-samples", "0", "--output", str(out)], "num-samples"),
             (["--pair", "debug", "--num-samples", "10", "--output", str(blocker / "ds")], "not a directory"))
    for args, needle in cases:
        r = subprocess.run([sys.executable, "jobs/build_dataset.py", *args], capture_output=True, text=True,
                           timeout=300, cwd=ROOT)
        assert r.returncode == 2 and needle in r.stderr, r.stderr
    assert not out.exists() and blocker.read_text() == "x"


def test_a_damaged_fingerprint_in_a_folder_of_this_build_is_recomputed(built, tmp_path):
    """Issue 31.3: one flipped byte inside a shard's fingerprint (its footer's JSON) made the resume
    refuse the folder as "a different dataset", and --overwrite recompute every shard. The manifest
    (and the other shards) show the folder is this build's: that shard alone is recomputed, one line."""
    src, _ = built
    out = tmp_path / "fp"
    shutil.copytree(src, out)
    before = _digests(out)
    shard = out / "shards" / schema.shard_name(1)
    data = bytearray(shard.read_bytes())
    at = data.rindex(b'"generator_hash"')  # inside the footer's squeeze3d fingerprint JSON
    data[at] ^= 0x01  # '"' -> '#': the JSON no longer parses
    shard.write_bytes(bytes(data))
    assert schema.shard_fingerprint(pq.read_metadata(shard)) is None
    logs: list[str] = []
    s = build_dataset("debug", output=str(out), seed=3, log=logs.append, **SMALL)
    assert (s.shards_written, s.shards_reused) == (1, 3), logs
    assert sum("recomputing it" in m for m in logs) == 1, logs
    assert f"shard {schema.shard_name(1)}: its squeeze3d fingerprint is missing or damaged, in a folder of this " \
           "build; recomputing it" in logs, logs
    after = _digests(out)
    assert {k: v for k, v in after.items() if k != schema.shard_name(1)} == \
        {k: v for k, v in before.items() if k != schema.shard_name(1)}
    _table_close(shard, src / "shards" / schema.shard_name(1))
    assert validate_dataset(str(out)).ok


def test_a_folder_with_nothing_of_this_build_is_still_refused(built, tmp_path):
    src, _ = built
    out = tmp_path / "theirs"
    shutil.copytree(src, out)
    (out / "manifest.json").unlink()
    for shard in (out / "shards").glob("*.parquet"):  # every fingerprint damaged: nothing shows it is ours
        data = bytearray(shard.read_bytes())
        data[data.rindex(b'"generator_hash"')] ^= 0x01
        shard.write_bytes(bytes(data))
    before = _digests(out)
    with pytest.raises(BuildConfigError, match=r"already holds a different dataset.*--overwrite"):
        build_dataset("debug", output=str(out), seed=3, log=lambda m: None, **SMALL)
    assert _digests(out) == before
