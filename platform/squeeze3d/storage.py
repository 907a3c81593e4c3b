"""Where datasets and artefacts live: local paths and ``s3://bucket/prefix`` behind one small API.

Everything goes through ``pyarrow.fs`` so the same code serves Parquet I/O, Ray Data readers and
plain byte files. S3 endpoint and credentials come from the usual AWS environment (or the AWS SDK's
config chain); ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` are honoured explicitly because
pyarrow's S3 filesystem ignores them (needed for MinIO, moto, Ceph and other S3-compatible stores).

Atomicity: ``write_bytes_atomic`` makes a file appear complete or not at all -- temp file + rename
locally, a single PUT on S3 (an S3 object is only visible once its upload has finished).
"""

from __future__ import annotations

import os
import posixpath
import uuid
from dataclasses import dataclass
from urllib.parse import urlparse

import pyarrow.fs as pafs

TMP_MARKER = ".tmp-"
"""Temp files are named ``<name>.tmp-<random>``; listings skip them and ``remove_stale_temps``
deletes leftovers of a killed writer."""


class StorageError(ValueError):
    """A URI that cannot be used (bad scheme, missing bucket, not writable, ...)."""


@dataclass(frozen=True)
class Location:
    """A resolved URI: the filesystem that serves it and the path on that filesystem."""

    uri: str
    """Normalised URI as shown to users: an absolute local path or ``s3://bucket/key``."""
    fs: pafs.FileSystem
    path: str
    """Path on ``fs``: absolute local path, or ``bucket/key`` for S3."""

    @property
    def is_s3(self) -> bool:
        return self.uri.startswith("s3://")

    def join(self, *parts: str) -> Location:
        if self.is_s3:
            path = posixpath.join(self.path, *parts)
            return Location(f"s3://{path}", self.fs, path)
        path = os.path.join(self.path, *parts)
        return Location(path, self.fs, path)

    @property
    def name(self) -> str:
        return posixpath.basename(self.path.rstrip("/"))


def _s3_settings() -> dict:
    """Endpoint, region and explicit credentials from the AWS environment (None where unset)."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint and "://" not in endpoint:
        endpoint = f"https://{endpoint}"
    creds = None
    # Explicit env vars win (so a test or job env is never shadowed by a config file); otherwise the
    # AWS SDK chain (config/credentials files, instance or pod roles) applies.
    if os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY"):
        creds = (os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"],
                 os.environ.get("AWS_SESSION_TOKEN") or None)
    return {"endpoint": endpoint, "region": os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
            "creds": creds}


def _s3_filesystem() -> pafs.S3FileSystem:
    cfg = _s3_settings()
    kwargs: dict = {}
    if cfg["endpoint"]:
        parsed = urlparse(cfg["endpoint"])
        kwargs["endpoint_override"] = parsed.netloc
        kwargs["scheme"] = parsed.scheme
    if cfg["region"]:
        kwargs["region"] = cfg["region"]
    if cfg["creds"]:
        kwargs["access_key"], kwargs["secret_key"] = cfg["creds"][:2]
        if cfg["creds"][2]:
            kwargs["session_token"] = cfg["creds"][2]
    # delayed open: small objects go up as one PutObject (visible whole or not at all); large ones
    # use a multipart upload, which S3 also only exposes once completed
    kwargs["allow_delayed_open"] = True
    return pafs.S3FileSystem(**kwargs)


def _s3_deleter():
    """Deletes go through s3fs: pyarrow re-creates empty "directory" marker objects (``prefix/``)
    after deleting the last object under a prefix, which would litter buckets with stray keys."""
    import s3fs

    cfg = _s3_settings()
    kw: dict = {"skip_instance_cache": True}
    if cfg["endpoint"]:
        kw["endpoint_url"] = cfg["endpoint"]
    if cfg["region"]:
        kw["client_kwargs"] = {"region_name": cfg["region"]}
    if cfg["creds"]:
        kw["key"], kw["secret"], kw["token"] = cfg["creds"]
    return s3fs.S3FileSystem(**kw)


def resolve(uri: str | os.PathLike) -> Location:
    """``uri`` -> ``Location``. Accepts ``s3://bucket[/prefix]``, ``file:///abs`` and plain paths
    (relative ones are made absolute against the current directory)."""
    uri = os.fspath(uri)
    if not uri:
        raise StorageError("empty output/input URI")
    parsed = urlparse(uri)
    if parsed.scheme in ("s3", "s3a"):
        bucket, key = parsed.netloc, parsed.path.strip("/")
        if not bucket:
            raise StorageError(f"{uri!r}: no bucket; expected s3://bucket/prefix")
        path = f"{bucket}/{key}" if key else bucket
        return Location(f"s3://{path}", _s3_filesystem(), path)
    if parsed.scheme == "file":
        uri = parsed.path
    elif parsed.scheme and len(parsed.scheme) > 1:  # one letter = a Windows drive, not a scheme
        raise StorageError(f"{uri!r}: unsupported scheme {parsed.scheme!r}; use a local path or s3://bucket/prefix")
    path = os.path.abspath(os.path.expanduser(uri))
    return Location(path, pafs.LocalFileSystem(), path)


def exists(loc: Location) -> bool:
    return loc.fs.get_file_info(loc.path).type != pafs.FileType.NotFound


def is_file(loc: Location) -> bool:
    return loc.fs.get_file_info(loc.path).type == pafs.FileType.File


def read_bytes(loc: Location) -> bytes:
    with loc.fs.open_input_stream(loc.path) as f:
        return f.read()


def write_bytes_atomic(loc: Location, data: bytes) -> None:
    """Write ``data`` so that readers see the whole file or nothing (see module docstring)."""
    if loc.is_s3:
        with loc.fs.open_output_stream(loc.path) as f:  # one object, visible on completion
            f.write(data)
        return
    os.makedirs(os.path.dirname(loc.path), exist_ok=True)
    tmp = f"{loc.path}{TMP_MARKER}{uuid.uuid4().hex[:8]}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, loc.path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def list_files(loc: Location, suffix: str = "") -> list[tuple[Location, int]]:
    """Files directly under ``loc`` ending in ``suffix`` as ``(Location, size)``, sorted by name;
    temp files are skipped. A missing directory lists as empty."""
    sel = pafs.FileSelector(loc.path, recursive=False, allow_not_found=True)
    out = []
    for info in loc.fs.get_file_info(sel):
        name = posixpath.basename(info.path)
        if info.type != pafs.FileType.File or TMP_MARKER in name or not name.endswith(suffix):
            continue
        out.append((loc.join(name), info.size))
    return sorted(out, key=lambda x: x[0].path)


def remove_stale_temps(loc: Location) -> int:
    """Delete ``*.tmp-*`` leftovers of a killed writer under ``loc`` (local only; S3 has none)."""
    if loc.is_s3:
        return 0
    sel = pafs.FileSelector(loc.path, recursive=False, allow_not_found=True)
    n = 0
    for info in loc.fs.get_file_info(sel):
        if info.type == pafs.FileType.File and TMP_MARKER in posixpath.basename(info.path):
            loc.fs.delete_file(info.path)
            n += 1
    return n


def delete_file(loc: Location) -> None:
    if not is_file(loc):
        return
    if loc.is_s3:
        _s3_deleter().rm_file(loc.path)
    else:
        loc.fs.delete_file(loc.path)


def delete_dir(loc: Location) -> None:
    """Delete everything under ``loc`` (a local directory or an S3 prefix)."""
    if loc.is_s3:
        keys = [i.path for i in loc.fs.get_file_info(pafs.FileSelector(loc.path, recursive=True,
                                                                           allow_not_found=True))
                if i.type == pafs.FileType.File]
        if keys:
            _s3_deleter().rm(keys)
    elif exists(loc):
        loc.fs.delete_dir(loc.path)


def check_writable(loc: Location) -> None:
    """Raise ``StorageError`` if ``loc`` cannot become a directory we can write into, without
    creating anything locally (callers promise "nothing written" on bad arguments)."""
    if loc.is_s3:
        bucket = loc.path.split("/", 1)[0]
        try:
            info = loc.fs.get_file_info(bucket)
        except OSError as e:
            raise StorageError(f"{loc.uri}: cannot reach bucket {bucket!r}: {e}") from e
        if info.type == pafs.FileType.NotFound:
            raise StorageError(f"{loc.uri}: bucket {bucket!r} does not exist (or is not visible with "
                               "these credentials); create it first or check AWS_* settings")
        if loc.path != bucket and is_file(loc):
            raise StorageError(f"{loc.uri}: is an object, not a prefix")
        # S3 permissions can only be proven by writing; a probe object is removed at once.
        probe = loc.join(f".squeeze3d-write-probe{TMP_MARKER}{uuid.uuid4().hex[:8]}")
        try:
            with loc.fs.open_output_stream(probe.path) as f:
                f.write(b"")
            delete_file(probe)
        except OSError as e:
            raise StorageError(f"{loc.uri}: not writable with these credentials: {e}") from e
        return
    path = loc.path
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise StorageError(f"{path}: exists and is not a directory")
        if not os.access(path, os.W_OK | os.X_OK):
            raise StorageError(f"{path}: directory is not writable")
        return
    parent = os.path.dirname(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise StorageError(f"{path}: cannot create it, {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise StorageError(f"{path}: cannot create it, {parent} is not writable")
