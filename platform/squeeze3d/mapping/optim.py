"""Optimiser: Muon for 2-D weight matrices, AdamW for everything else; linear LR decay per epoch."""

from __future__ import annotations

import torch
from torch import nn

from squeeze3d.config import OptimConfig
from squeeze3d.mapping.muon import Muon


class CombinedOptimizer:
    """Steps several optimisers as one; state (de)serialises as a list of their state dicts."""

    def __init__(self, optimizers: list[torch.optim.Optimizer]):
        self.optimizers = optimizers

    @property
    def param_groups(self) -> list[dict]:
        return [g for o in self.optimizers for g in o.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.optimizers:
            o.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for o in self.optimizers:
            o.step()

    def state_dict(self) -> list[dict]:
        return [o.state_dict() for o in self.optimizers]

    def load_state_dict(self, states: list[dict]) -> None:
        if len(states) != len(self.optimizers):
            raise ValueError(f"optimizer state holds {len(states)} optimisers, expected {len(self.optimizers)}")
        for o, s in zip(self.optimizers, states):
            o.load_state_dict(s)


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> CombinedOptimizer:
    """Muon takes the 2-D weight matrices (Linear weights); conv kernels, biases, norms go to AdamW.

    Muon uses ``adjust_lr_fn="match_rms_adamw"`` so one learning rate (and one schedule) serves
    both optimisers, as in Moonlight's recipe. It is ``squeeze3d.mapping.muon.Muon`` (torch's
    algorithm with a per-device Newton–Schulz dtype: torch's bf16-only version is ~100x slower on CPU).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adamw":
        return CombinedOptimizer([torch.optim.AdamW(params, lr=cfg.lr_start, weight_decay=cfg.weight_decay)])
    matrices = [p for p in params if p.ndim == 2]
    rest = [p for p in params if p.ndim != 2]
    opts: list[torch.optim.Optimizer] = []
    if matrices:
        opts.append(Muon(matrices, lr=cfg.lr_start, weight_decay=cfg.weight_decay,
                        momentum=cfg.muon_momentum, nesterov=True, ns_steps=cfg.muon_ns_steps,
                        adjust_lr_fn="match_rms_adamw"))
    if rest:
        opts.append(torch.optim.AdamW(rest, lr=cfg.lr_start, weight_decay=cfg.weight_decay))
    return CombinedOptimizer(opts)


def lr_at(epoch: int, cfg: OptimConfig) -> float:
    """Linear decay from lr_start (epoch 0) to lr_end (last epoch)."""
    if cfg.epochs <= 1:
        return cfg.lr_start
    t = min(max(epoch, 0), cfg.epochs - 1) / (cfg.epochs - 1)
    return cfg.lr_start + t * (cfg.lr_end - cfg.lr_start)


def set_lr(opt: CombinedOptimizer, lr: float) -> None:
    for g in opt.param_groups:
        g["lr"] = lr
