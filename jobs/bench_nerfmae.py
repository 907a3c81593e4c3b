"""Radiance fields worth compressing (issue 16): the zoo's ceiling, the ceiling at the code size,
the shipped champion and the codec against the grid baselines, on held-out corpus test grids.

  (a) G's own reconstruction: G.decode(E(x)) of each held-out grid (the zoo's ceiling);
  (b) the best reachable from z_E at the code size: the champion recipe's mapping fitted on *real*
      train-split objects (z_E = z_G = E(x)) instead of G's synthetic pairs, same objective;
  (c) the shipped champion (or --model), f32 and k-bit codes;
  and `squeeze3d eval --pair nerfmae` (rate-distortion table vs raw f16 + zstd, qz-k, prune + VQ).

    python jobs/bench_nerfmae.py --test 32 --ceiling-epochs 8 --json .state/bench/nerfmae.json
"""

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from squeeze3d.config import train_config_for_pair
from squeeze3d.corpora import radiance as radiance_corpus
from squeeze3d.metrics.volume import radiance_metrics
from squeeze3d.pairs import get_pair
from squeeze3d.train.loop import TensorPairs, fit
from squeeze3d.zoo.nerfmae import model as nerfmae

RECIPE = Path(__file__).parent / "recipes" / "nerfmae_champion.yaml"


@torch.no_grad()
def mapped(f_e, f_d, gen, z_e, bits):
    from squeeze3d.mapping.setloss import round_to_bits

    out = []
    for s in range(0, len(z_e), 16):
        code = f_e(z_e[s:s + 16])
        out.append(gen.decode(f_d(round_to_bits(code, bits) if bits else code)))
    return torch.cat(out)


def score(ref, rec) -> dict:
    m = radiance_metrics(ref, rec)
    return {k: round(float(v.mean()), 3) for k, v in m.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--test", type=int, default=32, help="held-out test grids (>= 32 for the RD table)")
    ap.add_argument("--ceiling-epochs", type=int, default=8, help="(b): epochs over the real train objects; 0 skips")
    ap.add_argument("--ceiling-count", type=int, default=2400, help="(b): corpus objects (80%% train)")
    ap.add_argument("--codes", nargs="*", default=["24:2:8"],
                    help="(b) code sizes CHANNELS:LEVELS:BITS (code grid 8³ / 2^LEVELS, QAT and payload at BITS)")
    ap.add_argument("--model", default=None, help="(c) and the eval: a checkpoint dir (default: champion / shipped)")
    ap.add_argument("--no-eval", action="store_true", help="skip the codec evaluation")
    ap.add_argument("--ceilings-only", action="store_true", help="(a) and (b) only (no champion needed)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=".state/bench/nerfmae.json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    pair = get_pair("nerfmae")
    enc, gen = pair.build_encoder("cpu"), pair.build_generator("cpu")
    x = pair.heldout_assets(a.test)
    z = enc.encode(x)
    info = json.loads((nerfmae.WEIGHTS_DIR / "nerfmae.json").read_text())
    out = {"test_objects": len(x), "load_avg_1m_start": os.getloadavg()[0],
           "zoo": {"test": info.get("test"), "best_step": info.get("best_step"), "curve": info.get("curve")},
           "a_G_ceiling": score(x, gen.decode(z))}
    print(f"(a) G's own reconstruction: {out['a_G_ceiling']}", flush=True)
    recipe = yaml.safe_load(RECIPE.read_text())["train"]
    path = Path(".state/recipes/nerfmae_bench_train.yaml")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(recipe))
    if a.ceiling_epochs > 0:
        data = radiance_corpus.build_grid_cache(a.ceiling_count, radiance_corpus.GridConfig(), radiance_corpus.DEFAULT_SEED)
        tr = np.flatnonzero(data["splits"] == 0)
        z_tr = torch.cat([enc.encode(torch.from_numpy(data["grids"][tr[s:s + 32]].astype(np.float32)))
                          for s in range(0, len(tr), 32)])
        out["b_code_ceiling"] = {}
        for spec in a.codes:
            ch, levels, bits = (int(v) for v in spec.split(":"))
            unet = [32, 64, 96][:levels]
            cfg = train_config_for_pair("nerfmae", path, sets=[f"optim.epochs={a.ceiling_epochs}",
                                                                f"mapping.code_channels={ch}",
                                                                f"mapping.unet_channels=[{','.join(map(str, unet))}]",
                                                                f"loss.code_noise_bits={bits}"])
            t0 = time.perf_counter()
            res = fit(cfg, tuple(z_tr.shape[1:]), tuple(z_tr.shape[1:]), TensorPairs(z_tr, z_tr, cfg.optim.batch_size))
            n = ch * (8 // 2 ** levels) ** 3
            row = {"code_values": n, "bits": bits, "payload_bytes": -(-n * bits // 8), "objects": len(tr),
                   "epochs": a.ceiling_epochs, "wall_s": round(time.perf_counter() - t0),
                   "f32": score(x, mapped(res.f_e, res.f_d, gen, z, 0)),
                   f"{bits}bit": score(x, mapped(res.f_e, res.f_d, gen, z, bits))}
            out["b_code_ceiling"][spec] = row
            print(f"(b) real-object mapping, code {spec}: {row}", flush=True)
    if not a.ceilings_only:
        from squeeze3d.codec.models import resolve_default
        from squeeze3d.mapping.checkpoint import load_checkpoint

        ck = load_checkpoint(a.model or resolve_default(pair).path)
        out["c_champion"] = {f"{b}bit" if b else "f32": score(x, mapped(ck.f_e, ck.f_d, gen, z, b))
                             for b in (0, 8, 6, 4, 2)}
        print(f"(c) champion: {out['c_champion']}", flush=True)
    if not (a.no_eval or a.ceilings_only):
        from squeeze3d.codec.evaluate import evaluate

        rep = evaluate(pair="nerfmae", model=a.model, limit=a.test, out_dir=".state/bench/nerfmae_eval",
                       min_quality=30.0, target_bytes=300)
        print(rep.markdown)
        out["eval"] = {"rows": rep.rows, "rd_png": str(rep.rd_png), "report": str(rep.markdown_path)}
    out["load_avg_1m_end"] = os.getloadavg()[0]
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(out, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
