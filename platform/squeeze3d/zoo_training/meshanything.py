"""Training recipe of the mini MeshAnything encoder: an occupancy (and colour) autoencoder on the
textured corpus's training split, as Michelangelo's shape VAE is trained (BCE on near/far volume
queries + a small KL), plus the mini's colour head read from z_E.

Per step: a batch of training objects; the encoder sees one of the object's two cached surface
samplings (the platform's asset, or the independent one: a cheap augmentation that keeps the
encoder from memorising one sampling), the decoder answers ``occ_queries`` occupancy queries (half
near the surface, half uniform) and ``color_queries`` colour queries at the other sampling's points.
Deterministic for a given seed, device and torch build. ``jobs/train_zoo.py --pair meshanything_shape --stages meshanything``.
"""

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

from squeeze3d.zoo.meshanything.model import (
    WEIGHTS_DIR,
    MeshAnythingConfig,
    MeshAnythingEncoder,
    MeshAnythingMini,
    save_weights,
)


@dataclass
class MeshAnythingTrainConfig:
    count: int = 1600
    """Corpus objects ``0..count-1`` (80/10/10 train/val/test by index); cached by ``meshanything_data``."""
    steps: int = 3500
    batch_size: int = 8
    lr: float = 1.5e-3
    lr_end: float = 1e-5
    warmup: int = 100
    weight_decay: float = 0.01
    occ_queries: int = 1024
    """Occupancy queries per object and step (half near-surface, half uniform)."""
    color_queries: int = 256
    kl_weight: float = 1e-3
    """Michelangelo's weight on the KL term (keeps the bottleneck tokens near a unit Gaussian)."""
    color_weight: float = 4.0
    """Colour MSE is ~0.01-0.05 in sRGB units against a BCE of ~0.1: weighted up so colour is learned."""
    eval_objects: int = 0
    """Held-out test objects to evaluate at the end (0: the whole test split within ``count``)."""
    threads: int = 1
    log_every: int = 100
    model: dict = field(default_factory=dict)
    """Overrides of ``MeshAnythingConfig``."""


def _lr(step: int, cfg: MeshAnythingTrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(cfg.steps - cfg.warmup, 1)
    return cfg.lr_end + 0.5 * (cfg.lr - cfg.lr_end) * (1 + math.cos(math.pi * t))


def _batch(data: dict, idx: np.ndarray, rng: np.random.Generator, cfg: MeshAnythingTrainConfig):
    swap = rng.random(len(idx)) < 0.5
    first, second = data["surface"][idx], data["targets"][idx]
    surface = np.where(swap[:, None, None], second, first)
    other = np.where(swap[:, None, None], first, second)
    n_near = data["occ_pts"].shape[1] // 2  # cached layout: near-surface block, then uniform block
    half = cfg.occ_queries // 2
    q_near = np.stack([rng.choice(n_near, half, replace=False) for _ in idx])
    q_far = n_near + np.stack([rng.choice(data["occ_pts"].shape[1] - n_near, cfg.occ_queries - half, replace=False)
                               for _ in idx])
    q = np.concatenate([q_near, q_far], 1)
    rows = idx[:, None]
    c = np.stack([rng.choice(other.shape[1], cfg.color_queries, replace=False) for _ in idx])
    cpts = np.take_along_axis(other, c[:, :, None], 1)
    return (torch.from_numpy(surface), torch.from_numpy(data["occ_pts"][rows, q]),
            torch.from_numpy(data["occ"][rows, q].astype(np.float32)),
            torch.from_numpy(np.ascontiguousarray(cpts[..., :3])), torch.from_numpy(np.ascontiguousarray(cpts[..., 6:9])))


def loss_terms(model: MeshAnythingMini, batch, cfg: MeshAnythingTrainConfig, gen: torch.Generator,
               device: torch.device) -> dict[str, torch.Tensor]:
    surface, occ_pts, occ, cpts, crgb = (t.to(device) for t in batch)
    out = model(surface, occ_pts, cpts if model.cfg.color_channels else None, sample=True, generator=gen)
    terms = {"bce": F.binary_cross_entropy_with_logits(out["occ_logits"], occ), "kl": out["kl"]}
    loss = terms["bce"] + cfg.kl_weight * terms["kl"]
    if "color" in out:
        terms["color_mse"] = F.mse_loss(out["color"], crgb)
        loss = loss + cfg.color_weight * terms["color_mse"]
    terms["loss"] = loss
    return terms


@torch.no_grad()
def evaluate(model: MeshAnythingMini, data: dict, idx: np.ndarray, device: torch.device | str = "cpu") -> dict:
    """Held-out reconstruction quality, decoded from the posterior mean of each object's asset
    (``surface``, the platform's sampling): occupancy IoU over the uniform queries (volume IoU, per
    object then averaged) and over all queries (near + uniform), occupancy accuracy, and the colour
    error (mean absolute sRGB error in [0, 1] and in 8-bit levels) at the independent surface samples."""
    model.eval()
    n_near = data["occ_pts"].shape[1] // 2
    iou_u, iou_all, acc, cerr = [], [], [], []
    for i in idx:
        surface = torch.from_numpy(data["surface"][i:i + 1]).to(device)
        pts = torch.from_numpy(data["occ_pts"][i:i + 1]).to(device)
        pred = (model.occupancy(surface, pts)[0] > 0).cpu().numpy()
        gt = data["occ"][i]
        for sl, out in ((slice(n_near, None), iou_u), (slice(None), iou_all)):
            union = (pred[sl] | gt[sl]).sum()
            if union:
                out.append((pred[sl] & gt[sl]).sum() / union)
        acc.append((pred == gt).mean())
        if model.cfg.color_channels:
            t = data["targets"][i:i + 1]
            rgb = model.colors(surface, torch.from_numpy(np.ascontiguousarray(t[..., :3])).to(device))[0].cpu().numpy()
            cerr.append(np.abs(rgb - t[0, :, 6:9]).mean())
    res = {"objects": int(len(idx)), "iou_uniform": float(np.mean(iou_u)), "iou_near_and_uniform": float(np.mean(iou_all)),
           "occupancy_accuracy": float(np.mean(acc))}
    if cerr:
        res["color_mae"] = float(np.mean(cerr))
        res["color_mae_8bit"] = float(np.mean(cerr) * 255)
    return res


def fit(model: MeshAnythingMini, data: dict, train_idx: np.ndarray, cfg: MeshAnythingTrainConfig, seed: int,
        device: torch.device | str = "cpu", log: Callable[[str], None] = print) -> list[float]:
    """``cfg.steps`` AdamW steps (warm-up then cosine); returns the loss of every step."""
    device = torch.device(device)
    model.to(device).train()
    rng = np.random.default_rng(seed + 1)
    gen = torch.Generator().manual_seed(seed + 2)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=cfg.weight_decay)
    order, pos, losses, t0 = rng.permutation(train_idx), 0, [], time.time()
    for step in range(cfg.steps):
        for g in opt.param_groups:
            g["lr"] = _lr(step, cfg)
        if pos + cfg.batch_size > len(order):
            order, pos = rng.permutation(train_idx), 0
        idx = order[pos:pos + min(cfg.batch_size, len(order))]
        pos += len(idx)
        terms = loss_terms(model, _batch(data, idx, rng, cfg), cfg, gen, device)
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # early KL/colour spikes otherwise blow up the tokens
        opt.step()
        losses.append(float(terms["loss"].detach()))
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            log(f"  meshanything step {step}/{cfg.steps} " + " ".join(f"{k} {float(v.detach()):.4f}" for k, v in terms.items())
                + f" lr {_lr(step, cfg):.2e} ({time.time() - t0:.0f}s)")
    model.eval()
    return losses


def _encode_ms(model: MeshAnythingMini, surface: np.ndarray, repeats: int = 10) -> float:
    enc = MeshAnythingEncoder("cpu", model=model)
    x = torch.from_numpy(surface[None])
    enc.encode(x)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        enc.encode(x)
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def train_meshanything(cfg: MeshAnythingTrainConfig, out_dir: str | Path | None, seed: int = 0,
                       log: Callable[[str], None] = print, data: dict | None = None,
                       device: torch.device | str = "cpu") -> dict:
    """Train, evaluate on the held-out test split, write ``meshanything_shape.{safetensors,json}``
    (into ``out_dir``; None: the shipped folder). ``data``: arrays as ``meshanything_data`` builds them
    (default: the cached corpus)."""
    from squeeze3d.zoo_training.meshanything_data import build_mesh_cache

    torch.set_num_threads(cfg.threads)
    t0 = time.time()
    if data is None:
        data = build_mesh_cache(cfg.count, seed, progress=lambda i, n: log(f"  cache {i}/{n} ({time.time() - t0:.0f}s)"))
    data_s = time.time() - t0
    train_idx = np.flatnonzero(data["splits"] == 0)
    test_idx = np.flatnonzero(data["splits"] == 2)
    if cfg.eval_objects:
        test_idx = test_idx[:cfg.eval_objects]
    torch.manual_seed(seed)
    model = MeshAnythingMini(MeshAnythingConfig.from_dict(cfg.model))
    log(f"[meshanything] {model.cfg}; {sum(p.numel() for p in model.parameters())} parameters; "
        f"{len(train_idx)} train objects")
    t1 = time.time()
    losses = fit(model, data, train_idx, cfg, seed, device=device, log=log)
    train_s = time.time() - t1
    # evaluate the weights as shipped (fp16-rounded)
    with torch.no_grad():
        for p in model.state_dict().values():
            p.copy_(p.half().float())
    metrics = evaluate(model, data, test_idx, device) if len(test_idx) else {}
    metrics["encode_ms_per_mesh"] = _encode_ms(model.cpu(), data["surface"][0])  # the CPU latency
    log(f"[meshanything] test: {metrics}")
    summary = {"metrics_test": metrics, "final_loss": float(np.mean(losses[-50:])), "train_s": round(train_s, 1),
               "data_s": round(data_s, 1), "wall_s": round(time.time() - t0, 1)}
    out = Path(out_dir) if out_dir is not None else WEIGHTS_DIR
    wpath = save_weights(model, out, {
        "architecture": "mini MeshAnything (Michelangelo shape Perceiver + process_point_feature)",
        "metrics_test": metrics,
        "provenance": {"seed": seed, "train": asdict(cfg), "train_objects": int(len(train_idx)),
                       "train_s": round(train_s, 1), "torch": torch.__version__,
                       "python": _stdlib_platform.python_version(), "threads": torch.get_num_threads(),
                       "trained_on": "textured procedural corpus (squeeze3d.corpora.meshes), train split"}})
    summary["weights_bytes"] = wpath.stat().st_size
    return summary
