"""PointNet++ (single-scale grouping, classification variant) as the point-cloud encoder E.

Architecture and state-dict layout follow the widely used PyTorch implementation
(yanx27/Pointnet_Pointnet2_pytorch, ``pointnet2_cls_ssg.get_model(num_class, normal_channel=False)``):

    sa1: npoint 512, radius 0.2, nsample 32, mlp [64, 64, 128]        (in 3: relative xyz)
    sa2: npoint 128, radius 0.4, nsample 64, mlp [128, 128, 256]      (in 128 + 3)
    sa3: group all,                          mlp [256, 512, 1024]     (in 256 + 3)
    head: fc1 1024->512, bn1, dropout 0.4, fc2 512->256, bn2, dropout 0.4, fc3 256->classes

so that a checkpoint written by that code (``{"model_state_dict": ...}``) loads here unchanged
(``load_official_checkpoint``). z_E is the 1024-d global feature after sa3 (max-pool over all points).

Differences from that implementation, all without effect on the weights' meaning:
- farthest point sampling starts at point 0 instead of a random point, so encoding is deterministic;
- the shared MLPs run channels-last (``F.linear`` with the 1x1 conv weights), which is the same maths
  and faster on CPU; the modules are still ``Conv2d``/``BatchNorm2d`` so keys and shapes match;
- ball query keeps "the first ``nsample`` in-radius points in index order, padded with the first" but
  gets them with ``topk`` instead of a full sort.

Input points: the encoder takes exactly 1024 points (xyz only, unit sphere). Larger clouds are reduced
with a fixed-seed random subset (``select_input_points``): for i.i.d. surface samples that is again an
i.i.d. sample, costs nothing, and does not depend on the input order in distribution. Smaller clouds
are tiled (duplicates do not change max-pooled features).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from squeeze3d.errors import CheckpointError
from squeeze3d.zoo.base import Encoder
from squeeze3d.zoo.pretrained import SHIPPED_WEIGHTS, load_pretrained, save_pretrained

NUM_INPUT_POINTS = 1024
SUBSET_SEED = 20240611
WEIGHTS_DIR = SHIPPED_WEIGHTS / "pointnet_lion"
WEIGHTS_NAME = "pointnet2_cls"


class PointNet2CheckpointError(CheckpointError):
    """A checkpoint whose keys or shapes do not match the architecture."""


# ----------------------------------------------------------------------------------------------
# sampling and grouping (vectorised, device-agnostic)


def farthest_point_sample(xyz: torch.Tensor, npoint: int) -> torch.Tensor:
    """Indices ``[B, npoint]`` of iterative farthest points, starting at point 0.

    Sequential over ``npoint`` by nature, vectorised over batch and points. For moderate sizes the
    pairwise distance matrix is computed once and each step is one row gather (fewer ops per step:
    the loop is dominated by per-op overhead on CPU)."""
    b, n, _ = xyz.shape
    if npoint > n:
        raise ValueError(f"farthest_point_sample: npoint {npoint} > number of points {n}")
    idx = torch.zeros(b, npoint, dtype=torch.long, device=xyz.device)
    far = torch.zeros(b, dtype=torch.long, device=xyz.device)
    bidx = torch.arange(b, device=xyz.device)
    dist = torch.full((b, n), float("inf"), device=xyz.device, dtype=xyz.dtype)
    if b * n * n <= 32 * 1024 * 1024:
        # rows gathered with index_select on a flat view: advanced indexing pair[bidx, far] is ~1000x
        # slower on CPU for B > 1
        pair = square_distance(xyz, xyz).view(b * n, n)
        row0 = bidx * n
        for i in range(npoint):
            idx[:, i] = far
            dist = torch.minimum(dist, pair.index_select(0, row0 + far))
            far = dist.argmax(dim=-1)
    else:
        for i in range(npoint):
            idx[:, i] = far
            centre = xyz[bidx, far][:, None, :]
            dist = torch.minimum(dist, (xyz - centre).pow(2).sum(-1))
            far = dist.argmax(dim=-1)
    return idx


def square_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``[B, N, M]`` squared distances (clamped at 0 against round-off)."""
    d = -2 * a @ b.transpose(1, 2)
    d += a.pow(2).sum(-1)[:, :, None]
    d += b.pow(2).sum(-1)[:, None, :]
    return d.clamp_min_(0)


def index_points(points: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``points [B, N, C]`` gathered at ``idx [B, ...]`` -> ``[B, ..., C]``."""
    b = points.shape[0]
    flat = idx.reshape(b, -1)
    out = torch.gather(points, 1, flat[..., None].expand(-1, -1, points.shape[-1]))
    return out.view(*idx.shape, points.shape[-1])


def ball_query(radius: float, nsample: int, xyz: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """For each centre, the first ``nsample`` point indices (ascending) within ``radius``, padded by
    repeating the first one. ``xyz [B, N, 3]``, ``centres [B, S, 3]`` -> ``[B, S, nsample]``.
    A centre that is itself one of the points always finds at least itself."""
    n = xyz.shape[1]
    d = square_distance(centres, xyz)
    ar = torch.arange(n, device=xyz.device).expand_as(d)
    key = torch.where(d > radius**2, torch.full_like(ar, n), ar)
    k = min(nsample, n)
    group = key.topk(k, dim=-1, largest=False, sorted=True).values
    if k < nsample:  # fewer points than nsample: pad with n (then replaced by the first)
        group = torch.cat([group, group.new_full((*group.shape[:2], nsample - k), n)], dim=-1)
    first = group[:, :, :1].expand_as(group)
    return torch.where(group == n, first, group)


# ----------------------------------------------------------------------------------------------
# model


def _bn_last(bn: nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor:
    """``bn`` applied over the last (channel) dim of ``x [..., C]`` with BatchNorm2d semantics
    (statistics over all other dims), updating the running stats in training mode."""
    momentum = bn.momentum
    if bn.training and bn.track_running_stats:
        bn.num_batches_tracked.add_(1)
        if momentum is None:
            momentum = 1.0 / float(bn.num_batches_tracked)
    y = F.batch_norm(x.reshape(-1, x.shape[-1]), bn.running_mean, bn.running_var, bn.weight, bn.bias,
                     bn.training or not bn.track_running_stats, momentum if momentum is not None else 0.0, bn.eps)
    return y.view_as(x)


def _fold_bn(conv: nn.Conv2d, bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode ``bn(conv(x))`` as one affine map ``(weight [out, in], bias [out])``."""
    inv = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    w = conv.weight.flatten(1) * inv[:, None]
    b = (conv.bias - bn.running_mean) * inv + bn.bias
    return w, b


class SetAbstraction(nn.Module):
    """One PointNet++ set-abstraction level (SSG). Keys: ``mlp_convs.{i}``, ``mlp_bns.{i}``."""

    def __init__(self, npoint: int | None, radius: float | None, nsample: int | None, in_channel: int,
                 mlp: list[int], group_all: bool):
        super().__init__()
        self.npoint, self.radius, self.nsample, self.group_all = npoint, radius, nsample, group_all
        self.mlp_convs = nn.ModuleList()
        self.mlp_bns = nn.ModuleList()
        last = in_channel
        for out in mlp:
            self.mlp_convs.append(nn.Conv2d(last, out, 1))
            self.mlp_bns.append(nn.BatchNorm2d(out))
            last = out

    def forward(self, xyz: torch.Tensor, feats: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``xyz [B, N, 3]``, ``feats [B, N, D] | None`` -> ``(new_xyz [B, S, 3], new_feats [B, S, C])``."""
        if self.group_all:
            new_xyz = xyz.new_zeros(xyz.shape[0], 1, 3)
            grouped = xyz[:, None]  # not re-centred: the centroid is the origin
            if feats is not None:
                grouped = torch.cat([grouped, feats[:, None]], dim=-1)
        else:
            fps = farthest_point_sample(xyz, self.npoint)
            new_xyz = index_points(xyz, fps)
            idx = ball_query(self.radius, self.nsample, xyz, new_xyz)
            grouped = index_points(xyz, idx) - new_xyz[:, :, None, :]
            if feats is not None:
                grouped = torch.cat([grouped, index_points(feats, idx)], dim=-1)
        x = grouped  # [B, S, K, C]
        for conv, bn in zip(self.mlp_convs, self.mlp_bns):
            if self.training:
                x = F.relu(_bn_last(bn, F.linear(x, conv.weight.flatten(1), conv.bias)))
            else:  # eval: BN folded into the linear map, one pass over memory instead of three
                w, b = _fold_bn(conv, bn)
                x = F.linear(x, w, b).relu_()
        return new_xyz, x.amax(dim=2)


class PointNet2Cls(nn.Module):
    """PointNet++ SSG classifier, xyz input. ``forward(points [B, N, 3]) -> (logits, global [B, 1024])``."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.sa1 = SetAbstraction(512, 0.2, 32, 3, [64, 64, 128], False)
        self.sa2 = SetAbstraction(128, 0.4, 64, 128 + 3, [128, 128, 256], False)
        self.sa3 = SetAbstraction(None, None, None, 256 + 3, [256, 512, 1024], True)
        self.fc1 = nn.Linear(1024, 512)
        self.bn1 = nn.BatchNorm1d(512)
        self.drop1 = nn.Dropout(0.4)
        self.fc2 = nn.Linear(512, 256)
        self.bn2 = nn.BatchNorm1d(256)
        self.drop2 = nn.Dropout(0.4)
        self.fc3 = nn.Linear(256, num_classes)

    def features(self, points: torch.Tensor) -> torch.Tensor:
        l1_xyz, l1 = self.sa1(points, None)
        l2_xyz, l2 = self.sa2(l1_xyz, l1)
        _, l3 = self.sa3(l2_xyz, l2)
        return l3[:, 0]

    def sa2_features(self, points: torch.Tensor) -> torch.Tensor:
        """The second set-abstraction level: ``[B, 128, 3 + 256]`` (centroid xyz, then features), in
        farthest-point order. Richer than the max-pooled global feature (it keeps where things are)."""
        l1_xyz, l1 = self.sa1(points, None)
        l2_xyz, l2 = self.sa2(l1_xyz, l1)
        return torch.cat([l2_xyz, l2], dim=-1)

    def forward(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g = self.features(points)
        x = self.drop1(F.relu(self.bn1(self.fc1(g))))
        x = self.drop2(F.relu(self.bn2(self.fc2(x))))
        return self.fc3(x), g


def select_input_points(points: torch.Tensor, num: int = NUM_INPUT_POINTS) -> torch.Tensor:
    """``[B, N, 3] -> [B, num, 3]``: a fixed-seed random subset (N > num), the cloud itself (N == num)
    or the cloud tiled (N < num). Deterministic and independent of the batch."""
    n = points.shape[1]
    if n == num:
        return points
    if n > num:
        idx = torch.randperm(n, generator=torch.Generator().manual_seed(SUBSET_SEED))[:num]
    else:
        idx = torch.arange(num) % n
    return points[:, idx.to(points.device)]


# ----------------------------------------------------------------------------------------------
# checkpoints


def expected_shapes(num_classes: int) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in PointNet2Cls(num_classes).state_dict().items()}


def check_state_dict(state: Mapping[str, torch.Tensor], num_classes: int, source: str = "checkpoint") -> None:
    """Raise ``PointNet2CheckpointError`` naming every missing, unexpected or mis-shaped key."""
    want = expected_shapes(num_classes)
    missing = sorted(set(want) - set(state))
    unexpected = sorted(set(state) - set(want))
    misshaped = sorted(f"{k}: got {tuple(state[k].shape)}, expected {want[k]}"
                       for k in set(want) & set(state) if tuple(state[k].shape) != want[k])
    if missing or unexpected or misshaped:
        lines = [f"{source} does not match PointNet++ SSG (xyz input, {num_classes} classes):"]
        if missing:
            lines.append(f"  missing keys ({len(missing)}): {', '.join(missing)}")
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}): {', '.join(unexpected)}")
        if misshaped:
            lines.append(f"  mis-shaped keys ({len(misshaped)}): {'; '.join(misshaped)}")
        if any(k.startswith("sa1.mlp_convs.0.weight") for k in misshaped):
            lines.append("  (sa1 input 6 channels = a normal_channel=True model; this encoder takes xyz only)")
        raise PointNet2CheckpointError("\n".join(lines))


def load_official_checkpoint(path: str | Path, num_classes: int | None = None) -> PointNet2Cls:
    """Load a checkpoint written by the reference training script (``best_model.pth``: a dict with
    ``model_state_dict``; a bare state dict and a ``module.`` prefix from DataParallel are accepted).
    Read with ``weights_only=True``: no code from the file is executed."""
    ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
    if isinstance(ckpt, Mapping) and "model_state_dict" in ckpt:
        state = ckpt["model_state_dict"]
    elif isinstance(ckpt, Mapping) and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        state = ckpt
    else:
        keys = list(ckpt)[:10] if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise PointNet2CheckpointError(f"{path}: expected a dict with 'model_state_dict' (PointNet++ training script "
                              f"format) or a state dict; found {keys}")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if num_classes is None:
        if "fc3.weight" not in state:
            check_state_dict(state, 40, str(path))  # raises, naming what is missing
        num_classes = int(state["fc3.weight"].shape[0])
    check_state_dict(state, num_classes, str(path))
    model = PointNet2Cls(num_classes)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return model.eval()


def save_weights(model: PointNet2Cls, directory: str | Path, config: dict, name: str = WEIGHTS_NAME,
                 fp16: bool = True) -> Path:
    """``<name>.safetensors`` (+ ``<name>.json`` with architecture and provenance), through
    ``zoo.pretrained.save_pretrained``. BN counters stay int64."""
    return save_pretrained(model.state_dict(), directory, name, config, fp16=fp16)


def load_weights(directory: str | Path = WEIGHTS_DIR, name: str = WEIGHTS_NAME) -> tuple[PointNet2Cls, dict]:
    state, config = load_pretrained(directory, name, "PointNet++",
                                    "train them with `python jobs/train_zoo.py --pair pointnet_lion`")
    num_classes = int(config["num_classes"])
    check_state_dict(state, num_classes, str(Path(directory) / f"{name}.safetensors"))
    model = PointNet2Cls(num_classes)
    model.load_state_dict(state)
    return model.eval(), config


class PointNet2Encoder(Encoder):
    """E for point clouds: ``[B, N, 3]`` unit-sphere points -> ``[B, 1024]`` PointNet++ global feature."""

    name = "pointnet2-ssg"

    LEVELS = ("global", "sa2")

    def __init__(self, device: str | torch.device = "cpu", model: PointNet2Cls | None = None,
                 config: dict | None = None, level: str = "global"):
        """``level``: ``global`` → z_E ``[1024]`` (after sa3's max-pool); ``sa2`` → ``[128, 259]``."""
        if level not in self.LEVELS:
            raise ValueError(f"unknown PointNet++ level {level!r}; choose from {self.LEVELS}")
        if model is None:
            model, config = load_weights()
        self.config = config or {}
        self.level = level
        super().__init__(model, device)

    @property
    def classes(self) -> list[str]:
        return list(self.config.get("classes", []))

    def _encode(self, assets: torch.Tensor) -> torch.Tensor:
        if assets.ndim != 3 or assets.shape[-1] != 3:
            raise ValueError(f"PointNet2Encoder expects [B, N, 3] points, got {tuple(assets.shape)}")
        x = select_input_points(assets)
        return self.module.features(x) if self.level == "global" else self.module.sa2_features(x)

    def classify(self, assets: torch.Tensor) -> torch.Tensor:
        """Class logits ``[B, num_classes]`` (for the held-out accuracy report)."""
        with torch.no_grad():
            logits, _ = self.module(select_input_points(assets.to(self.device, torch.float32)))
        return logits
