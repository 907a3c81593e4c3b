"""Code-space diagnostics: singular spectrum, condition number κ and effective dimension d_eff of
the code covariance. d_eff = (Σλ)² / Σλ² is d for isotropic codes and 1 for rank-1 codes."""

from __future__ import annotations

import torch


def covariance_eigenvalues(codes: torch.Tensor) -> torch.Tensor:
    """Eigenvalues (descending) of the sample covariance of the codes, via the singular values of the
    centred code matrix (stable, no explicit d×d matrix)."""
    z = codes.flatten(1).double()
    z = z - z.mean(dim=0, keepdim=True)
    s = torch.linalg.svdvals(z)
    return (s.pow(2) / max(z.shape[0] - 1, 1)).float()


def effective_dimension(eigenvalues: torch.Tensor) -> float:
    lam = eigenvalues.double().clamp_min(0)
    denom = lam.pow(2).sum()
    return float(lam.sum().pow(2) / denom) if denom > 0 else 0.0


def condition_number(eigenvalues: torch.Tensor, rel_floor: float = 1e-12) -> float:
    """λ_max / λ_min over the covariance spectrum; eigenvalues below ``rel_floor·λ_max`` count as
    zero, which makes κ infinite (a rank-deficient code space)."""
    lam = eigenvalues.double()
    lmax = float(lam.max()) if lam.numel() else 0.0
    if lmax <= 0:
        return float("inf")
    lmin = float(lam.min())
    return float("inf") if lmin <= rel_floor * lmax else lmax / lmin


def code_diagnostics(codes: torch.Tensor) -> dict[str, float]:
    lam = covariance_eigenvalues(codes)
    return {"d_eff": effective_dimension(lam), "kappa": condition_number(lam)}
