"""NeRF-MAE's Swin-3D MAE network (``SwinTransformer_MAE3D_New``'s module tree and state-dict keys) and its
configuration; checkpoints and the platform's E/G are ``zoo.nerfmae.swin3d``, which re-exports these."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

BACKBONES = {  # run_swin_mae3d.py's table; its build_model always picks swin_s
    "swin_t": (96, (2, 2, 6, 2), (3, 6, 12, 24)),
    "swin_s": (96, (2, 2, 18, 2), (3, 6, 12, 24)),
    "swin_b": (128, (2, 2, 18, 2), (3, 6, 12, 24)),
    "swin_l": (192, (2, 2, 18, 2), (6, 12, 24, 48)),
}


@dataclass
class NerfMAESwinConfig:
    resolution: int = 160
    """R: grid voxels per axis the checkpoint was trained at (160 for the released pretraining;
    fixes the position-embedding size). A multiple of 32."""
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 18, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window: int = 4
    patch: int = 4
    mlp_ratio: float = 4.0
    channels: int = 4
    """Input and output channels (r, g, b, alpha)."""

    def __post_init__(self):
        self.depths, self.num_heads = tuple(self.depths), tuple(self.num_heads)
        if self.resolution % (self.patch * 8):
            raise ValueError(f"resolution must be a multiple of {self.patch * 8}, got {self.resolution}")

    @classmethod
    def backbone(cls, name: str = "swin_s", **kw) -> NerfMAESwinConfig:
        if name not in BACKBONES:
            raise ValueError(f"unknown backbone {name!r}; choose from {sorted(BACKBONES)}")
        e, d, h = BACKBONES[name]
        return cls(embed_dim=e, depths=d, num_heads=h, **kw)

    @property
    def z_shape(self) -> tuple[int, int, int, int]:
        s = self.resolution // self.patch
        return (self.embed_dim, s, s, s)

    def feature_shape(self, features: str = "decoder") -> tuple[int, int, int, int]:
        """z_E's shape: decoder2 features (``z_shape``) or the stage-3 ``bottleneck``."""
        if features == "bottleneck":
            s = self.resolution // (self.patch * 8)
            return (self.embed_dim * 8, s, s, s)
        return self.z_shape


class Permute(nn.Module):
    def __init__(self, dims: Sequence[int]):
        super().__init__()
        self.dims = list(dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(self.dims)


def relative_position_index(w: int) -> torch.Tensor:
    """Index into the (2w-1)³ bias table for every pair of positions in a w³ window."""
    coords = torch.stack(torch.meshgrid(torch.arange(w), torch.arange(w), torch.arange(w), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (w - 1)
    return (rel[..., 0] * (2 * w - 1) ** 2 + rel[..., 1] * (2 * w - 1) + rel[..., 2]).flatten()


class WindowAttention3d(nn.Module):
    """Multi-head self-attention inside w³ windows with a learned relative position bias; shifted
    windows roll the grid by w/2 and mask pairs that came from different regions."""

    def __init__(self, dim: int, window: int, shift: int, heads: int):
        super().__init__()
        self.window, self.shift, self.heads = window, shift, heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 3, heads))
        self.register_buffer("relative_position_index", relative_position_index(window))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, H, W, D, C]`` -> same shape."""
        b, h, w, d, c = x.shape
        ws, n = self.window, self.window ** 3
        x = F.pad(x, (0, 0, 0, (-d) % ws, 0, (-w) % ws, 0, (-h) % ws))
        _, ph, pw, pd, _ = x.shape
        shifts = [0 if ws >= size else self.shift for size in (ph, pw, pd)]
        if sum(shifts):
            x = torch.roll(x, shifts=[-s for s in shifts], dims=(1, 2, 3))
        nh, nw, nd = ph // ws, pw // ws, pd // ws
        win = x.reshape(b, nh, ws, nw, ws, nd, ws, c).permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, n, c)
        qkv = self.qkv(win).reshape(win.shape[0], n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * (c // self.heads) ** -0.5, qkv[1], qkv[2]
        bias = self.relative_position_bias_table[self.relative_position_index].reshape(n, n, -1).permute(2, 0, 1)
        attn = q @ k.transpose(-2, -1) + bias[None]
        if sum(shifts):
            attn = (attn.reshape(b, -1, self.heads, n, n) + self._shift_mask(ph, pw, pd, shifts, x)[None, :, None]
                    ).reshape(-1, self.heads, n, n)
        out = (attn.softmax(-1) @ v).transpose(1, 2).reshape(-1, n, c)
        out = self.proj(out).reshape(b, nh, nw, nd, ws, ws, ws, c).permute(0, 1, 4, 2, 5, 3, 6, 7)
        out = out.reshape(b, ph, pw, pd, c)
        if sum(shifts):
            out = torch.roll(out, shifts=shifts, dims=(1, 2, 3))
        return out[:, :h, :w, :d].contiguous()

    def _shift_mask(self, ph: int, pw: int, pd: int, shifts: list[int], like: torch.Tensor) -> torch.Tensor:
        ws = self.window
        region = like.new_zeros((ph, pw, pd))
        count = 0
        for hs in ((0, -ws), (-ws, -shifts[0]), (-shifts[0], None)):
            for wsl in ((0, -ws), (-ws, -shifts[1]), (-shifts[1], None)):
                for dsl in ((0, -ws), (-ws, -shifts[2]), (-shifts[2], None)):
                    region[hs[0]:hs[1], wsl[0]:wsl[1], dsl[0]:dsl[1]] = count
                    count += 1
        region = region.reshape(ph // ws, ws, pw // ws, ws, pd // ws, ws).permute(0, 2, 4, 1, 3, 5).reshape(-1, ws ** 3)
        diff = region[:, None, :] - region[:, :, None]
        return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)


class SwinBlock3d(nn.Module):
    """Pre-norm transformer block: window attention, then a GELU MLP (stochastic depth: train only)."""

    def __init__(self, dim: int, heads: int, window: int, shift: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention3d(dim, window, shift, heads)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        # torchvision's MLP layout: Linear, GELU, Dropout, Linear, Dropout
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(0.0), nn.Linear(hidden, dim),
                                 nn.Dropout(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchMerging3d(nn.Module):
    """2³ neighbours concatenated (x fastest, then y, then z), LayerNorm, linear 8C -> 2C."""

    def __init__(self, dim: int):
        super().__init__()
        self.reduction = nn.Linear(8 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(8 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w, d = x.shape[1:4]
        x = F.pad(x, (0, 0, 0, d % 2, 0, w % 2, 0, h % 2))
        parts = [x[:, i::2, j::2, k::2] for k in (0, 1) for j in (0, 1) for i in (0, 1)]
        return self.reduction(self.norm(torch.cat(parts, -1)))


class ResBlock3d(nn.Module):
    """UNETR residual block: conv3³-IN-LReLU-conv3³-IN (+ 1³ conv-IN projection when widths differ),
    sum, LReLU (slope 0.01). InstanceNorm without affine weights, as in the official code."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv3d(cin, cout, 3, padding=1)
        self.conv2 = nn.Conv3d(cout, cout, 3, padding=1)
        self.norm1, self.norm2 = nn.InstanceNorm3d(cout), nn.InstanceNorm3d(cout)
        self.activation = nn.LeakyReLU(0.01)
        if cin != cout:
            self.conv3 = nn.Conv3d(cin, cout, 1)
            self.norm3 = nn.InstanceNorm3d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.norm2(self.conv2(self.activation(self.norm1(self.conv1(x)))))
        res = self.norm3(self.conv3(x)) if hasattr(self, "conv3") else x
        return self.activation(out + res)


class UpBlock3d(nn.Module):
    """Transposed conv (kernel = stride = ``up``), concat the skip (if any), residual block."""

    def __init__(self, cin: int, cout: int, up: int, skip: bool = True):
        super().__init__()
        self.use_skip = skip
        self.transp_conv = nn.ConvTranspose3d(cin, cout, up, stride=up)
        self.conv_block = ResBlock3d(2 * cout if skip else cout, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        x = self.transp_conv(x)
        return self.conv_block(torch.cat([x, skip], 1) if self.use_skip else x)


class OutBlock3d(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class SwinMAE3D(nn.Module):
    """Module tree and state-dict keys of ``SwinTransformer_MAE3D_New``."""

    def __init__(self, c: NerfMAESwinConfig | None = None):
        super().__init__()
        self.c = c = c or NerfMAESwinConfig()
        e = c.embed_dim
        self.patch_partition = nn.Sequential(nn.Conv3d(c.channels, e, c.patch, stride=c.patch),
                                             Permute([0, 2, 3, 4, 1]), nn.LayerNorm(e))
        self.stages = nn.ModuleList()
        for i, (depth, heads) in enumerate(zip(c.depths, c.num_heads)):
            dim = e * 2 ** i
            blocks: list[nn.Module] = [PatchMerging3d(dim // 2)] if i > 0 else []
            blocks += [SwinBlock3d(dim, heads, c.window, 0 if j % 2 == 0 else c.window // 2, c.mlp_ratio)
                       for j in range(depth)]
            self.stages.append(nn.Sequential(*blocks))
        self.decoder4 = UpBlock3d(8 * e, 4 * e, 2)
        self.decoder3 = UpBlock3d(4 * e, 2 * e, 2)
        self.decoder2 = UpBlock3d(2 * e, e, 2)
        self.decoder1 = UpBlock3d(e, e // 2, c.patch, skip=False)
        self.out = OutBlock3d(e // 2, c.channels)
        s = c.resolution // c.patch
        # fixed (not trained) sin-cos table in the official model; loaded from the checkpoint
        self.pos_embed = nn.Parameter(torch.zeros(1, s, s, s, e), requires_grad=False)
        self.mask_token = nn.Parameter(torch.zeros(e))  # used only by masked pre-training

    def stage_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``x [B, 4, R³]`` (r, g, b, alpha) -> the four stages' outputs, channels-last."""
        x = self.patch_partition(x) + self.pos_embed
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats

    def latent(self, x: torch.Tensor, features: str = "decoder") -> torch.Tensor:
        """z: ``decoder`` -> decoder2 output ``[B, 96, (R/4)³]``; ``bottleneck`` -> stage 3 ``[B, 768, (R/32)³]``."""
        f = [t.permute(0, 4, 1, 2, 3).contiguous() for t in self.stage_features(x)]
        if features == "bottleneck":
            return f[3]
        return self.decoder2(self.decoder3(self.decoder4(f[3], f[2]), f[1]), f[0])

    def reconstruct(self, z: torch.Tensor) -> torch.Tensor:
        """decoder2 features -> ``[B, 4, R³]``: rgb (regressed) and alpha logits."""
        return self.out(self.decoder1(z))
