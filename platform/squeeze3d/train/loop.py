"""The single-device training loop for the mapping networks.

``fit`` knows nothing about Ray: data arrives as a *batch source* (anything with
``batches(epoch) -> iterable of (z_e, z_g)``), and per-epoch side effects (reporting, checkpointing)
go through ``on_epoch_end``. Ray Train wraps it without changing it (torchtitan's split).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from squeeze3d.config import TrainConfig
from squeeze3d.mapping import Mapping, build_mapping
from squeeze3d.mapping.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from squeeze3d.mapping.common import MappingHalf
from squeeze3d.mapping.diagnostics import code_diagnostics
from squeeze3d.mapping.optim import build_optimizer, lr_at, set_lr
from squeeze3d.mapping.setloss import round_to_bits
from squeeze3d.train.objective import TERMS, Objective


class BatchSource(Protocol):
    def batches(self, epoch: int) -> Iterable[tuple[torch.Tensor, torch.Tensor]]: ...


class TensorPairs:
    """In-memory (z_e, z_g) pairs, reshuffled each epoch with a seed derived from (seed, epoch).

    ``drop_last`` keeps every training batch full, so the gram loss always sees ``batch_size`` rows.
    """

    def __init__(self, z_e: torch.Tensor, z_g: torch.Tensor, batch_size: int, shuffle: bool = True,
                 drop_last: bool = True, seed: int = 0):
        if len(z_e) != len(z_g):
            raise ValueError(f"z_e has {len(z_e)} rows but z_g has {len(z_g)}")
        if len(z_e) == 0:
            raise ValueError("no training pairs")
        self.z_e, self.z_g = z_e, z_g
        self.batch_size, self.shuffle, self.drop_last, self.seed = batch_size, shuffle, drop_last, seed

    def __len__(self) -> int:
        return len(self.z_e)

    def batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.z_e)
        if self.shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 100003 + epoch))
        else:
            order = torch.arange(n)
        bs = min(self.batch_size, n)
        stop = n - n % bs if self.drop_last else n
        for s in range(0, stop, bs):
            idx = order[s:s + bs]
            yield self.z_e[idx], self.z_g[idx]


def latent_stats(source: BatchSource) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-dimension mean and std of z_E and z_G over one pass of ``source`` (float64 sums)."""
    acc: list[list[torch.Tensor]] = []
    n = 0
    for z_e, z_g in source.batches(0):
        parts = [z_e.double().sum(0), z_e.double().pow(2).sum(0), z_g.double().sum(0), z_g.double().pow(2).sum(0)]
        acc = parts if not acc else [a + p for a, p in zip(acc, parts)]
        n += z_e.shape[0]
    if n < 2:
        raise ValueError("need at least 2 training pairs to compute latent statistics")
    me, se, mg, sg = acc
    mean_e, mean_g = me / n, mg / n
    std_e = (se / n - mean_e.pow(2)).clamp_min(0).sqrt()
    std_g = (sg / n - mean_g.pow(2)).clamp_min(0).sqrt()
    return mean_e.float(), std_e.float(), mean_g.float(), std_g.float()


@dataclass
class FitResult:
    f_e: MappingHalf
    f_d: MappingHalf
    config: TrainConfig
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def final(self) -> dict[str, float]:
        return self.history[-1] if self.history else {}


EpochCallback = Callable[[int, dict[str, float], Callable[[Path], Path]], None]


def quantised(code: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """What the receiver decodes: bounded codes rounded to ``code_noise_bits`` (if trained with it)."""
    bits = cfg.loss.code_noise_bits
    if not bits or cfg.mapping.code_bound != "tanh":
        return code
    return round_to_bits(code, bits)


@torch.no_grad()
def evaluate(f_e: MappingHalf, f_d: MappingHalf, source: BatchSource, cfg: TrainConfig,
             objective: Objective | None = None) -> dict[str, float]:
    """Validation metrics: latent MSE (standardised and raw z_G units), gram term, the set and
    output terms and the rate (bits per code) when they are on, d_eff and κ of the codes. Codes are rounded as the codec will
    round them (``code_noise_bits``). Modules are put in eval mode (dropout off)."""
    f_e.eval()
    f_d.eval()
    objective = objective or Objective(cfg, next(f_e.parameters()).device)
    dev = next(f_e.parameters()).device
    codes, sums, n, nb = [], {"mse": 0.0, "mse_raw": 0.0, "set": 0.0, "output": 0.0, "rate": 0.0}, 0, 0
    gram = 0.0
    for z_e, z_g in source.batches(0):
        z_e, z_g = z_e.to(dev), z_g.to(dev)
        code = f_e(z_e)
        pred_std = f_d.forward_std(quantised(code, cfg))
        out = objective(code, pred_std, z_g, f_d, lambda_gram=1.0 if z_e.shape[0] > 1 else 0.0)
        b = z_e.shape[0]
        sums["mse"] += float(out["mse"]) * b
        sums["mse_raw"] += float((f_d.norm.inverse(pred_std) - z_g).pow(2).mean()) * b
        sums["set"] += float(out["set"]) * b
        sums["output"] += float(out["output"]) * b
        sums["rate"] += float(out["rate"]) * b
        gram += float(out["gram"])
        n += b
        nb += 1
        codes.append(code.flatten(1).cpu())
    if n == 0:
        raise ValueError("validation source yielded no pairs")
    res = {"val_mse": sums["mse"] / n, "val_mse_raw": sums["mse_raw"] / n, "val_gram": gram / nb}
    if objective.layout is not None:
        res["val_set"] = sums["set"] / n
    if objective.decoder is not None:
        res["val_output"] = sums["output"] / n
    if cfg.loss.lambda_rate > 0:
        res["val_rate"] = sums["rate"] / n  # bits per code under the training histogram
    return {**res, **code_diagnostics(torch.cat(codes))}


def fit(cfg: TrainConfig, z_e_shape: tuple[int, ...], z_g_shape: tuple[int, ...], train: BatchSource,
        val: BatchSource | None = None, *, resume: str | Path | None = None,
        on_epoch_end: EpochCallback | None = None, meta: dict[str, Any] | None = None,
        log: Callable[[str], None] | None = None,
        stats: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
        prepare_model: Callable[[torch.nn.Module], torch.nn.Module] | None = None) -> FitResult:
    """Train F_E and F_D on (z_E, z_G) pairs and return them with the per-epoch history.

    ``resume``: a training checkpoint written through ``on_epoch_end``'s save function; training
    continues at the epoch after it, with weights, optimiser state and history restored.
    ``on_epoch_end(epoch, metrics, save)``: ``save(dir)`` writes a full training checkpoint.
    ``stats``: precomputed (mean_e, std_e, mean_g, std_g); by default one pass over ``train``.
    Data-parallel callers must pass the same stats to every worker.
    ``prepare_model``: wraps the model for distribution (e.g. ``ray.train.torch.prepare_model``).
    """
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    f_e, f_d = build_mapping(cfg.mapping, z_e_shape, z_g_shape)
    model: torch.nn.Module = Mapping(f_e, f_d).to(device)
    opt = build_optimizer(model, cfg.optim)
    objective = Objective(cfg, device, cfg.seed)
    history: list[dict[str, float]] = []
    start = 0
    def load_into_model(path, **kw):
        """A checkpoint's weights and normalisation into ``model``, if it has this architecture."""
        ck = load_checkpoint(path, device, **kw)
        if ck.z_e_shape != tuple(z_e_shape) or ck.z_g_shape != tuple(z_g_shape) or \
                ck.config.mapping != cfg.mapping:
            raise CheckpointError(f"{path} was trained with a different architecture or latent shapes")
        model.f_e.load_state_dict(ck.f_e.state_dict())
        model.f_d.load_state_dict(ck.f_d.state_dict())
        return ck

    if resume is not None:
        ck = load_into_model(resume, with_train_state=True)
        opt.load_state_dict(ck.optimizer_state)
        history = list(ck.trainer_state.get("history", []))
        start = int(ck.trainer_state["epoch"]) + 1
    elif cfg.init_from:
        # fine-tuning: the start's normalisation comes with its weights (the code space it learned
        # is relative to them), so the data's own stats are not used
        load_into_model(cfg.init_from)
    else:
        mean_e, std_e, mean_g, std_g = stats if stats is not None else latent_stats(train)
        f_e.norm.set_stats(mean_e.to(device), std_e.to(device))
        f_d.norm.set_stats(mean_g.to(device), std_g.to(device))
    if prepare_model is not None:  # after weights and stats are final, so every replica starts equal
        model = prepare_model(model)
    resumed_from = start - 1

    for epoch in range(start, cfg.optim.epochs):
        t0 = time.perf_counter()
        lr = lr_at(epoch, cfg.optim)
        set_lr(opt, lr)
        model.train()
        tot = dict.fromkeys(TERMS, 0.0)
        steps = 0
        for z_e, z_g in train.batches(epoch):
            if z_e.shape[0] < 2:  # a ragged last batch of one row has no gram term; skip it
                continue
            z_e, z_g = z_e.to(device, non_blocking=True), z_g.to(device, non_blocking=True)
            code, pred_std = model(z_e, cfg.loss.code_noise_bits, cfg.mapping.code_prefixes)
            out = objective(code, pred_std, z_g, f_d)
            if not torch.isfinite(out["loss"]):
                raise FloatingPointError(f"non-finite loss at epoch {epoch}: lower optim.lr_start or "
                                         "loss.lambda_gram")
            opt.zero_grad()
            out["loss"].backward()
            if cfg.optim.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            opt.step()
            for k in tot:
                tot[k] += float(out[k].detach())
            steps += 1
        if steps == 0:
            raise ValueError("the training source yielded no batch of at least 2 pairs")
        metrics: dict[str, float] = {"epoch": epoch, "lr": lr, "resumed_from_epoch": resumed_from,
                                     **{f"train_{k}": v / steps for k, v in tot.items()}}
        if val is not None:
            metrics.update(evaluate(f_e, f_d, val, cfg, objective))
        metrics["epoch_s"] = time.perf_counter() - t0
        history.append(metrics)
        if log:
            log(_fmt(metrics))
        if on_epoch_end is not None:
            def save(path: Path, _epoch=epoch) -> Path:
                return save_checkpoint(path, f_e, f_d, cfg, meta=meta, optimizer_state=opt.state_dict(),
                                       trainer_state={"epoch": _epoch, "history": history})
            on_epoch_end(epoch, metrics, save)
    f_e.eval()
    f_d.eval()
    return FitResult(f_e, f_d, cfg, history)


def _fmt(m: dict[str, float]) -> str:
    def f(v: float) -> str:
        return f"{v:.4g}" if isinstance(v, float) and math.isfinite(v) else str(v)
    return "  ".join(f"{k}={f(v)}" for k, v in m.items())
