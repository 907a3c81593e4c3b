"""PointNet++ encoder: sampling/grouping against brute force, the reference checkpoint format,
training-mode equivalence with Conv2d/BatchNorm2d, and the shipped weights."""

import numpy as np
import pytest
import torch
from torch import nn

from squeeze3d.zoo.pointnet2 import model as pn


def _fps_reference(xyz: np.ndarray, npoint: int) -> list[int]:
    chosen, dist = [0], np.full(len(xyz), np.inf)
    for _ in range(npoint - 1):
        dist = np.minimum(dist, ((xyz - xyz[chosen[-1]]) ** 2).sum(1))
        chosen.append(int(dist.argmax()))
    return chosen


def _ball_reference(xyz, centres, radius, nsample):
    out = []
    for c in centres:
        inside = [j for j in range(len(xyz)) if ((xyz[j] - c) ** 2).sum() <= radius**2][:nsample]
        out.append(inside + [inside[0]] * (nsample - len(inside)))
    return out


@pytest.mark.parametrize("n", [300, 6000])  # 6000: the per-step distance branch (no pairwise matrix)
def test_farthest_point_sample_matches_brute_force(n):
    g = torch.Generator().manual_seed(0)
    xyz = torch.rand(2, n, 3, generator=g, dtype=torch.float64)
    idx = pn.farthest_point_sample(xyz, 40)
    for b in range(2):
        assert idx[b].tolist() == _fps_reference(xyz[b].numpy(), 40)
    with pytest.raises(ValueError, match="npoint"):
        pn.farthest_point_sample(xyz[:, :10], 11)


def test_ball_query_matches_brute_force():
    g = torch.Generator().manual_seed(1)
    xyz = torch.rand(2, 200, 3, generator=g, dtype=torch.float64) * 2 - 1
    centres = pn.index_points(xyz, pn.farthest_point_sample(xyz, 16))
    for radius, nsample in [(0.2, 8), (0.5, 32)]:
        got = pn.ball_query(radius, nsample, xyz, centres)
        for b in range(2):
            assert got[b].tolist() == _ball_reference(xyz[b].numpy(), centres[b].numpy(), radius, nsample)
    few = pn.ball_query(10.0, 8, xyz[:, :5], xyz[:, :2])  # fewer points than nsample: pad with the first
    assert few[0, 0].tolist() == [0, 1, 2, 3, 4, 0, 0, 0]


def test_state_dict_layout_is_the_reference_implementation():
    sd = pn.PointNet2Cls(40).state_dict()
    assert sd["sa1.mlp_convs.0.weight"].shape == (64, 3, 1, 1)
    assert sd["sa2.mlp_convs.0.weight"].shape == (128, 131, 1, 1)
    assert sd["sa3.mlp_convs.2.weight"].shape == (1024, 512, 1, 1)
    assert sd["fc1.weight"].shape == (512, 1024) and sd["fc3.weight"].shape == (40, 256)
    for key in ["sa1.mlp_bns.0.running_mean", "sa3.mlp_bns.2.num_batches_tracked", "bn1.running_var",
                "bn2.weight", "fc2.bias"]:
        assert key in sd
    assert len(sd) == 9 * 7 + 2 * 7 + 2  # 9 conv+bn pairs, 2 linear+bn1d pairs, fc3


def _random_model(num_classes=10, seed=0):
    torch.manual_seed(seed)
    m = pn.PointNet2Cls(num_classes)
    for mod in m.modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            mod.running_mean.normal_(0, 0.1)
            mod.running_var.uniform_(0.5, 2.0)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.normal_(0, 0.1)
    return m.eval()


def _cloud(b=2, n=1024, seed=0):
    x = torch.randn(b, n, 3, generator=torch.Generator().manual_seed(seed))
    return x / x.norm(dim=-1).amax(dim=1)[:, None, None]


def test_reads_reference_checkpoint_file(tmp_path):
    m = _random_model(10)
    opt = torch.optim.Adam(m.parameters())
    for p in m.parameters():  # the reference script saves Adam state too: make it non-empty
        p.grad = torch.randn_like(p)
    opt.step()
    path = tmp_path / "best_model.pth"
    torch.save({"epoch": 3, "instance_acc": 0.9, "class_acc": 0.88, "model_state_dict": m.state_dict(),
                "optimizer_state_dict": opt.state_dict()}, path)
    loaded = pn.load_official_checkpoint(path)
    assert loaded.num_classes == 10
    x = _cloud(1)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)[0], m(x)[0])
        torch.testing.assert_close(loaded.features(x), m.features(x))
    # DataParallel prefix and bare state dicts are accepted too
    torch.save({"module." + k: v for k, v in m.state_dict().items()}, tmp_path / "dp.pth")
    with torch.no_grad():
        torch.testing.assert_close(pn.load_official_checkpoint(tmp_path / "dp.pth").features(x), m.features(x))


def test_bad_checkpoints_name_what_is_wrong(tmp_path):
    sd = _random_model(10).state_dict()
    bad = dict(sd)
    del bad["sa2.mlp_bns.1.running_var"]
    bad["fc2.weight"] = torch.zeros(128, 512)
    bad["extra.weight"] = torch.zeros(1)
    torch.save({"model_state_dict": bad}, tmp_path / "bad.pth")
    with pytest.raises(pn.PointNet2CheckpointError) as e:
        pn.load_official_checkpoint(tmp_path / "bad.pth")
    msg = str(e.value)
    assert "sa2.mlp_bns.1.running_var" in msg and "fc2.weight: got (128, 512), expected (256, 512)" in msg
    assert "extra.weight" in msg
    normals = dict(sd)
    normals["sa1.mlp_convs.0.weight"] = torch.zeros(64, 6, 1, 1)  # a normal_channel=True model
    torch.save({"model_state_dict": normals}, tmp_path / "normals.pth")
    with pytest.raises(pn.PointNet2CheckpointError, match="xyz only"):
        pn.load_official_checkpoint(tmp_path / "normals.pth")
    torch.save({"state": 1}, tmp_path / "other.pth")
    with pytest.raises(pn.PointNet2CheckpointError, match="model_state_dict"):
        pn.load_official_checkpoint(tmp_path / "other.pth")


def test_channels_last_training_step_equals_conv2d_batchnorm2d():
    """Our SA MLP (F.linear on [B,S,K,C] + BN over the last dim) vs the reference layout
    (Conv2d + BatchNorm2d on [B,C,K,S]) in training mode: outputs and running stats agree."""
    torch.manual_seed(0)
    sa = pn.SetAbstraction(None, None, None, 3 + 5, [16, 32], group_all=True).train()
    ref_convs, ref_bns = [], []
    for conv, bn in zip(sa.mlp_convs, sa.mlp_bns):
        c2, b2 = nn.Conv2d(conv.in_channels, conv.out_channels, 1), nn.BatchNorm2d(bn.num_features)
        c2.load_state_dict(conv.state_dict())
        b2.load_state_dict(bn.state_dict())
        ref_convs.append(c2), ref_bns.append(b2)
    xyz, feats = torch.randn(3, 50, 3), torch.randn(3, 50, 5)
    _, ours = sa(xyz, feats)
    x = torch.cat([xyz, feats], -1)[:, None].permute(0, 3, 2, 1)  # [B, C, N, 1] as the reference
    for c2, b2 in zip(ref_convs, ref_bns):
        x = torch.relu(b2(c2(x)))
    ref = x.amax(dim=2)[..., 0]
    torch.testing.assert_close(ours[:, 0], ref, rtol=1e-4, atol=1e-5)
    for bn, b2 in zip(sa.mlp_bns, ref_bns):
        torch.testing.assert_close(bn.running_mean, b2.running_mean)
        torch.testing.assert_close(bn.running_var, b2.running_var)
        assert bn.num_batches_tracked.item() == b2.num_batches_tracked.item() == 1


def test_input_subset_is_fixed_and_handles_any_size():
    x = _cloud(1, 2048)
    a, b = pn.select_input_points(x), pn.select_input_points(x)
    assert a.shape == (1, 1024, 3)
    torch.testing.assert_close(a, b)
    assert len({tuple(p) for p in a[0].tolist()}) == 1024  # a subset, no duplicates
    assert pn.select_input_points(_cloud(1, 1024)) is not None
    small = pn.select_input_points(_cloud(1, 100))
    assert small.shape == (1, 1024, 3)


def test_shipped_encoder_loads_and_classifies_held_out_shapes():
    from squeeze3d.corpora import points as corpus

    enc = pn.PointNet2Encoder("cpu")
    assert enc.classes == list(corpus.CATEGORIES)
    assert len(enc.weights_hash()) == 64
    test_idx = corpus.split_indices("test", 12 * 10)[:12]  # one held-out object per category
    pts = torch.from_numpy(np.stack([corpus.make_shape(0, int(i), 2048).points for i in test_idx]))
    labels = np.array([corpus.category_of(int(i)) for i in test_idx])
    z = enc.encode(pts)
    assert z.shape == (12, 1024) and torch.isfinite(z).all()
    torch.testing.assert_close(enc.encode(pts[3:5]), z[3:5], rtol=1e-4, atol=1e-4)  # batch-independent
    acc = (enc.classify(pts).argmax(-1).numpy() == labels).mean()
    assert acc >= 0.75, f"shipped classifier got {acc:.2f} on 12 held-out shapes"
    with pytest.raises(ValueError, match=r"\[B, N, 3\]"):
        enc.encode(pts[0])
