"""The codec server's wire protocol and request checks (``codec.server``): length-prefixed JSON frames
with their limits (size, nesting depth, time), what a request must hold, the settings hash a client
sends instead of its settings, and the peer's credentials."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

FORWARDED = ("compress", "decompress", "inspect")
REQUEST_TIMEOUT_S = 5.0
MAX_REQUEST_BYTES = 1 << 20
_MAX_JSON_DEPTH = 32  # requests are flat: argv list inside one object
_MAX_DISCARD_BYTES = 64 << 20  # the most of an oversized frame read and dropped so its sender sees the answer


class ProtocolError(ValueError):
    """A frame that is too large, cut short, late, or not a JSON object. ``unread``: bytes of the
    frame still in the connection (an oversized frame's body), to drain before closing."""

    def __init__(self, msg: str, unread: int = 0):
        super().__init__(msg)
        self.unread = unread


def _json_depth_problem(body: bytes, limit: int = _MAX_JSON_DEPTH) -> str | None:
    """Why ``body`` nests deeper than ``limit`` arrays/objects, else None; checked before parsing,
    because Python's JSON parser recurses and a frame of 200,000 "[" ends in RecursionError."""
    import re

    brackets = re.sub(rb'"(?:[^"\\]|\\.)*"', b"", body).translate(None, delete=bytes(
        c for c in range(256) if c not in b"[]{}"))
    depth = 0
    for c in brackets:
        depth += 1 if c in b"[{" else -1
        if depth > limit:
            return f"JSON nested deeper than {limit} levels"
    return None


def peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def _settings(env=None) -> dict:
    env = os.environ if env is None else env
    return {k: v for k, v in env.items()
            if (k.startswith("SQUEEZE3D_") and k != "SQUEEZE3D_NO_SERVER") or k == "MLFLOW_TRACKING_URI"}


def settings_digest(env=None) -> str:
    """What a request says about the client's settings: a hash, so no value (password) travels."""
    return hashlib.sha256(json.dumps(_settings(env), sort_keys=True).encode()).hexdigest()


def send_frame(conn: socket.socket, doc: dict) -> None:
    data = json.dumps(doc).encode()
    conn.sendall(struct.pack(">I", len(data)) + data)


def recv_frame(conn: socket.socket, limit: int, deadline: float | None = None) -> dict:
    """One length-prefixed JSON object; ``deadline`` (time.monotonic) bounds the whole frame."""
    def exactly(n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ProtocolError("the request did not arrive in time")
                conn.settimeout(left)
            try:
                chunk = conn.recv(min(n - len(buf), 1 << 16))
            except TimeoutError:
                raise ProtocolError("the request did not arrive in time") from None
            if not chunk:
                raise ConnectionError("the peer closed the connection")
            buf += chunk
        return bytes(buf)

    (n,) = struct.unpack(">I", exactly(4))
    if n > limit:
        raise ProtocolError(f"a {n}-byte request exceeds the {limit}-byte limit", unread=n)
    body = exactly(n)
    problem = _json_depth_problem(body)
    if problem:
        raise ProtocolError(problem)
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise ProtocolError(f"not JSON ({' '.join(str(e).split())[:200]})") from None
    if not isinstance(doc, dict):
        raise ProtocolError(f"expected a JSON object, got {type(doc).__name__}")
    return doc


@dataclass
class Job:
    argv: list[str]
    cwd: str
    umask: int
    result: tuple[int, str, str] | None = None
    cancelled: bool = False
    done: threading.Event = field(default_factory=threading.Event)
    wake: tuple[int, int] | None = None
    """A pipe the worker writes to when the job ends: the connection's thread waits on it and on the
    client's socket in one ``select``, so the answer leaves as soon as the work ends (waiting on the
    socket alone held every answer until the next heartbeat, up to a second)."""

    def finish(self) -> None:
        if self.wake is not None:  # written before done is set: the handler closes it only after done
            with contextlib.suppress(OSError):
                os.write(self.wake[1], b"!")
        self.done.set()


def check_request(req: dict, own: str) -> tuple[Job | None, dict]:
    """(job, answer) for a request; job None when refused or malformed (the answer says why)."""
    argv, cwd, umask, settings = req.get("argv"), req.get("cwd"), req.get("umask"), req.get("settings")
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        return None, {"error": "'argv' must be a list of strings"}
    if not isinstance(cwd, str) or not isinstance(umask, int) or isinstance(umask, bool) \
            or not 0 <= umask <= 0o777 or not isinstance(settings, str):
        return None, {"error": "'cwd' (string), 'umask' (0..0o777) and 'settings' (string) are required"}
    if settings != own:
        return None, {"refused": "settings differ"}
    if not argv or argv[0] not in FORWARDED:
        return None, {"refused": "not forwarded"}
    if not os.path.isdir(cwd):
        return None, {"refused": "working directory not found"}
    return Job(argv, cwd, umask), {"accepted": True}


def drain_frame(conn: socket.socket, n: int) -> None:
    """Read and drop up to ``n`` bytes (at most ``_MAX_DISCARD_BYTES``, within ``REQUEST_TIMEOUT_S``)
    of a refused frame, so that its sender, still sending, reads the answer instead of a reset; past
    those bounds the connection is closed (the answer is already in the client's buffer)."""
    left, deadline = min(n, _MAX_DISCARD_BYTES), time.monotonic() + REQUEST_TIMEOUT_S
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_WR)  # the answer is complete: the client reads it, then EOF
        while left > 0:
            wait = deadline - time.monotonic()
            if wait <= 0:
                return
            conn.settimeout(wait)
            chunk = conn.recv(min(left, 1 << 16))
            if not chunk:
                return
            left -= len(chunk)
