"""The pair contract: everything the platform needs to know about one encoder-generator pair."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from squeeze3d.assets.base import ASSET_KINDS  # the asset handler registry is the one list of kinds
from squeeze3d.zoo.base import Encoder, Generator


def point_cloud_metrics(reference: torch.Tensor, reconstruction: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-asset end-task metrics for point clouds: Chamfer (lower is better) and D1-PSNR (higher)."""
    from squeeze3d.metrics.pointcloud import chamfer, d1_psnr

    return {"chamfer": chamfer(reference, reconstruction), "d1_psnr": d1_psnr(reference, reconstruction)}
CONDITION_KINDS = ("noise", "prompt", "image")


@dataclass(frozen=True)
class PairSpec:
    """One encoder-generator pair. Adding a pair = one module defining ``PAIR`` + one registry line."""

    name: str
    """Registry name, e.g. ``pointnet_lion``; the MLflow model is ``squeeze3d-<name>``."""
    description: str
    """One line for ``squeeze3d pairs``."""
    asset_kind: str
    """One of ``ASSET_KINDS``: a kind with a handler in ``squeeze3d.assets`` (``handler_for``)."""
    condition_kind: str
    """What G is sampled from when building training pairs: one of ``CONDITION_KINDS``."""
    z_e_shape: tuple[int, ...]
    """Shape of one encoder latent z_E (without batch)."""
    z_g_shape: tuple[int, ...]
    """Shape of one generator latent z_G (without batch)."""
    build_encoder: Callable[[str], Encoder]
    """``device -> Encoder``; imports heavy model code lazily."""
    build_generator: Callable[[str], Generator]
    """``device -> Generator``; imports heavy model code lazily."""
    mapping: dict[str, Any] = field(default_factory=dict)
    """Overrides of ``MappingConfig`` defaults for this pair (architecture, d_code, dropout, ...)."""
    optim: dict[str, Any] = field(default_factory=dict)
    """Overrides of ``OptimConfig`` defaults (learning rates, epochs, batch size)."""
    loss: dict[str, Any] = field(default_factory=dict)
    """Overrides of ``LossConfig`` defaults (e.g. a λ_gram that suits the scale of this pair's codes)."""
    normalisation: str = "unit_sphere"
    """How assets are normalised before encoding (centre + scale kept in the container). Point clouds:
    ``unit_sphere``; radiance-field grids already fill their cube: the codec treats them as identity."""
    num_points: int | None = None
    """Point clouds: number of points E takes and G produces."""
    grid_resolution: int | None = None
    """Radiance fields: the R of the ``[4, R, R, R]`` grids E takes and G produces (real NeRF-MAE: 160).
    Optional: when unset, the codec probes it once from G."""
    asset_metrics: Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]] = point_cloud_metrics
    """``(reference, reconstruction) -> {name: [B] values}``: the end-task metrics of this asset kind."""
    objective: str = "d1_psnr"
    """The asset metric that ranks models (registry champion, sweep), prefixed val_/test_ when logged."""
    objective_mode: str = "max"
    """``max`` or ``min`` for ``objective``."""
    latent_points: tuple[int, int, int] | None = None
    """Where z_G holds an unordered point set: ``(offset, count, dim)`` in the flat z_G, xyz first in
    each point's ``dim`` numbers. Enables the set loss (``loss.lambda_set``); None: no such set."""
    loss_decoder: Callable[[str], torch.nn.Module] | None = None
    """``device -> module``: G's decoder as a frozen, *differentiable* ``z_G [B, D] -> assets``, for the
    output loss (``loss.lambda_output``). Its ``forward(z_g, keep=0, generator=None)`` may decode only
    a random subset of about ``keep`` output points (cheaper; exact for per-point decoders)."""
    output_distance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    """``(decoded prediction, decoded target) -> [B]``: the output loss's distance between what
    ``loss_decoder`` returns; None: squared Chamfer (point clouds). Grids use a weighted MSE."""
    shipped_model: str | None = None
    """A mapping checkpoint directory shipped inside the package (relative to ``squeeze3d/``): what
    the codec uses when the registry has no champion, so a fresh clone compresses with no training."""
    heldout_assets: Callable[[int], torch.Tensor] | None = None
    """``n -> assets``: the first n *real* held-out assets (e.g. the corpus test split), normalised as
    the encoder expects; None when the pair has no such set (then models rank on validation)."""
    condition_problem: Callable[[Any], str | None] | None = None
    """``condition -> reason G cannot take it, or None``: e.g. an empty or over-long prompt. The build
    leaves such conditions out of the plan (prompt tables: the prompt's rows), counts them by reason in
    the manifest and the summary, and never hands them to G. None: every condition is taken."""

    def __post_init__(self):
        if self.asset_kind not in ASSET_KINDS:
            raise ValueError(f"pair {self.name!r}: asset_kind {self.asset_kind!r} not in {ASSET_KINDS} (the kinds "
                             f"with an asset handler; a new kind needs one in squeeze3d/assets)")
        if self.condition_kind not in CONDITION_KINDS:
            raise ValueError(f"pair {self.name!r}: condition_kind {self.condition_kind!r} not in {CONDITION_KINDS}")

    @property
    def model_name(self) -> str:
        return f"squeeze3d-{self.name}"

    @property
    def objective_metric(self) -> str:
        """The logged metric the registry ranks versions by."""
        return f"{'test' if self.heldout_assets is not None else 'val'}_{self.objective}"

    def better(self, a: float, b: float | None) -> bool:
        """Is objective value ``a`` better than ``b`` (None: nothing to beat)?"""
        if b is None:
            return True
        return a > b if self.objective_mode == "max" else a < b
