"""Train a pair's mini zoo (encoder + generator) from scratch with a fixed seed and write its weights.

    python jobs/train_zoo.py --pair pointnet_lion                 # all stages, shipped weights folder
    python jobs/train_zoo.py --pair pointnet_lion --stages vae priors --out /tmp/zoo
    python jobs/train_zoo.py --pair nerfmae --threads 2           # one stage: the NeRF-MAE autoencoder
    python jobs/train_zoo.py --pair meshanything_shape --stages meshanything   # the mesh encoder E
    python jobs/train_zoo.py --pair meshanything_shape --stages shap_e         # the mesh generator G
    python jobs/train_zoo.py --pair meshanything_shape --stages shap_e_prior   # G's text mean + prior alone (~150 s)
"""

from __future__ import annotations

import argparse

from squeeze3d.zoo_training.recipes import RECIPES, ZOO_PAIRS, ZooConfig, train_zoo


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pair", default="pointnet_lion", choices=ZOO_PAIRS, help="pair whose mini zoo to train")
    ap.add_argument("--stages", nargs="+", default=None, choices=list(dict.fromkeys(
                        s for r in RECIPES.values() for s in r.stages)),
                    help="stages to run, in order (default: all of the pair's; nerfmae has one)")
    ap.add_argument("--out", default=None, help="weights folder (default: the package's shipped weights)")
    ap.add_argument("--seed", type=int, default=0, help="training seed")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--count", type=int, default=None, help="corpus objects to use (default 3600; nerfmae 2400)")
    ap.add_argument("--smoke", action="store_true", help="tiny step counts: checks the recipe runs end to end")
    args = ap.parse_args(argv)
    cfg = ZooConfig(seed=args.seed, threads=args.threads)
    if args.count is not None:
        cfg.data.count = args.count
        cfg.nerfmae["count"] = args.count
        cfg.meshanything["count"] = args.count
        cfg.shap_e["count"] = args.count
    if args.smoke:
        cfg.data.count = min(cfg.data.count, 120)
        cfg.nerfmae.update(count=min(cfg.nerfmae.get("count", 240), 240), steps=2, eval_objects=4, curve_objects=4)
        cfg.classifier.steps = 2
        cfg.vae = {"steps": 2}
        cfg.priors = {"global_steps": 2, "point_steps": 2}
        cfg.meshanything.update(count=min(cfg.meshanything.get("count", 120), 120), steps=2, eval_objects=4)
        cfg.shap_e.update(count=min(cfg.shap_e.get("count", 120), 120), steps=2, heldout_steps=2, heldout_val=4,
                          prior_steps=2)
    train_zoo(args.pair, args.out, args.stages, cfg)


if __name__ == "__main__":
    main()
