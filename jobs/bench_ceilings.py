"""Where is quality lost: the encoder, the code, or the generator? (codec issue, item 1)

On the first N held-out corpus *test* objects (D1-PSNR, MPEG p2point, peak = bounding-box diagonal):
  (a) G's own ceiling: G.decode(VAE posterior of the input);
  (b) the best cloud reachable from z_E with no bottleneck: F_E/F_D with d_C = 1024 in f32, trained
      on real train-split objects (z_E → posterior z_G) with the output loss through G's decoder;
  (c) the same with d_C = 32/64/128/256 and 8-bit quantisation-aware codes;
  and the paper's latent MSE at d_C 128 as the baseline; (b) again for the SA2 z_E variant.
All runs use the platform's ``fit`` loop, ``train.objective`` and the same step budget.

    python jobs/bench_ceilings.py --count 6000 --steps 600 --out .state/bench/ceilings.json
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from squeeze3d.config import train_config_for_pair
from squeeze3d.metrics.pointcloud import d1_psnr
from squeeze3d.synth.corpus_pairs import corpus_pairs
from squeeze3d.train.loop import TensorPairs, fit, quantised

RUNS = {  # name -> (z_E level, --set overrides)
    "b: no bottleneck (d_C 1024, f32)": ("global", ["mapping.d_code=1024"]),
    "c: d_C 32, 8-bit": ("global", ["mapping.d_code=32", "mapping.code_bound=tanh", "loss.code_noise_bits=8"]),
    "c: d_C 64, 8-bit": ("global", ["mapping.d_code=64", "mapping.code_bound=tanh", "loss.code_noise_bits=8"]),
    "c: d_C 128, 8-bit": ("global", ["mapping.d_code=128", "mapping.code_bound=tanh", "loss.code_noise_bits=8"]),
    "c: d_C 256, 8-bit": ("global", ["mapping.d_code=256", "mapping.code_bound=tanh", "loss.code_noise_bits=8"]),
    "baseline: latent MSE, d_C 128, 8-bit": ("global", ["mapping.d_code=128", "mapping.code_bound=tanh",
                                                        "loss.code_noise_bits=8", "loss.lambda_gen=1",
                                                        "loss.lambda_output=0"]),
    "b: SA2 z_E, no bottleneck": ("sa2", ["mapping.d_code=1024"]),
}
COMMON = ["mapping.arch=deep_residual_mlp", "mapping.hidden=512", "mapping.depth=4", "mapping.dropout=0",
          "loss.lambda_gen=0", "loss.lambda_output=1", "loss.output_points=1024", "loss.lambda_gram=1e-3",
          "loss.gram_variant=official", "optim.optimizer=adamw", "optim.lr_start=1e-3", "optim.lr_end=1e-5",
          "optim.weight_decay=1e-4", "optim.batch_size=16"]


@torch.no_grad()
def test_psnr(res, cfg, gen, z_e, pts) -> float:
    out = []
    for s in range(0, len(z_e), 32):
        code = quantised(res.f_e(z_e[s:s + 32]), cfg)
        out.append(d1_psnr(pts[s:s + 32], gen.decode(res.f_d(code))))
    return float(torch.cat(out).mean())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=6000, help="corpus objects (80%% train, 10%% test)")
    ap.add_argument("--test", type=int, default=96)
    ap.add_argument("--steps", type=int, default=600, help="optimiser steps per run (batch 16)")
    ap.add_argument("--runs", nargs="*", default=None, help="subset of run names (substring match)")
    ap.add_argument("--out", default=".state/bench/ceilings.json")
    a = ap.parse_args()
    torch.set_num_threads(2)
    from squeeze3d.pairs import get_pair

    gen = get_pair("pointnet_lion").build_generator("cpu")
    results = {}
    data = {}
    for name, (level, sets) in RUNS.items():
        if a.runs and not any(r in name for r in a.runs):
            continue
        if level not in data:
            data[level] = corpus_pairs(a.count, level)
        d = data[level]
        tr, te = np.where(d["splits"] == 0)[0], np.where(d["splits"] == 2)[0][:a.test]
        z_e = torch.from_numpy(d["z_e"].astype(np.float32))
        z_g, pts = torch.from_numpy(d["z_g"]), torch.from_numpy(d["points"])
        if "a: G ceiling (posterior decode)" not in results:
            results["a: G ceiling (posterior decode)"] = float(d1_psnr(pts[te], gen.decode(z_g[te])).mean())
            print(f"{'a: G ceiling (posterior decode)':40} {results['a: G ceiling (posterior decode)']:.2f} dB")
        epochs = max(1, round(a.steps * 16 / len(tr)))
        cfg = train_config_for_pair("pointnet_lion", sets=COMMON + sets + [f"optim.epochs={epochs}"])
        t0 = time.perf_counter()
        res = fit(cfg, tuple(z_e.shape[1:]), tuple(z_g.shape[1:]), TensorPairs(z_e[tr], z_g[tr], 16))
        results[name] = test_psnr(res, cfg, gen, z_e[te], pts[te])
        print(f"{name:40} {results[name]:.2f} dB  ({epochs} epochs, {time.perf_counter() - t0:.0f}s)", flush=True)
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps({"test_objects": int(len(te)), "steps": a.steps, "results": results},
                                          indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
