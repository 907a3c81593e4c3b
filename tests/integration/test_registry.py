"""Model registry against the sqlite default and a real `mlflow server` on loopback: register,
promote only when better, look up, load bit-exact weights, clear errors."""

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import torch

from squeeze3d import registry
from squeeze3d.config import train_config_for_pair
from squeeze3d.errors import UserError
from squeeze3d.mapping import build_mapping
from squeeze3d.mapping.checkpoint import save_checkpoint, weights_hash
from squeeze3d.pairs import get_pair

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    d = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{d / 'db.sqlite'}",
         "--artifacts-destination", str(d / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        # one worker and no background job runner: the registry needs neither on a 2-core machine
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        stdout=subprocess.DEVNULL, stderr=open(d / "server.log", "wb"))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 300
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2)
                break
            except OSError as e:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"mlflow server did not start: {(d / 'server.log').read_text()[-2000:]}") from e
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(params=["sqlite", "server"])
def tracking(request, tmp_path, monkeypatch):
    monkeypatch.setenv("SQUEEZE3D_STATE_DIR", str(tmp_path / "state"))
    if request.param == "server":
        monkeypatch.setenv("MLFLOW_TRACKING_URI", request.getfixturevalue("mlflow_server"))
        # the server is shared by the module: give each test its own pair-free namespace by cleaning up
        yield "server"
        _delete_model("squeeze3d-debug")
    else:
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
        yield "sqlite"


def _delete_model(name):
    from mlflow import MlflowClient

    from squeeze3d.tracking import tracking_uri

    try:
        MlflowClient(tracking_uri=tracking_uri()).delete_registered_model(name)
    except Exception:
        pass


def _logged_checkpoint(tmp_path, seed: int):
    """An MLflow run holding a mapping checkpoint (random weights) as its `mapping` artifact."""
    import mlflow

    from squeeze3d.tracking import configure, experiment_id

    cfg = train_config_for_pair("debug")
    torch.manual_seed(seed)
    pair = get_pair("debug")
    f_e, f_d = build_mapping(cfg.mapping, pair.z_e_shape, pair.z_g_shape)
    path = save_checkpoint(tmp_path / f"ck{seed}", f_e, f_d, cfg)
    configure()
    with mlflow.start_run(experiment_id=experiment_id("squeeze3d-debug")) as run:
        mlflow.log_artifacts(str(path), "mapping")
    return run.info.run_id, f_e, f_d


def _register(tmp_path, seed, objective):
    run_id, f_e, f_d = _logged_checkpoint(tmp_path, seed)
    info, promoted, reason = registry.register("debug", run_id, "mapping",
                                               {"d_code": "8", "weights_hash": weights_hash(f_e, f_d)}, objective)
    return info, promoted, reason, (f_e, f_d)


def test_register_promotes_only_when_better(tracking, tmp_path):
    v1, p1, _, w1 = _register(tmp_path, 1, 30.0)
    assert p1 and registry.champion("debug").version == v1.version
    v2, p2, reason, _ = _register(tmp_path, 2, 25.0)  # worse D1-PSNR: champion stays
    assert not p2 and "does not beat" in reason
    assert registry.champion("debug").version == v1.version
    v3, p3, _, w3 = _register(tmp_path, 3, 35.5)
    assert p3 and registry.champion("debug").version == v3.version
    assert [v.version for v in registry.list_versions("debug")] == [v1.version, v2.version, v3.version]
    assert registry.champion("debug").tags["objective"] == "val_d1_psnr"
    assert float(registry.champion("debug").tags["objective_value"]) == 35.5

    # lookup + load: champion by default, an explicit version, a models:/ URI — weights bit-exact
    for ref, want in [(None, w3), (v1.version, w1), (f"models:/squeeze3d-debug/{v1.version}", w1),
                      ("models:/squeeze3d-debug@champion", w3)]:
        ck = registry.load_mapping(ref, "debug")
        for a, b in [(want[0], ck.f_e), (want[1], ck.f_d)]:
            sa, sb = a.state_dict(), b.state_dict()
            assert all(torch.equal(sa[k], sb[k]) for k in sa), ref
    resolved = registry.resolve_model(None, "debug")
    assert resolved.version == v3.version and resolved.identity.startswith(f"v{v3.version}:")


def test_lookup_errors(tracking, tmp_path):
    with pytest.raises(UserError, match="registry has no alias 'champion' of squeeze3d-debug"):
        registry.resolve_model(None, "debug")
    _register(tmp_path, 1, 30.0)
    with pytest.raises(UserError, match="registry has no version 99"):
        registry.resolve_model("99", "debug")
    with pytest.raises(UserError, match="not the registered model of pair 'debug'"):
        registry.resolve_model("models:/squeeze3d-other@champion", "debug")
    with pytest.raises(UserError, match="cannot parse model URI"):
        registry.resolve_model("models:/squeeze3d-debug", "debug")
    with pytest.raises(UserError, match="no such checkpoint directory"):
        registry.resolve_model(str(tmp_path / "nope"), "debug")


def test_registry_cli(tracking, tmp_path):
    _register(tmp_path, 1, 30.0)
    v2, *_ = _register(tmp_path, 2, 31.0)
    env = {**os.environ}
    r = subprocess.run([sys.executable, "-m", "squeeze3d", "registry", "best", "--pair", "debug"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"version {v2.version}" in r.stdout and "models:/squeeze3d-debug/" in r.stdout and "d_code" in r.stdout
    r = subprocess.run([sys.executable, "-m", "squeeze3d", "registry", "list"], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.count("squeeze3d-debug") >= 2 and "champion" in r.stdout
