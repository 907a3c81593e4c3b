"""Set-level metrics for generative point-cloud models (Achlioptas et al. 2018; Yang et al. 2019).

All three use the Chamfer distance of ``metrics.pointcloud.chamfer`` (sum of the two mean squared
nearest-neighbour distances) between every generated and every reference cloud:
- MMD-CD: mean over reference clouds of the distance to the closest generated cloud (fidelity; lower
  is better).
- COV-CD: fraction of reference clouds that are the nearest reference of at least one generated
  cloud (diversity / mode coverage; higher is better).
- 1-NNA-CD: leave-one-out accuracy of a 1-nearest-neighbour classifier telling generated from
  reference clouds in their union (50 % is ideal; 100 % means the sets are fully separable).
Clouds are compared in the frame they are given in (normalise both sets the same way first).
"""

from __future__ import annotations

import torch


def pairwise_chamfer(a: torch.Tensor, b: torch.Tensor, block: int = 4) -> torch.Tensor:
    """``[M, K]`` Chamfer distances between every cloud of ``a [M, N, 3]`` and ``b [K, P, 3]``.
    Same definition as ``metrics.pointcloud.chamfer``, computed in float32 blocks (the all-pairs
    cost dominates and float32 is ample at the distances that separate shapes)."""
    a, b = a.float(), b.float()
    out = torch.empty(a.shape[0], b.shape[0])
    for i in range(0, a.shape[0], block):
        ai = a[i:i + block]
        for j in range(0, b.shape[0], block):
            bj = b[j:j + block]
            d = torch.cdist(ai[:, None], bj[None], compute_mode="use_mm_for_euclid_dist").pow(2)  # [bi, bj, N, P]
            out[i:i + block, j:j + block] = d.amin(dim=3).mean(dim=2) + d.amin(dim=2).mean(dim=2)
    return out


def generative_metrics(generated: torch.Tensor, reference: torch.Tensor, block: int = 4) -> dict[str, float]:
    """MMD-CD, COV-CD and 1-NNA-CD of ``generated [M, N, 3]`` against ``reference [K, N, 3]``."""
    if generated.shape[0] < 1 or reference.shape[0] < 1:
        raise ValueError("generative_metrics needs at least one generated and one reference cloud")
    g_r = pairwise_chamfer(generated, reference, block)
    g_g = pairwise_chamfer(generated, generated, block)
    r_r = pairwise_chamfer(reference, reference, block)
    return metrics_from_distances(g_r, g_g, r_r)


def metrics_from_distances(g_r: torch.Tensor, g_g: torch.Tensor, r_r: torch.Tensor) -> dict[str, float]:
    """The three metrics from precomputed distance matrices (generated x reference, generated x
    generated, reference x reference)."""
    m, k = g_r.shape
    mmd = g_r.amin(dim=0).mean().item()
    cov = g_r.argmin(dim=1).unique().numel() / k
    # 1-NNA over the union, leave-one-out (self-distances excluded)
    inf = torch.tensor(float("inf"))
    top = torch.cat([g_g.clone().fill_diagonal_(inf), g_r], dim=1)          # rows: generated
    bottom = torch.cat([g_r.t(), r_r.clone().fill_diagonal_(inf)], dim=1)   # rows: reference
    nn_idx = torch.cat([top, bottom]).argmin(dim=1)
    labels = torch.cat([torch.zeros(m, dtype=torch.bool), torch.ones(k, dtype=torch.bool)])
    acc = (labels[nn_idx] == labels).float().mean().item()
    return {"mmd_cd": mmd, "cov_cd": cov, "1nna_cd": acc}
