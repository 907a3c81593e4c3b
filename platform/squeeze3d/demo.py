"""The core method end to end, in one process: synthesise pairs, fit, compress, decompress.

This is what ``make demo`` runs on the embedded default; the distributed path (Ray Data builder,
Ray Train, MLflow, codec) runs the same library pieces at scale.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from squeeze3d.config import train_config_for_pair
from squeeze3d.mapping.checkpoint import save_checkpoint
from squeeze3d.mapping.common import numel
from squeeze3d.metrics.pointcloud import chamfer, d1_psnr
from squeeze3d.pairs import get_pair
from squeeze3d.synth.in_process import synthesise
from squeeze3d.train.loop import TensorPairs, fit


@dataclass
class DemoReport:
    pair: str
    n_train: int
    n_test: int
    fit_s: float
    final: dict
    code_numbers: int
    code_bytes_f16: int
    raw_bytes: int
    chamfer: float
    d1_psnr: float
    checkpoint: Path


def run_core_demo(pair_name: str = "debug", n_train: int = 1000, n_val: int = 100, n_test: int = 32,
                  epochs: int | None = None, out_dir: str | Path = ".state/demo", device: str = "cpu",
                  log=print) -> DemoReport:
    pair = get_pair(pair_name)
    log(f"[1/4] synthesising {n_train + n_val + n_test} ({pair.name}) pairs: G samples noise seeds, E encodes")
    t0 = time.perf_counter()
    seeds = list(range(n_train + n_val + n_test))
    z_e, z_g, assets = synthesise(pair_name, seeds, device=device)
    log(f"      z_E {tuple(z_e.shape)}  z_G {tuple(z_g.shape)}  assets {tuple(assets.shape)}  "
        f"({time.perf_counter() - t0:.1f}s)")

    sets = [f"optim.epochs={epochs}"] if epochs else []
    cfg = train_config_for_pair(pair_name, sets=sets + [f"device={device}"])
    a, b = n_train, n_train + n_val
    train = TensorPairs(z_e[:a], z_g[:a], cfg.optim.batch_size, seed=cfg.seed)
    val = TensorPairs(z_e[a:b], z_g[a:b], 256, shuffle=False, drop_last=False)
    log(f"[2/4] fitting F_E/F_D ({cfg.mapping.arch}, d_C={cfg.mapping.d_code}, λ_gram={cfg.loss.lambda_gram}, "
        f"{cfg.optim.optimizer}, {cfg.optim.epochs} epochs)")
    t0 = time.perf_counter()
    result = fit(cfg, pair.z_e_shape, pair.z_g_shape, train, val)
    fit_s = time.perf_counter() - t0
    f = result.final
    log(f"      val latent MSE {result.history[0]['val_mse']:.4f} → {f['val_mse']:.4f}   d_eff {f['d_eff']:.2f}  "
        f"κ {f['kappa']:.3g}   ({fit_s:.1f}s)")
    ck = save_checkpoint(Path(out_dir) / "mapping", result.f_e, result.f_d, cfg, meta={"source": "demo"})

    log(f"[3/4] compressing {n_test} held-out assets: E → F_E → code (float16)")
    enc, gen = pair.build_encoder(device), pair.build_generator(device)
    x = assets[b:]
    with torch.no_grad():
        code = result.f_e(enc.encode(x)).half()
        log("[4/4] decompressing: code → F_D → G.decode")
        recon = gen.decode(result.f_d(code.float())).cpu()
    code_numbers = numel(tuple(code.shape[1:]))
    report = DemoReport(
        pair=pair.name, n_train=n_train, n_test=n_test, fit_s=fit_s, final=f, code_numbers=code_numbers,
        code_bytes_f16=2 * code_numbers, raw_bytes=4 * numel(tuple(x.shape[1:])),
        chamfer=float(chamfer(x, recon).mean()), d1_psnr=float(d1_psnr(x, recon).mean()), checkpoint=ck)
    log(f"      code {report.code_bytes_f16} bytes vs {report.raw_bytes} bytes raw float32 xyz "
        f"({report.raw_bytes / report.code_bytes_f16:.0f}×);  Chamfer {report.chamfer:.5f}  "
        f"D1-PSNR {report.d1_psnr:.2f} dB")
    log(f"      mapping checkpoint: {ck}")
    return report


def _recipe_train_yaml(pair_name: str, out: Path, recipes_dir: str | Path | None = None) -> Path | None:
    """The ``train`` section of ``<recipes_dir>/<pair>_champion.yaml`` as a YAML layer, if there is one
    (the recipe that produced the shipped model). ``recipes_dir``: default ``jobs/recipes`` of the
    working directory (``make demo`` runs in the checkout; ``jobs/demo.py`` passes its own)."""
    import yaml

    recipe = Path(recipes_dir if recipes_dir is not None else "jobs/recipes") / f"{pair_name}_champion.yaml"
    if not recipe.is_file():
        return None
    train = (yaml.safe_load(recipe.read_text()) or {}).get("train") or {}
    path = out / f"{pair_name}_recipe_train.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(train))
    return path


def demo_train_config(pair_name: str, epochs: int = 20, d_code: int | None = 128,
                      out_dir: str | Path = ".state/demo", recipes_dir: str | Path | None = None):
    """The demo's training config, from one place: the pair's defaults, then its champion recipe (if the
    pair has one: e.g. the output loss through G rather than the paper's latent MSE), then the demo's
    shortening (epochs, AdamW on CPU, optionally a smaller code). Raises ``ConfigError`` at once on a
    bad combination."""
    recipe = _recipe_train_yaml(pair_name, Path(out_dir), recipes_dir)
    base = train_config_for_pair(pair_name, recipe)
    extra: dict = {}
    if d_code is not None:
        extra["mapping"] = {"d_code": d_code}
        if base.mapping.code_prefixes:
            # the recipe's nested rungs that fit the smaller code, ending at the whole code (the
            # config requires the last prefix to be d_code)
            extra["mapping"]["code_prefixes"] = sorted({p for p in base.mapping.code_prefixes if p < d_code}
                                                       | {d_code})
    # Muon's Newton–Schulz costs ~0.6 TFLOP per step at pointnet_lion sizes (the 1024×8320 output
    # layer dominates): 5.5 s/step on this CPU even in float32, vs 0.24 s for AdamW. The CPU demo uses
    # AdamW; GPU runs keep the paper's Muon.
    sets = [f"optim.epochs={epochs}", "optim.optimizer=adamw"]
    return train_config_for_pair(pair_name, recipe, sets=sets, extra=extra)


@dataclass
class PlatformDemoReport:
    dataset: str
    model_version: str | None
    train_metrics: dict
    eval_markdown: str
    eval_paths: dict
    seconds: dict


def run_platform_demo(pair_name: str = "pointnet_lion", num_samples: int = 600, epochs: int = 20,
                      d_code: int | None = 128, eval_limit: int = 24, out_dir: str | Path = ".state/demo",
                      log=print, console=None, recipes_dir: str | Path | None = None) -> PlatformDemoReport:
    """The main job on one machine: Ray Data builds the pairs, Ray Train fits and MLflow registers the
    mapping, the champion is looked up, and the codec compresses held-out shapes next to Draco.

    ``console`` (``squeeze3d.console.StageConsole``): one line per stage, the libraries' output in its
    log file; default: every line, details included, to ``log``."""
    from squeeze3d import registry
    from squeeze3d.codec.evaluate import evaluate
    from squeeze3d.console import PlainConsole
    from squeeze3d.synth.build import build_dataset
    from squeeze3d.train.data import open_training_data
    from squeeze3d.train.ray_train import connect_ray
    from squeeze3d.train.run import run_training

    con = console or PlainConsole(log, total_stages=4)
    out = Path(out_dir)
    secs: dict[str, float] = {}
    # resolved and validated before anything is built: a bad combination fails in seconds, not after
    # minutes of building pairs
    cfg = demo_train_config(pair_name, epochs=epochs, d_code=d_code, out_dir=out, recipes_dir=recipes_dir)
    if get_pair(pair_name).shipped_model and registry.champion(pair_name) is None:
        from squeeze3d.train.champion import register_shipped

        lines: list[str] = []
        with con.quiet():
            register_shipped(pair_name, log=lines.append)
        for m in lines:
            con.print(f"      {m}")
    t = time.perf_counter()
    data_uri = str(out / "data" / pair_name)
    with con.stage(f"Ray Data: building {num_samples} {pair_name} latent pairs", total=num_samples) as st:
        connect_ray()
        rows = [0]

        def on_shard(entry) -> None:
            rows[0] += entry.rows
            st.update(rows[0], num_samples)

        summary = build_dataset(pair_name, num_samples=num_samples, output=data_uri, log=con.log, on_shard=on_shard)
        st.note(f"{summary.output}")
    secs["build"] = time.perf_counter() - t

    t = time.perf_counter()
    with con.stage(f"Ray Train: fitting F_E/F_D ({cfg.mapping.arch}, d_C={cfg.mapping.d_code}, {epochs} epochs) "
                   "→ MLflow") as st:
        datasets, info = open_training_data(summary.output, pair_name)
        res = run_training(cfg, datasets, info, workers=1, log=con.log)
        obj = get_pair(pair_name).objective
        val = res.metrics.get(f"val_{obj}")
        st.note(f"val {obj} {val:.2f}, registered models:/{registry.model_name(pair_name)}/{res.model_version}"
                if val is not None else f"registered version {res.model_version}")
    secs["train"] = time.perf_counter() - t

    with con.stage("MLflow registry: champion lookup") as st:
        champ = registry.champion(pair_name)
        value = champ.tags.get("objective_value")
        try:
            value = f"{float(value):.2f}"
        except (TypeError, ValueError):
            pass
        st.note(f"champion: models:/{champ.name}/{champ.version} ({champ.tags.get('objective')} = {value})")
    t = time.perf_counter()
    with con.stage(f"codec: compressing {eval_limit} held-out shapes with the champion, next to Draco") as st:
        rep = evaluate(pair=pair_name, model=None, limit=eval_limit, out_dir=str(out / "eval"), log=con.log)
        st.note(f"report in {out / 'eval'}")
    secs["eval"] = time.perf_counter() - t
    con.print()
    con.print(rep.markdown)
    paths = {"table": str(rep.markdown_path), "csv": str(rep.csv_path), "rate_distortion": str(rep.rd_png),
             "previews": str(Path(rep.previews[0]).parent) if rep.previews else ""}
    for k, v in paths.items():
        con.print(f"{k:>16}: {v}")
    con.print("         seconds: " + "  ".join(f"{k} {v:.0f}" for k, v in secs.items()))
    if con.log_path is not None:
        con.print(f"  libraries' logs: {con.log_path}")
    from squeeze3d.assets import handler_for

    example = "my_asset" + handler_for(get_pair(pair_name).asset_kind).input_exts[0]
    con.print()
    nxt = [(f".venv/bin/squeeze3d compress {example} -o my.sq3d --pair {pair_name}", "your own file"),
           ("make mlflow-ui", "the runs and the registry in the MLflow UI"),
           (f"make sweep PAIR={pair_name}", "Ray Tune over d_C, λ_gram and the loss")]
    width = max(len(c) for c, _ in nxt)
    con.print("Next:")
    for cmd, why in nxt:
        con.print(f"  {cmd:<{width}}   # {why}")
    return PlatformDemoReport(summary.output, res.model_version, res.metrics, rep.markdown, paths, secs)
