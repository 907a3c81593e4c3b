"""Measure the mesh pair's mini zoo (``squeeze3d.zoo_training.bench_mesh``): G's held-out reconstruction,
prompt adherence, diversity per prompt, time per mesh. Writes a JSON summary.

    python jobs/bench_mesh_zoo.py --objects 48 --out .state/bench/mesh_zoo.json
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch

from squeeze3d.corpora import points as corpus
from squeeze3d.zoo.meshanything.model import MeshAnythingEncoder
from squeeze3d.zoo.shap_e import model as shap_e
from squeeze3d.zoo_training import bench_mesh


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generator", default=str(shap_e.WEIGHTS_DIR), help="mini Shap-E folder")
    ap.add_argument("--latents", required=True, help="fitted latents .npz written by the G recipe (train_summary.json: latents_cache)")
    ap.add_argument("--objects", type=int, default=48, help="held-out test objects for the reconstruction (0: skip it)")
    ap.add_argument("--per-category", type=int, default=2, help="prompts per category (adherence)")
    ap.add_argument("--seeds", type=int, default=3, help="samples per prompt (diversity)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=".state/bench/mesh_zoo.json")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    gen = shap_e.ShapEGenerator("cpu", path=a.generator)
    with np.load(a.latents) as z:
        held, held_idx, train, train_idx = z["heldout"], z["heldout_idx"], z["train"], z["train_idx"]
    test = np.array([corpus.split_of(int(i)) == "test" for i in held_idx])
    out = {"load_average": os.getloadavg()}
    if a.objects > 0:
        out["reconstruction_test"] = bench_mesh.reconstruction(gen, held[test][:a.objects], held_idx[test][:a.objects])
        out["reconstruction_train"] = bench_mesh.reconstruction(gen, train[:12], train_idx[:12])
        print(json.dumps(out, indent=2), flush=True)
    enc = MeshAnythingEncoder("cpu")
    probe, acc = bench_mesh.train_category_probe(enc, corpus.split_indices("train", 1440)[:480],
                                                 corpus.split_indices("test", 1440)[:96])
    out["probe_test_accuracy"] = acc
    out |= bench_mesh.adherence_and_diversity(gen, enc, probe, a.per_category, a.seeds)
    out["load_average_end"] = os.getloadavg()
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
