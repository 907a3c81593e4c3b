"""The local production-shaped stack, end to end with real parts: two `ray start` nodes (token auth),
an `mlflow server` with S3 artifacts, moto's S3 server. The demo loop runs through it at small size
(`debug` pair): `ray job submit` build and train, `make sweep`, registry lookup, compress/decompress.
Checked: both nodes ran work, shards/checkpoints/model artifacts are on S3, runs and the registered
model are on the server, nothing was written locally outside the stack's folders, `up` is idempotent,
`down` leaves no process behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from squeeze3d import stack
from squeeze3d.stack_demo import StackDemoConfig, run_stack_demo

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _snapshot(*dirs: Path, skip: tuple[Path, ...] = ()) -> dict[str, tuple[int, int]]:
    out = {}
    for d in dirs:
        if not d.exists():
            continue
        for dirpath, dirnames, filenames in os.walk(d):
            p = Path(dirpath)
            dirnames[:] = [n for n in dirnames if (p / n) not in skip and not n.startswith((".venv", ".git"))
                           and n != "__pycache__" and not (p == ROOT and n != ".state")]
            for n in filenames:
                f = p / n
                try:
                    st = f.stat()
                except FileNotFoundError:
                    continue
                out[str(f)] = (st.st_mtime_ns, st.st_size)
    return out


def _pids_of(needle: str) -> list[int]:
    """Processes whose command line contains ``needle`` (read from /proc: no psutil in the venv)."""
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if needle in (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    found.append(int(d.name))
            except OSError:
                continue
    return found


def _running(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_stack_up_demo_down(tmp_path):
    import boto3
    from mlflow import MlflowClient

    state_dir = tmp_path / "stack"
    before = _snapshot(ROOT, tmp_path)
    results = ROOT / ".state" / "ray_results"
    ray_results_before = {p.name for p in results.iterdir()} if results.exists() else set()
    cache = ROOT / ".state" / "models" / "squeeze3d-debug"
    cache_before = {p.name for p in cache.iterdir()} if cache.exists() else set()
    st = stack.up(stack.StackConfig(state_dir=state_dir, bucket="s3d-stack-test"), log=print)
    try:
        assert stack.status(state_dir)["healthy"]
        env = stack.stack_env(state_dir)
        env_text = (state_dir / "stack.env").read_text()  # secrets only in the 0600 files beside it
        assert env["AWS_SECRET_ACCESS_KEY"] not in env_text and st.ray_pids and "RAY_AUTH_TOKEN=" not in env_text
        assert oct((state_dir / "ray_auth_token").stat().st_mode & 0o777) == "0o600"
        again = stack.up(stack.StackConfig(state_dir=state_dir, bucket="s3d-stack-test"), log=print)
        assert again.ray_pids == st.ray_pids and again.mlflow_pid == st.mlflow_pid  # idempotent

        rep = run_stack_demo(state_dir, StackDemoConfig(pair="debug", samples=128, shard_rows=32, epochs=2,
                                                        sweep_trials=1, sweep_epochs=2, heldout=0,
                                                        job_timeout_s=900))
        # both Ray nodes ran tasks/actors of the submitted jobs (generator on one, encoder on the other)
        nodes = {n["node_id"] for n in stack.ray_nodes(st)}
        assert len(nodes) == 2 and set(rep.nodes["build"]) == nodes, rep.nodes
        # shards + manifest, Ray Train checkpoints and the model artifacts are on S3
        s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_REGION"],
                          aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
        keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket="s3d-stack-test")
                for o in page.get("Contents", [])]
        demo = rep.prefix.split("/", 3)[3]
        assert f"{demo}/data/debug/manifest.json" in keys
        assert sum(k.startswith(f"{demo}/data/debug/") and k.endswith(".parquet") for k in keys) == 4
        assert any(k.startswith(f"{demo}/ray_results/") and "/checkpoint_" in k and k.endswith("f_d.safetensors")
                   for k in keys), keys
        assert any(k.startswith("mlflow/") and "/mapping/" in k and k.endswith("f_d.safetensors") for k in keys), keys
        assert rep.outputs["train"].startswith(f"outputs: checkpoint {rep.prefix}/ray_results/")
        # tracking and registry on the server: train + sweep versions, a champion
        client = MlflowClient(tracking_uri=st.mlflow_url, registry_uri=st.mlflow_url)
        versions = client.search_model_versions("name='squeeze3d-debug'")
        assert len(versions) == 2 and client.get_model_version_by_alias("squeeze3d-debug", "champion")
        assert all(v.source.startswith("runs:/") for v in versions)
        assert "squeeze3d-debug" in rep.outputs["champion"]
        # the codec round trip wrote inside the stack's folder
        assert Path(rep.outputs["sq3d"]).is_file() and Path(rep.outputs["reconstruction"]).is_file()
        assert Path(rep.outputs["sq3d"]).is_relative_to(state_dir)
        # nothing written locally outside the stack's folders (repo .state/, the repo root, tmp_path)
        # This test's tmp folder: nothing but the stack's folder may change. The repo: no new top-level
        # file, and nothing under .state/ for this test's pair (`debug`: data/debug, sweep_debug_*.png,
        # models/squeeze3d-debug, ray_results/debug-*); other pairs' files there belong to commands a
        # developer may run beside the suite. The embedded tracking db is checked for our runs.
        after = _snapshot(ROOT, tmp_path, skip=(state_dir,))
        state = str(ROOT / ".state") + os.sep
        changed = sorted(k for k, v in after.items() if before.get(k) != v and not (Path(k).parent == ROOT and k in before)
                         and (not k.startswith(state) or ("debug" in k[len(state):] and not k.startswith(
                             (state + "stack" + os.sep, state + "demo" + os.sep)))))
        assert not changed, changed
        db = ROOT / ".state" / "mlflow.db"
        if db.exists():
            import sqlite3

            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
                assert not con.execute("select count(*) from tags where value like ?",
                                       (f"%{rep.prefix}%",)).fetchone()[0]
        results = ROOT / ".state" / "ray_results"
        new_results = {p.name for p in results.iterdir()} - ray_results_before if results.exists() else set()
        assert not {n for n in new_results if n.startswith(("debug-", "sweep-debug-"))}, new_results
        cache = ROOT / ".state" / "models" / "squeeze3d-debug"
        assert not (cache.exists() and {p.name for p in cache.iterdir()} - cache_before), "registry cache leaked"
    finally:
        stack.down(state_dir)
    assert not stack.status(state_dir)["up"]
    for pid in [*st.ray_pids, st.mlflow_pid, st.moto_pid]:
        assert not _running(pid), pid
    assert not _pids_of(st.ray_tmp) and not Path(st.ray_tmp).exists()
    assert not _pids_of(f"--port {st.mlflow_port}") and not _pids_of(f"-p {st.moto_port}")
    assert not stack.down(state_dir, log=print)  # down again: a no-op
