"""`squeeze3d serve` against hostile or broken peers: a socket not in a private directory of this
user (or served by another user) gets nothing from a client; a squatter at the old predictable /tmp
name neither receives requests nor blocks a server; slow, stuck, malformed and oversized requests
leave the server serving; a stopped server makes the client run the command itself; Ctrl-C on a
served command interrupts it as in a cold run; two servers at once: one refuses; SIGTERM removes the
socket.

Most cases run the real server code with a stand-in command (``main``) that needs no torch, so the
server starts in a blink and a command can be made to take as long as a case needs."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from squeeze3d.codec import server

SERVER = r"""
import sys, time, pathlib
from squeeze3d.codec.server import serve

def main(argv):  # ["compress", OUT, SECONDS]: works for SECONDS, then writes OUT
    out, secs = pathlib.Path(argv[1]), float(argv[2])
    pathlib.Path(str(out) + ".started").write_text("")
    t = time.monotonic()
    while time.monotonic() - t < secs:
        time.sleep(0.01)
    out.write_text("done")
    print(f"{out}: written")
    return 0

sys.exit(serve(main, None, float(sys.argv[1]), log=lambda m: print(m, file=sys.stderr, flush=True)))
"""

CLIENT = r"""
import sys
from squeeze3d.codec.server import forward
rc = forward(sys.argv[1:])
print("COLD" if rc is None else f"SERVED rc={rc}", flush=True)
sys.exit(0 if rc is None else rc)
"""


def _env(state: Path) -> dict:
    env = {**os.environ, "SQUEEZE3D_STATE_DIR": str(state)}
    env.pop("SQUEEZE3D_NO_SERVER", None)
    return env


def _wait_for(cond, what: str, timeout: float = 120) -> None:
    t = time.monotonic()
    while not cond():
        assert time.monotonic() - t < timeout, what
        time.sleep(0.05)


@pytest.fixture
def fake_server(tmp_path):
    """The real server with the stand-in command; yields (env, log path, process)."""
    state = tmp_path / "state"
    env = _env(state)
    log_path = tmp_path / "server.log"
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "-c", SERVER, "120"], env=env, stdout=log, stderr=log)
    _wait_for(lambda: "serving codec commands" in log_path.read_text() or proc.poll() is not None,
              "server start")
    assert proc.poll() is None, log_path.read_text()
    yield env, log_path, proc
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
        proc.wait(timeout=60)
    log.close()


def _client(env, *argv, timeout=120, **kw):
    return subprocess.run([sys.executable, "-c", CLIENT, *map(str, argv)], env=env, capture_output=True,
                          text=True, timeout=timeout, **kw)


def _verdict(r) -> str:
    lines = r.stdout.strip().splitlines()
    return lines[-1] if lines else ""


def _raw(path: Path, payload: bytes, timeout: float = 30) -> dict | None:
    """Send raw bytes to the server and read its first answer (None when it closed without one)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.settimeout(timeout)
        c.connect(str(path))
        c.sendall(payload)
        try:
            head = c.recv(4)
            if len(head) < 4:
                return None
            (n,) = struct.unpack(">I", head)
            data = b""
            while len(data) < n:
                data += c.recv(n - len(data))
            return json.loads(data)
        except ConnectionError:
            return None


def _frame(doc) -> bytes:
    data = json.dumps(doc).encode()
    return struct.pack(">I", len(data)) + data


class _Listener:
    """A socket that records whatever a client sends (a squatter, or a server we fake)."""

    def __init__(self, path: Path, answer: dict | None = None):
        self.path, self.answer, self.received = path, answer, b""
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o077)  # a private socket of this user: only its directory decides
        try:
            self.sock.bind(str(path))
        finally:
            os.umask(old)
        self.sock.listen(4)
        self.sock.settimeout(0.2)
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                conn.settimeout(2)
                try:
                    self.received += conn.recv(1 << 20)
                    if self.answer is not None:
                        conn.sendall(_frame(self.answer))
                except OSError:
                    pass

    def close(self):
        self.stop = True
        self.thread.join()
        self.sock.close()


def test_client_sends_nothing_to_a_socket_outside_a_private_dir(tmp_path, monkeypatch):
    state = tmp_path / "state"
    run = state / "run"
    run.mkdir(parents=True, mode=0o755)
    os.chmod(run, 0o755)
    monkeypatch.setenv("SQUEEZE3D_STATE_DIR", str(state))
    monkeypatch.delenv("SQUEEZE3D_NO_SERVER", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://alice:hunter2@registry.example:5000")
    fake = _Listener(run / "codec.sock", answer={"refused": "settings differ"})
    try:
        assert server.forward(["compress", "a.ply", "-o", "a.sq3d"]) is None
        time.sleep(0.5)
        assert fake.received == b""  # a directory others can write to: not trusted, nothing sent
        os.chmod(run, 0o700)
        assert server.forward(["compress", "a.ply", "-o", "a.sq3d"]) is None  # refused: runs cold
        _wait_for(lambda: fake.received, "request", timeout=10)
    finally:
        fake.close()
    req = json.loads(fake.received[4:])
    assert sorted(req) == ["argv", "cwd", "settings", "umask"]
    assert b"hunter2" not in fake.received and b"alice" not in fake.received  # settings travel as a hash
    assert req["settings"] == server.settings_digest()


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to run a listener as another user")
def test_client_sends_nothing_to_a_socket_served_by_another_user(tmp_path, monkeypatch):
    state = tmp_path / "state"
    run = state / "run"
    run.mkdir(parents=True, mode=0o700)
    monkeypatch.setenv("SQUEEZE3D_STATE_DIR", str(state))
    monkeypatch.delenv("SQUEEZE3D_NO_SERVER", raising=False)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o077)
    sock.bind(str(run / "codec.sock"))  # our socket file, in our private directory...
    os.umask(old)
    r_fd, w_fd = os.pipe()  # what the other user's process receives comes back through this pipe
    # ...but another user's process listens on it (SO_PEERCRED names the process that called listen)
    pid = os.fork()
    if pid == 0:  # the child: become nobody, listen, pass on what arrives
        try:
            os.close(r_fd)
            os.setgid(65534)
            os.setuid(65534)
            sock.listen(4)
            sock.settimeout(10)
            c, _ = sock.accept()
            c.settimeout(5)
            os.write(w_fd, b"accepted:" + c.recv(65536))
        finally:
            os._exit(0)
    os.close(w_fd)
    try:
        time.sleep(1.0)
        assert server.forward(["compress", "a.ply", "-o", "a.sq3d"]) is None
        time.sleep(1.0)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        sock.close()
    with os.fdopen(r_fd, "rb") as r:
        got = r.read()
    assert got in (b"", b"accepted:")  # it may see the connection, never a request


def test_squatter_at_the_old_tmp_name_gets_nothing_and_blocks_nothing(tmp_path, monkeypatch):
    import hashlib
    import tempfile

    state = tmp_path / ("s" * 120) / "state"  # too long for a Unix socket address
    state.mkdir(parents=True)
    old_name = Path(tempfile.gettempdir()) / (
        f"squeeze3d-{os.getuid()}-{hashlib.blake2b(str(state).encode(), digest_size=6).hexdigest()}.sock")
    old_name.unlink(missing_ok=True)
    squatter = _Listener(old_name, answer={"rc": 0, "out": "chair.sq3d: 40 bytes\n", "err": ""})
    env = _env(state)
    log_path = tmp_path / "server.log"
    proc = None
    try:
        r = _client(env, "compress", tmp_path / "never", "0")
        assert _verdict(r) == "COLD" and squatter.received == b""
        with open(log_path, "w") as log:
            proc = subprocess.Popen([sys.executable, "-c", SERVER, "120"], env=env, stdout=log, stderr=log)
            _wait_for(lambda: "serving codec commands" in log_path.read_text() or proc.poll() is not None,
                      "server start")
            assert proc.poll() is None, log_path.read_text()  # not blocked by the squatter
            r = _client(env, "compress", tmp_path / "out.txt", "0")
            assert _verdict(r) == "SERVED rc=0", r.stdout + r.stderr
            assert (tmp_path / "out.txt").read_text() == "done" and squatter.received == b""
            proc.terminate()
            assert proc.wait(timeout=60) == 0
    finally:
        squatter.close()
        old_name.unlink(missing_ok=True)
        if proc is not None and proc.poll() is None:
            proc.kill()
    assert not (state / "run" / "codec.sock-path").exists()


def test_malformed_and_oversized_requests_get_one_line_and_the_server_keeps_serving(fake_server, tmp_path):
    env, log, proc = fake_server
    path = Path(env["SQUEEZE3D_STATE_DIR"]) / "run" / "codec.sock"
    digest = server.settings_digest(env)
    cases = [b"\x00\x00\x00\x02[]", _frame({"argv": 5}), _frame({"umask": "abc"}),
             _frame({"argv": ["compress"], "cwd": str(tmp_path), "umask": "abc", "settings": digest}),
             b"\x00\x00\x00\x05nope!", b"\xff\xff\xff\xff" + b"{" * 1000]
    for payload in cases:
        ans = _raw(path, payload)
        assert ans is not None and set(ans) == {"error"} and "\n" not in ans["error"], (payload[:20], ans)
    assert proc.poll() is None
    r = _client(env, "compress", tmp_path / "ok.txt", "0")
    assert _verdict(r) == "SERVED rc=0" and (tmp_path / "ok.txt").read_text() == "done", r.stderr
    text = log.read_text()
    assert "Traceback" not in text and text.count("bad request") == len(cases), text


def test_slow_peer_does_not_stall_others_and_a_stopped_server_means_a_cold_run(fake_server, tmp_path):
    env, log, proc = fake_server
    path = Path(env["SQUEEZE3D_STATE_DIR"]) / "run" / "codec.sock"
    trickler = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    trickler.connect(str(path))
    trickler.sendall(struct.pack(">I", 1000) + b"{")  # says 1000 bytes, sends one
    stop = threading.Event()

    def trickle():
        while not stop.wait(1.0):
            try:
                trickler.send(b" ")
            except OSError:
                return

    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    try:
        r = _client(env, "compress", tmp_path / "a.txt", "0", timeout=120)
        assert _verdict(r) == "SERVED rc=0", r.stdout + r.stderr  # while the trickler is still connected
        assert t.is_alive()
    finally:
        stop.set()
        t.join()
        with pytest.raises(OSError):
            for _ in range(20):
                trickler.send(b" ")  # the server dropped it: the request did not arrive in time
                time.sleep(0.5)
        trickler.close()
    assert "bad request: the request did not arrive in time" in log.read_text()
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        r = _client(env, "compress", tmp_path / "b.txt", "0", timeout=120)
        assert r.returncode == 0 and _verdict(r) == "COLD", r.stdout + r.stderr
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    r = _client(env, "compress", tmp_path / "c.txt", "0")
    assert _verdict(r) == "SERVED rc=0", r.stdout + r.stderr


def test_ctrl_c_on_a_served_command_interrupts_it_and_writes_nothing(fake_server, tmp_path):
    env, log, proc = fake_server
    out = tmp_path / "slow.txt"
    # a terminal's process: Ctrl-C is not ignored (a runner that started the suite in the background
    # would have it ignored, and Python would then never raise KeyboardInterrupt in the client)
    client = subprocess.Popen([sys.executable, "-c", CLIENT, "compress", str(out), "60"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    _wait_for(lambda: Path(str(out) + ".started").exists() or client.poll() is not None, "command start")
    client.send_signal(signal.SIGINT)
    stdout, stderr = client.communicate(timeout=60)
    assert client.returncode == 130, stdout + stderr
    assert stderr.strip() == "squeeze3d: interrupted" and "Traceback" not in stderr
    assert "rc=130 (cancelled)" in log.read_text()  # the server has finished with it...
    time.sleep(1.0)
    assert not out.exists()  # ...and wrote nothing
    r = _client(env, "compress", tmp_path / "after.txt", "0")
    assert _verdict(r) == "SERVED rc=0"


def test_two_serves_at_once_one_refuses_and_sigterm_removes_the_socket(tmp_path):
    env = _env(tmp_path / "state")
    cmd = [sys.executable, "-m", "squeeze3d", "serve", "--pair", "", "--idle-timeout", "120"]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    sock = tmp_path / "state" / "run" / "codec.sock"
    try:
        _wait_for(lambda: any(p.poll() is not None for p in procs), "one serve to refuse")
        loser = next(p for p in procs if p.poll() is not None)
        winner = next(p for p in procs if p is not loser)
        err = loser.stderr.read()
        assert loser.returncode == 2 and "already serves" in err and len(err.strip().splitlines()) == 1, err
        _wait_for(lambda: sock.exists() or winner.poll() is not None, "socket")
        winner.terminate()
        assert winner.wait(timeout=60) == 0, winner.stderr.read()
        assert not sock.exists()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


def _serving_path(log_path: Path) -> Path:
    line = next(ln for ln in log_path.read_text().splitlines() if "serving codec commands on " in ln)
    return Path(line.split("serving codec commands on ", 1)[1].split(" (idle", 1)[0])


def _start(env, log_path: Path) -> subprocess.Popen:
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "-c", SERVER, "120"], env=env, stdout=log, stderr=log)
    log.close()
    _wait_for(lambda: "serving codec commands" in log_path.read_text() or proc.poll() is not None, "server start")
    return proc


def test_answers_do_not_wait_for_the_next_heartbeat(tmp_path, monkeypatch):
    """Issue 31.5: the connection's thread waited on the client's socket alone, so an answer left only
    when the next heartbeat was due (up to a second for 10 ms of work). With the heartbeat an hour
    away, the answer must still come: it leaves when the work ends."""
    monkeypatch.setattr(server, "HEARTBEAT_S", 3600.0)
    srv = server._Server(lambda argv: print("done") or 0, log=lambda m: None)
    srv.worker.start()
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours:
        srv.busy += 1
        t = threading.Thread(target=srv.handle, args=(theirs,), daemon=True)
        t.start()
        ours.settimeout(60)
        ours.sendall(_frame({"argv": ["inspect", "x.sq3d"], "cwd": str(tmp_path), "umask": 0o22,
                             "settings": server.settings_digest()}))
        assert server.recv_frame(ours, 1 << 20) == {"accepted": True}
        assert server.recv_frame(ours, 1 << 20) == {"rc": 0, "out": "done\n", "err": ""}  # no heartbeat first
    t.join(timeout=60)
    srv.stop()


def test_deep_json_and_oversized_frames_with_bodies_get_an_answer(fake_server, tmp_path):
    """Issue 31.6: 200,000 nested "[" made the server log a RecursionError traceback and answer
    nothing; an oversized length prefix followed by its body reset the connection before the client
    could read the answer."""
    env, log, proc = fake_server
    path = Path(env["SQUEEZE3D_STATE_DIR"]) / "run" / "codec.sock"
    deep = b"[" * 200_000 + b"]" * 200_000
    cases = [struct.pack(">I", len(deep)) + deep,
             struct.pack(">I", 8 << 20) + b"x" * (8 << 20),  # says 8 MiB and sends them
             struct.pack(">I", 2 << 20) + b"{" * (2 << 20)]
    for payload in cases:
        ans = _raw(path, payload)
        assert ans is not None and set(ans) == {"error"} and "\n" not in ans["error"], (payload[:20], ans)
    assert "nested deeper" in log.read_text()
    assert proc.poll() is None
    r = _client(env, "compress", tmp_path / "ok.txt", "0")
    assert _verdict(r) == "SERVED rc=0", r.stdout + r.stderr
    text = log.read_text()
    assert "Traceback" not in text and text.count("bad request") == len(cases), text


@pytest.mark.parametrize("squat", ["file", "other_uid"])
def test_a_squatted_run_folder_does_not_keep_the_server_from_starting(tmp_path, squat):
    """Issue 31.7: another user who owns <state>/run (the state folder's parent is world-writable)
    used to make `serve` fail. The server now listens in a fresh private folder that clients find
    through a pointer in this user's own folder; the squatter's folder gets nothing."""
    if squat == "other_uid" and os.getuid() != 0:
        pytest.skip("needs root to make a folder owned by another uid")
    state = tmp_path / "state"
    run = state / "run"
    state.mkdir()
    if squat == "file":
        run.write_text("not a folder")  # what a squatter can leave where they may not chown
    else:
        run.mkdir(mode=0o777)
        os.chmod(run, 0o777)
        os.chown(run, 1001, 1001)
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    env = {**_env(state), "XDG_RUNTIME_DIR": str(xdg)}
    log_path = tmp_path / "server.log"
    proc = _start(env, log_path)
    try:
        assert proc.poll() is None, log_path.read_text()
        sock = _serving_path(log_path)
        assert not str(sock).startswith(str(state)) and sock.exists()
        assert "serving from a private folder instead" in log_path.read_text()
        r = _client(env, "compress", tmp_path / "out.txt", "0")
        assert _verdict(r) == "SERVED rc=0", r.stdout + r.stderr
        assert (tmp_path / "out.txt").read_text() == "done"
        proc.terminate()
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not sock.parent.exists() and list((xdg / "squeeze3d").glob("*.sock-path")) == []  # folder, pointer gone
    if squat == "other_uid":
        assert list(run.iterdir()) == []


def test_a_killed_servers_folder_is_removed_by_the_next_server(tmp_path):
    """Issue 31.8: a SIGKILLed server left its squeeze3d-<uid>-* folder and socket in the temp dir;
    the next server of this user removes folders whose server is gone, and no live server's."""
    state = tmp_path / ("s" * 120) / "state"  # too long for a socket address: a folder in the temp dir
    env = _env(state)
    first = _start(env, tmp_path / "first.log")
    old = _serving_path(tmp_path / "first.log").parent
    assert old.is_dir() and old.name.startswith(f"squeeze3d-{os.getuid()}-")
    other_state = tmp_path / ("t" * 120) / "state"
    alive = _start(_env(other_state), tmp_path / "alive.log")  # another state folder's live server
    live = _serving_path(tmp_path / "alive.log").parent
    first.kill()
    first.wait(timeout=60)
    assert old.is_dir()  # SIGKILL: nothing ran to remove it
    second = _start(env, tmp_path / "second.log")
    try:
        assert second.poll() is None, (tmp_path / "second.log").read_text()
        assert not old.exists() and live.is_dir()
        assert f"removed {old}" in (tmp_path / "second.log").read_text()
        r = _client(env, "compress", tmp_path / "out.txt", "0")
        assert _verdict(r) == "SERVED rc=0", r.stdout + r.stderr
    finally:
        for p in (second, alive):
            p.terminate()
            p.wait(timeout=60)
    assert not live.exists()
