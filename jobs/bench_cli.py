"""Codec CLI speed: one `compress` and one `decompress` (wall time and peak RSS, each a fresh
process, as a user runs them), cold and handed to a warm `squeeze3d serve`, and a directory of N
clouds compressed by one process (files/s).

    .venv/bin/python jobs/bench_cli.py --pair pointnet_lion --n 1000 [--model PATH | --random-model]

Goals (issue 17): compress <= 1.5 s and <= 400 MB, decompress <= 1.0 s, batch >= 20 files/s on 2 cores.
Prints one JSON object; run it on a quiet machine (`uptime` goes into the result)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def run_one(argv: list[str], served: bool = False) -> tuple[float, float]:
    """(wall s, peak RSS MB) of one fresh ``python -m squeeze3d ...`` process; ``served=False``: in
    its own process even if a server runs.

    The peak RSS comes from GNU time (``%M``): a child started straight from this process (fork or
    posix_spawn) has this process's pages in its peak until it execs, so its own ``wait4`` figure
    would read as at least this bench's ~220 MB."""
    env = {k: v for k, v in os.environ.items() if k != "SQUEEZE3D_NO_SERVER"}
    if not served:
        env["SQUEEZE3D_NO_SERVER"] = "1"
    gnu_time = shutil.which("time", path="/usr/bin:/bin")
    with tempfile.TemporaryDirectory() as d:
        rss_file = Path(d) / "rss"
        cmd = [sys.executable, "-m", "squeeze3d", *argv]
        if gnu_time:
            cmd = [gnu_time, "-f", "%M", "-o", str(rss_file), *cmd]
        t0 = time.perf_counter()
        p = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if p.returncode:
            raise SystemExit(f"squeeze3d {' '.join(argv)} failed:\n{(p.stdout + p.stderr)[-2000:]}")
        rss = float(rss_file.read_text().split()[-1]) / 1024 if gnu_time else float("nan")
    return wall, rss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pair", default="pointnet_lion")
    ap.add_argument("--model", default=None, help="as --model of the CLI (default: the registry champion)")
    ap.add_argument("--random-model", action="store_true", help="a random-weight checkpoint in the real format")
    ap.add_argument("--n", type=int, default=1000, help="clouds in the batch directory")
    ap.add_argument("--repeat", type=int, default=3, help="single-file runs (the median is reported)")
    ap.add_argument("--min-quality", default="30", help="as the CLI's --min-quality ('off': no gate)")
    ap.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    a = ap.parse_args()
    from squeeze3d.io import write_points
    from squeeze3d.pairs import get_pair

    work = Path(a.work or tempfile.mkdtemp(prefix="bench_cli_"))
    model = a.model
    if a.random_model:
        import torch

        from squeeze3d.config import train_config_for_pair
        from squeeze3d.mapping import build_mapping
        from squeeze3d.mapping.checkpoint import save_checkpoint

        cfg, pair = train_config_for_pair(a.pair), get_pair(a.pair)
        torch.manual_seed(0)
        model = str(save_checkpoint(work / "model", *build_mapping(cfg.mapping, pair.z_e_shape, pair.z_g_shape), cfg))
    n_pts = int(getattr(get_pair(a.pair), "num_points", 2048) or 2048)
    rng = np.random.default_rng(0)
    inp = work / "in"
    inp.mkdir(parents=True, exist_ok=True)
    for i in range(a.n):  # ellipsoid-ish clouds of the pair's size
        x = rng.normal(size=(n_pts, 3)) * rng.uniform(0.5, 2.0, size=3)
        write_points(inp / f"cloud_{i:05d}.ply", (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32))
    common = ["--pair", a.pair, "--min-quality", a.min_quality, "--force"] + (["--model", model] if model else [])
    one, sq3d = inp / "cloud_00000.ply", work / "one.sq3d"
    comp = [run_one(["compress", str(one), "-o", str(sq3d), *common]) for _ in range(a.repeat)]
    dec_model = ["--model", model] if model else []
    # decompress a neural file (the gate's choice for this cloud may be the classical fallback)
    neural = work / "neural.sq3d"
    run_one(["compress", str(one), "-o", str(neural), *[x if x != a.min_quality else "off" for x in common]])
    dec = [run_one(["decompress", str(neural), "-o", str(work / "one.ply"), "--force", *dec_model])
           for _ in range(a.repeat)]
    batch_s, batch_rss = run_one(["compress", str(inp), "-o", str(work / "out"), *common])
    from squeeze3d.codec.server import socket_path

    server = subprocess.Popen([sys.executable, "-m", "squeeze3d", "serve", "--pair", a.pair, "--idle-timeout", "120"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(1200):
            if socket_path().exists():
                break
            time.sleep(0.05)
        s_comp = [run_one(["compress", str(one), "-o", str(sq3d), *common], served=True) for _ in range(a.repeat)]
        s_dec = [run_one(["decompress", str(neural), "-o", str(work / "one.ply"), "--force", *dec_model], served=True)
                 for _ in range(a.repeat)]
    finally:
        server.terminate()
        server.wait(timeout=60)
    med = lambda xs: float(np.median(xs))  # noqa: E731
    print(json.dumps({
        "pair": a.pair, "points": n_pts, "model": model or "champion", "min_quality": a.min_quality,
        "compress_s": med([w for w, _ in comp]), "compress_rss_mb": med([r for _, r in comp]),
        "decompress_s": med([w for w, _ in dec]), "decompress_rss_mb": med([r for _, r in dec]),
        "served_compress_s": med([w for w, _ in s_comp]), "served_compress_rss_mb": med([r for _, r in s_comp]),
        "served_decompress_s": med([w for w, _ in s_dec]),
        "batch_files": a.n, "batch_s": round(batch_s, 2), "batch_rss_mb": round(batch_rss, 1),
        "batch_files_per_s": round(a.n / batch_s, 2), "uptime": os.popen("uptime").read().strip(),
        "cpus": os.cpu_count()}, indent=2))


if __name__ == "__main__":
    main()
