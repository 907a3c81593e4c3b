"""Training objective: λ_gen·MSE(ẑ_G, z_G) + λ_gram·gram(Z)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gram_loss(codes: torch.Tensor, variant: str = "paper") -> torch.Tensor:
    """‖Z Zᵀ − I‖²_F over a batch of codes Z (one code per row, flattened).

    paper: raw rows, squared Frobenius norm summed over the B×B matrix.
    official: rows normalised to unit length first, then the mean of the squared entries.
    """
    z = codes.flatten(1)
    eye = torch.eye(z.shape[0], device=z.device, dtype=z.dtype)
    if variant == "paper":
        return (z @ z.T - eye).pow(2).sum()
    if variant == "official":
        zn = F.normalize(z, dim=1)
        return (zn @ zn.T - eye).pow(2).mean()
    raise ValueError(f"unknown gram variant {variant!r} (paper | official)")


def mapping_loss(code: torch.Tensor, z_g_hat_std: torch.Tensor, z_g_std: torch.Tensor,
                 lambda_gen: float, lambda_gram: float, variant: str) -> dict[str, torch.Tensor]:
    """Returns ``{"loss", "mse", "gram"}``; the MSE is on standardised z_G (every dimension weighs
    the same whatever its scale in the generator's latent space)."""
    mse = F.mse_loss(z_g_hat_std, z_g_std)
    gram = gram_loss(code, variant) if lambda_gram > 0 else torch.zeros((), device=code.device)
    return {"loss": lambda_gen * mse + lambda_gram * gram, "mse": mse, "gram": gram}
