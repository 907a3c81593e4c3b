"""A warm codec process: ``squeeze3d serve`` keeps torch and the models loaded, and single-file
``compress`` / ``decompress`` / ``inspect`` commands hand their arguments to it over a Unix socket
instead of starting cold.

Why: a cold command pays for importing torch (1.1-2.0 s on this 2-core machine, measured) and
loading E, G and the mapping before it does ~0.1 s of work; nothing inside torch's import can be
skipped. A served command pays Python's start-up and a socket round trip. Directory mode is not
forwarded: one process already amortises the start-up over its files.

Trust: the server acts with its user's rights on the paths a request names, so only that user may
talk to it, and a client talks only to a server of its own user.

- The socket is ``<state>/run/codec.sock``; ``<state>/run`` is a private directory (mode 0700, owned
  by the user, not a symlink). When that path is too long for a Unix socket, the server makes a fresh
  private directory under the temp dir (``mkdtemp``: unpredictable name, mode 0700) and leaves its
  path in ``<state>/run/codec.sock-path``. When another user owns ``<state>/run`` (a squatter where
  the state folder's parent is world-writable), the server still starts: it listens in a fresh
  ``mkdtemp`` directory and leaves the pointer in this user's own folder (``_user_dir``); clients
  read a pointer only if it is their user's file that nobody else can write, and check the socket it
  names as any other. Each ``mkdtemp`` directory holds an ``owner.lock`` its server keeps locked; the
  next server removes those of this user whose lock is free (a SIGKILLed server's).
- Before sending anything, the client checks the directory (owner, mode, not a symlink), the socket
  (owner, mode) and the peer's credentials (``SO_PEERCRED``: the serving process runs as this user);
  the server checks the peer's credentials too. Otherwise the command runs in its own process.
- A request carries only what the command needs: argv, working directory, umask, and a hash of the
  client's settings (``MLFLOW_TRACKING_URI`` and every ``SQUEEZE3D_*``), never their values (a
  tracking URI may hold a password). The server uses its own environment; a client whose settings
  hash differs is refused and runs the command itself.
- Timeouts (client side): connecting, ``CONNECT_TIMEOUT_S`` (2 s); the first answer, and each
  answer after it, ``ANSWER_TIMEOUT_S`` (5 s): the server says "accepted" at once and sends a
  heartbeat every second while the command waits or runs; the answer leaves the moment the command
  ends (the connection's thread also waits on a pipe the worker writes to). A server that is
  stopped, stuck or gone means the command runs in its own process.
- The server reads each connection in its own thread (a request must arrive whole within
  ``REQUEST_TIMEOUT_S`` and be at most ``MAX_REQUEST_BYTES``, nested at most ``_MAX_JSON_DEPTH``
  levels); commands run one at a time (they change the process's working directory and umask). A
  malformed request gets a one-line answer and a one-line log entry (log lines are credential-masked);
  an oversized frame's body is read and dropped (bounded) after the answer, so a client still sending
  it reads the answer rather than a reset. The server keeps serving.
- Ctrl-C on a served command: the client asks the server to cancel, the server interrupts the
  command as Ctrl-C would a cold one (``KeyboardInterrupt`` in the thread running it; outputs are
  written atomically, so an interrupted command leaves no file) and the client prints
  "interrupted" and exits 130 once the server has answered. A client that disappears cancels its
  command the same way.
- One server per state folder: ``<state>/run/serve.lock`` (``flock``); a second ``serve`` refuses with
  one line. SIGTERM (and Ctrl-C) stop the server and remove its socket.
- The model is resolved for every request (the champion cache makes that cheap), so a new champion
  is used as soon as it is registered; loaded weights stay cached by path and hash.
- ``SQUEEZE3D_NO_SERVER=1`` (or ``--no-server``) makes a command run in its own process.

This module is the client (``forward``) and the server (``serve``); the wire protocol and request
checks are ``codec.serve_protocol``, where the socket lives and the trust checks ``codec.serve_place``.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import os
import queue
import select
import signal
import socket
import sys
import threading
import time

from squeeze3d.codec.serve_place import (  # noqa: F401  (socket_path, run_dir: public, re-exported)
    Place,
    bind_socket,
    claim_place,
    clean_stale_dirs,
    release_place,
    run_dir,
    serve_lock,
    socket_path,
    socket_problem,
)
from squeeze3d.codec.serve_protocol import (  # noqa: F401  (the protocol's public names, re-exported)
    FORWARDED,
    MAX_REQUEST_BYTES,
    REQUEST_TIMEOUT_S,
    Job,
    ProtocolError,
    check_request,
    drain_frame,
    peer_uid,
    recv_frame,
    send_frame,
    settings_digest,
)
from squeeze3d.errors import UserError

CONNECT_TIMEOUT_S = 2.0
ANSWER_TIMEOUT_S = 5.0
HEARTBEAT_S = 1.0
_MAX_ANSWER_BYTES = 64 << 20
_MAX_CONNECTIONS = 64
_INTERRUPTED = "squeeze3d: interrupted\n"


# --- client ---------------------------------------------------------------------------------------

def _connect() -> socket.socket | None:
    """A connection to this user's server, verified before anything is sent; None when there is none."""
    path = socket_path()
    if socket_problem(path):
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.settimeout(CONNECT_TIMEOUT_S)
        conn.connect(str(path))
        if peer_uid(conn) != os.getuid():
            raise ConnectionError("the socket is served by another user")
    except (OSError, ConnectionError):
        conn.close()
        return None
    return conn


def _answer(conn: socket.socket) -> dict:
    """The server's next frame other than a heartbeat; ``ANSWER_TIMEOUT_S`` of silence is a dead server."""
    while True:
        conn.settimeout(ANSWER_TIMEOUT_S)
        doc = recv_frame(conn, _MAX_ANSWER_BYTES)
        if not doc.get("wait"):
            return doc


def forward(argv: list[str]) -> int | None:
    """Run ``argv`` in this user's serving process and relay its output; None when none serves this
    client (then the caller runs the command itself)."""
    if os.environ.get("SQUEEZE3D_NO_SERVER"):
        return None
    conn = _connect()
    if conn is None:
        return None
    umask = _current_umask()
    with conn:
        try:
            send_frame(conn, {"argv": [str(a) for a in argv], "cwd": os.getcwd(), "umask": umask,
                         "settings": settings_digest()})
            if not _answer(conn).get("accepted"):
                return None  # refused (other settings, not forwardable): run here
            try:
                resp = _answer(conn)
            except KeyboardInterrupt:
                return _cancel(conn)
        except (OSError, ConnectionError, ProtocolError):
            return None  # stopped, stuck or gone before it answered: run here
        except KeyboardInterrupt:
            print(_INTERRUPTED, end="", file=sys.stderr)
            return 130
    sys.stdout.write(str(resp.get("out", "")))
    sys.stderr.write(str(resp.get("err", "")))
    return int(resp.get("rc", 1))


def _cancel(conn: socket.socket) -> int:
    """Ctrl-C while the server runs our command: have it interrupt the command, and return once it has
    (so that, as in a cold run, nothing is written after "interrupted" is printed)."""
    with contextlib.suppress(OSError, ConnectionError, ProtocolError, KeyboardInterrupt):
        send_frame(conn, {"cancel": True})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not _answer(conn).get("wait"):
                break
    print(_INTERRUPTED, end="", file=sys.stderr)
    return 130


# --- server ---------------------------------------------------------------------------------------


def _run(main, argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main(argv)
            except SystemExit as e:  # argparse
                rc = e.code if isinstance(e.code, int) else 2
            except Exception as e:  # noqa: BLE001 - one bad request must not take the server down
                print(f"squeeze3d: error: {type(e).__name__}: {e}", file=sys.stderr)
                rc = 1
    except KeyboardInterrupt:  # cancelled outside the command's own handler
        return 130, out.getvalue(), err.getvalue() + _INTERRUPTED
    return int(rc), out.getvalue(), err.getvalue()


def _current_umask() -> int:
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def _forget_resolved_models() -> None:
    """Codec objects hold their resolved model; drop them (not the loaded weights) between requests."""
    compressor = sys.modules.get("squeeze3d.codec.compressor")
    if compressor is None:  # nothing loaded yet
        return
    for k in [k for k in compressor._CACHE if k and k[0] == "codec"]:
        del compressor._CACHE[k]


def _interrupt(thread: threading.Thread) -> None:
    """Raise KeyboardInterrupt in ``thread`` at its next bytecode, as Ctrl-C would in a cold command."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(KeyboardInterrupt))


def _clear_interrupt(thread: threading.Thread) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), None)


class _Server:
    def __init__(self, main, log):
        self.main, self.log = main, log
        self.own = settings_digest()
        self.jobs: queue.Queue[Job | None] = queue.Queue()
        self.lock = threading.Lock()
        self.running: Job | None = None
        self.busy = 0  # connections open now
        self.last_activity = time.monotonic()
        self.served = 0
        self.home, self.home_umask = os.getcwd(), _current_umask()
        self.worker = threading.Thread(target=self._work, name="squeeze3d-codec", daemon=True)

    # the one thread that runs commands
    def _work(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            streams = sys.stdout, sys.stderr
            t0 = time.perf_counter()
            try:
                self._execute(job)
            except KeyboardInterrupt:  # a cancel that arrived after the command had returned
                pass
            with self.lock:  # no interrupt can be raised once running is cleared
                self.running = None
                _clear_interrupt(self.worker)
            sys.stdout, sys.stderr = streams
            os.chdir(self.home)
            os.umask(self.home_umask)
            _forget_resolved_models()
            if job.result is None:
                job.result = (130, "", _INTERRUPTED)
            self.served += 1
            self.log(f"squeeze3d: {job.argv[0]} rc={job.result[0]}{' (cancelled)' if job.cancelled else ''} "
                     f"{1e3 * (time.perf_counter() - t0):.0f} ms")
            self.last_activity = time.monotonic()
            job.finish()

    def _execute(self, job: Job) -> None:
        with self.lock:
            if job.cancelled:
                job.result = (130, "", _INTERRUPTED)
                return
            self.running = job
        try:
            os.chdir(job.cwd)
        except OSError as e:
            job.result = (2, "", f"squeeze3d: error: working directory {job.cwd}: {e.strerror}\n")
            return
        os.umask(job.umask)
        job.result = _run(self.main, job.argv)

    def cancel(self, job: Job) -> None:
        with self.lock:
            if job.cancelled:
                return
            job.cancelled = True
            if self.running is job:
                _interrupt(self.worker)

    # one thread per connection
    def handle(self, conn: socket.socket) -> None:
        with conn:
            try:
                self._handle(conn)
            except (OSError, ConnectionError):
                pass
            except Exception as e:  # noqa: BLE001 - a request the checks missed: one log line, not a traceback
                self.log(f"squeeze3d: bad request: {type(e).__name__}: {' '.join(str(e).split())[:200]}")
                with contextlib.suppress(OSError, ConnectionError):
                    conn.settimeout(1.0)
                    send_frame(conn, {"error": f"the server could not handle the request ({type(e).__name__})"})
            finally:
                with self.lock:
                    self.busy -= 1
                self.last_activity = time.monotonic()

    def _handle(self, conn: socket.socket) -> None:
        if peer_uid(conn) != os.getuid():
            self.log("squeeze3d: refused a connection from another user")
            return
        try:
            req = recv_frame(conn, MAX_REQUEST_BYTES, time.monotonic() + REQUEST_TIMEOUT_S)
        except ProtocolError as e:
            self.log(f"squeeze3d: bad request: {e}")
            with contextlib.suppress(OSError):
                conn.settimeout(1.0)
                send_frame(conn, {"error": str(e)})
            if e.unread:
                drain_frame(conn, e.unread)
            return
        job, answer = check_request(req, self.own)
        conn.settimeout(HEARTBEAT_S)
        send_frame(conn, answer)
        if job is None:
            if "error" in answer:
                self.log(f"squeeze3d: bad request: {answer['error']}")
            return
        job.wake = os.pipe()
        self.jobs.put(job)
        try:
            if not self._wait(conn, job):
                return
            rc, out, err = job.result
            conn.settimeout(ANSWER_TIMEOUT_S)
            send_frame(conn, {"rc": rc, "out": out, "err": err})
        finally:
            job.done.wait()  # the worker has written to the pipe by now: closing it is safe
            for fd in job.wake:
                os.close(fd)

    def _wait(self, conn: socket.socket, job: Job) -> bool:
        """Heartbeats until ``job`` ends (True), or a cancel / the client gone (False, job interrupted)."""
        try:
            while not job.done.is_set():
                readable, _, _ = select.select([conn, job.wake[0]], [], [], HEARTBEAT_S)
                if job.done.is_set():
                    break
                if conn in readable:  # a cancel, or the client went away (EOF, reset): interrupt its command
                    try:
                        conn.settimeout(HEARTBEAT_S)
                        recv_frame(conn, 1024)
                    except (OSError, ConnectionError, ProtocolError):
                        self.cancel(job)
                        return False
                    self.cancel(job)
                    continue
                if not readable:
                    send_frame(conn, {"wait": 1})
        except (OSError, ConnectionError):
            self.cancel(job)
            return False
        return True

    def idle_for(self) -> float:
        with self.lock:
            if self.busy or self.running is not None or not self.jobs.empty():
                return 0.0
        return time.monotonic() - self.last_activity

    def stop(self) -> None:
        with self.lock:
            job = self.running
        if job is not None:
            self.cancel(job)
        self.jobs.put(None)
        self.worker.join(timeout=30)


def serve(main, pair: str | None = None, idle_timeout: float = 900.0, log=print) -> int:
    """Serve until ``idle_timeout`` seconds pass without a request (or SIGTERM). ``main(argv) -> exit
    status`` runs one command here (the console command's entry point, without forwarding: it is
    handed in because it sits above this module); ``pair``: load its models first."""
    from squeeze3d.redact import mask_credentials

    log = _masked(log, mask_credentials)
    clean_stale_dirs(log)
    place = claim_place(log)
    try:
        with serve_lock(place.lock, run_dir().parent):
            return _serve(main, pair, idle_timeout, log, place)
    finally:
        if place.extra is not None and place.extra.exists():
            release_place(place)


def _masked(log, mask):
    """Every log line through the credential mask: a request's error may quote a URI with a password."""
    def masked(msg: str) -> None:
        log(mask(str(msg)))
    return masked


def _serve(main, pair, idle_timeout: float, log, place: Place) -> int:
    if pair:
        from squeeze3d.codec.compressor import get_codec

        c = get_codec(pair)
        _ = c.encoder, c.generator
        try:
            _ = c.f_e, c.f_d  # the default model (the champion or the shipped one)
        except UserError as e:
            log(f"squeeze3d: {pair}'s default model not loaded ({e}); models load on first use")
        _forget_resolved_models()
    server = _Server(main, log)
    srv = bind_socket(place)
    path = place.socket

    def on_term(signum, frame):
        raise SystemExit(0)

    old_term = signal.signal(signal.SIGTERM, on_term)
    try:
        srv.listen(16)
        srv.settimeout(0.5)
        server.worker.start()
        log(f"squeeze3d: serving codec commands on {path} (idle timeout {idle_timeout:.0f} s)")
        while True:
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                if server.idle_for() > idle_timeout:
                    log(f"squeeze3d: no request for {idle_timeout:.0f} s; {server.served} served, exiting")
                    return 0
                continue
            with server.lock:
                if server.busy >= _MAX_CONNECTIONS:
                    conn.close()
                    continue
                server.busy += 1
            server.last_activity = time.monotonic()
            threading.Thread(target=server.handle, args=(conn,), daemon=True).start()
    finally:
        signal.signal(signal.SIGTERM, old_term)
        srv.close()
        release_place(place)
        server.stop()
