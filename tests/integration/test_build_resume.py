"""Kill a build part-way (SIGKILL of the driver, no cleanup), re-run the same command, and check that
the result holds exactly N unique rows, with the shards finished before the kill reused untouched."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest

from squeeze3d.synth import schema
from squeeze3d.synth.build import build_dataset
from squeeze3d.synth.read import read_table
from squeeze3d.synth.validate import validate_dataset

SETTINGS = dict(num_samples=90, shard_rows=10, seed=11, generator_workers=1, encoder_workers=1,
                generator_batch_size=5, encoder_batch_size=5, cpus_per_worker=0.5)

# A driver that joins the session's Ray and kills itself (SIGKILL: no finally, no atexit) right after
# its third shard is durably written -- a deterministic stand-in for a node or job dying mid-run.
KILLER = """
import os, signal, sys, ray
ray.init(address=sys.argv[1], logging_level="WARNING")
from squeeze3d.synth.build import build_dataset
done = []
def on_shard(entry):
    done.append(entry.index)
    if len(done) == 3:
        print("KILLING after shards", done, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
build_dataset("debug", output=sys.argv[2], on_shard=on_shard, **{settings})
print("FINISHED WITHOUT BEING KILLED", flush=True)
"""


@pytest.mark.integration
@pytest.mark.slow
def test_killed_build_resumes_to_exactly_n_unique_rows(ray_session, tmp_path):
    out = tmp_path / "ds"
    gcs = ray_session.get_runtime_context().gcs_address
    r = subprocess.run([sys.executable, "-c", KILLER.format(settings=repr(SETTINGS)), gcs, str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == -9 and "KILLING" in r.stdout, r.stdout[-2000:] + r.stderr[-3000:]
    assert not (out / "manifest.json").exists(), "a killed build must not look finished"
    survivors = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (out / "shards").glob("*.parquet")}
    assert 3 <= len(survivors) < 9

    s = build_dataset("debug", output=str(out), log=lambda m: None, **SETTINGS)
    assert s.shards_reused == len(survivors) and s.shards_written == 9 - len(survivors)
    for name, digest in survivors.items():
        assert hashlib.sha256((out / "shards" / name).read_bytes()).hexdigest() == digest
    rep = validate_dataset(str(out))
    assert rep.ok, rep.describe()
    ids = read_table(str(out), columns=("sample_id",)).column("sample_id").to_numpy()
    assert len(ids) == 90 and len(np.unique(ids)) == 90
    np.testing.assert_array_equal(np.sort(ids), np.sort(schema.sample_ids(11, np.arange(90))))
