"""Our Muon is torch's algorithm with a per-device Newton–Schulz dtype: check both claims."""

import pytest
import torch

from squeeze3d.mapping.muon import Muon, default_ns_dtype, orthogonalise


def _run(opt_cls, steps=4, **kw):
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(48, 24))
    v = torch.nn.Parameter(torch.randn(16, 40))
    opt = opt_cls([w, v], lr=1e-2, weight_decay=0.1, momentum=0.95, nesterov=True, ns_steps=5,
                  adjust_lr_fn="match_rms_adamw", **kw)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        w.grad = torch.randn(w.shape, generator=g)
        v.grad = torch.randn(v.shape, generator=g)
        opt.step()
    return w.detach(), v.detach(), opt


def test_bf16_matches_torch_muon_bit_exactly():
    ours = _run(Muon, ns_dtype=torch.bfloat16)
    ref = _run(torch.optim.Muon)
    assert torch.equal(ours[0], ref[0]) and torch.equal(ours[1], ref[1])
    # same state layout: a torch Muon state dict loads into ours and vice versa
    torch.optim.Muon([torch.nn.Parameter(ours[0].clone()), torch.nn.Parameter(ours[1].clone())]).load_state_dict(
        ours[2].state_dict())
    assert torch.equal(ours[2].state_dict()["state"][0]["momentum_buffer"],
                       ref[2].state_dict()["state"][0]["momentum_buffer"])


def test_float32_path_is_the_same_update_up_to_bf16_rounding():
    w32, v32, _ = _run(Muon, ns_dtype=torch.float32)
    w16, v16, _ = _run(Muon, ns_dtype=torch.bfloat16)
    torch.manual_seed(0)
    w0 = torch.randn(48, 24)
    d32, d16 = w32 - w0, w16 - w0  # the accumulated updates
    rel = (d32 - d16).norm() / d16.norm()
    assert rel < 0.05, rel
    assert not torch.equal(w32, w16)  # it really ran in another dtype


def test_orthogonalise_flattens_the_spectrum():
    g = torch.randn(64, 32) @ torch.diag(torch.logspace(-2, 1, 32))
    s = torch.linalg.svdvals(orthogonalise(g, 6, torch.float32))
    assert s.min() > 0.3 and s.max() < 1.6  # from a 1000x spread to about [0.5, 1.5]


def test_device_default_and_shape_check():
    assert default_ns_dtype("cpu") == torch.float32 and default_ns_dtype("cuda:0") == torch.bfloat16
    with pytest.raises(ValueError, match="2-D"):
        Muon([torch.nn.Parameter(torch.randn(3))])
