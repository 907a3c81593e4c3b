"""Where the codec server listens and who may use it (``codec.server``'s trust rules): the socket in
the private ``<state>/run``, else a fresh private folder named by a pointer file; the checks on
folders, sockets and pointers; one server per state folder (``serve.lock``); and the clean-up of
folders left by servers that are gone."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import socket
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from squeeze3d.errors import UserError

_MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes on Linux


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


def socket_problem(p: Path) -> str | None:
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


@contextlib.contextmanager
def serve_lock(lock: Path, what: Path):
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


def clean_stale_dirs(log) -> None:
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
class Place:
    """Where a server listens: the socket, its lock, and (for a fresh folder) the pointer to it."""
    lock: Path
    socket: Path
    pointer: Path | None = None
    extra: Path | None = None
    extra_fd: int | None = None


def claim_place(log) -> Place:
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
            return Place(d / "serve.lock", sock)
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
    return Place(lock, sock, pointer, extra, fd)


def bind_socket(place: Place) -> socket.socket:
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


def release_place(place: Place) -> None:
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
