"""A real two-node Ray cluster on this machine (`ray start --head` + one `ray start --address`, one CPU
each, token authentication on), the builder submitted with `ray job submit --working-dir .`, the
output validated, and both nodes shown to have done work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from squeeze3d.synth.local_cluster import LocalCluster
from squeeze3d.synth.validate import validate_dataset

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def two_node_cluster():
    cluster = LocalCluster(head_cpus=1)
    try:
        cluster.add_worker(cpus=1)
        cluster.wait_for_nodes(2)
        yield cluster
    finally:
        cluster.stop()


@pytest.mark.integration
@pytest.mark.slow
def test_job_submit_on_two_nodes(two_node_cluster, tmp_path):
    out = tmp_path / "cluster-ds"
    # One generator and one encoder actor of one CPU each on two one-CPU nodes: each node gets one.
    r = two_node_cluster.submit(
        ["python", "jobs/build_dataset.py", "--pair", "debug", "--num-samples", "64", "--shard-rows", "16",
         "--generator-workers", "1", "--encoder-workers", "1", "--output", str(out)],
        working_dir=str(ROOT), excludes=(".venv*", "mlruns", "out"))
    assert r.returncode == 0 and "succeeded" in r.stdout + r.stderr, (r.stdout[-3000:], r.stderr[-3000:])
    assert f"dataset:  {out}" in r.stdout  # the job prints where its outputs went
    rep = validate_dataset(str(out))
    assert rep.ok and rep.rows == 64, rep.describe()
    nodes = json.loads((out / "manifest.json").read_text())["build"]["nodes"]
    assert sum(nodes["generate"].values()) == 64 == sum(nodes["encode"].values())
    assert len(set(nodes["generate"]) | set(nodes["encode"])) == 2, nodes
