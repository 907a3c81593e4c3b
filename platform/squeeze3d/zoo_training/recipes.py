"""Train a pair's mini zoo from scratch with a fixed seed: one recipe per pair in ``RECIPES``.

``pointnet_lion`` (``train_pointnet_lion_zoo``), on the procedural mesh corpus, in stages (each
writes its safetensors + JSON into the weights folder):
1. ``classifier``: PointNet++ SSG trained to classify corpus categories (E is its 1024-d feature).
2. ``vae``: the LION-style VAE (global latent + latent points) on the same shapes.
3. ``priors``: the two latent diffusion priors, trained on the VAE's posterior latents.

Step counts are sized for the CPU budget (about an hour for the whole zoo on 2 shared cores, where
PointNet++ training costs about a second per object): the classifier sees 480 objects (a sixth of
an epoch of the training split), the VAE 2400 objects, the priors the VAE latents of the training
split (see ``lion_train.VAETrainConfig`` / ``lion_train.PriorTrainConfig``).
``nerfmae`` (``train_nerfmae_zoo``): one stage, ``nerfmae.train_nerfmae``.
``meshanything_shape`` (``train_meshanything_shape_zoo``): stage ``meshanything``, the mesh encoder E
(mini MeshAnything, ``meshanything_train.train_meshanything``), and stage ``shap_e``, the generator G
(mini Shap-E, ``shap_e_train.train_shap_e``; ``shap_e_prior``: its text mean and prior alone).
Results are deterministic for a given seed, device and torch build.
"""

from __future__ import annotations

import json
import math
import platform as _stdlib_platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from squeeze3d.corpora import points as corpus
from squeeze3d.zoo.pointnet2.model import WEIGHTS_DIR, PointNet2Cls, save_weights, select_input_points

STAGES = ("classifier", "vae", "priors")
"""The ``pointnet_lion`` recipe's stages, in order."""


@dataclass
class DataConfig:
    count: int = 3600
    """Corpus objects ``0..count-1`` (80/10/10 train/val/test by index, balanced per category)."""
    num_points: int = 2048
    """Points per object (the pair's asset size)."""
    streams: int = 2
    """Independent surface samplings per object (extra streams: augmentation and the resampling floor)."""
    seed: int = corpus.DEFAULT_SEED


@dataclass
class ClassifierConfig:
    steps: int = 60
    batch_size: int = 8
    lr: float = 2e-3
    lr_end: float = 1e-5
    weight_decay: float = 1e-4
    scale_aug: tuple[float, float] = (0.8, 1.2)
    """Per-axis random scaling before re-normalising to the unit sphere."""
    jitter: float = 0.005
    bn_batches: int = 24
    """Batches used to re-estimate BatchNorm statistics after training (``recalibrate_bn``)."""


@dataclass
class ZooConfig:
    seed: int = 0
    threads: int = 1
    """torch threads (1: the shared cores are contended; separate processes per stage scale better)."""
    data: DataConfig = field(default_factory=DataConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    vae: dict = field(default_factory=dict)
    """Overrides of ``lion_train.VAETrainConfig``."""
    priors: dict = field(default_factory=dict)
    """Overrides of ``lion_train.PriorTrainConfig``."""
    lion: dict = field(default_factory=dict)
    """Overrides of ``lion.LionConfig`` (architecture)."""
    nerfmae: dict = field(default_factory=dict)
    """``nerfmae`` pair: overrides of ``nerfmae.NerfMAETrainConfig`` (its ``model`` key: ``NerfMAEConfig``)."""
    meshanything: dict = field(default_factory=dict)
    """``meshanything_shape``'s E stage: overrides of ``meshanything_train.MeshAnythingTrainConfig``."""
    shap_e: dict = field(default_factory=dict)
    """``meshanything_shape``'s G stage: overrides of ``shap_e_train.ShapETrainConfig``."""


def load_data(cfg: DataConfig, log: Callable[[str], None] = print) -> dict[str, np.ndarray]:
    t0 = time.time()

    def progress(i, n):
        if i % 500 == 0 or i == n:
            log(f"  corpus {i}/{n} ({time.time() - t0:.0f}s)")

    return corpus.build_point_cache(cfg.count, cfg.num_points, cfg.seed, streams=cfg.streams, progress=progress)


def _provenance(seed: int, wall_s: float, extra: dict) -> dict:
    return {"seed": seed, "wall_s": round(wall_s, 1), "torch": torch.__version__,
            "python": _stdlib_platform.python_version(), "threads": torch.get_num_threads(),
            "trained_on": "procedural corpus (squeeze3d.corpora.points)", **extra}


def _augment(points: torch.Tensor, gen: torch.Generator, scale: tuple[float, float], jitter: float) -> torch.Tensor:
    from squeeze3d.metrics.pointcloud import normalise_unit_sphere

    b = points.shape[0]
    s = torch.empty(b, 1, 3).uniform_(scale[0], scale[1], generator=gen)
    p = points * s + jitter * torch.randn(points.shape, generator=gen)
    return normalise_unit_sphere(p)[0]


@torch.no_grad()
def recalibrate_bn(model: PointNet2Cls, data: dict, train_idx: np.ndarray, batches: int, batch_size: int,
                   seed: int) -> None:
    """Re-estimate every BatchNorm's running statistics as a plain average over ``batches`` batches
    of un-augmented training objects (fixed 1024-point subset, exactly what the encoder sees).

    Why: after a short high-learning-rate run the exponential running averages still mix in
    statistics of much earlier weights; eval-mode accuracy was 22 % against 88 % with batch
    statistics before this step."""
    rng = np.random.default_rng(seed)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average
    model.train()
    for _ in range(batches):
        idx = rng.choice(train_idx, batch_size, replace=False)
        model(select_input_points(torch.from_numpy(data["points"][idx, 0])))
    for bn in bns:
        bn.momentum = 0.1
    model.eval()


@torch.no_grad()
def classifier_accuracy(model: PointNet2Cls, points: np.ndarray, labels: np.ndarray, batch: int = 32) -> float:
    model.eval()
    correct = 0
    for s in range(0, len(points), batch):
        x = select_input_points(torch.from_numpy(points[s:s + batch]))
        correct += int((model(x)[0].argmax(-1).numpy() == labels[s:s + batch]).sum())
    return correct / max(len(points), 1)


def train_classifier(data: dict, cfg: ClassifierConfig, seed: int, out_dir: Path,
                     log: Callable[[str], None] = print) -> dict:
    t0 = time.time()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    rng = np.random.default_rng(seed + 2)
    train = np.flatnonzero(data["splits"] == 0)
    val = np.flatnonzero(data["splits"] == 1)
    model = PointNet2Cls(len(corpus.CATEGORIES))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    order = rng.permutation(train)
    pos = 0
    n_pts = data["points"].shape[2]
    for step in range(cfg.steps):
        lr = cfg.lr_end + 0.5 * (cfg.lr - cfg.lr_end) * (1 + math.cos(math.pi * step / cfg.steps))
        for g in opt.param_groups:
            g["lr"] = lr
        if pos + cfg.batch_size > len(order):
            order, pos = rng.permutation(train), 0
        idx = order[pos:pos + cfg.batch_size]
        pos += cfg.batch_size
        stream = rng.integers(0, data["points"].shape[1], len(idx))
        sub = np.stack([rng.choice(n_pts, 1024, replace=False) for _ in idx])
        x = torch.from_numpy(data["points"][idx[:, None], stream[:, None], sub])
        x = _augment(x, gen, cfg.scale_aug, cfg.jitter)
        y = torch.from_numpy(data["labels"][idx])
        model.train()
        logits, _ = model(x)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 10 == 0 or step == cfg.steps - 1:
            acc = (logits.argmax(-1) == y).float().mean().item()
            log(f"  classifier step {step}/{cfg.steps} loss {loss.item():.3f} batch-acc {acc:.2f} "
                f"lr {lr:.2e} ({time.time() - t0:.0f}s)")
    # weights as they will be shipped (fp16), then BN statistics re-estimated for them
    with torch.no_grad():
        for p in model.state_dict().values():
            if p.is_floating_point():
                p.copy_(p.half().float())
    recalibrate_bn(model, data, train, cfg.bn_batches, cfg.batch_size, seed + 3)
    val_acc = classifier_accuracy(model, data["points"][val, 0], data["labels"][val])
    wall = time.time() - t0
    log(f"  classifier val accuracy {val_acc:.3f} ({wall:.0f}s)")
    config = {"architecture": "pointnet2_cls_ssg (xyz input)", "num_classes": len(corpus.CATEGORIES),
              "classes": list(corpus.CATEGORIES), "num_input_points": 1024,
              "val_accuracy": val_acc,
              "provenance": _provenance(seed, wall, {"train": asdict(cfg), "train_objects": int(len(train))})}
    save_weights(model, out_dir, config)
    return {"val_accuracy": val_acc, "wall_s": wall}


def train_pointnet_lion_zoo(out_dir: str | Path | None, stages: tuple[str, ...], cfg: ZooConfig,
                            log: Callable[[str], None] = print) -> dict:
    """The ``pointnet_lion`` mini zoo: PointNet++ classifier (E), LION-style VAE and priors (G), in
    ``stages`` order, on the procedural mesh corpus."""
    torch.set_num_threads(cfg.threads)
    out = Path(out_dir) if out_dir is not None else WEIGHTS_DIR
    t0 = time.time()
    log(f"[zoo] data: {cfg.data}")
    data = load_data(cfg.data, log)
    summary: dict = {"data_s": round(time.time() - t0, 1)}
    if "classifier" in stages:
        log("[zoo] stage classifier")
        summary["classifier"] = train_classifier(data, cfg.classifier, cfg.seed, out, log)
    if "vae" in stages or "priors" in stages:
        from squeeze3d.zoo.lion import model as lion
        from squeeze3d.zoo_training import lion as lion_train

        lcfg = lion.LionConfig(**cfg.lion)
        if "vae" in stages:
            log("[zoo] stage vae")
            summary["vae"] = lion_train.train_vae(data, lcfg, lion_train.VAETrainConfig(**cfg.vae), cfg.seed, out, log)
        if "priors" in stages:
            log("[zoo] stage priors")
            summary["priors"] = lion_train.train_priors(data, lion_train.PriorTrainConfig(**cfg.priors), cfg.seed,
                                                        out, log)
    summary["wall_s"] = round(time.time() - t0, 1)
    # merged with earlier runs so stages trained separately keep one record of wall times
    spath = out / "train_summary.json"
    merged = json.loads(spath.read_text()) if spath.exists() else {}
    merged.update({k: v for k, v in summary.items() if k not in ("wall_s", "data_s")})
    merged.setdefault("runs", []).append({"stages": list(stages), "wall_s": summary["wall_s"],
                                          "data_s": summary["data_s"]})
    out.mkdir(parents=True, exist_ok=True)
    spath.write_text(json.dumps(merged, indent=2) + "\n")
    log(f"[zoo] done in {summary['wall_s']:.0f}s: {json.dumps(summary)}")
    return summary


def train_nerfmae_zoo(out_dir: str | Path | None, stages: tuple[str, ...], cfg: ZooConfig,
                      log: Callable[[str], None] = print) -> dict:
    """The ``nerfmae`` mini zoo: one model (NeRF-MAE-style autoencoder) that is both E and G, trained
    on the procedural radiance corpus; ``cfg.nerfmae`` overrides ``nerfmae.NerfMAETrainConfig``.
    One stage: ``stages`` is empty."""
    from squeeze3d.zoo.nerfmae.model import WEIGHTS_DIR
    from squeeze3d.zoo_training import nerfmae

    out = Path(out_dir) if out_dir is not None else WEIGHTS_DIR
    tcfg = nerfmae.NerfMAETrainConfig(**{"threads": cfg.threads, **cfg.nerfmae})
    log(f"[zoo] nerfmae: {tcfg}")
    summary = nerfmae.train_nerfmae(tcfg, None, cfg.seed, out, log)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    log(f"[zoo] done in {summary['wall_s']:.0f}s: {json.dumps(summary)}")
    return summary


def train_meshanything_zoo(out_dir: str | Path | None, stages: tuple[str, ...], cfg: ZooConfig,
                           log: Callable[[str], None] = print) -> dict:
    """The mini MeshAnything mesh encoder (occupancy + colour autoencoder on the textured corpus);
    ``cfg.meshanything`` overrides ``meshanything_train.MeshAnythingTrainConfig``. One stage."""
    from squeeze3d.zoo_training import meshanything as meshanything_train

    tcfg = meshanything_train.MeshAnythingTrainConfig(**{"threads": cfg.threads, **cfg.meshanything})
    log(f"[zoo] meshanything: {tcfg}")
    out = Path(out_dir) if out_dir is not None else meshanything_train.WEIGHTS_DIR
    summary = meshanything_train.train_meshanything(tcfg, out, cfg.seed, log)
    (out / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    log(f"[zoo] done in {summary['wall_s']:.0f}s: {json.dumps(summary)}")
    return summary


MESH_STAGES = ("meshanything", "shap_e", "shap_e_prior")
"""The ``meshanything_shape`` recipe's stages: E (mini MeshAnything), then G (mini Shap-E); independent.
``shap_e_prior`` retrains only G's text mean and prior on the folder's renderer and its fitted-latents
cache (~150 s); ``shap_e`` includes it, so it runs only when named without ``shap_e``."""


def train_meshanything_shape_zoo(out_dir: str | Path | None, stages: tuple[str, ...], cfg: ZooConfig,
                                 log: Callable[[str], None] = print) -> dict:
    """The mesh pair's zoo: E into the weights folder, G (``shap_e_train.train_shap_e``: auto-decoder,
    held-out latents, text prior) into its ``shap_e/`` subfolder."""
    from squeeze3d.zoo.shap_e import model as shap_e
    from squeeze3d.zoo_training import shap_e as shap_e_train

    out: dict = {}
    if "meshanything" in stages:
        out["meshanything"] = train_meshanything_zoo(out_dir, (), cfg, log)
    if "shap_e" in stages or "shap_e_prior" in stages:
        prior_only = {} if "shap_e" in stages else {"stages": ("prior",)}  # shap_e includes the prior
        tcfg = shap_e_train.ShapETrainConfig(**{"threads": cfg.threads, "seed": cfg.seed, **cfg.shap_e, **prior_only})
        log(f"[zoo] shap_e: {tcfg}")
        g_dir = Path(out_dir) / "shap_e" if out_dir is not None else shap_e.WEIGHTS_DIR
        out["shap_e"] = shap_e_train.train_shap_e(g_dir, tcfg, log)
    return out


@dataclass(frozen=True)
class ZooRecipe:
    """How one pair's mini zoo is trained from scratch (``jobs/train_zoo.py --pair NAME``)."""

    train: Callable[[str | Path | None, tuple[str, ...], ZooConfig, Callable[[str], None]], dict]
    """``(out_dir or None for the shipped folder, stages, cfg, log) -> summary``."""
    stages: tuple[str, ...] = ()
    """Stages the recipe runs, in order; empty: one stage (then no stage may be named)."""


# A pair with a mini zoo registers its recipe here: one line, no branch on its name elsewhere.
RECIPES: dict[str, ZooRecipe] = {
    "pointnet_lion": ZooRecipe(train_pointnet_lion_zoo, STAGES),
    "nerfmae": ZooRecipe(train_nerfmae_zoo),
    "meshanything_shape": ZooRecipe(train_meshanything_shape_zoo, MESH_STAGES),
}
ZOO_PAIRS = tuple(RECIPES)


def train_zoo(pair: str = "pointnet_lion", out_dir: str | Path | None = None, stages: tuple[str, ...] | None = None,
              cfg: ZooConfig | None = None, log: Callable[[str], None] = print) -> dict:
    """Train the requested stages (default: all) of the pair's mini zoo; returns a summary per stage."""
    if pair not in RECIPES:
        raise ValueError(f"no mini zoo recipe for pair {pair!r}; available: {', '.join(ZOO_PAIRS)}")
    recipe = RECIPES[pair]
    stages = recipe.stages if stages is None else tuple(stages)
    unknown = set(stages) - set(recipe.stages)
    if unknown:
        raise ValueError(f"unknown stages {sorted(unknown)} for {pair}; "
                         + (f"choose from {recipe.stages}" if recipe.stages else "it has one stage: pass none"))
    return recipe.train(out_dir, stages, cfg or ZooConfig(), log)


# ----------------------------------------------------------------------------------------------
# benchmark (jobs/bench_zoo.py)


def _ms_per_call(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def benchmark_zoo(weights_dir: str | Path | None = None, n_test: int = 360, n_gen: int = 96, ddim_steps: int = 32,
                  grid_path: str | Path | None = None, data_cfg: DataConfig | None = None,
                  log: Callable[[str], None] = print) -> dict:
    """The report numbers of the shipped (or given) mini zoo, on held-out test objects:
    classifier accuracy; VAE reconstruction Chamfer / D1-PSNR next to the resampling floor (two
    independent samplings of the same surface); MMD-CD, COV-CD, 1-NNA-CD of ``n_gen`` samples
    against ``n_gen`` test objects (and, for scale, of ``n_gen`` validation objects against the same
    test objects); single-object CPU latencies. Optionally writes a PNG grid of samples."""
    from squeeze3d.metrics.generative import generative_metrics
    from squeeze3d.metrics.pointcloud import chamfer, d1_psnr
    from squeeze3d.zoo.lion import model as lion
    from squeeze3d.zoo.pointnet2.model import PointNet2Encoder, load_weights

    wdir = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    data = load_data(data_cfg or DataConfig(), log)
    test = np.flatnonzero(data["splits"] == 2)[:n_test]
    val = np.flatnonzero(data["splits"] == 1)
    pts0 = torch.from_numpy(data["points"][test, 0])
    pts1 = torch.from_numpy(data["points"][test, 1])
    out: dict = {"n_test": int(len(test))}

    model, cfg = load_weights(wdir)
    enc = PointNet2Encoder("cpu", model, cfg)
    preds = torch.cat([enc.classify(pts0[s:s + 32]).argmax(-1) for s in range(0, len(test), 32)])
    out["classifier_test_accuracy"] = float((preds.numpy() == data["labels"][test]).mean())
    log(f"  classifier held-out accuracy {out['classifier_test_accuracy']:.3f}")

    lmodel, lcfgs = lion.load_lion(wdir)
    gen = lion.LionGenerator("cpu", lmodel, ddim_steps=ddim_steps, configs=lcfgs)
    recs = torch.cat([gen.decode(gen.encode_latents(pts0[s:s + 16])) for s in range(0, len(test), 16)])
    out["vae_recon_chamfer"] = chamfer(pts0, recs).mean().item()
    out["vae_recon_d1_psnr"] = d1_psnr(pts0, recs).mean().item()
    out["floor_chamfer"] = chamfer(pts0, pts1).mean().item()
    out["floor_d1_psnr"] = d1_psnr(pts0, pts1).mean().item()
    log(f"  VAE recon chamfer {out['vae_recon_chamfer']:.2e} (floor {out['floor_chamfer']:.2e}), "
        f"D1-PSNR {out['vae_recon_d1_psnr']:.1f} dB (floor {out['floor_d1_psnr']:.1f} dB)")

    one = pts0[:1]
    out["encode_ms"] = _ms_per_call(lambda: enc.encode(one), 5)
    z1 = gen.encode_latents(one)
    out["decode_ms"] = _ms_per_call(lambda: gen.decode(z1), 5)
    t = time.perf_counter()
    z_s, samples = gen.sample(list(range(n_gen)))
    out["sample_s_per_object"] = (time.perf_counter() - t) / n_gen
    out["ddim_steps"] = ddim_steps
    log(f"  encode {out['encode_ms']:.1f} ms, decode {out['decode_ms']:.1f} ms, "
        f"sample {out['sample_s_per_object']:.2f} s per object ({ddim_steps} DDIM steps)")

    ref_idx = np.concatenate([test[data["labels"][test] == c][: max(1, n_gen // len(corpus.CATEGORIES))]
                              for c in range(len(corpus.CATEGORIES))])[:n_gen]
    ref = torch.from_numpy(data["points"][ref_idx, 0])
    out["generation"] = generative_metrics(samples, ref)
    val_idx = np.concatenate([val[data["labels"][val] == c][: max(1, n_gen // len(corpus.CATEGORIES))]
                              for c in range(len(corpus.CATEGORIES))])[:n_gen]
    out["real_val_vs_test"] = generative_metrics(torch.from_numpy(data["points"][val_idx, 0]), ref)
    log(f"  samples vs test: {out['generation']}; real val vs test: {out['real_val_vs_test']}")
    if grid_path is not None:
        from squeeze3d.corpora.plots import plot_point_grid

        k = min(len(samples), 24)
        plot_point_grid(grid_path, [p.numpy() for p in samples[:k]], [f"seed {i}" for i in range(k)], cols=6)
        out["grid"] = str(grid_path)
    return out
