"""Shared fixtures: one local Ray instance per test session, and a real S3 endpoint on loopback.

Ray token authentication (on by default since 2.59) is made hermetic here: the session uses a token
generated for this run, passed by environment to Ray and to every subprocess the tests start, so
tests neither need nor touch ~/.ray/auth_token.
"""

from __future__ import annotations

import os
import secrets
import uuid

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.pop("RAY_ADDRESS", None)  # never run the test suite against someone's cluster


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
