"""LION's point-voxel networks (nv-tlabs/LION ``models/pvcnn2.py``, ``pvcnn2_ada.py``,
``latent_points_ada.py``, ``shapelatent_modules.py``, ``score_sde/resnet.py``), re-written from
reading that code so that the official state dicts load key for key.

Module and attribute names, container types and layer order follow the official code because the
state-dict keys are built from them (``voxel_layers.6.fc.0.weight`` is the SE block's first linear,
index 3 being a parameter-less dropout). Forward passes are written out explicitly instead of the
official tuple-passing through ``nn.Sequential``; the arithmetic is the same. Quirks of the official
builders that decide which weights exist are kept on purpose and noted where they occur.

``ada=True`` is the ``pvcnn2_ada`` flavour: every GroupNorm is an AdaGN modulated by the global
style latent. ``ada=False`` (the style encoder) uses plain GroupNorm.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from squeeze3d.zoo.lion import official_ops as ops

# (conv_configs, sa_configs): conv = (channels, blocks, voxel resolution) or None;
# sa = (centres, radius, neighbours, mlp channels). From the official class attributes.
UNET_SA = (((32, 2, 32), (1024, 0.1, 32, (32, 64))),
           ((64, 3, 16), (256, 0.2, 32, (64, 128))),
           ((128, 3, 8), (64, 0.4, 32, (128, 256))),
           (None, (16, 0.8, 32, (128, 128, 128))))
PRIOR_SA = UNET_SA[:2] + (((128, 3, 8), (64, 0.4, 32, (128, 128))),) + UNET_SA[3:]
UNET_FP = (((128, 128), (128, 3, 8)),
           ((128, 128), (128, 3, 8)),
           ((128, 128), (128, 2, 16)),
           ((128, 128, 64), (64, 2, 32)))
STYLE_SA = (((32, 2, 32), (1024, 0.1, 32, (32, 32))),
            ((32, 1, 16), (256, 0.2, 32, (32, 64))))


def swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


class Swish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return swish(x)


def sinusoidal_embedding(t: torch.Tensor, dim: int, scale: float = 1.0) -> torch.Tensor:
    """LION's timestep embedding: frequencies exp(-log(1e4)·i/(half-1)), [sin | cos]."""
    t = t.reshape(-1).float() * scale
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=t.device, dtype=torch.float32) * -(math.log(10000) / (half - 1)))
    a = t[:, None] * freqs[None]
    emb = torch.cat([a.sin(), a.cos()], 1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


class AdaGN(nn.Module):
    """GroupNorm(8) whose affine scale and shift come from the style latent: ``norm(x)·s + b``."""

    def __init__(self, channels: int, style_dim: int):
        super().__init__()
        self.norm = nn.GroupNorm(8, channels)
        self.emd = nn.Linear(style_dim, 2 * channels)
        with torch.no_grad():  # official init: identity modulation
            self.emd.bias[:channels] = 1
            self.emd.bias[channels:] = 0

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        s = self.emd(style).reshape(style.shape[0], -1, *([1] * (x.dim() - 2)))
        scale, shift = s.chunk(2, 1)
        return self.norm(x) * scale + shift


def _norm_forward(layer: nn.Module, x: torch.Tensor, style: torch.Tensor | None) -> torch.Tensor:
    return layer(x, style) if isinstance(layer, AdaGN) else layer(x)


class SharedMLP(nn.Module):
    """1×1 convolutions, each followed by (Ada)GroupNorm(8) and swish. ``dim`` 1: Conv1d, 2: Conv2d."""

    def __init__(self, in_ch: int, out_ch: int | Sequence[int], dim: int = 1, ada: bool = True,
                 style_dim: int = 128):
        super().__init__()
        conv = nn.Conv1d if dim == 1 else nn.Conv2d
        layers: list[nn.Module] = []
        for oc in ([out_ch] if isinstance(out_ch, int) else out_ch):
            layers += [conv(in_ch, oc, 1), AdaGN(oc, style_dim) if ada else nn.GroupNorm(8, oc), Swish()]
            in_ch = oc
        # ModuleList (ada) vs Sequential (plain) as in the official code: same keys either way
        self.layers = nn.ModuleList(layers) if ada else nn.Sequential(*layers)
        self.out_channels = in_ch

    def forward(self, x: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.layers:
            x = _norm_forward(layer, x, style)
        return x


class SE3d(nn.Module):
    """Squeeze-excitation over a voxel grid (reduction 8, no biases)."""

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(channels, channels // reduction, bias=False), nn.ReLU(),
                                nn.Linear(channels // reduction, channels, bias=False), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x.mean((2, 3, 4)))[:, :, None, None, None]


class LinearAttention(nn.Module):
    """Linear attention over points (softmax over points on the keys). Not residual: the official
    PVConv and U-Net replace their features with its output."""

    def __init__(self, dim: int, heads: int = 4, dim_head: int = 32):
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        hidden = heads * dim_head
        self.to_qkv = nn.Conv2d(dim, hidden * 3, 1, bias=False)
        self.to_out = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, n = x.shape
        qkv = self.to_qkv(x[..., None]).reshape(b, 3, self.heads, self.dim_head, n)
        q, k, v = qkv.unbind(1)
        k = k.softmax(-1)
        context = torch.einsum("bhdn,bhen->bhde", k, v)
        out = torch.einsum("bhde,bhdn->bhen", context, q).reshape(b, self.heads * self.dim_head, n, 1)
        return self.to_out(out)[..., 0]


def normalised_voxel_coords(coords: torch.Tensor, r: int) -> torch.Tensor:
    """Centre the cloud, scale it into the unit cube (max radius -> 0.5), map to [0, r-1]."""
    c = coords - coords.mean(2, keepdim=True)
    c = c / (c.norm(dim=1, keepdim=True).max(dim=2, keepdim=True).values * 2.0) + 0.5
    return torch.clamp(c * r, 0, r - 1)


class PVConv(nn.Module):
    """Point-voxel convolution: voxelise (mean), two 3³ convs with norms and SE, trilinear
    devoxelise, plus a per-point branch; optional linear attention after the sum."""

    def __init__(self, in_ch: int, out_ch: int, resolution: int, attention: bool, ada: bool,
                 style_dim: int = 128, dropout: float = 0.1):
        super().__init__()
        self.resolution = resolution
        norm = (lambda c: AdaGN(c, style_dim)) if ada else (lambda c: nn.GroupNorm(8, c))
        layers = [nn.Conv3d(in_ch, out_ch, 3, padding=1), norm(out_ch), Swish(), nn.Dropout(dropout),
                  nn.Conv3d(out_ch, out_ch, 3, padding=1), norm(out_ch), SE3d(out_ch)]
        self.voxel_layers = nn.ModuleList(layers) if ada else nn.Sequential(*layers)
        self.attn = LinearAttention(out_ch) if attention else None
        self.point_features = SharedMLP(in_ch, out_ch, dim=1, ada=ada, style_dim=style_dim)

    def forward(self, features: torch.Tensor, coords: torch.Tensor, style: torch.Tensor | None) -> torch.Tensor:
        r = self.resolution
        vc = normalised_voxel_coords(coords.detach(), r)
        grid = ops.avg_voxelize(features, torch.round(vc).long(), r)
        for layer in self.voxel_layers:
            grid = _norm_forward(layer, grid, style)
        fused = ops.trilinear_devoxelize(grid, vc, r) + self.point_features(features, style)
        return self.attn(fused) if self.attn is not None else fused


class PointNetSAModule(nn.Module):
    """Set abstraction: farthest-point centres, ball-query groups (relative xyz first), shared MLP,
    max over each group. ``groupers`` hold no weights; kept for the layout."""

    def __init__(self, num_centers: int, radius: float, num_neighbors: int, in_ch: int,
                 out_ch: Sequence[int], ada: bool, style_dim: int = 128):
        super().__init__()
        self.num_centers, self.radius, self.num_neighbors = num_centers, radius, num_neighbors
        self.mlps = nn.ModuleList([SharedMLP(in_ch + 3, list(out_ch), dim=2, ada=ada, style_dim=style_dim)])
        self.out_channels = out_ch[-1]

    def forward(self, features: torch.Tensor, coords: torch.Tensor, style: torch.Tensor | None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        centres = ops.gather_points(coords, ops.furthest_point_sample(coords, self.num_centers))
        idx = ops.ball_query(centres, coords, self.radius, self.num_neighbors)
        grouped = torch.cat([ops.grouping(coords, idx) - centres[..., None], ops.grouping(features, idx)], 1)
        return self.mlps[0](grouped, style).max(-1).values, centres


class PointNetFPModule(nn.Module):
    """Feature propagation: 3-NN inverse-distance interpolation, concat skip features, shared MLP."""

    def __init__(self, in_ch: int, out_ch: Sequence[int], style_dim: int = 128):
        super().__init__()
        self.mlp = SharedMLP(in_ch, list(out_ch), dim=1, ada=True, style_dim=style_dim)

    def forward(self, points: torch.Tensor, centres: torch.Tensor, centre_features: torch.Tensor,
                point_features: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        x = torch.cat([ops.three_nn_interpolate(points, centres, centre_features), point_features], 1)
        return self.mlp(x, style)


def build_sa(blocks, extra_ch: int, input_dim: int, embed_dim: int, ada: bool, style_dim: int,
             dropout: float, width: float = 1.0, vres: float = 1.0) -> tuple[nn.ModuleList, list[int], int]:
    """The official ``create_pointnet2_sa_components`` (``use_att``, ``with_se``, ``has_temb`` on).

    Kept quirks: stage 0 builds all of its PVConv blocks, later stages only the first (the loop
    counts the others but never appends them); attention sits on the first PVConv of odd stages;
    the time embedding widens the first module of every stage but the first."""
    in_ch = extra_ch + input_dim
    layers, sa_in = nn.ModuleList(), []
    for c, (conv, sa) in enumerate(blocks):
        sa_in.append(in_ch)
        stage: list[nn.Module] = []
        k = 0
        if conv is not None:
            out, num_blocks, res = int(width * conv[0]), conv[1], int(vres * conv[2])
            for p in range(num_blocks):
                att = (c + 1) % 2 == 0 and p == 0
                if c == 0:
                    stage.append(PVConv(in_ch, out, res, att, ada, style_dim, dropout))
                elif k == 0:
                    stage.append(PVConv(in_ch + embed_dim, out, res, att, ada, style_dim, dropout))
                in_ch = out
                k += 1
        centres, radius, nbrs, mlp = sa
        mlp = [int(width * m) for m in mlp]
        stage.append(PointNetSAModule(centres, radius, nbrs, in_ch + (embed_dim if k == 0 else 0), mlp, ada,
                                      style_dim))
        in_ch = mlp[-1]
        layers.append(stage[0] if len(stage) == 1 else nn.Sequential(*stage))
    return layers, sa_in, in_ch


def build_fp(blocks, in_ch: int, sa_in: list[int], embed_dim: int, style_dim: int, dropout: float,
             width: float = 1.0, vres: float = 1.0) -> tuple[nn.ModuleList, int]:
    """The official ``create_pointnet2_fp_modules``. Its attention test compares the stage index
    with the length of the stage list being built (1 at that point), so FP stages never get
    attention: none is built here either."""
    layers = nn.ModuleList()
    for i, (fp, conv) in enumerate(blocks):
        out = [int(width * o) for o in fp]
        stage: list[nn.Module] = [PointNetFPModule(in_ch + sa_in[-1 - i] + embed_dim, out, style_dim)]
        in_ch = out[-1]
        if conv is not None:
            c_out, num_blocks, res = int(width * conv[0]), conv[1], int(vres * conv[2])
            for _ in range(num_blocks):
                stage.append(PVConv(in_ch, c_out, res, False, True, style_dim, dropout))
                in_ch = c_out
        layers.append(stage[0] if len(stage) == 1 else nn.Sequential(*stage))
    return layers, in_ch


def _modules(stage: nn.Module) -> list[nn.Module]:
    return list(stage) if isinstance(stage, nn.Sequential) else [stage]


class PVCNN2Unet(nn.Module):
    """The AdaGN point-voxel U-Net behind LION's VAE encoder, decoder and latent-point prior.
    ``forward(inputs [B, C, N], style [B, S], t [B] or None) -> [B, num_classes, N]``; the first
    ``input_dim`` input channels are the coordinates."""

    def __init__(self, num_classes: int, embed_dim: int, extra_ch: int, input_dim: int, style_dim: int,
                 sa_blocks, fp_blocks, dropout: float = 0.1, time_emb_scale: float = 1.0, width: float = 1.0,
                 vres: float = 1.0):
        super().__init__()
        self.input_dim, self.embed_dim, self.time_emb_scale = input_dim, embed_dim, time_emb_scale
        if embed_dim > 0:
            self.embedf = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.LeakyReLU(0.1),
                                        nn.Linear(embed_dim, embed_dim))
        self.sa_layers, sa_in, ch = build_sa(sa_blocks, extra_ch, input_dim, embed_dim, True, style_dim,
                                             dropout, width, vres)
        self.global_att = LinearAttention(ch, heads=8)
        sa_in[0] = extra_ch + input_dim - 3  # the first skip carries only the extra features
        self.fp_layers, ch = build_fp(fp_blocks, ch, sa_in, embed_dim, style_dim, dropout, width, vres)
        self.classifier = nn.ModuleList([SharedMLP(ch, int(width * 128), dim=1, style_dim=style_dim),
                                         nn.Dropout(dropout), nn.Conv1d(int(width * 128), num_classes, 1)])

    def forward(self, inputs: torch.Tensor, style: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        coords = inputs[:, :self.input_dim]
        features = inputs
        temb = None
        if self.embed_dim > 0:
            temb = self.embedf(sinusoidal_embedding(t.expand(inputs.shape[0]) if t.dim() == 0 else t,
                                                    self.embed_dim, self.time_emb_scale))[:, :, None]

        def with_temb(x: torch.Tensor) -> torch.Tensor:
            return x if temb is None else torch.cat([x, temb.expand(-1, -1, x.shape[2])], 1)

        coords_list, feats_list = [], []
        for i, stage in enumerate(self.sa_layers):
            feats_list.append(features)
            coords_list.append(coords)
            if i > 0:
                features = with_temb(features)
            for m in _modules(stage):
                if isinstance(m, PVConv):
                    features = m(features, coords, style)
                else:
                    features, coords = m(features, coords, style)
        feats_list[0] = inputs[:, 3:]
        features = self.global_att(features)
        for i, stage in enumerate(self.fp_layers):
            mods = _modules(stage)
            points = coords_list[-1 - i]
            features = mods[0](points, coords, with_temb(features), feats_list[-1 - i], style)
            coords = points
            for m in mods[1:]:
                features = m(features, coords, style)
        features = self.classifier[0](features, style)
        return self.classifier[2](self.classifier[1](features))


class PointNetPlusEncoder(nn.Module):
    """LION's style (global) encoder: two plain-GroupNorm PVConv + set-abstraction stages, max pool,
    a linear head to (mu, log sigma) of the global latent."""

    def __init__(self, zdim: int, input_dim: int = 3, dropout: float = 0.1, width: float = 1.0, vres: float = 1.0):
        super().__init__()
        self.zdim = zdim
        layers, _, ch = build_sa(STYLE_SA, 0, input_dim, 0, False, 0, dropout, width, vres)
        self.mlp = nn.Linear(ch, 2 * zdim)  # registered first, as in the official code (state-dict order)
        self.layers = layers

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [B, N, 3]`` -> (mu, log sigma), each ``[B, zdim]``."""
        coords = features = x.transpose(1, 2)
        for stage in self.layers:
            for m in _modules(stage):
                if isinstance(m, PVConv):
                    features = m(features, coords, None)
                else:
                    features, coords = m(features, coords, None)
        out = self.mlp(features.max(-1).values)
        return out[:, :self.zdim], out[:, self.zdim:]


class SE(nn.Module):
    """Squeeze-excitation of the global prior: 1×1 convs on a [B, C, 1, 1] latent (no pooling)."""

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        self.fc = nn.Sequential(nn.Conv2d(channels, channels // reduction, 1, bias=False), nn.ReLU(),
                                nn.Conv2d(channels // reduction, channels, 1, bias=False), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x)


class ResBlockSEDrop(nn.Module):
    """``x + SE(relu(conv2(dropout(relu(conv1(x + temb))))))``: the skip is taken before temb."""

    def __init__(self, channels: int, dropout: float):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 1)
        self.conv2 = nn.Conv2d(channels, channels, 1)
        self.SE = SE(channels)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.dropout(F.relu(self.conv1(x + temb)))
        return x + self.SE(F.relu(self.conv2(h)))


class GlobalPrior(nn.Module):
    """LION's shape-latent prior (``PriorSEDrop``): eps-prediction on the [B, D, 1, 1] global latent
    with ``num_blocks`` SE residual blocks of width ``channels``; time through a 2-conv embedding
    (no activation between, as in the official code)."""

    def __init__(self, in_dim: int, channels: int, num_blocks: int, embedding_dim: int,
                 embedding_scale: float = 1.0, dropout: float = 0.2):
        super().__init__()
        self.embedding_dim, self.embedding_scale = embedding_dim, embedding_scale
        self.temb_layer = nn.Sequential(nn.Conv2d(embedding_dim, 4 * embedding_dim, 1),
                                        nn.Conv2d(4 * embedding_dim, channels, 1))
        self.input_layer = nn.Conv2d(in_dim, channels, 1)
        # registered before the blocks as in the official code: parameter order indexes the EMA copies
        self.output_layer = nn.Conv2d(channels, in_dim, 1)
        self.all_modules = nn.ModuleList(ResBlockSEDrop(channels, dropout) for _ in range(num_blocks))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``x [B, D]`` or ``[B, D, 1, 1]``, ``t [B]`` -> eps with the shape of ``x``."""
        shape = x.shape
        x = x.reshape(shape[0], -1, 1, 1)
        temb = self.temb_layer(sinusoidal_embedding(t, self.embedding_dim, self.embedding_scale)[:, :, None, None])
        h = self.input_layer(x)
        for block in self.all_modules:
            h = block(h, temb)
        return self.output_layer(h).reshape(shape)
