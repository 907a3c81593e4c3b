"""Shared fixtures: one local Ray instance per test session, and a real S3 endpoint on loopback.

Ray token authentication (on by default since 2.59) is made hermetic here: the session uses a token
generated for this run, passed by environment to Ray and to every subprocess the tests start, so
tests neither need nor touch ~/.ray/auth_token.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import tempfile
import uuid

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.pop("RAY_ADDRESS", None)  # never run the test suite against someone's cluster
# The state folder's last fallback is the XDG data folder in the user's home (squeeze3d.tracking):
# point it at a folder of this run, so no test can write into the home of whoever runs the suite.
os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="squeeze3d-tests-xdg-")
atexit.register(shutil.rmtree, os.environ["XDG_DATA_HOME"], True)


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for the whole session (2 cores: never start two). ``address="local"``
    starts a fresh instance even when a ``ray start`` cluster is running on this machine. The
    dashboard stays on: Ray Train's PlacementGroupCleaner uses the state API it serves to free the
    resources of trials that Tune stops (without it, every stopped trial leaks its worker's CPU)."""
    import ray

    started = False
    if not ray.is_initialized():
        # start_local_ray: a fresh instance whose actors find it even while the two-node test
        # clusters (or anything else) run other Ray instances on this machine
        from squeeze3d.train.ray_train import start_local_ray

        start_local_ray(num_cpus=2, include_dashboard=True, log_to_driver=False,
                        object_store_memory=200 * 1024 * 1024, logging_level="WARNING")
        started = True
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="session")
def moto_endpoint():
    """A moto S3 server on 127.0.0.1 (random free port) for the whole session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(moto_endpoint, monkeypatch, tmp_path):
    """A fresh bucket on the moto endpoint, with the AWS_* variables a user would set pointing at it
    (config files pointed away so a developer's ~/.aws never leaks in). Yields the bucket name."""
    import boto3

    env = {"AWS_ENDPOINT_URL": moto_endpoint, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
           "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
           "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    for k in ("AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(k, raising=False)
    bucket = f"s3d-test-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    yield bucket


# --- meshanything_shape: tiny random-weight E and G for the tests --------------------------------
# The pair's real zoo (mini MeshAnything + mini Shap-E) is large for tests and is trained separately;
# tests of this pair (any test whose id names it, e.g. the pair contract's [meshanything_shape] cases)
# run on random weights at the pair's latent shapes, written once per session and selected through the
# pair's documented variables. Set here, before the session's Ray instance starts, so Ray workers
# inherit them. A value already in the environment wins.
MESH_PAIR = "meshanything_shape"


def write_tiny_mesh_zoo(root) -> tuple[str, str]:
    """Random-weight mini Shap-E (z_G [128, 64], 2 prior steps, grid 16) and mini MeshAnything
    (z_E [65, 64], width 16) folders under ``root``: ``(shap_e_dir, meshanything_dir)``."""
    from pathlib import Path

    import torch

    from squeeze3d.zoo.meshanything import model as meshanything
    from squeeze3d.zoo.shap_e import model as shap_e

    root = Path(root)
    g_dir, e_dir = root / "shap_e", root / "meshanything"
    torch.manual_seed(0)
    cfg = shap_e.ShapEConfig(d_hidden=32, d_latent=64, prior_layers=1, prior_heads=2, prior_head_dim=8,
                             grid_size=16, inference_steps=2)
    shap_e.save(shap_e.ShapEModule(cfg), g_dir)
    ecfg = meshanything.MeshAnythingConfig(width=16, heads=2, num_encoder_layers=1, num_decoder_layers=1,
                                           embed_dim=4, num_freqs=4, num_latents=64, cond_dim=64)
    meshanything.save_weights(meshanything.MeshAnythingMini(ecfg), e_dir, fp16=False)
    return str(g_dir), str(e_dir)


@pytest.fixture(scope="session", autouse=True)
def tiny_mesh_zoo(request, tmp_path_factory):
    from squeeze3d.pairs import meshanything_shape as mp

    wanted = any(MESH_PAIR in item.nodeid for item in request.session.items)
    if not wanted or (os.environ.get(mp.SHAP_E_PATH_ENV) and os.environ.get(mp.MESHANYTHING_PATH_ENV)):
        yield None
        return
    g_dir, e_dir = write_tiny_mesh_zoo(tmp_path_factory.mktemp("tiny_mesh_zoo"))
    old = {k: os.environ.get(k) for k in (mp.SHAP_E_PATH_ENV, mp.MESHANYTHING_PATH_ENV)}
    os.environ[mp.SHAP_E_PATH_ENV], os.environ[mp.MESHANYTHING_PATH_ENV] = g_dir, e_dir
    yield g_dir, e_dir
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
