"""Secrets in URIs are never printed or stored (issue 31.1): one function masks a password or token in
any URI; user-facing errors, the registry's "cannot reach" line, registry tags and the champion cache
go through it; the cache is private and records a hash of the URI, not the URI."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest

from squeeze3d.errors import UserError
from squeeze3d.redact import mask_credentials

SECRET = "s3cr3tpw"


@pytest.mark.parametrize("text, keep", [
    (f"cannot reach the model registry at http://u:{SECRET}@127.0.0.1:9/ (refused)", "http://u:***@127.0.0.1:9/"),
    (f"clone https://{SECRET}@github.com/org/repo.git", "https://***@github.com/org/repo.git"),
    (f"https://h/a?token={SECRET}&page=2", "https://h/a?token=***&page=2"),
    (f"s3 link https://b.s3.amazonaws.com/k?X-Amz-Credential={SECRET}%2F&X-Amz-Signature={SECRET}"
     f"&X-Amz-Security-Token={SECRET}&X-Amz-Expires=60",
     "https://b.s3.amazonaws.com/k?X-Amz-Credential=***&X-Amz-Signature=***&X-Amz-Security-Token=***"
     "&X-Amz-Expires=60"),
    (f"'http://me:{SECRET}@h:5000' and 'https://h/?access_token={SECRET}#x'", "'http://me:***@h:5000'"),
])
def test_mask_credentials_takes_out_userinfo_and_query_tokens(text, keep):
    out = mask_credentials(text)
    assert SECRET not in out and keep in out, out


@pytest.mark.parametrize("text", ["sqlite:////tmp/state/mlflow.db", "s3://bucket/data/shards", "mail a@b.c",
                                  "http://127.0.0.1:5000/path?page=2", "models:/squeeze3d-debug@champion"])
def test_mask_credentials_leaves_text_without_secrets_alone(text):
    assert mask_credentials(text) == text


def test_every_user_error_is_masked_and_the_unreachable_line_too():
    from squeeze3d import registry

    assert SECRET not in str(UserError(f"bad http://u:{SECRET}@h/ here"))
    e = registry._unreachable(f"http://u:{SECRET}@127.0.0.1:9/", "connection refused")
    assert SECRET not in str(e) and "http://u:***@127.0.0.1:9/" in str(e)


def test_champion_cache_is_private_and_holds_no_uri(tmp_path, monkeypatch):
    from squeeze3d.codec import models
    from squeeze3d.pairs import get_pair
    from squeeze3d.registry import ResolvedModel

    state = tmp_path / "state"
    uri = f"http://u:{SECRET}@registry.example:5000/"
    monkeypatch.setenv("SQUEEZE3D_STATE_DIR", str(state))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    (state / "cache").mkdir(parents=True, mode=0o755)
    os.chmod(state / "cache", 0o755)  # made earlier with a default umask
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text("{}")
    pair = get_pair("debug")
    old = os.umask(0o022)
    try:
        models._remember_champion(pair, ResolvedModel(ckpt, "ab" * 32, "3", "models:/squeeze3d-debug/3"))
    finally:
        os.umask(old)
    f = state / "cache" / "champion-debug.json"
    text = f.read_text()
    assert SECRET not in text and "registry.example" not in text, text
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert stat.S_IMODE((state / "cache").stat().st_mode) == 0o700
    assert models._cached_champion(pair).version == "3"  # still recognised by the URI's hash
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://u:other@registry.example:5000/")
    assert models._cached_champion(pair) is None  # another URI: another registry


def test_registry_tags_carry_no_dataset_secret():
    from squeeze3d.config import train_config_for_pair
    from squeeze3d.train.run import registry_tags

    tags = registry_tags(train_config_for_pair("debug"), {"val_loss": 1.0},
                         {"uri": f"https://h/data?X-Amz-Signature={SECRET}"}, "ab")
    assert SECRET not in json.dumps(tags) and tags["dataset_uri"].endswith("X-Amz-Signature=***")


def test_compress_against_a_dead_registry_with_a_password_prints_one_masked_line(tmp_path):
    src = tmp_path / "cloud.npy"
    np.save(src, np.random.default_rng(0).normal(size=(300, 3)).astype(np.float32))
    env = {**os.environ, "SQUEEZE3D_STATE_DIR": str(tmp_path / "state"), "SQUEEZE3D_REGISTRY_TIMEOUT": "1",
           "MLFLOW_TRACKING_URI": f"http://u:{SECRET}@127.0.0.1:9/", "SQUEEZE3D_NO_SERVER": "1",
           "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
    for args in (["compress", str(src), "-o", str(tmp_path / "c.sq3d"), "--pair", "debug", "--min-quality", "off"],
                 ["registry", "best", "--pair", "debug"], ["registry", "list"]):
        r = subprocess.run([sys.executable, "-m", "squeeze3d", *args], env=env, capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 2, r.stderr
        assert SECRET not in r.stderr + r.stdout and "http://u:***@127.0.0.1:9/" in r.stderr, r.stderr
    for f in (tmp_path / "state").rglob("*"):
        if f.is_file():
            assert SECRET.encode() not in f.read_bytes(), f
