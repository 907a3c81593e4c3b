"""Wall time per stage of a demo-sized run of one pair, each stage the command a user types:
prompt table (text pairs) -> Ray Data build -> Ray Train fit (registers) -> codec eval.

    python jobs/bench_pair_stages.py --pair meshanything_shape --prompts 24 --samples 96 --epochs 2 --eval 8
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def _run(name: str, cmd: list[str], rows: list[dict]) -> None:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    rows.append({"stage": name, "s": round(time.perf_counter() - t0, 1), "rc": r.returncode, "load_1m": round(os.getloadavg()[0], 2)})
    if r.returncode:
        sys.stderr.write(r.stdout[-2000:] + r.stderr[-3000:])
        raise SystemExit(f"stage {name} failed (exit {r.returncode})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pair", default="meshanything_shape")
    ap.add_argument("--prompts", type=int, default=24, help="prompt table size (0: a noise-conditioned pair)")
    ap.add_argument("--topics", default="platform/squeeze3d/data/prompts/corpus")
    ap.add_argument("--samples", type=int, default=96)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--eval", type=int, default=8, help="held-out objects for squeeze3d eval")
    ap.add_argument("--work", default=".state/bench/stages")
    ap.add_argument("--json", default=".state/bench/stages.json")
    a = ap.parse_args()
    work = Path(a.work) / a.pair
    py, rows = sys.executable, []
    build = [py, "jobs/build_dataset.py", "--pair", a.pair, "--output", str(work / "data"), "--num-samples", str(a.samples)]
    if a.prompts:
        _run("prompts", [py, "jobs/build_prompts.py", "--num-prompts", str(a.prompts), "--output", str(work / "prompts"),
                         "--topics", a.topics, "--samples-per-prompt", "4"], rows)
        build += ["--prompts", str(work / "prompts")]
    _run("build", build, rows)
    _run("train", [py, "jobs/train.py", "--pair", a.pair, "--data", str(work / "data"), "--set", f"optim.epochs={a.epochs}"], rows)
    _run("eval", [py, "-m", "squeeze3d", "eval", "--pair", a.pair, "--limit", str(a.eval), "--out", str(work / "eval"),
                  "--no-previews"], rows)
    out = {"pair": a.pair, "samples": a.samples, "epochs": a.epochs, "eval_objects": a.eval, "stages": rows}
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(out, indent=2))
    for r in rows:
        print(f"{r['stage']:8s} {r['s']:8.1f} s   (load {r['load_1m']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
