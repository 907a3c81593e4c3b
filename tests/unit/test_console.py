"""The demo's console: one line per stage on the terminal, the libraries' output (Python, C-level
writes to the descriptors, child processes) in the log file; --verbose leaves the output alone."""

import io
import os
import subprocess
import sys

import pytest

from squeeze3d.console import PlainConsole, StageConsole


def _noisy():
    print("python print from a library")
    sys.stdout.flush()
    os.write(2, b"c-level write to fd 2\n")
    subprocess.run([sys.executable, "-c", "print('child process output')"], check=True)


def test_stage_lines_on_the_terminal_library_output_in_the_log(tmp_path, capfd):
    term = io.StringIO()
    con = StageConsole(tmp_path / "logs" / "run.log", total_stages=2, stream=term)
    with con.stage("building") as st:
        _noisy()
        st.note("42 pairs")
    con.log("a detail line")
    with pytest.raises(RuntimeError), con.stage("training"):
        raise RuntimeError("boom")
    con.close()
    lines = term.getvalue().splitlines()
    assert lines[0].startswith("[1/2] building — 42 pairs (") and lines[0].endswith(" s)")
    assert lines[1].startswith("[2/2] training — failed after") and str(tmp_path / "logs" / "run.log") in lines[1]
    assert len(lines) == 2
    log = (tmp_path / "logs" / "run.log").read_text()
    for text in ("python print from a library", "c-level write to fd 2", "child process output", "a detail line"):
        assert text in log
    out, err = capfd.readouterr()
    assert "python print" not in out and "c-level" not in err and "child process" not in out
    print("after the stage")  # the descriptors are back
    assert "after the stage" in capfd.readouterr().out


def test_verbose_leaves_the_output_alone(tmp_path, capfd):
    term = io.StringIO()
    con = StageConsole(tmp_path / "run.log", total_stages=1, verbose=True, stream=term)
    with con.stage("building"):
        _noisy()
    con.close()
    out, err = capfd.readouterr()
    assert "python print from a library" in out and "c-level write to fd 2" in err
    assert term.getvalue().startswith("[1/1] building (")


def test_plain_console_sends_everything_to_log():
    lines = []
    con = PlainConsole(lines.append, total_stages=1)
    with con.stage("x") as st:
        con.log("detail")
        st.note("done")
    assert lines[0] == "      detail" and lines[1].startswith("[1/1] x — done (")
