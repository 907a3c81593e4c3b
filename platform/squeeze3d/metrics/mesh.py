"""Metrics of the ``mesh`` asset kind: render PSNR and MS-SSIM over the fixed ring of views
(``metrics.mesh_render``: 8 views × 128 px), Chamfer distance and F-score on sampled surfaces.

- render PSNR: over all views, pixels and channels, peak 1; the MSE is floored at 1e-10 as for
  radiance fields (``metrics.volume.psnr``), so identical meshes score 100 dB;
- MS-SSIM: per view, averaged over the ring; at 128 px four scales fit (128, 64, 32, 16 px with the
  11-tap window), Wang et al.'s first four weights renormalised (``metrics.volume.ms_ssim``);
- Chamfer: ``SURFACE_SAMPLES`` area-uniform samples of each surface (``meshdata.sample_surface``, the
  same seed for both, so identical meshes score 0 up to float rounding), the sum of both directed mean *squared*
  nearest-neighbour distances (the point-cloud kind's definition, ``metrics.pointcloud.chamfer``);
- F-score at ``FSCORE_TAU`` = 0.02 (1 % of the unit-sphere diameter): the harmonic mean of
  precision (share of test samples within τ of the reference's) and recall (the reverse).

All of them expect both meshes in the reference's unit-sphere frame (the handler normalises). LPIPS
(the paper's third image metric) needs pre-trained backbone weights that cannot be downloaded here;
it is not computed.
"""

from __future__ import annotations

import numpy as np
import torch

from squeeze3d.meshdata import Mesh, nearest, sample_surface
from squeeze3d.metrics.mesh_render import RING_SIZE, RING_VIEWS, render

SURFACE_SAMPLES = 4096
FSCORE_TAU = 0.02
MSSSIM_SCALES = 4


def render_ring(mesh: Mesh) -> torch.Tensor:
    """The metric ring of ``mesh``: ``[RING_VIEWS, 3, RING_SIZE, RING_SIZE]``."""
    return render(mesh, RING_VIEWS, RING_SIZE)


def render_psnr(reference: torch.Tensor, test: torch.Tensor) -> float:
    """PSNR (dB) between two rings of renders."""
    from squeeze3d.metrics.volume import psnr

    return float(psnr(reference[None], test[None])[0])


def render_ms_ssim(reference: torch.Tensor, test: torch.Tensor) -> float:
    from squeeze3d.metrics.volume import ms_ssim

    return float(ms_ssim(reference, test, scales=MSSSIM_SCALES).mean())


def surface_samples(mesh: Mesh, n: int = SURFACE_SAMPLES) -> np.ndarray:
    """``[n, 3]`` samples; an empty mesh (a code whose decoded SDF never crosses zero) counts as all
    its samples at the origin, as G's fixed-size output does (``ShapEGenerator._decode``), so the
    metrics stay finite and penalise it instead of failing."""
    if mesh.num_faces == 0 or float(mesh.face_areas().sum()) <= 0:
        return np.zeros((n, 3), np.float32)
    return sample_surface(mesh, n, seed=0)[:, :3]


def chamfer_fscore(reference: np.ndarray, test: np.ndarray, tau: float = FSCORE_TAU) -> tuple[float, float]:
    """(Chamfer, F-score at ``tau``) between two ``[N, 3]`` surface samples."""
    d_rt, _ = nearest(test, reference)  # reference sample → nearest test sample
    d_tr, _ = nearest(reference, test)
    chamfer = float(np.mean(d_rt.astype(np.float64) ** 2) + np.mean(d_tr.astype(np.float64) ** 2))
    recall, precision = float(np.mean(d_rt <= tau)), float(np.mean(d_tr <= tau))
    f = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return chamfer, f


def surface_sample_metrics(reference: torch.Tensor, reconstruction: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-asset metrics of the platform's mesh tensors (``[B, N, 9]`` surface samples, as shards
    and training hold them): Chamfer and D1-PSNR of the xyz columns (``metrics.pointcloud``)."""
    from squeeze3d.metrics.pointcloud import chamfer, d1_psnr

    a, b = reference[..., :3].float(), reconstruction[..., :3].float()
    return {"chamfer": chamfer(a, b), "d1_psnr": d1_psnr(a, b)}
