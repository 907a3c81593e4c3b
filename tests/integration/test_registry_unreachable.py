"""A registry that does not answer is reported as such, never as "not found": against a real closed
port and a real `mlflow server` stopped mid-run. CLI commands give up within the short CLI budget
(SQUEEZE3D_REGISTRY_TIMEOUT, default 10 s), exit 2 and print one line naming the URI and the setting."""

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from squeeze3d import registry
from squeeze3d.errors import UserError

pytestmark = pytest.mark.integration


def _closed_port() -> int:
    with socket.socket() as s:  # bound then closed: nothing listens there, connections are refused
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(*args, env, timeout=120):
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "squeeze3d", *args], env=env, capture_output=True, text=True,
                       timeout=timeout)
    return r, time.monotonic() - t0


def _assert_unreachable(r, uri):
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert f"cannot reach the model registry at {uri}" in lines[0]
    assert "SQUEEZE3D_REGISTRY_TIMEOUT" in lines[0]
    assert "no champion" not in lines[0] and "make sweep" not in lines[0] and "has no" not in lines[0]


@pytest.fixture
def env(tmp_path):
    e = {**os.environ, "SQUEEZE3D_STATE_DIR": str(tmp_path / "state"), "NO_PROXY": "127.0.0.1,localhost",
         "no_proxy": "127.0.0.1,localhost"}
    for k in ("MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES", "SQUEEZE3D_REGISTRY_TIMEOUT"):
        e.pop(k, None)
    return e


def test_closed_port_cli(env, tmp_path):
    uri = f"http://127.0.0.1:{_closed_port()}"
    env["MLFLOW_TRACKING_URI"] = uri
    for args in (["registry", "best", "--pair", "debug"], ["registry", "list"]):
        r, dt = _cli(*args, env=env)
        _assert_unreachable(r, uri)
        assert dt < 30, f"{args}: {dt:.1f} s"  # the budget is 10 s; the rest is interpreter start on a busy box
    # compress with the default model (the registry champion): fails on the registry before loading models
    src = tmp_path / "cloud.npy"
    import numpy as np

    np.save(src, np.random.default_rng(0).normal(size=(300, 3)).astype(np.float32))
    r, dt = _cli("compress", str(src), "-o", str(tmp_path / "c.sq3d"), "--pair", "debug", "--min-quality", "off",
                 env=env)
    _assert_unreachable(r, uri)
    assert not (tmp_path / "c.sq3d").exists()
    # the setting is honoured: a bad value is a one-line error too
    r, _ = _cli("registry", "list", env={**env, "SQUEEZE3D_REGISTRY_TIMEOUT": "soon"})
    assert r.returncode == 2 and "SQUEEZE3D_REGISTRY_TIMEOUT" in r.stderr and "Traceback" not in r.stderr


def test_silent_server_times_out_within_the_budget(env):
    """A port that accepts connections but never answers (the kernel queues them; nobody reads):
    the CLI gives up within the 10 s budget and says it got no answer."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(16)
        uri = f"http://127.0.0.1:{srv.getsockname()[1]}"
        env["MLFLOW_TRACKING_URI"] = uri
        r, dt = _cli("registry", "best", "--pair", "debug", env=env)
    _assert_unreachable(r, uri)
    assert "no answer within 2 s" in r.stderr
    assert 6 <= dt < 30, dt  # three 2 s attempts at least; the rest is interpreter start on a busy box


def test_closed_port_library(monkeypatch, tmp_path):
    uri = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("SQUEEZE3D_STATE_DIR", str(tmp_path / "state"))
    for k, v in (("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0"), ("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")):
        monkeypatch.setenv(k, v)  # retries off, as in the issue: must still not say "has no alias"
    with pytest.raises(registry.RegistryUnreachable, match="cannot reach the model registry at " + uri):
        registry.champion("debug")
    with pytest.raises(registry.RegistryUnreachable):
        registry.resolve_model(None, "debug")
    with pytest.raises(registry.RegistryUnreachable):
        registry.list_versions()


def _start_server(d, port):
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{d / 'db.sqlite'}",
         "--artifacts-destination", str(d / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        stdout=subprocess.DEVNULL, stderr=open(d / "server.log", "wb"), start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 300
    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2)
            return proc, url
        except OSError as e:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise RuntimeError(f"mlflow server did not start: {(d / 'server.log').read_text()[-2000:]}") from e
            time.sleep(0.5)


def _stop(proc):
    import signal

    try:
        os.killpg(proc.pid, signal.SIGTERM)  # its own session: the gunicorn/uvicorn worker goes too
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def test_server_stopped_mid_run(env, tmp_path, monkeypatch):
    d = tmp_path / "server"
    d.mkdir()
    port = _closed_port()
    proc, url = _start_server(d, port)
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        monkeypatch.setenv("SQUEEZE3D_STATE_DIR", str(tmp_path / "state"))
        env["MLFLOW_TRACKING_URI"] = url
        # up: the server answers "there is none", which is "not found", with the advice to train
        assert registry.champion("debug") is None
        with pytest.raises(UserError, match="registry has no alias 'champion'") as ei:
            registry.resolve_model(None, "debug")
        assert not isinstance(ei.value, registry.RegistryUnreachable)
        r, _ = _cli("registry", "best", "--pair", "debug", env=env)
        assert r.returncode == 2 and "no champion" in r.stderr and "Traceback" not in r.stderr
    finally:
        _stop(proc)
    # the same process, after the server went away: unreachable, not "not found"
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    with pytest.raises(registry.RegistryUnreachable, match=f"cannot reach the model registry at {url}"):
        registry.champion("debug")
    with pytest.raises(registry.RegistryUnreachable):
        registry.resolve_model("3", "debug")
    for args in (["registry", "best", "--pair", "debug"], ["registry", "list"]):
        r, dt = _cli(*args, env=env)
        _assert_unreachable(r, url)
        assert dt < 30
