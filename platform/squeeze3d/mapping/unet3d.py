"""3D conv U-Net mapping (paper App. A.1, radiance fields).

F_E: 3³ conv–LN–GELU stem → per level a bottleneck ResNet-V2 block, stride-2 conv between levels,
and one more stride-2 conv into a ``code_channels`` grid (40³→20³→10³ for two levels).
F_D mirrors it with transposed convs.

Skips: a classic U-Net skip from F_E to F_D would carry information around the code, which defeats
compression (sender and receiver are different machines). So the "U-Net skips where sizes match"
are the ones the receiver can actually have: every F_D level concatenates the code, upsampled to that
level's size, before its block. 3D spatial dropout (whole channels) follows each block.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from squeeze3d.mapping.common import ChannelLayerNorm


class BottleneckV2(nn.Module):
    """Pre-activation bottleneck: LN–GELU → 1³ conv (to 2× channels) → LN–GELU → 3³ conv; a 1³
    projection shortcut when the channel count changes; residual added within the block."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        mid = 2 * c_out
        self.pre = nn.Sequential(ChannelLayerNorm(c_in), nn.GELU())
        self.conv1 = nn.Conv3d(c_in, mid, 1)
        self.mid = nn.Sequential(ChannelLayerNorm(mid), nn.GELU())
        self.conv2 = nn.Conv3d(mid, c_out, 3, padding=1)
        self.proj = nn.Conv3d(c_in, c_out, 1) if c_in != c_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pre(x)
        shortcut = self.proj(h) if self.proj is not None else x
        return self.conv2(self.mid(self.conv1(h))) + shortcut


def _stem(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(c_in, c_out, 3, padding=1), ChannelLayerNorm(c_out), nn.GELU())


def check_grid(shape: tuple[int, ...], levels: int, what: str) -> None:
    if len(shape) != 4:
        raise ValueError(f"unet3d needs {what} shaped (C, D, H, W), got {shape}")
    for s in shape[1:]:
        if s % (2 ** levels):
            raise ValueError(f"unet3d with {levels} down-sampling steps needs {what} spatial sizes divisible "
                             f"by {2 ** levels}, got {shape[1:]}")


class UNetEncoder(nn.Module):
    def __init__(self, z_e_shape: tuple[int, ...], channels: list[int], code_channels: int, dropout: float):
        super().__init__()
        check_grid(z_e_shape, len(channels), "z_E")
        self.stem = _stem(z_e_shape[0], channels[0])
        self.blocks = nn.ModuleList()
        self.downs = nn.ModuleList()
        for i, c in enumerate(channels):
            self.blocks.append(BottleneckV2(c, c))
            nxt = channels[i + 1] if i + 1 < len(channels) else code_channels
            self.downs.append(nn.Conv3d(c, nxt, 4, stride=2, padding=1))
        self.drop = nn.Dropout3d(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for block, down in zip(self.blocks, self.downs):
            h = down(self.drop(block(h)))
        return h


class UNetDecoder(nn.Module):
    def __init__(self, z_g_shape: tuple[int, ...], channels: list[int], code_channels: int, dropout: float):
        super().__init__()
        check_grid(z_g_shape, len(channels), "z_G")
        rev = list(reversed(channels))
        self.ups = nn.ModuleList()
        self.fuse = nn.ModuleList()
        self.blocks = nn.ModuleList()
        c_prev = code_channels
        for c in rev:
            self.ups.append(nn.ConvTranspose3d(c_prev, c, 4, stride=2, padding=1))
            self.fuse.append(nn.Conv3d(c + code_channels, c, 1))  # the code skip, see module docstring
            self.blocks.append(BottleneckV2(c, c))
            c_prev = c
        self.head = nn.Sequential(ChannelLayerNorm(c_prev), nn.GELU(), nn.Conv3d(c_prev, z_g_shape[0], 1))
        self.drop = nn.Dropout3d(dropout)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        h = code
        for up, fuse, block in zip(self.ups, self.fuse, self.blocks):
            h = up(h)
            skip = F.interpolate(code, size=h.shape[2:], mode="nearest")
            h = self.drop(block(fuse(torch.cat([h, skip], dim=1))))
        return self.head(h)
