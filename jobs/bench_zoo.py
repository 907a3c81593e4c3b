"""Report numbers of a pair's mini zoo on held-out corpus objects; prints a table (and JSON).

    python jobs/bench_zoo.py --pair pointnet_lion --grid samples.png
"""

from __future__ import annotations

import argparse
import json

import torch

from squeeze3d.zoo_training.recipes import benchmark_zoo

ROWS = [
    ("classifier held-out accuracy", "classifier_test_accuracy", "{:.3f}"),
    ("VAE recon Chamfer (test)", "vae_recon_chamfer", "{:.3e}"),
    ("resampling floor Chamfer", "floor_chamfer", "{:.3e}"),
    ("VAE recon D1-PSNR dB (test)", "vae_recon_d1_psnr", "{:.2f}"),
    ("resampling floor D1-PSNR dB", "floor_d1_psnr", "{:.2f}"),
    ("encode ms / object (CPU)", "encode_ms", "{:.1f}"),
    ("decode ms / object (CPU)", "decode_ms", "{:.1f}"),
    ("sample s / object (CPU)", "sample_s_per_object", "{:.2f}"),
]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pair", default="pointnet_lion", choices=["pointnet_lion"])
    ap.add_argument("--weights", default=None, help="weights folder (default: shipped)")
    ap.add_argument("--n-test", type=int, default=360, help="held-out objects for accuracy and reconstruction")
    ap.add_argument("--n-gen", type=int, default=96, help="samples (and reference objects) for MMD/COV/1-NNA")
    ap.add_argument("--ddim-steps", type=int, default=32)
    ap.add_argument("--grid", default=None, help="write a PNG grid of samples here")
    ap.add_argument("--json", default=None, help="also write the numbers as JSON here")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    r = benchmark_zoo(args.weights, args.n_test, args.n_gen, args.ddim_steps, args.grid)
    print(f"\n{'metric':<34} value")
    for label, key, fmt in ROWS:
        print(f"{label:<34} {fmt.format(r[key])}")
    for name in ("generation", "real_val_vs_test"):
        g = r[name]
        print(f"{name + ' MMD/COV/1-NNA-CD':<34} {g['mmd_cd']:.3e} / {g['cov_cd']:.3f} / {g['1nna_cd']:.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=2)


if __name__ == "__main__":
    main()
