"""``jobs/bench_rate.py``: the rate curve's real code path at a tiny size, and its one-line refusal."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
TINY = ["--pair", "debug", "--n", "96", "--test", "8", "--epochs", "2", "--d-code", "8", "--set", "mapping.hidden=32"]


def test_bench_rate_job_prints_a_row_per_lambda(tmp_path):
    out = tmp_path / "rate.json"
    r = subprocess.run([sys.executable, str(ROOT / "jobs" / "bench_rate.py"), *TINY, "--lambdas", "0,0.05",
                        "--set", "mapping.code_bound=tanh", "--set", "loss.code_noise_bits=4", "--json", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [row["lambda_rate"] for row in rows] == [0.0, 0.05]
    assert rows[0]["val_rate_bits"] is None and rows[1]["val_rate_bits"] > 0
    for row in rows:
        assert 0 < row["bytes_8bit"] and row["raw_bytes_8bit"] == 8 and row["raw_bytes_4bit"] == 4
        assert row["d1_4bit"] == row["d1_4bit"]  # a number, not NaN
    assert "load average" in r.stdout


def test_bench_rate_refuses_unbounded_codes_in_one_line():
    r = subprocess.run([sys.executable, str(ROOT / "jobs" / "bench_rate.py"), *TINY, "--lambdas", "0"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "code_bound=tanh" in r.stderr
