"""A warm codec process: ``squeeze3d serve`` keeps torch and the models loaded, and single-file
``compress`` / ``decompress`` / ``inspect`` commands hand their arguments to it over a Unix socket
instead of starting cold.

Why: a cold command pays for importing torch (1.1-2.0 s on this 2-core machine, measured) and
loading E, G and the mapping before it does ~0.1 s of work; nothing inside torch's import can be
skipped. A served command pays Python's start-up and a socket round trip. Directory mode is not
forwarded: one process already amortises the start-up over its files.

- The socket lives in the state folder (``<state>/run/codec.sock``; a short path under the temp dir
  when that one is too long for a Unix socket) and is created with mode 0600: only this user's
  processes can use it, and the server acts with this user's rights on the paths given.
- A request carries the client's working directory, umask and environment settings
  (``MLFLOW_TRACKING_URI``, every ``SQUEEZE3D_*``); a server started under other settings refuses it,
  and so does a server given no request for ``idle_timeout`` seconds: it has exited. In either case
  the client runs the command itself, so a served command never behaves differently from a cold one.
- The model is resolved for every request (the champion cache makes that cheap), so a new champion
  is used as soon as it is registered; loaded weights stay cached by path and hash.
- ``SQUEEZE3D_NO_SERVER=1`` (or ``--no-server``) makes a command run in its own process.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import socket
import struct
import sys
import tempfile
import time
from pathlib import Path

from squeeze3d.errors import UserError

FORWARDED = ("compress", "decompress", "inspect")
_MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes on Linux


def socket_path() -> Path:
    from squeeze3d.tracking import state_dir

    p = state_dir() / "run" / "codec.sock"
    if len(str(p)) <= _MAX_SOCKET_PATH:
        return p
    tag = hashlib.blake2b(str(state_dir()).encode(), digest_size=6).hexdigest()
    return Path(tempfile.gettempdir()) / f"squeeze3d-{os.getuid()}-{tag}.sock"


def _settings(env=None) -> dict:
    env = os.environ if env is None else env
    return {k: v for k, v in env.items()
            if (k.startswith("SQUEEZE3D_") and k != "SQUEEZE3D_NO_SERVER") or k == "MLFLOW_TRACKING_URI"}


def _send(conn: socket.socket, doc: dict) -> None:
    data = json.dumps(doc).encode()
    conn.sendall(struct.pack(">I", len(data)) + data)


def _recv(conn: socket.socket) -> dict:
    def exactly(n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = conn.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("the peer closed the connection")
            buf += chunk
        return buf

    (n,) = struct.unpack(">I", exactly(4))
    return json.loads(exactly(n))


def forward(argv: list[str]) -> int | None:
    """Run ``argv`` in a serving process and relay its output; None when none serves this client."""
    path = socket_path()
    if os.environ.get("SQUEEZE3D_NO_SERVER") or not path.exists():
        return None
    umask = os.umask(0)
    os.umask(umask)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(2.0)
            conn.connect(str(path))
            conn.settimeout(None)  # a compress may take as long as it takes
            _send(conn, {"argv": list(argv), "cwd": os.getcwd(), "umask": umask, "settings": _settings()})
            resp = _recv(conn)
    except (OSError, ConnectionError, ValueError):
        return None  # not serving (stale socket, exited, refused): run here
    if resp.get("refused"):
        return None
    sys.stdout.write(resp.get("out", ""))
    sys.stderr.write(resp.get("err", ""))
    return int(resp.get("rc", 1))


def _run(main, argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as e:  # argparse
            rc = e.code if isinstance(e.code, int) else 2
        except Exception as e:  # noqa: BLE001 - one bad request must not take the server down
            print(f"squeeze3d: error: {type(e).__name__}: {e}", file=sys.stderr)
            rc = 1
    return int(rc), out.getvalue(), err.getvalue()


def _forget_resolved_models() -> None:
    """Codec objects hold their resolved model; drop them (not the loaded weights) between requests."""
    from squeeze3d.codec import compressor

    for k in [k for k in compressor._CACHE if k and k[0] == "codec"]:
        del compressor._CACHE[k]


def serve(main, pair: str | None = None, idle_timeout: float = 900.0, log=print) -> int:
    """Serve until ``idle_timeout`` seconds pass without a request. ``main(argv) -> exit status`` runs
    one command here (the console command's entry point, without forwarding: it is handed in
    because it sits above this module); ``pair``: load its models first."""
    path = socket_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(path))
            except OSError:
                path.unlink()  # left behind by a server that died
            else:
                raise UserError(f"a codec server already serves {path}")
    if pair:
        from squeeze3d.codec.compressor import get_codec

        c = get_codec(pair)
        _ = c.encoder, c.generator
        try:
            _ = c.f_e, c.f_d  # the default model (the champion or the shipped one)
        except UserError as e:
            log(f"squeeze3d: {pair}'s default model not loaded ({e}); models load on first use")
        _forget_resolved_models()
    own = _settings()
    old = os.umask(0o077)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        srv.bind(str(path))
    finally:
        os.umask(old)
    srv.listen(16)
    srv.settimeout(float(idle_timeout))
    log(f"squeeze3d: serving codec commands on {path} (idle timeout {idle_timeout:.0f} s)")
    served = 0
    try:
        while True:
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                log(f"squeeze3d: no request for {idle_timeout:.0f} s; {served} served, exiting")
                return 0
            with conn:
                conn.settimeout(10.0)  # a client that connects and says nothing does not block the others
                try:
                    req = _recv(conn)
                except (ConnectionError, ValueError, OSError):
                    continue
                conn.settimeout(None)
                argv = [str(a) for a in req.get("argv", [])]
                if req.get("settings") != own or not argv or argv[0] not in FORWARDED:
                    _send(conn, {"refused": "settings differ" if req.get("settings") != own else "not forwarded"})
                    continue
                t0 = time.perf_counter()
                cwd, umask = os.getcwd(), os.umask(int(req.get("umask", 0o022)))
                try:
                    try:
                        os.chdir(req.get("cwd", cwd))
                    except OSError:
                        with contextlib.suppress(OSError):
                            _send(conn, {"refused": "working directory not found"})
                        continue
                    rc, out, err = _run(main, argv)
                finally:
                    os.chdir(cwd)
                    os.umask(umask)
                    _forget_resolved_models()
                with contextlib.suppress(OSError):
                    _send(conn, {"rc": rc, "out": out, "err": err})
                served += 1
                log(f"squeeze3d: {argv[0]} rc={rc} {1e3 * (time.perf_counter() - t0):.0f} ms")
    finally:
        srv.close()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
