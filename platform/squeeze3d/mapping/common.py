"""Pieces shared by the mapping architectures."""

from __future__ import annotations

import math

import torch
from torch import nn


def numel(shape: tuple[int, ...]) -> int:
    return int(math.prod(shape))


class Standardise(nn.Module):
    """Per-dimension (x − mean) / std with the statistics stored as buffers, so they travel inside
    the safetensors checkpoint. Latents of pre-trained models have wildly different scales per
    dimension; regressing standardised targets keeps every dimension in the loss."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("std", torch.ones(shape))

    def set_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean.copy_(mean.reshape(self.mean.shape))
        # floor the std so near-constant dimensions do not blow up into noise
        floor = 1e-6 + 1e-3 * float(std.mean())
        self.std.copy_(std.reshape(self.std.shape).clamp_min(floor))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std + self.mean


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of an NCDHW tensor (per voxel), as in ConvNeXt-style nets."""

    def __init__(self, channels: int):
        super().__init__()
        self.ln = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln(x.movedim(1, -1)).movedim(-1, 1)


class MappingHalf(nn.Module):
    """Base of F_E and F_D: a body network plus the standardisation on its latent side.

    F_E standardises z_E before its body; F_D un-standardises its body's output into z_G space.
    ``forward`` works in raw latent units, ``forward_std`` exposes F_D's standardised output so the
    loss can weight every z_G dimension equally.
    """

    def __init__(self, body: nn.Module, in_shape: tuple[int, ...], out_shape: tuple[int, ...], role: str,
                 code_bound: str = "none"):
        super().__init__()
        if role not in ("encoder", "decoder"):
            raise ValueError(role)
        if code_bound not in ("none", "tanh"):
            raise ValueError(f"unknown code bound {code_bound!r} (none | tanh)")
        self.role = role
        self.code_bound = code_bound if role == "encoder" else "none"  # the bound shapes F_E's output only
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)
        self.body = body
        self.norm = Standardise(self.in_shape if role == "encoder" else self.out_shape)

    def forward_std(self, x: torch.Tensor) -> torch.Tensor:
        if self.role == "encoder":
            x = self.norm(x)
        y = self.body(x).reshape(x.shape[0], *self.out_shape)
        return torch.tanh(y) if self.code_bound == "tanh" else y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.forward_std(x)
        return self.norm.inverse(y) if self.role == "decoder" else y
