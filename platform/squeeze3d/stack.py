"""The production-shaped stack on one machine: a Ray head and one worker node (``ray start``, one CPU
each), an ``mlflow server`` (sqlite backend, artifacts on S3) and an S3 endpoint (moto's server), all
on loopback. Real parts, the same wiring as a cluster: jobs go in with ``ray job submit``, data,
checkpoints and model artifacts land on S3, tracking on the server.

Everything the stack owns lives in one folder (default ``.state/stack``):

    stack.json      pids, ports, the Ray temp dir (what ``down`` stops and ``status`` checks)
    stack.env       ports and credentials, shell-sourceable (``set -a; . stack.env; set +a``)
    ray_auth_token  the Ray token (0600), named by RAY_AUTH_TOKEN_PATH in stack.env
    mlflow.db       the tracking server's backend store
    state/          SQUEEZE3D_STATE_DIR of jobs and clients (registry download cache, sweep plots)
    logs/           moto and mlflow server logs (Ray's are in its temp dir)

plus the Ray temp dir (``/tmp/s3dray-*``: unix socket paths must stay short). The processes are
detached (own sessions), so ``up`` returns; ``down`` stops exactly the recorded process groups and
removes the folder's runtime files. moto keeps S3 in memory: ``down`` discards the bucket, so it also
discards the tracking database whose artifacts were there.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from squeeze3d.errors import UserError

DEFAULT_DIR = Path(".state/stack")
# moto accepts any credentials; these are generated per stack anyway so nothing real is ever written
REGION = "us-east-1"
# variables a caller's environment must not leak into stack clients (another cluster, token or store)
_CLIENT_OVERRIDES = ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE",
                     "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN",
                     "AWS_PROFILE", "SQUEEZE3D_STATE_DIR")


@dataclass
class StackConfig:
    state_dir: Path = DEFAULT_DIR
    """The stack's folder (made absolute)."""
    bucket: str = "squeeze3d"
    """S3 bucket created on the moto endpoint: datasets, checkpoints, MLflow artifacts."""
    head_cpus: int = 1
    """Logical CPUs of the Ray head node."""
    worker_cpus: int = 1
    """Logical CPUs of each Ray worker node."""
    worker_nodes: int = 1
    """Ray worker nodes besides the head (0: a one-node stack, for the 1 vs 2 nodes measurement)."""
    object_store_bytes: int = 200 * 1024**2
    """Object store per node (small: 2-core, shared machine)."""
    start_timeout_s: float = 300
    """How long each service may take to become healthy."""


@dataclass
class StackState:
    state_dir: str
    ray_tmp: str
    ray_pids: list[int]
    ray_port: int
    dashboard_port: int
    mlflow_pid: int
    mlflow_port: int
    moto_pid: int
    moto_port: int
    bucket: str
    started: float = field(default_factory=time.time)

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def ray_address(self) -> str:
        return f"127.0.0.1:{self.ray_port}"

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    @property
    def s3_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.moto_port}"


def _paths(state_dir: Path) -> dict[str, Path]:
    d = Path(state_dir).resolve()
    return {"dir": d, "json": d / "stack.json", "env": d / "stack.env", "token": d / "ray_auth_token",
            "db": d / "mlflow.db", "state": d / "state", "logs": d / "logs", "creds": d / "s3_credentials"}


def _write_private(path: Path, text: str, mode: int = 0o600) -> None:
    """Atomic write, created with ``mode`` from the start (never world-readable, even briefly)."""
    tmp = path.with_name(f"{path.name}.tmp-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def load_state(state_dir: Path = DEFAULT_DIR) -> StackState | None:
    p = _paths(state_dir)["json"]
    if not p.is_file():
        return None
    return StackState(**json.loads(p.read_text()))


def stack_env(state_dir: Path = DEFAULT_DIR) -> dict[str, str]:
    """The variables in ``stack.env`` plus the S3 secret (kept in its own 0600 file)."""
    paths = _paths(state_dir)
    if not paths["env"].is_file():
        raise UserError(f"no stack in {paths['dir']}: run `make stack-up` first")
    env: dict[str, str] = {}
    for line in paths["env"].read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            k, v = line.split("=", 1)
            env[k] = shlex.split(v)[0] if v else ""
    creds = json.loads(paths["creds"].read_text())
    env["AWS_SECRET_ACCESS_KEY"] = creds["secret"]
    return env


def client_env(state_dir: Path = DEFAULT_DIR, base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) pointed at the stack: Ray address and token,
    MLflow server, S3 endpoint and credentials. Clashing variables of ``base`` are dropped."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if k not in _CLIENT_OVERRIDES}
    env.update(stack_env(state_dir))
    return env


def _free_port() -> int:
    from squeeze3d.synth.local_cluster import free_port

    return free_port()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of this process (tests start and stop in one process)
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def _http_ok(url: str, timeout: float = 3) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status < 500
    except urllib.error.HTTPError as e:
        return e.code < 500
    except OSError:
        return False


def _wait_http(url: str, pid: int, what: str, log: Path, timeout: float) -> None:
    deadline = time.time() + timeout
    while not _http_ok(url):
        if not _alive(pid):
            raise RuntimeError(f"{what} exited during start-up; log {log}:\n{_tail(log)}")
        if time.time() > deadline:
            raise TimeoutError(f"{what} not healthy at {url} after {timeout:.0f}s; log {log}")
        time.sleep(0.5)


def _tail(path: Path, chars: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def _spawn(cmd: list[str], env: dict[str, str], log: Path) -> int:
    """A detached service: its own session (so ``down`` can stop its whole process group and
    ``up`` returns), output to ``log``."""
    with open(log, "ab") as f:
        return subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True).pid


def _stop_group(pid: int, timeout: float = 30) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.time() + timeout
    while time.time() < deadline and _alive(pid):
        time.sleep(0.3)
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def up(cfg: StackConfig | None = None, log=print) -> StackState:
    """Start the stack (or report the running one). Idempotent: a healthy stack is left as it is; a
    broken one (a process died) is stopped and started afresh."""
    cfg = cfg or StackConfig()
    paths = _paths(cfg.state_dir)
    st = load_state(paths["dir"])
    if st is not None:
        health = status(paths["dir"])
        if health["healthy"]:
            log(f"stack already up in {paths['dir']}")
            return st
        log(f"stack in {paths['dir']} is unhealthy ({_bad(health)}): restarting it")
        down(paths["dir"], log=lambda m: None)

    from squeeze3d.synth.local_cluster import LocalCluster

    for k in ("dir", "state", "logs"):
        paths[k].mkdir(parents=True, exist_ok=True)
    key_id, secret = f"s3d{secrets.token_hex(8)}", secrets.token_hex(20)
    base = {k: v for k, v in os.environ.items() if k not in _CLIENT_OVERRIDES and not k.startswith("AWS_")}
    s3_env = {"AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret, "AWS_REGION": REGION,
              "AWS_DEFAULT_REGION": REGION,
              # a developer's ~/.aws must not leak in (profiles, real endpoints)
              "AWS_CONFIG_FILE": str(paths["dir"] / "no-aws-config"),
              "AWS_SHARED_CREDENTIALS_FILE": str(paths["dir"] / "no-aws-credentials"),
              "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    started: dict[str, int] = {}
    cluster = None
    try:
        moto_port = _free_port()
        started["moto"] = _spawn([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
                                 {**base, **s3_env}, paths["logs"] / "moto.log")
        endpoint = f"http://127.0.0.1:{moto_port}"
        _wait_http(f"{endpoint}/moto-api/", started["moto"], "moto S3 server", paths["logs"] / "moto.log",
                   cfg.start_timeout_s)
        import boto3

        boto3.client("s3", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=key_id,
                     aws_secret_access_key=secret).create_bucket(Bucket=cfg.bucket)
        s3_env["AWS_ENDPOINT_URL"] = endpoint
        log(f"s3:     {endpoint}  bucket s3://{cfg.bucket}  (moto, in memory)")

        mlflow_port = _free_port()
        started["mlflow"] = _spawn(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{paths['db']}",
             "--artifacts-destination", f"s3://{cfg.bucket}/mlflow", "--serve-artifacts",
             "--host", "127.0.0.1", "--port", str(mlflow_port), "--workers", "1"],
            # clients upload artifacts through the server (mlflow-artifacts:), which writes to S3;
            # no background job runner: nothing here needs it on a 2-core machine
            {**base, **s3_env, "MLFLOW_S3_ENDPOINT_URL": endpoint, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            paths["logs"] / "mlflow.log")
        mlflow_url = f"http://127.0.0.1:{mlflow_port}"
        _wait_http(f"{mlflow_url}/health", started["mlflow"], "mlflow server", paths["logs"] / "mlflow.log",
                   cfg.start_timeout_s)
        log(f"mlflow: {mlflow_url}  (sqlite {paths['db']}, artifacts s3://{cfg.bucket}/mlflow)")

        # Job drivers run on the head and inherit the node's environment: that is how they find
        # the tracking server and the S3 endpoint (a cluster sets the same variables in its pods).
        node_env = {**s3_env, "MLFLOW_TRACKING_URI": mlflow_url, "SQUEEZE3D_STATE_DIR": str(paths["state"])}
        cluster = LocalCluster(head_cpus=cfg.head_cpus, object_store_bytes=cfg.object_store_bytes,
                               base_env=base, extra_env=node_env)
        for _ in range(cfg.worker_nodes):
            cluster.add_worker(cpus=cfg.worker_cpus)
        cluster.wait_for_nodes(1 + cfg.worker_nodes, timeout=cfg.start_timeout_s)
        log(f"ray:    {cluster.address}  dashboard {cluster.dashboard_url}  ({1 + cfg.worker_nodes} nodes, token auth)")
    except BaseException:
        if cluster is not None:
            cluster.stop()
        for pid in started.values():
            _stop_group(pid)
        raise

    st = StackState(state_dir=str(paths["dir"]), ray_tmp=cluster.tmp, ray_pids=cluster.pids,
                    ray_port=cluster.port, dashboard_port=cluster.dashboard_port, mlflow_pid=started["mlflow"],
                    mlflow_port=mlflow_port, moto_pid=started["moto"], moto_port=moto_port, bucket=cfg.bucket)
    _write_private(paths["token"], cluster.env["RAY_AUTH_TOKEN"])
    _write_private(paths["creds"], json.dumps({"secret": secret}))
    env_vars = {
        "RAY_ADDRESS": st.ray_address, "RAY_DASHBOARD_URL": st.dashboard_url, "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(paths["token"]), "MLFLOW_TRACKING_URI": mlflow_url,
        "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": key_id, "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION, "AWS_CONFIG_FILE": s3_env["AWS_CONFIG_FILE"],
        "AWS_SHARED_CREDENTIALS_FILE": s3_env["AWS_SHARED_CREDENTIALS_FILE"],
        "SQUEEZE3D_BUCKET": cfg.bucket, "SQUEEZE3D_STATE_DIR": str(paths["state"]),
        "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    header = ("# written by `make stack-up`; read by the stack's clients (jobs/demo_stack.py, tests).\n"
              "# Secrets are not here: the Ray token is in ray_auth_token (RAY_AUTH_TOKEN_PATH), the S3\n"
              "# secret in s3_credentials (both 0600). For a shell: set -a; . stack.env; set +a;\n"
              "# export AWS_SECRET_ACCESS_KEY=$(python -c 'import json;print(json.load(open(\"s3_credentials\"))"
              "[\"secret\"])')\n")
    _write_private(paths["env"], header + "".join(f"{k}={shlex.quote(v)}\n" for k, v in env_vars.items()), 0o644)
    _write_private(paths["json"], json.dumps(asdict(st), indent=2), 0o644)
    # the Popen objects are dropped: the nodes outlive this process by design (stop_detached ends them)
    cluster.procs.clear()
    return st


def _bad(health: dict) -> str:
    return ", ".join(f"{k} {v['state']}" for k, v in health["components"].items() if v["state"] != "ok") or "-"


def ray_nodes(st: StackState, env: dict[str, str] | None = None) -> list[dict]:
    """Alive Ray nodes, asked through the CLI with the stack's token (this process stays clean)."""
    env = env or client_env(Path(st.state_dir))
    r = subprocess.run([str(Path(sys.executable).parent / "ray"), "list", "nodes", "--address", st.dashboard_url,
                        "--filter", "state=ALIVE", "--format", "json", "--detail"],
                       env=env, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"ray list nodes failed: {r.stderr[-1000:]}")
    return json.loads(r.stdout)


def status(state_dir: Path = DEFAULT_DIR) -> dict:
    """``{"up": bool, "healthy": bool, "components": {name: {"pid", "state", "address"}}}``; state is
    ``ok``, ``dead`` (process gone) or ``unhealthy`` (process alive, not answering)."""
    st = load_state(state_dir)
    if st is None:
        return {"up": False, "healthy": False, "components": {}}
    comps: dict[str, dict] = {}

    def check(name: str, pids: list[int], address: str, probe) -> None:
        if not all(_alive(p) for p in pids):
            state = "dead"
        else:
            try:
                state = "ok" if probe() else "unhealthy"
            except Exception as e:  # a health probe must never crash `status`
                state = f"unhealthy ({type(e).__name__})"
        comps[name] = {"pid": pids, "state": state, "address": address}

    check("s3", [st.moto_pid], f"{st.s3_endpoint} bucket s3://{st.bucket}",
          lambda: _http_ok(f"{st.s3_endpoint}/moto-api/"))
    check("mlflow", [st.mlflow_pid], st.mlflow_url, lambda: _http_ok(f"{st.mlflow_url}/health"))
    check("ray", st.ray_pids, f"{st.ray_address} dashboard {st.dashboard_url}",
          lambda: len(ray_nodes(st)) == len(st.ray_pids))
    return {"up": True, "healthy": all(c["state"] == "ok" for c in comps.values()), "components": comps,
            "state_dir": st.state_dir, "ray_tmp": st.ray_tmp}


def format_status(s: dict) -> str:
    if not s["up"]:
        return "stack: down"
    lines = [f"stack: {'up' if s['healthy'] else 'UNHEALTHY'}  ({s['state_dir']}; env: {s['state_dir']}/stack.env)"]
    for name, c in s["components"].items():
        lines.append(f"  {name:<7}{c['state']:<10}pid {','.join(map(str, c['pid'])):<16}{c['address']}")
    return "\n".join(lines)


def down(state_dir: Path = DEFAULT_DIR, log=print) -> bool:
    """Stop the recorded processes and remove the stack's runtime files. Returns False when there
    was no stack (a no-op)."""
    from squeeze3d.synth.local_cluster import stop_detached

    paths = _paths(state_dir)
    st = load_state(paths["dir"])
    if st is None:
        log(f"stack: down (nothing recorded in {paths['dir']})")
        return False
    stop_detached(st.ray_pids, st.ray_tmp)
    _stop_group(st.mlflow_pid)
    _stop_group(st.moto_pid)
    # S3 was in memory: keeping the tracking db or the token would describe a stack that is gone
    for k in ("json", "env", "token", "creds", "db"):
        paths[k].unlink(missing_ok=True)
    shutil.rmtree(paths["state"], ignore_errors=True)
    log(f"stack: stopped (ray {st.ray_pids}, mlflow {st.mlflow_pid}, s3 {st.moto_pid}); logs kept in {paths['logs']}")
    return True
