"""``make bench`` runs the codec benchmark (jobs/bench_codec.py) and says where its table went; here
on one object."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_make_bench_runs_the_codec_benchmark_and_prints_its_table(tmp_path):
    venv = Path(sys.prefix)
    # -o: the venv counts as installed whatever the stamp's age (make must never reinstall here)
    r = subprocess.run(["make", "--no-print-directory", "-o", f"{venv}/.installed", "bench", f"VENV={venv}",
                        "BENCH_N=1", f"BENCH_OUT={tmp_path / 'codec'}"], cwd=REPO, capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("table (corpus): "))
    table = Path(line.split(": ", 1)[1].split("  ")[0])
    assert table.is_file() and str(table).startswith(str(tmp_path)), line
    assert (tmp_path / "codec.json").is_file()
