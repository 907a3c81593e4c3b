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
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import io
import json
import os
import queue
import select
import signal
import socket
import stat
import struct
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from squeeze3d.errors import UserError

FORWARDED = ("compress", "decompress", "inspect")
CONNECT_TIMEOUT_S = 2.0
ANSWER_TIMEOUT_S = 5.0
HEARTBEAT_S = 1.0
REQUEST_TIMEOUT_S = 5.0
MAX_REQUEST_BYTES = 1 << 20
_MAX_ANSWER_BYTES = 64 << 20
_MAX_CONNECTIONS = 64
_MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes on Linux
_INTERRUPTED = "squeeze3d: interrupted\n"


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


def run_dir() -> Path:
    from squeeze3d.tracking import state_dir

    return state_dir() / "run"


def _pointer() -> Path:
    return run_dir() / "codec.sock-path"


def _user_dir() -> Path:
    """A folder of this user's that no other user can create or enter: ``$XDG_RUNTIME_DIR/squeeze3d``
    (a per-user 0700 folder made at login) when there is one, else ``~/.cache/squeeze3d/run``. It holds
    the pointer and lock of a server whose ``<state>/run`` another user owns."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and _private_dir_problem(Path(xdg)) is None:
        return Path(xdg) / "squeeze3d"
    return Path.home() / ".cache" / "squeeze3d" / "run"


def _user_pointer() -> Path:
    """The pointer for this state folder in ``_user_dir`` (the state folder's path, hashed, names it)."""
    from squeeze3d.tracking import state_dir

    key = hashlib.sha256(str(state_dir()).encode()).hexdigest()[:16]
    return _user_dir() / f"codec-{key}.sock-path"


def _read_pointer(p: Path) -> Path | None:
    """The socket path a pointer file names, if the file is this user's own regular file that nobody
    else can write (a pointer anyone could write would send clients anywhere; the socket it names is
    checked again before use)."""
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
            return None
        text = os.read(fd, 4096).decode(errors="replace").strip()
    finally:
        os.close(fd)
    return Path(text) if text.startswith("/") and "\n" not in text else None


def socket_path() -> Path:
    """Where this user's server for this state folder listens (the file may not exist): the private
    ``<state>/run/codec.sock``; else the folder a pointer names (``<state>/run/codec.sock-path`` when
    that path is too long for a socket, the per-user pointer when another user owns ``<state>/run``)."""
    d = run_dir()
    p = d / "codec.sock"
    if _private_dir_problem(d) is None:
        if len(str(p)) <= _MAX_SOCKET_PATH:
            return p
        return _read_pointer(_pointer()) or p
    return _read_pointer(_user_pointer()) or p


def _private_dir_problem(d: Path) -> str | None:
    """None when ``d`` is a directory (not a symlink) owned by this user that nobody else can enter."""
    try:
        st = os.lstat(d)
    except OSError as e:
        return f"{d}: {e.strerror}"
    if not stat.S_ISDIR(st.st_mode):
        return f"{d} is not a directory"
    if st.st_uid != os.getuid():
        return f"{d} belongs to uid {st.st_uid}, not to this user ({os.getuid()})"
    if st.st_mode & 0o077:
        return f"{d} is open to other users (mode {stat.S_IMODE(st.st_mode):o}, must be 700)"
    return None


def _socket_problem(p: Path) -> str | None:
    problem = _private_dir_problem(p.parent)
    if problem:
        return problem
    try:
        st = os.lstat(p)
    except OSError as e:
        return f"{p}: {e.strerror}"
    if not stat.S_ISSOCK(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        return f"{p} is not a private socket of this user"
    return None


def _peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def _settings(env=None) -> dict:
    env = os.environ if env is None else env
    return {k: v for k, v in env.items()
            if (k.startswith("SQUEEZE3D_") and k != "SQUEEZE3D_NO_SERVER") or k == "MLFLOW_TRACKING_URI"}


def settings_digest(env=None) -> str:
    """What a request says about the client's settings: a hash, so no value (password) travels."""
    return hashlib.sha256(json.dumps(_settings(env), sort_keys=True).encode()).hexdigest()


def _send(conn: socket.socket, doc: dict) -> None:
    data = json.dumps(doc).encode()
    conn.sendall(struct.pack(">I", len(data)) + data)


def _recv(conn: socket.socket, limit: int, deadline: float | None = None) -> dict:
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


# --- client ---------------------------------------------------------------------------------------

def _connect() -> socket.socket | None:
    """A connection to this user's server, verified before anything is sent; None when there is none."""
    path = socket_path()
    if _socket_problem(path):
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.settimeout(CONNECT_TIMEOUT_S)
        conn.connect(str(path))
        if _peer_uid(conn) != os.getuid():
            raise ConnectionError("the socket is served by another user")
    except (OSError, ConnectionError):
        conn.close()
        return None
    return conn


def _answer(conn: socket.socket) -> dict:
    """The server's next frame other than a heartbeat; ``ANSWER_TIMEOUT_S`` of silence is a dead server."""
    while True:
        conn.settimeout(ANSWER_TIMEOUT_S)
        doc = _recv(conn, _MAX_ANSWER_BYTES)
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
            _send(conn, {"argv": [str(a) for a in argv], "cwd": os.getcwd(), "umask": umask,
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
        _send(conn, {"cancel": True})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not _answer(conn).get("wait"):
                break
    print(_INTERRUPTED, end="", file=sys.stderr)
    return 130


# --- server ---------------------------------------------------------------------------------------

@dataclass
class _Job:
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


def _check_request(req: dict, own: str) -> tuple[_Job | None, dict]:
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
    return _Job(argv, cwd, umask), {"accepted": True}


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
        self.jobs: queue.Queue[_Job | None] = queue.Queue()
        self.lock = threading.Lock()
        self.running: _Job | None = None
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

    def _execute(self, job: _Job) -> None:
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

    def cancel(self, job: _Job) -> None:
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
                    _send(conn, {"error": f"the server could not handle the request ({type(e).__name__})"})
            finally:
                with self.lock:
                    self.busy -= 1
                self.last_activity = time.monotonic()

    def _handle(self, conn: socket.socket) -> None:
        if _peer_uid(conn) != os.getuid():
            self.log("squeeze3d: refused a connection from another user")
            return
        try:
            req = _recv(conn, MAX_REQUEST_BYTES, time.monotonic() + REQUEST_TIMEOUT_S)
        except ProtocolError as e:
            self.log(f"squeeze3d: bad request: {e}")
            with contextlib.suppress(OSError):
                conn.settimeout(1.0)
                _send(conn, {"error": str(e)})
            if e.unread:
                _drain(conn, e.unread)
            return
        job, answer = _check_request(req, self.own)
        conn.settimeout(HEARTBEAT_S)
        _send(conn, answer)
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
            _send(conn, {"rc": rc, "out": out, "err": err})
        finally:
            job.done.wait()  # the worker has written to the pipe by now: closing it is safe
            for fd in job.wake:
                os.close(fd)

    def _wait(self, conn: socket.socket, job: _Job) -> bool:
        """Heartbeats until ``job`` ends (True), or a cancel / the client gone (False, job interrupted)."""
        try:
            while not job.done.is_set():
                readable, _, _ = select.select([conn, job.wake[0]], [], [], HEARTBEAT_S)
                if job.done.is_set():
                    break
                if conn in readable:  # a cancel, or the client went away (EOF, reset): interrupt its command
                    try:
                        conn.settimeout(HEARTBEAT_S)
                        _recv(conn, 1024)
                    except (OSError, ConnectionError, ProtocolError):
                        self.cancel(job)
                        return False
                    self.cancel(job)
                    continue
                if not readable:
                    _send(conn, {"wait": 1})
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


def _drain(conn: socket.socket, n: int) -> None:
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


@contextlib.contextmanager
def _serve_lock(lock: Path, what: Path):
    """One server per state folder: an exclusive ``flock`` on ``lock`` held for the server's life."""
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise UserError(f"a codec server (pid {pid}) already serves {what}; stop it first, or use "
                            "another SQUEEZE3D_STATE_DIR") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def _private_dir(d: Path) -> str | None:
    """Make ``d`` (and its parents) a private directory of this user; None when it is one, else why not."""
    try:
        d.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            d.mkdir(mode=0o700)
        st = os.lstat(d)
        if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and st.st_mode & 0o077:
            os.chmod(d, 0o700)  # made by an older version with the default umask
    except OSError as e:
        return f"{d}: {e.strerror}"
    return _private_dir_problem(d)


_OWNER_LOCK = "owner.lock"
_STALE_AFTER_S = 60.0  # a folder with no owner lock younger than this may be a server starting up


def _clean_stale_dirs(log) -> None:
    """Remove socket folders (``squeeze3d-<uid>-*`` in the temp dir) of this user's servers that are
    gone (SIGKILL, a crash): a live server holds a ``flock`` on the folder's owner lock for its life."""
    import shutil

    for d in Path(tempfile.gettempdir()).glob(f"squeeze3d-{os.getuid()}-*"):
        try:
            st = os.lstat(d)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
                continue  # not ours (a squatter's name): never touched
            try:
                fd = os.open(d / _OWNER_LOCK, os.O_RDWR | os.O_NOFOLLOW)
            except FileNotFoundError:  # an older server's folder, or one being made this instant
                if time.time() - st.st_mtime < _STALE_AFTER_S or _listening(d / "codec.sock"):
                    continue
            else:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its server is alive
                finally:
                    os.close(fd)
            shutil.rmtree(d)
            log(f"squeeze3d: removed {d}, left by a server that is gone")
        except OSError:
            continue


def _listening(p: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.settimeout(1.0)
        try:
            c.connect(str(p))
        except OSError:
            return False
    return True


def _fresh_private_dir() -> tuple[Path, int]:
    """A new ``mkdtemp`` folder (mode 0700, unpredictable name) and the fd of its owner lock, held."""
    d = Path(tempfile.mkdtemp(prefix=f"squeeze3d-{os.getuid()}-"))
    fd = os.open(d / _OWNER_LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return d, fd


@dataclass
class _Place:
    """Where a server listens: the socket, its lock, and (for a fresh folder) the pointer to it."""
    lock: Path
    socket: Path
    pointer: Path | None = None
    extra: Path | None = None
    extra_fd: int | None = None


def _place(log) -> _Place:
    """``<state>/run/codec.sock`` when ``<state>/run`` is (or can be made) a private folder of this
    user and the path fits a socket address; else a fresh private folder in the temp dir, named by a
    pointer: ``<state>/run/codec.sock-path``, or, when another user owns ``<state>/run`` (a squatter
    where the state folder's parent is world-writable), a pointer in this user's own folder
    (``_user_dir``), so that no other user can keep the server from starting."""
    d = run_dir()
    problem = _private_dir(d)
    if problem is None:
        sock = d / "codec.sock"
        if len(str(sock)) <= _MAX_SOCKET_PATH:
            return _Place(d / "serve.lock", sock)
        lock, pointer = d / "serve.lock", _pointer()
    else:
        udir = _user_dir()
        why = _private_dir(udir)
        if why is not None:
            raise UserError(f"cannot serve: {problem}, and {why}")
        pointer = _user_pointer()
        lock = pointer.with_suffix(".lock")
        log(f"squeeze3d: {problem}; serving from a private folder instead")
    extra, fd = _fresh_private_dir()
    sock = extra / "codec.sock"
    if len(str(sock)) > _MAX_SOCKET_PATH:
        os.close(fd)
        import shutil

        shutil.rmtree(extra, ignore_errors=True)
        raise UserError(f"cannot serve: {sock} is too long for a Unix socket; set TMPDIR to a shorter folder")
    return _Place(lock, sock, pointer, extra, fd)


def _bind(place: _Place) -> socket.socket:
    """The listening socket at ``place.socket``; the pointer (if any) is written once it is bound."""
    path = place.socket
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # left by a server that died: we hold the lock, so nobody serves it
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o077)
    try:
        srv.bind(str(path))
    finally:
        os.umask(old)
    if place.pointer is not None:
        from squeeze3d.io import atomic_write_bytes

        atomic_write_bytes(place.pointer, f"{path}\n".encode(), mode=0o600)
    return srv


def _release(place: _Place) -> None:
    """Remove what this server made: its socket, its pointer (if it still names this server), its folder."""
    import shutil

    with contextlib.suppress(FileNotFoundError):
        place.socket.unlink()
    if place.pointer is not None and _read_pointer(place.pointer) == place.socket:
        with contextlib.suppress(OSError):
            place.pointer.unlink()
    if place.extra is not None:
        shutil.rmtree(place.extra, ignore_errors=True)
        if place.extra_fd is not None:
            os.close(place.extra_fd)


def serve(main, pair: str | None = None, idle_timeout: float = 900.0, log=print) -> int:
    """Serve until ``idle_timeout`` seconds pass without a request (or SIGTERM). ``main(argv) -> exit
    status`` runs one command here (the console command's entry point, without forwarding: it is
    handed in because it sits above this module); ``pair``: load its models first."""
    from squeeze3d.redact import mask_credentials

    log = _masked(log, mask_credentials)
    _clean_stale_dirs(log)
    place = _place(log)
    try:
        with _serve_lock(place.lock, run_dir().parent):
            return _serve(main, pair, idle_timeout, log, place)
    finally:
        if place.extra is not None and place.extra.exists():
            _release(place)


def _masked(log, mask):
    """Every log line through the credential mask: a request's error may quote a URI with a password."""
    def masked(msg: str) -> None:
        log(mask(str(msg)))
    return masked


def _serve(main, pair, idle_timeout: float, log, place: _Place) -> int:
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
    srv = _bind(place)
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
        _release(place)
        server.stop()
