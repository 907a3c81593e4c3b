"""Gram loss (both variants) and code diagnostics on hand-made cases."""

import math

import pytest
import torch

from squeeze3d.mapping.diagnostics import code_diagnostics, condition_number, effective_dimension
from squeeze3d.mapping.losses import gram_loss


def test_gram_zero_for_orthonormal_rows():
    q, _ = torch.linalg.qr(torch.randn(16, 5))
    z = q.T  # 5 orthonormal rows of length 16
    assert gram_loss(z, "paper").item() == pytest.approx(0.0, abs=1e-10)
    assert gram_loss(z, "official").item() == pytest.approx(0.0, abs=1e-10)


def test_gram_known_values_paper():
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # ZZᵀ = [[1,1],[1,1]] → ZZᵀ−I = [[0,1],[1,0]] → 2
    assert gram_loss(z, "paper").item() == pytest.approx(2.0)
    z = torch.tensor([[2.0, 0.0], [0.0, 0.0]])  # [[4,0],[0,0]] − I → 3² + 1² = 10
    assert gram_loss(z, "paper").item() == pytest.approx(10.0)


def test_gram_official_is_scale_invariant_and_mean_reduced():
    z = torch.tensor([[3.0, 0.0], [5.0, 0.0]])  # normalised rows are equal → off-diagonals 1 → mean 2/4
    assert gram_loss(z, "official").item() == pytest.approx(0.5)
    assert gram_loss(7 * z, "official").item() == pytest.approx(0.5)
    assert gram_loss(7 * z, "paper").item() != pytest.approx(gram_loss(z, "paper").item())


def test_gram_unknown_variant():
    with pytest.raises(ValueError, match="unknown gram variant"):
        gram_loss(torch.zeros(2, 2), "nope")


def test_d_eff_isotropic_and_rank_one():
    g = torch.Generator().manual_seed(0)
    iso = torch.randn(20000, 8, generator=g)
    d = code_diagnostics(iso)
    assert d["d_eff"] == pytest.approx(8.0, rel=0.02)
    assert d["kappa"] < 1.2
    rank1 = torch.randn(500, 1, generator=g) * torch.randn(1, 8, generator=g)
    d1 = code_diagnostics(rank1)
    assert d1["d_eff"] == pytest.approx(1.0, abs=1e-3)
    assert math.isinf(d1["kappa"])


def test_effective_dimension_and_kappa_from_spectrum():
    assert effective_dimension(torch.tensor([1.0, 1.0, 1.0, 1.0])) == pytest.approx(4.0)
    assert effective_dimension(torch.tensor([3.0, 1.0])) == pytest.approx(16 / 10)
    assert condition_number(torch.tensor([4.0, 2.0, 0.5])) == pytest.approx(8.0)
