"""storage: URI resolution, atomic writes, listings, writability checks (local and a real S3 endpoint)."""

from __future__ import annotations

import os

import pytest

from squeeze3d import storage


def test_resolve_local_forms(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert storage.resolve("rel/dir").path == str(tmp_path / "rel" / "dir")
    assert storage.resolve(f"file://{tmp_path}/x").path == str(tmp_path / "x")
    loc = storage.resolve(tmp_path)
    assert not loc.is_s3 and loc.join("a", "b.txt").path == str(tmp_path / "a" / "b.txt")


@pytest.mark.parametrize("uri", ["gs://bucket/x", "s3://", "", "hdfs://nn/x"])
def test_resolve_rejects_unusable_uris(uri):
    with pytest.raises(storage.StorageError):
        storage.resolve(uri)


def test_s3_endpoint_comes_from_env(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:10")  # service-specific one wins
    loc = storage.resolve("s3://bkt/some/prefix/")
    assert loc.is_s3 and loc.path == "bkt/some/prefix" and loc.uri == "s3://bkt/some/prefix"
    assert loc.join("m.json").uri == "s3://bkt/some/prefix/m.json"
    opts = loc.fs.__reduce__()[1][0]  # pyarrow's own serialised options: what workers will get
    assert (opts["endpoint_override"], opts["scheme"]) == ("127.0.0.1:10", "http")


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    loc = storage.resolve(tmp_path / "d" / "f.bin")
    storage.write_bytes_atomic(loc, b"one")
    storage.write_bytes_atomic(loc, b"two")
    assert storage.read_bytes(loc) == b"two"
    assert os.listdir(tmp_path / "d") == ["f.bin"]


def test_listing_skips_and_cleans_temps(tmp_path):
    d = storage.resolve(tmp_path)
    for name in ("b.parquet", "a.parquet", "c.json", f"x.parquet{storage.TMP_MARKER}dead"):
        (tmp_path / name).write_bytes(b"12")
    assert [loc.name for loc, _ in storage.list_files(d, ".parquet")] == ["a.parquet", "b.parquet"]
    assert storage.list_files(d.join("missing")) == []
    assert storage.remove_stale_temps(d) == 1
    assert sorted(os.listdir(tmp_path)) == ["a.parquet", "b.parquet", "c.json"]


def test_check_writable_local(tmp_path):
    storage.check_writable(storage.resolve(tmp_path / "new" / "deeper"))
    assert not (tmp_path / "new").exists(), "the check must not create anything"
    f = tmp_path / "afile"
    f.write_text("x")
    for bad in (f, f / "sub"):
        with pytest.raises(storage.StorageError, match="not a directory"):
            storage.check_writable(storage.resolve(bad))


def test_s3_roundtrip_on_real_endpoint(s3_bucket):
    root = storage.resolve(f"s3://{s3_bucket}/pre/fix")
    storage.check_writable(root)
    assert storage.list_files(root) == [], "the write probe must not stay behind"
    storage.write_bytes_atomic(root.join("shards", "a.parquet"), b"abc")
    storage.write_bytes_atomic(root.join("m.json"), b"{}")
    assert storage.read_bytes(root.join("shards", "a.parquet")) == b"abc"
    assert [(loc.uri, n) for loc, n in storage.list_files(root.join("shards"), ".parquet")] == \
        [(f"s3://{s3_bucket}/pre/fix/shards/a.parquet", 3)]
    storage.delete_file(root.join("m.json"))
    assert not storage.exists(root.join("m.json"))
    storage.delete_dir(root.join("shards"))
    assert storage.list_files(root.join("shards")) == []
    # no stray "directory marker" objects may be left behind by deletes or the write probe
    import boto3

    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
    assert s3.list_objects_v2(Bucket=s3_bucket).get("KeyCount") == 0


def test_s3_missing_bucket_is_a_clear_error(s3_bucket):
    with pytest.raises(storage.StorageError, match="does not exist"):
        storage.check_writable(storage.resolve(f"s3://{s3_bucket}-nope/x"))
