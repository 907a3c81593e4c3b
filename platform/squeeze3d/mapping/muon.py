"""Muon (momentum + Newton–Schulz orthogonalised updates) with the orthogonalisation dtype as a
parameter.

Why not ``torch.optim.Muon``: it runs Newton–Schulz in bfloat16 unconditionally. That is right on a
GPU (tensor cores), but CPUs without native bf16 matmul emulate it: at pointnet_lion sizes one step
took > 40 s here against 0.3 s for AdamW. This is the same algorithm — the same update rule, quintic
coefficients, Nesterov momentum, decoupled weight decay, the same ``match_rms_adamw`` LR scaling and
the same state layout (``momentum_buffer``) — with ``ns_dtype`` chosen per device: bfloat16 on CUDA,
float32 elsewhere. State dicts are interchangeable with ``torch.optim.Muon``'s.
"""

from __future__ import annotations

import math

import torch

NS_COEFFICIENTS = (3.4445, -4.775, 2.0315)  # Keller Jordan's quintic, as in torch.optim.Muon


def default_ns_dtype(device: torch.device | str) -> torch.dtype:
    """bfloat16 where matmuls are native in it (CUDA), float32 otherwise."""
    return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32


def orthogonalise(g: torch.Tensor, steps: int, dtype: torch.dtype, eps: float = 1e-7,
                  coefficients: tuple[float, float, float] = NS_COEFFICIENTS) -> torch.Tensor:
    """Approximate U·Vᵀ of ``g = U·S·Vᵀ`` by a quintic Newton–Schulz iteration (singular values land
    in roughly [0.5, 1.5], which is all Muon needs)."""
    a, b, c = coefficients
    x = g.to(dtype)
    tall = g.size(0) > g.size(1)
    if tall:  # iterate on the wide orientation: the Gram matrix is the smaller one
        x = x.T
    x = x / x.norm().clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return (x.T if tall else x).to(g.dtype)


def adjusted_lr(lr: float, shape: torch.Size, mode: str | None) -> float:
    """``match_rms_adamw`` scales so the update RMS matches AdamW's (one LR serves both optimisers)."""
    rows, cols = shape[:2]
    if mode == "match_rms_adamw":
        return lr * 0.2 * math.sqrt(max(rows, cols))
    if mode in (None, "original"):
        return lr * math.sqrt(max(1.0, rows / cols))
    raise ValueError(f"unknown adjust_lr_fn {mode!r} (match_rms_adamw | original)")


class Muon(torch.optim.Optimizer):
    """Muon for 2-D weight matrices; see the module docstring for how it relates to torch's."""

    def __init__(self, params, lr: float = 1e-3, weight_decay: float = 0.1, momentum: float = 0.95,
                 nesterov: bool = True, ns_steps: int = 5, eps: float = 1e-7,
                 adjust_lr_fn: str | None = None, ns_dtype: torch.dtype | None = None):
        defaults = dict(lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
                        ns_steps=ns_steps, eps=eps, adjust_lr_fn=adjust_lr_fn)
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim != 2:
                    raise ValueError(f"Muon takes 2-D weight matrices only, got a parameter of shape {tuple(p.shape)}")
        self.ns_dtype = ns_dtype

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, wd, mom = group["lr"], group["weight_decay"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - mom)
                update = p.grad.lerp(buf, mom) if group["nesterov"] else buf
                dtype = self.ns_dtype or default_ns_dtype(p.device)
                update = orthogonalise(update, group["ns_steps"], dtype, group["eps"])
                p.mul_(1 - lr * wd)
                p.add_(update, alpha=-adjusted_lr(lr, p.shape, group["adjust_lr_fn"]))
        return loss
