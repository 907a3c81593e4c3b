"""Product-style console output for long jobs: one line per stage on the terminal (with a progress
bar while it runs, on a terminal), and everything the libraries print (Ray's driver and worker logs,
Ray Data's progress bars, MLflow's notices, C++ core messages) in a log file.

The libraries write to file descriptors 1 and 2 from Python, from C++ and from forwarded worker
output alike, so the only place to catch all of it is the descriptors themselves: while a stage runs
they are pointed at the log file (``os.dup2``) and the stage lines go to a duplicate of the original
terminal. ``verbose=True`` leaves the descriptors alone (the libraries' output comes back).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path


class Stage:
    """Handle of a running stage: ``update(done, total)`` moves its bar, ``note(text)`` sets its suffix."""

    def __init__(self, bar, title: str):
        self._bar = bar
        self.title = title
        self.summary = ""

    def update(self, done: int, total: int | None = None) -> None:
        if self._bar is None:
            return
        if total is not None and self._bar.total != total:
            self._bar.total = total
        self._bar.n = done
        self._bar.refresh()

    def note(self, text: str) -> None:
        """Short text after the bar while the stage runs; it also ends the stage's final line."""
        self.summary = text
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=True)


class _Stages:
    """What both consoles print around a stage: its numbered head and its final line (subclasses set
    ``total`` and ``_k``)."""

    def _next_head(self, title: str) -> str:
        self._k += 1
        return f"[{self._k}/{self.total}] {title}"

    @staticmethod
    def _done(head: str, st: Stage, secs: float) -> str:
        return f"{head}{f' — {st.summary}' if st.summary else ''} ({secs:.1f} s)"


class StageConsole(_Stages):
    """``with console.stage("building pairs") as st: ...`` prints ``[k/n] building pairs ... 12.3 s``."""

    def __init__(self, log_path: str | Path, total_stages: int, verbose: bool = False, stream=None):
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.total = int(total_stages)
        self.verbose = bool(verbose)
        self._k = 0
        # a private copy of the terminal: stays the terminal while descriptors 1 and 2 point at the log
        self._own_out = stream is None
        self.out = stream or os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
        self._log = open(self.log_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the console

    def print(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def log(self, text: str) -> None:
        """A detail line: the log file (and the terminal with ``verbose``)."""
        self._log.write(text + "\n")
        if self.verbose:
            self.print(f"      {text}")

    def quiet(self):
        """Outside a stage: the libraries' output to the log file, nothing on the terminal."""
        return self._libraries_to_log()

    @contextmanager
    def _libraries_to_log(self):
        if self.verbose:
            yield
            return
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        streams = sys.stdout, sys.stderr
        try:
            os.dup2(self._log.fileno(), 1)
            os.dup2(self._log.fileno(), 2)
            # and Python's own streams, in case they were replaced by objects not on descriptors 1/2
            sys.stdout = sys.stderr = self._log
            yield
        finally:
            sys.stdout, sys.stderr = streams
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])

    @contextmanager
    def stage(self, title: str, total: int | None = None):
        from tqdm import tqdm

        head = self._next_head(title)
        self._log.write(f"\n===== {head} =====\n")
        tty = hasattr(self.out, "isatty") and self.out.isatty()
        bar = None
        if tty and not self.verbose:
            fmt = ("{desc} {bar:24} {n_fmt}/{total_fmt} {elapsed}{postfix}" if total else "{desc} {elapsed}{postfix}")
            bar = tqdm(total=total, desc=head, file=self.out, bar_format=fmt, leave=False, dynamic_ncols=True)
        st = Stage(bar, title)
        stop = threading.Event()
        ticker = None
        if bar is not None:  # the elapsed time moves while a library works silently
            def tick():
                while not stop.wait(0.5):
                    bar.refresh()
            ticker = threading.Thread(target=tick, daemon=True)
            ticker.start()
        t0 = time.perf_counter()
        ok = False
        try:
            with self._libraries_to_log():
                yield st
            ok = True
        finally:
            stop.set()
            if ticker is not None:
                ticker.join()
            if bar is not None:
                bar.close()
            secs = time.perf_counter() - t0
            self.print(self._done(head, st, secs) if ok else f"{head} — failed after {secs:.1f} s; "
                       f"the libraries' output is in {self.log_path}")

    def close(self) -> None:
        self._log.close()
        if self._own_out:
            self.out.close()


class PlainConsole(_Stages):
    """``StageConsole``'s interface over a ``log(line)`` callable (tests, library callers): stage lines
    and detail lines alike go to ``log``; nothing is redirected."""

    def __init__(self, log=print, total_stages: int = 0):
        self._out = log
        self.total = int(total_stages)
        self._k = 0
        self.log_path = None

    def print(self, text: str = "") -> None:
        self._out(text)

    def log(self, text: str) -> None:
        self._out(f"      {text}")

    @contextmanager
    def quiet(self):
        yield

    @contextmanager
    def stage(self, title: str, total: int | None = None):
        head = self._next_head(title)
        st = Stage(None, title)
        t0 = time.perf_counter()
        yield st
        self._out(self._done(head, st, time.perf_counter() - t0))

    def close(self) -> None:
        pass
