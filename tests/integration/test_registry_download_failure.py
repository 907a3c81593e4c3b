"""A registry that dies or stalls while a command downloads the model (issue 26.7): a real `mlflow
server` holds a champion; a small proxy in front of it passes the registry's API calls through and,
for the artifact download, either drops the connection (the server dying mid-download) or never
answers (a stuck server). `compress` must then say "cannot reach the model registry ..." in one line,
exit 2, write nothing, and give up within SQUEEZE3D_REGISTRY_TIMEOUT for the whole lookup."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Proxy(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: str):
        self.upstream, self.mode, self.artifact_requests = upstream, "pass", 0
        self.release = threading.Event()
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _relay(self):
        srv: _Proxy = self.server
        if "artifacts" in self.path and srv.mode != "pass":
            srv.artifact_requests += 1
            if srv.mode == "stall":
                srv.release.wait(120)
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)  # the server died mid-download
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) or None
        req = urllib.request.Request(srv.upstream + self.path, data=body, method=self.command,
                                     headers={k: v for k, v in self.headers.items() if k.lower() != "host"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                status, headers, data = r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            status, headers, data = e.code, e.headers, e.read()
        self.send_response(status)
        for k, v in headers.items():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_DELETE = _relay


@pytest.fixture(scope="module")
def registry_with_champion(tmp_path_factory):
    """A real mlflow server with a champion for the debug pair; yields its URL."""
    d = tmp_path_factory.mktemp("mlflow-dl")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{d / 'db.sqlite'}",
         "--artifacts-destination", str(d / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        stdout=subprocess.DEVNULL, stderr=open(d / "server.log", "wb"), start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 300
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2)
                break
            except OSError as e:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError((d / "server.log").read_text()[-2000:]) from e
                time.sleep(0.5)
        script = (
            "import mlflow, torch\n"
            "from squeeze3d import registry\n"
            "from squeeze3d.config import train_config_for_pair\n"
            "from squeeze3d.mapping import build_mapping\n"
            "from squeeze3d.mapping.checkpoint import save_checkpoint, weights_hash\n"
            "from squeeze3d.pairs import get_pair\n"
            "from squeeze3d.tracking import configure, experiment_id\n"
            "import sys\n"
            "cfg, p = train_config_for_pair('debug'), get_pair('debug')\n"
            "torch.manual_seed(0)\n"
            "f_e, f_d = build_mapping(cfg.mapping, p.z_e_shape, p.z_g_shape)\n"
            "path = save_checkpoint(sys.argv[1], f_e, f_d, cfg)\n"
            "configure()\n"
            "with mlflow.start_run(experiment_id=experiment_id('squeeze3d-debug')) as run:\n"
            "    mlflow.log_artifacts(str(path), 'mapping')\n"
            "registry.register('debug', run.info.run_id, 'mapping', {'weights_hash': weights_hash(f_e, f_d)}, 30.0)\n")
        env = {**os.environ, "MLFLOW_TRACKING_URI": url, "SQUEEZE3D_STATE_DIR": str(d / "state")}
        r = subprocess.run([sys.executable, "-c", script, str(d / "ck")], env=env, capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def proxy(registry_with_champion):
    p = _Proxy(registry_with_champion)
    t = threading.Thread(target=p.serve_forever, daemon=True)
    t.start()
    yield p
    p.release.set()
    p.shutdown()
    p.server_close()


def _compress(tmp_path, uri, **extra):
    src = tmp_path / "cloud.npy"
    np.save(src, np.random.default_rng(0).normal(size=(300, 3)).astype(np.float32))
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "SQUEEZE3D_STATE_DIR": str(tmp_path / "state"),
           "SQUEEZE3D_NO_SERVER": "1", "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost", **extra}
    for k in ("MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES"):
        env.pop(k, None)
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "squeeze3d", "compress", str(src), "-o", str(tmp_path / "c.sq3d"),
                        "--pair", "debug", "--min-quality", "off"], env=env, capture_output=True, text=True,
                       timeout=300)
    return r, time.monotonic() - t0


def _assert_one_line_unreachable(r, tmp_path, uri):
    assert r.returncode == 2, r.stdout + r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and f"cannot reach the model registry at {uri}" in lines[0], r.stderr
    assert not (tmp_path / "c.sq3d").exists()
    models = tmp_path / "state" / "models"
    assert not models.exists() or not any(p.name.startswith(".") for p in models.rglob("*")), \
        "a half-downloaded model was left behind"


def test_registry_dying_mid_download_is_one_line(proxy, tmp_path):
    proxy.mode = "die"
    r, _ = _compress(tmp_path, proxy.url)
    assert proxy.artifact_requests >= 1  # it got as far as the download
    _assert_one_line_unreachable(r, tmp_path, proxy.url)


def test_the_registry_timeout_bounds_the_whole_lookup(proxy, tmp_path):
    proxy.mode = "stall"
    r, dt = _compress(tmp_path, proxy.url, SQUEEZE3D_REGISTRY_TIMEOUT="3")
    assert proxy.artifact_requests >= 1
    _assert_one_line_unreachable(r, tmp_path, proxy.url)
    assert "within 3 s" in r.stderr


def test_download_progress_bar_is_not_shown(proxy, tmp_path):
    r, _ = _compress(tmp_path, proxy.url)
    assert r.returncode == 0, r.stderr
    assert "Downloading artifacts" not in r.stderr and "%|" not in r.stderr, r.stderr
