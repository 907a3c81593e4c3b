"""``make demo STACK=local``: the whole loop through the local stack, the way a cluster user runs it.

``ray job submit`` build_dataset → ``ray job submit`` train → ``make sweep`` (a driver on this machine
joining the cluster) → registry lookup → compress/decompress a held-out shape. Datasets, Ray Train
checkpoints and model artifacts go to the stack's S3 bucket, tracking to its MLflow server; local
files only under the stack's folder. Each step is the command a user would type, run as a
subprocess with the stack's environment (``squeeze3d.stack.client_env``).
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from squeeze3d import stack
from squeeze3d.errors import UserError


@functools.cache
def checkout_root() -> Path:
    """The source checkout this demo runs from (the working directory or one above it): what
    ``ray job submit --working-dir`` ships (jobs/, datasets/, tuning/) and where ``make`` runs. The
    stack demo drives the checkout's jobs, so it is found from the working directory, never from
    this file's location."""
    here = Path.cwd().resolve()
    for d in (here, *here.parents):
        if (d / "pyproject.toml").is_file() and (d / "jobs").is_dir() and (d / "Makefile").is_file():
            return d
    raise UserError(f"the stack demo runs the checkout's jobs: run it from the source checkout (not {here})")
# never ship these with a job: virtual envs, local state, caches (the .gitignore covers most)
JOB_EXCLUDES = [".venv*", ".state", "mlruns", "out", ".git", "**/__pycache__"]


@dataclass
class StackDemoConfig:
    pair: str = "pointnet_lion"
    """Pair to run."""
    samples: int = 160
    """Rows the build job writes (small: the CPU stack samples ~2-3 pairs/s over two nodes)."""
    shard_rows: int | None = 32
    """Rows per shard (several shards so both nodes' actors get work); None = the pair's default."""
    epochs: int = 3
    """Epochs of the train job."""
    sweep_trials: int = 2
    """Tune trials of the sweep (the pair's search space with fewer trials)."""
    sweep_epochs: int = 2
    """Epochs per sweep trial."""
    heldout: int = 8
    """Held-out assets for the train job's test metrics."""
    train_sets: list[str] = field(default_factory=lambda: ["optim.optimizer=adamw"])
    """Extra ``--set`` overrides for train and sweep (AdamW: Muon's bf16 step is very slow on CPU)."""
    job_timeout_s: float = 1800
    """Per step."""


@dataclass
class StackDemoReport:
    prefix: str
    data_uri: str
    jobs: dict[str, str]
    """step → Ray submission id."""
    nodes: dict[str, list[str]]
    """step → Ray node ids that ran its tasks/actors."""
    seconds: dict[str, float]
    outputs: dict[str, str]
    logs: dict[str, str] = field(default_factory=dict)


def _run(cmd: list[str], env: dict[str, str], timeout: float, what: str, log) -> subprocess.CompletedProcess:
    log(f"$ {' '.join(cmd)}")
    r = subprocess.run(cmd, env=env, cwd=checkout_root(), capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
    return r


def submit(entrypoint: list[str], env: dict[str, str], submission_id: str, timeout: float,
           log=print) -> subprocess.CompletedProcess:
    """``ray job submit`` the repo with ``entrypoint`` and wait for it (exit status = the job's)."""
    ray = str(Path(sys.executable).parent / "ray")
    cmd = [ray, "job", "submit", "--address", env["RAY_DASHBOARD_URL"], "--submission-id", submission_id,
           "--working-dir", ".", "--runtime-env-json", json.dumps({"excludes": JOB_EXCLUDES}), "--", *entrypoint]
    r = _run(cmd, env, timeout, f"ray job {submission_id}", log)
    if f"Job '{submission_id}' succeeded" not in r.stdout + r.stderr:
        raise RuntimeError(f"ray job {submission_id} did not succeed:\n{r.stdout[-4000:]}")
    return r


def job_nodes(submission_id: str, env: dict[str, str]) -> set[str]:
    """Node ids of every task and actor of a submitted job (Ray state API, through the CLI)."""
    ray = str(Path(sys.executable).parent / "ray")
    addr = env["RAY_DASHBOARD_URL"]
    jobs = json.loads(subprocess.run([ray, "list", "jobs", "--address", addr, "--detail", "--format", "json",
                                      "--limit", "1000"], env=env, capture_output=True, text=True,
                                     check=True, timeout=120).stdout)
    job_id = next((j["job_id"] for j in jobs if j.get("submission_id") == submission_id), None)
    if job_id is None:
        raise RuntimeError(f"no Ray job with submission id {submission_id}")
    nodes: set[str] = set()
    for kind in ("tasks", "actors"):
        r = subprocess.run([ray, "list", kind, "--address", addr, "--filter", f"job_id={job_id}", "--detail",
                            "--format", "json", "--limit", "10000"], env=env, capture_output=True, text=True,
                           check=True, timeout=120)
        nodes |= {row["node_id"] for row in json.loads(r.stdout) if row.get("node_id")}
    return nodes


def _heldout_input(pair_name: str, path: Path) -> Path:
    """A corpus *test* shape (never in any training set) as an (N, 3) .npy point cloud."""
    import numpy as np

    from squeeze3d.corpora import points as corpus
    from squeeze3d.pairs import get_pair

    pair = get_pair(pair_name)
    idx = int(corpus.split_indices("test", 10 * len(corpus.CATEGORIES))[0])
    shape = corpus.make_shape(corpus.DEFAULT_SEED, idx, pair.num_points or 2048)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, shape.points.astype(np.float32))
    return path


def _sweep_space(pair: str, trials: int, epochs: int, path: Path) -> Path:
    """The pair's search space (tuning/<pair>.yaml) with fewer trials and epochs."""
    doc = yaml.safe_load((checkout_root() / "tuning" / f"{pair}.yaml").read_text())
    doc.setdefault("tune", {})["num_samples"] = trials
    doc["tune"]["grace_period"] = min(int(doc["tune"].get("grace_period", 1)), epochs)
    doc.setdefault("base", {}).setdefault("optim", {})["epochs"] = epochs
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _grab(pattern: str, text: str) -> str:
    m = re.search(pattern, text)
    return m.group(1) if m else "?"


def run_stack_demo(state_dir: Path = stack.DEFAULT_DIR, cfg: StackDemoConfig | None = None,
                   log=print) -> StackDemoReport:
    cfg = cfg or StackDemoConfig()
    health = stack.status(state_dir)
    if not health["healthy"]:
        raise UserError(f"the local stack in {Path(state_dir).resolve()} is not up and healthy: run `make stack-up`"
                        f"\n{stack.format_status(health)}")
    env = stack.client_env(state_dir)
    run = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    prefix = f"s3://{env['SQUEEZE3D_BUCKET']}/demo/{run}"
    data = f"{prefix}/data/{cfg.pair}"
    ckpts = f"{prefix}/ray_results"
    local = Path(env["SQUEEZE3D_STATE_DIR"]) / "demo" / run  # inside the stack's folder
    sets = [x for s in cfg.train_sets for x in ("--set", s)]
    jobs, secs, outputs, logs = {}, {}, {"prefix": prefix}, {}
    t_all = time.perf_counter()

    log(f"[1/5] build_dataset ({cfg.pair}, {cfg.samples} rows) → {data}")
    t = time.perf_counter()
    jobs["build"] = f"s3d-build-{run}"
    build = ["python", "jobs/build_dataset.py", "--pair", cfg.pair, "--num-samples",
             str(cfg.samples), "--output", data, "--generator-workers", "1", "--encoder-workers", "1",
             "--cpus-per-worker", "1"]
    if cfg.shard_rows:
        build += ["--shard-rows", str(cfg.shard_rows)]
    r = submit(build, env, jobs["build"], cfg.job_timeout_s, log)
    secs["build"] = time.perf_counter() - t
    outputs["rows_per_s"] = _grab(r"rows/s: (\d+)", r.stdout)
    logs["build"] = r.stdout
    log(f"      rows/s {outputs['rows_per_s']}  ({secs['build']:.0f}s incl. submission)")

    log(f"[2/5] train ({cfg.epochs} epochs, checkpoints → {ckpts})")
    t = time.perf_counter()
    jobs["train"] = f"s3d-train-{run}"
    r = submit(["python", "jobs/train.py", "--pair", cfg.pair, "--data", data, "--storage", ckpts,
                "--heldout", str(cfg.heldout), "--set", f"optim.epochs={cfg.epochs}", *sets],
               env, jobs["train"], cfg.job_timeout_s, log)
    secs["train"] = time.perf_counter() - t
    logs["train"] = r.stdout
    outputs["train"] = _grab(r"(outputs: .*)", r.stdout)
    log(f"      {outputs['train']}")

    log(f"[3/5] make sweep ({cfg.sweep_trials} trials × {cfg.sweep_epochs} epochs)")
    t = time.perf_counter()
    space = _sweep_space(cfg.pair, cfg.sweep_trials, cfg.sweep_epochs, local / "sweep_space.yaml")
    sweep_args = f"--space {space} --storage {ckpts} --out {local / 'sweeps'} " + " ".join(sets)
    # this interpreter's venv, and `-o` its install stamp: `make sweep` must never reinstall mid-demo
    venv = os.path.relpath(sys.prefix, checkout_root())
    r = _run(["make", "--no-print-directory", "-o", f"{venv}/.installed", "sweep", f"VENV={venv}",
              f"PAIR={cfg.pair}", f"DATA={data}", f"SWEEP_ARGS={sweep_args}"], env, cfg.job_timeout_s,
             "make sweep", log)
    secs["sweep"] = time.perf_counter() - t
    logs["sweep"] = r.stdout
    outputs["sweep"] = _grab(r"(best: .*)", r.stdout)
    log(f"      {outputs['sweep']}")

    log("[4/5] registry lookup")
    t = time.perf_counter()
    sq = [sys.executable, "-m", "squeeze3d"]
    r = _run([*sq, "registry", "best", "--pair", cfg.pair], env, 300, "registry best", log)
    secs["registry"] = time.perf_counter() - t
    outputs["champion"] = r.stdout.strip()
    log("      " + r.stdout.strip().replace("\n", "\n      "))

    log("[5/5] compress / decompress a held-out shape with the champion")
    t = time.perf_counter()
    src = _heldout_input(cfg.pair, local / "heldout.npy")
    sq3d, rec = local / "heldout.sq3d", local / "heldout_rec.ply"
    r = _run([*sq, "compress", str(src), "-o", str(sq3d), "--pair", cfg.pair], env, 600, "compress", log)
    outputs["compress"] = r.stdout.strip()
    r = _run([*sq, "decompress", str(sq3d), "-o", str(rec)], env, 600, "decompress", log)
    outputs["decompress"] = r.stdout.strip()
    outputs.update(sq3d=str(sq3d), reconstruction=str(rec))
    secs["codec"] = time.perf_counter() - t
    log(f"      {outputs['compress']}\n      {outputs['decompress']}")

    nodes = {k: sorted(job_nodes(v, env)) for k, v in jobs.items()}
    secs["total"] = time.perf_counter() - t_all
    log("nodes: " + "  ".join(f"{k} {len(v)}" for k, v in nodes.items())
        + f" (of {len(stack.load_state(state_dir).ray_pids)})")
    log("seconds: " + "  ".join(f"{k} {v:.0f}" for k, v in secs.items()))
    return StackDemoReport(prefix, data, jobs, nodes, secs, outputs, logs)
