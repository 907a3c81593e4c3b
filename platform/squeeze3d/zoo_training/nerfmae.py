"""Training recipe of the mini NeRF-MAE (``squeeze3d.zoo.nerfmae.model``) on the procedural radiance
corpus: masked-autoencoder batches, a voxel loss weighted to the object plus a rendered-view loss,
early stopping on val render PSNR, fp16 weights written through ``nerfmae.model.save_weights``.
Run it with ``python jobs/train_zoo.py --pair nerfmae``."""

from __future__ import annotations

import math
import platform as _stdlib_platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from squeeze3d.corpora import radiance as radiance_corpus
from squeeze3d.zoo.nerfmae.model import NerfMAE, NerfMAEConfig, grid_to_input, save_weights, voxel_metrics


@dataclass
class NerfMAETrainConfig:
    count: int = 2400
    """Corpus objects ``0..count-1`` (80/10/10 split by index: 1920 train objects at 2400)."""
    steps: int = 2400
    """Optimiser steps (cosine LR over all of them; 2400 × 8 = 10 epochs of the 1920 train objects);
    training may stop earlier (``patience``)."""
    batch_size: int = 8
    lr: float = 2e-3
    lr_end: float = 2e-5
    weight_decay: float = 1e-4
    mask_prob: float = 0.5
    """Share of each batch trained MAE-style (input patches masked)."""
    mask_ratio: float = 0.25
    """Share of 4³ input patches zeroed in a masked sample."""
    mask_patch: int = 4
    occupied_weight: float = 4.0
    """Voxel loss weight of the object: voxels within one voxel of the target's occupied ones weigh
    ``1 + occupied_weight`` (most of a grid is empty; the render only sees the object)."""
    render_weight: float = 1.0
    """Weight of the rendered-view loss (MSE between differentiable renders of the prediction and the
    target from ``render_views`` cameras at a random azimuth per step); 0 turns it off."""
    render_views: int = 2
    render_size: int = 32
    """Pixels per side of the training renders (the metric renders 64²)."""
    eval_every: int = 200
    """Steps between held-out evaluations (the learning curve, on ``curve_objects`` val objects)."""
    curve_objects: int = 16
    patience: int = 3
    """Stop after this many evaluations without a better val render PSNR (0: never stop early). The
    weights kept are the best evaluation's."""
    empty_alpha_choices: tuple[float, ...] = (0.0, 0.02, 0.05, 0.1)
    """``NerfMAEConfig.empty_alpha`` candidates, picked by val render PSNR after training (a decode
    threshold, no weights)."""
    eval_objects: int = 48
    """Held-out test objects the summary reports on."""
    threads: int = 2
    model: dict = field(default_factory=dict)
    """Overrides of ``NerfMAEConfig``."""

    def __post_init__(self):
        self.empty_alpha_choices = tuple(float(a) for a in self.empty_alpha_choices)


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Flips in x and y and an x/y swap per batch (z stays up), a colour-channel permutation per
    batch, colour and density gains per object: broadens colours and materials beyond the canonical
    palette (the generator re-draws them)."""
    b = x.shape[0]
    if torch.rand((), generator=gen) < 0.5:
        x = x.flip(2)
    if torch.rand((), generator=gen) < 0.5:
        x = x.flip(3)
    if torch.rand((), generator=gen) < 0.5:
        x = x.transpose(2, 3)
    perm = torch.randperm(3, generator=gen)
    gain = torch.empty(b, 3, 1, 1, 1).uniform_(0.7, 1.3, generator=gen)
    sig_gain = torch.empty(b, 1, 1, 1, 1).uniform_(0.6, 1.6, generator=gen)
    return torch.cat([(x[:, perm] * gain).clamp(0, 1), x[:, 3:] * sig_gain], 1)


def _mask(b: int, r: int, patch: int, ratio: float, prob: float, gen: torch.Generator) -> torch.Tensor:
    n = r // patch
    keep = (torch.rand(b, 1, n, n, n, generator=gen) >= ratio).float()
    keep[torch.rand(b, generator=gen) >= prob] = 1.0  # the other samples see the whole grid
    return keep.repeat_interleave(patch, 2).repeat_interleave(patch, 3).repeat_interleave(patch, 4)


def _loss(model: NerfMAE, x: torch.Tensor, mask: torch.Tensor | None, cfg: NerfMAETrainConfig | None = None,
          azimuth: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted MSE on opacity and premultiplied colour (what a render is made of), the object's
    voxels weighing ``1 + occupied_weight``; plus ``render_weight`` × MSE between differentiable
    renders of the prediction and of the target. Returns (loss, its terms)."""
    cfg = cfg or NerfMAETrainConfig(occupied_weight=0.0, render_weight=0.0)
    out = model.decode_raw(model.features(x, mask))
    sigma_hat = F.softplus(out[:, 3:4])
    alpha_hat = 1 - torch.exp(-sigma_hat)
    rgb_hat = torch.sigmoid(out[:, :3])
    target = grid_to_input(x)
    err = (torch.cat([rgb_hat * alpha_hat, alpha_hat], 1) - target) ** 2
    occupied = F.max_pool3d((target[:, 3:4] > 0.01).float(), 3, stride=1, padding=1)
    w = 1 + cfg.occupied_weight * occupied
    vox = (err * w).mean() / w.mean()
    terms = {"voxel": float(vox.detach())}
    loss = vox
    if cfg.render_weight > 0:
        from squeeze3d.metrics.volume import render, render_differentiable

        with torch.no_grad():
            ref = render(x, cfg.render_views, cfg.render_size, azimuth_offset=azimuth)
        pred = render_differentiable(torch.cat([rgb_hat, sigma_hat], 1), cfg.render_views, cfg.render_size,
                                     azimuth_offset=azimuth)
        ren = F.mse_loss(pred, ref)
        terms["render"] = float(ren.detach())
        loss = loss + cfg.render_weight * ren
    return loss, terms


@torch.no_grad()
def evaluate(model: NerfMAE, grids: torch.Tensor, batch: int = 16, render: bool = True) -> dict[str, float]:
    """Mean ``voxel_metrics`` of reconstructions, plus render PSNR / MS-SSIM (the pair's end-task
    metrics, 8 views at 64²) when ``render``; empty dict for no objects (e.g. a tiny corpus)."""
    from squeeze3d.metrics.volume import radiance_metrics

    model.eval()
    if len(grids) == 0:
        return {}
    out: dict[str, list[torch.Tensor]] = {}
    for s in range(0, len(grids), batch):
        x = grids[s:s + batch].float()
        y = model(x)
        m = voxel_metrics(x, y)
        if render:
            m.update({f"render_{k}": v for k, v in radiance_metrics(x, y).items()})
        for k, v in m.items():
            out.setdefault(k, []).append(v)
    return {k: float(torch.cat(v).mean()) for k, v in out.items()}


def _round_fp16(model: NerfMAE) -> None:
    with torch.no_grad():  # measure what is shipped: fp16 weights
        for p in model.state_dict().values():
            if p.is_floating_point():
                p.copy_(p.half().float())


def train_nerfmae(cfg: NerfMAETrainConfig, grid_cfg: radiance_corpus.GridConfig | None, seed: int,
                  out_dir: str | Path, log: Callable[[str], None] = print) -> dict:
    """Train the mini NeRF-MAE on the radiance corpus's train split with a fixed seed; write fp16
    weights (+ JSON with provenance and held-out metrics measured *on the fp16 weights*)."""
    t0 = time.time()
    torch.set_num_threads(cfg.threads)
    mcfg = NerfMAEConfig(**cfg.model)
    grid_cfg = grid_cfg or radiance_corpus.GridConfig(resolution=mcfg.resolution)
    if grid_cfg.resolution != mcfg.resolution:
        raise ValueError(f"grid resolution {grid_cfg.resolution} != model resolution {mcfg.resolution}")

    def progress(i, n):
        if i % 200 == 0 or i == n:
            log(f"  radiance corpus {i}/{n} ({time.time() - t0:.0f}s)")

    data = radiance_corpus.build_grid_cache(cfg.count, grid_cfg, radiance_corpus.DEFAULT_SEED, progress=progress)
    grids = torch.from_numpy(data["grids"])  # float16, converted per batch
    train = np.flatnonzero(data["splits"] == 0)
    val = np.flatnonzero(data["splits"] == 1)[: cfg.eval_objects]
    test = np.flatnonzero(data["splits"] == 2)[: cfg.eval_objects]
    data_s = time.time() - t0
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    rng = np.random.default_rng(seed + 2)
    curve_idx = np.flatnonzero(data["splits"] == 1)[: cfg.curve_objects]
    model = NerfMAE(mcfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    order, pos = rng.permutation(train), 0
    curve: list[dict] = []
    best: tuple[float, int, dict] | None = None  # (val render PSNR, step, state)
    stale = 0
    stopped_early = False
    t1 = time.time()

    def checkpoint(step: int) -> bool:
        """Evaluate the fp16-rounded model on the curve's val objects; keep the best; True = stop."""
        nonlocal best, stale
        shipped = NerfMAE(mcfg)
        shipped.load_state_dict(model.state_dict())
        _round_fp16(shipped)
        m = evaluate(shipped, grids[curve_idx], render=True)
        point = {"step": step, "objects": step * cfg.batch_size, "wall_s": round(time.time() - t1, 1),
                 **{k: round(v, 4) for k, v in m.items()}}
        curve.append(point)
        score = m.get("render_psnr", -m.get("voxel_mse", 0.0)) if m else float(-step)
        log(f"  nerfmae curve step {step}: val render PSNR {m.get('render_psnr', float('nan')):.2f} dB, "
            f"voxel PSNR {m.get('voxel_psnr', float('nan')):.2f} dB ({point['wall_s']:.0f}s)")
        if best is None or score > best[0]:
            best, stale = (score, step, {k: v.clone() for k, v in shipped.state_dict().items()}), 0
            # the best so far on disk as it goes: a long run stopped by hand still leaves weights
            save_weights(shipped, out_dir, {"partial": True, "train": asdict(cfg), "curve": curve, "best_step": step})
        else:
            stale += 1
        return cfg.patience > 0 and stale >= cfg.patience

    for step in range(cfg.steps):
        lr = cfg.lr_end + 0.5 * (cfg.lr - cfg.lr_end) * (1 + math.cos(math.pi * step / max(cfg.steps, 1)))
        for g in opt.param_groups:
            g["lr"] = lr
        if pos + cfg.batch_size > len(order):
            order, pos = rng.permutation(train), 0
        idx = order[pos:pos + cfg.batch_size]
        pos += cfg.batch_size
        x = _augment(grids[idx].float(), gen)
        mask = _mask(len(idx), mcfg.resolution, cfg.mask_patch, cfg.mask_ratio, cfg.mask_prob, gen)
        azimuth = float(torch.rand((), generator=gen)) * 2 * math.pi
        model.train()
        loss, terms = _loss(model, x, mask, cfg, azimuth)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0 or step == cfg.steps - 1:
            log(f"  nerfmae step {step}/{cfg.steps} loss {loss.item():.5f} "
                + " ".join(f"{k} {v:.5f}" for k, v in terms.items()) + f" lr {lr:.2e} ({time.time() - t1:.0f}s)")
        if cfg.eval_every > 0 and (step + 1) % cfg.eval_every == 0 and step + 1 < cfg.steps:
            if checkpoint(step + 1):
                stopped_early = True
                log(f"  nerfmae: no better val render PSNR in {cfg.patience} evaluations: stopping at {step + 1}")
                break
    if not stopped_early:
        checkpoint(cfg.steps)
    train_s = time.time() - t1
    model.load_state_dict(best[2])
    _round_fp16(model)
    # the decode threshold: the candidate with the best val render PSNR (ties: the first listed)
    alpha_scores = {}
    for a in cfg.empty_alpha_choices:
        model.cfg.empty_alpha = a
        alpha_scores[a] = evaluate(model, grids[val]).get("render_psnr", float("-inf"))
    if alpha_scores:
        model.cfg.empty_alpha = max(alpha_scores, key=lambda a: (alpha_scores[a], -cfg.empty_alpha_choices.index(a)))
    log(f"  empty_alpha {model.cfg.empty_alpha} (val render PSNR per candidate: {alpha_scores})")
    val_m = evaluate(model, grids[val])
    test_m = evaluate(model, grids[test])
    log(f"  held-out test: {test_m}; val: {val_m}")
    info = {"train": asdict(cfg), "grid": asdict(grid_cfg), "val": val_m, "test": test_m,
            "curve": curve, "best_step": best[1], "stopped_early": stopped_early,
            "empty_alpha_val_psnr": {str(k): round(v, 4) for k, v in alpha_scores.items()},
            "provenance": {"seed": seed, "wall_s": round(time.time() - t0, 1), "data_s": round(data_s, 1),
                           "train_s": round(train_s, 1), "torch": torch.__version__,
                           "python": _stdlib_platform.python_version(), "threads": torch.get_num_threads(),
                           "train_objects": int(len(train)),
                           "trained_on": "procedural radiance corpus (squeeze3d.corpora.radiance)"}}
    save_weights(model, out_dir, info)
    return {"test": test_m, "val": val_m, "best_step": best[1], "stopped_early": stopped_early,
            "curve": curve, "wall_s": round(time.time() - t0, 1)}
