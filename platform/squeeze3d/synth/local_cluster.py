"""A multi-node Ray cluster on one machine (``ray start`` processes), for the cluster test and the
node-scaling benchmark. Real clusters are started by KubeRay or the cluster launcher instead.

Each node is a ``ray start --block`` child process in its own session, so ``stop()`` ends exactly the
processes it started (never ``ray stop``, which would kill every Ray on the machine). Ports are
chosen free, the temp dir is private, and token authentication is on with a token generated here and
passed through ``RAY_AUTH_MODE``/``RAY_AUTH_TOKEN`` (nothing is read from or written to ~/.ray).
Nodes can be pinned to CPU cores so "1 node vs 2 nodes" means 1 vs 2 physical cores.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalCluster:
    def __init__(self, head_cpus: int = 1, object_store_bytes: int = 200 * 1024**2,
                 head_core: int | None = None, extra_env: dict | None = None, base_env: dict | None = None):
        self.bin = Path(sys.executable).parent
        self.tmp = tempfile.mkdtemp(prefix="s3dray-", dir="/tmp")  # short: unix socket paths are limited
        self.port, self.dashboard_port = free_port(), free_port()
        self.object_store_bytes = object_store_bytes
        # base_env replaces this process's environment (the stack hands nodes a cleaned one)
        env = {k: v for k, v in (os.environ if base_env is None else base_env).items()
               if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH")}
        env.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
                    "PATH": f"{self.bin}{os.pathsep}{env.get('PATH', '')}", "RAY_USAGE_STATS_ENABLED": "0"})
        env.update(extra_env or {})
        # Processes on the nodes that look the cluster up (Ray Train's PlacementGroupCleaner uses the
        # state API) must find *this* one: with several Ray instances on a machine, auto-detection fails.
        # `ray start` itself does not read RAY_ADDRESS (the worker gets --address explicitly).
        env["RAY_ADDRESS"] = self.address
        self.env = env
        self.procs: list[subprocess.Popen] = []
        self._start_node(head=True, cpus=head_cpus, core=head_core)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def _start_node(self, head: bool, cpus: int, core: int | None) -> None:
        cmd = [str(self.bin / "ray"), "start", "--block", f"--num-cpus={cpus}", "--num-gpus=0",
               f"--object-store-memory={self.object_store_bytes}", "--node-ip-address=127.0.0.1",
               f"--dashboard-agent-listen-port={free_port()}", "--disable-usage-stats"]
        if head:
            cmd += ["--head", f"--port={self.port}", f"--temp-dir={self.tmp}", "--include-dashboard=true",
                    "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}",
                    f"--ray-client-server-port={free_port()}"]
        else:
            cmd += [f"--address={self.address}"]
        preexec = (lambda: os.sched_setaffinity(0, {core})) if core is not None else None
        log = open(os.path.join(self.tmp, f"node-{len(self.procs)}.log"), "wb")
        self.procs.append(subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True, preexec_fn=preexec))
        log.close()

    def log_tail(self, i: int, chars: int = 3000) -> str:
        try:
            with open(os.path.join(self.tmp, f"node-{i}.log"), errors="replace") as f:
                return f.read()[-chars:]
        except OSError:
            return "(no log)"

    def add_worker(self, cpus: int = 1, core: int | None = None) -> None:
        # a worker started before the head is registered in its GCS gives up after a short wait
        self.wait_for_nodes(len(self.procs))
        self._start_node(head=False, cpus=cpus, core=core)

    def wait_for_nodes(self, n: int, timeout: float = 240) -> None:
        """Wait until ``n`` nodes are alive (asked through the CLI, so this process stays clean)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            for i, p in enumerate(self.procs):
                if p.poll() is not None:
                    raise RuntimeError(f"ray node {i} exited early (rc={p.returncode}):\n{self.log_tail(i)}")
            try:
                r = subprocess.run([str(self.bin / "ray"), "list", "nodes", "--address", self.dashboard_url,
                                    "--filter", "state=ALIVE", "--format", "json"],
                                   env=self.env, capture_output=True, text=True, timeout=60)
            except subprocess.TimeoutExpired:  # a busy machine: ask again until the deadline
                continue
            if r.returncode == 0 and r.stdout.count('"node_id"') >= n:
                return
            time.sleep(2)
        raise TimeoutError(f"cluster did not reach {n} nodes in {timeout:.0f}s; logs in {self.tmp}")

    def submit(self, entrypoint: list[str], working_dir: str, timeout: float = 600,
               excludes: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
        """``ray job submit --working-dir <dir> -- <entrypoint>``; waits for the job to end."""
        import json

        cmd = [str(self.bin / "ray"), "job", "submit", "--address", self.dashboard_url,
               "--working-dir", working_dir]
        if excludes:
            cmd += ["--runtime-env-json", json.dumps({"excludes": list(excludes)})]
        return subprocess.run([*cmd, "--", *entrypoint], env=self.env, capture_output=True, text=True,
                              timeout=timeout)

    @property
    def pids(self) -> list[int]:
        """``ray start --block`` process ids, head first (each leads its own session)."""
        return [p.pid for p in self.procs]

    def stop(self) -> None:
        for p in reversed(self.procs):  # workers first, then the head
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(self.procs):
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)  # the session we created for this node only
                p.wait(timeout=30)
        for p in self.procs:  # node processes left in the node's own session
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.procs.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def stop_detached(pids: list[int], tmp: str | None, timeout: float = 60) -> None:
    """Stop nodes a ``LocalCluster`` started in another process (the stack's ``make stack-down``):
    SIGTERM each ``ray start --block`` (workers first), wait, then SIGKILL what is left of each node's
    own session. Only these sessions are touched; pids that are gone are skipped."""
    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        # a zombie child of this process counts as gone once reaped
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
            return done == 0
        except ChildProcessError:
            return True

    for pid in reversed(pids):
        if alive(pid):
            os.kill(pid, signal.SIGTERM)
    deadline = time.time() + timeout
    while time.time() < deadline and any(alive(p) for p in pids):
        time.sleep(0.5)
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)
