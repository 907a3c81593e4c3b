"""NeRF-MAE's Swin-3D MAE at the official architecture (squeeze3d.zoo.nerfmae.swin3d): layout against
the manifest derived from zubair-irshad/NeRF-MAE, strict loading of run_swin_mae3d.py's checkpoint
layout, and the E/G contracts on a tiny-width build with random weights (no download)."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from official_weights import write_nerfmae_checkpoint

from squeeze3d.zoo.nerfmae import swin3d as nm

# the published tree (swin_s depths and heads) at a tiny width and grid
TINY = nm.NerfMAESwinConfig(resolution=32, embed_dim=12)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return write_nerfmae_checkpoint(tmp_path_factory.mktemp("nerfmae") / "epoch_1200.pt", TINY)


@pytest.fixture(scope="module")
def models(release):
    return (nm.build_encoder(release[0], "cpu", config=TINY), nm.build_generator(release[0], "cpu", config=TINY))


def _grids(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    grids = torch.rand(n, 4, size, size, size, generator=g)
    grids[:, 3] = grids[:, 3] * 4 * (grids[:, 3] > 0.7)  # σ: mostly empty, some opaque voxels
    return grids


def test_published_layout_matches_manifest_from_official_code():
    manifest = json.loads(nm.MANIFEST.read_text())
    assert manifest["source"]["repo"] == "https://github.com/zubair-irshad/NeRF-MAE"
    assert len(manifest["source"]["commit"]) == 40
    with torch.device("meta"):
        model = nm.SwinMAE3D(nm.NerfMAESwinConfig.backbone("swin_s", resolution=160))
    ours = {k: [list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in model.state_dict().items()}
    assert list(ours) == list(manifest["state_dict"])
    assert ours == manifest["state_dict"]
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert total == manifest["param_count"]["total"] == 76_184_938
    assert trainable == manifest["param_count"]["trainable"] == 70_040_938
    assert model.c.z_shape == (96, 40, 40, 40)


def test_loads_release_layout_key_for_key(release, models):
    enc, gen = models
    for m in (enc.module, gen.module):
        assert all(torch.equal(m.state_dict()[k], v) for k, v in release[1].items())


@pytest.mark.parametrize("edit, names", [
    (lambda s: s.pop("stages.2.17.attn.qkv.weight"), ["missing", "stages.2.17.attn.qkv.weight"]),
    (lambda s: s.__setitem__("out.conv.weight", torch.zeros(4, 7, 1, 1, 1)), ["shape", "out.conv.weight"]),
    (lambda s: s.__setitem__("decoder_layers.0.weight", torch.zeros(1)), ["unexpected", "decoder_layers.0.weight"]),
    (lambda s: s.__setitem__("pos_embed", torch.zeros(1, 10, 10, 10, 12)), ["pos_embed", "resolution 40"]),
])
def test_bad_checkpoint_is_one_line_naming_the_key(tmp_path, release, edit, names):
    state = dict(release[1])
    edit(state)
    path = tmp_path / "bad.pt"
    torch.save({"epoch": 1, "state_dict": state}, path)
    with pytest.raises(nm.NerfMAECheckpointError) as e:
        nm.load_nerfmae(path, TINY)
    assert "\n" not in str(e.value)
    for n in names:
        assert n in str(e.value)


class _Opaque:
    pass


def test_not_a_checkpoint_and_pickled_objects_are_refused(tmp_path, release):
    path = tmp_path / "plain.pt"
    torch.save({"model": release[1]}, path)
    with pytest.raises(nm.NerfMAECheckpointError, match="state_dict"):
        nm.load_nerfmae(path, TINY)
    torch.save({"state_dict": release[1], "args": _Opaque()}, path, pickle_module=pickle)
    with pytest.raises(nm.NerfMAECheckpointError, match="weights_only") as e:
        nm.load_nerfmae(path, TINY)
    assert "\n" not in str(e.value)
    with pytest.raises(nm.NerfMAECheckpointError, match="not found"):
        nm.load_nerfmae(tmp_path / "none.pt", TINY)


def test_safetensors_state_dict_loads(tmp_path, release, models):
    from safetensors.torch import save_file

    path = tmp_path / "nerfmae.safetensors"
    save_file({k: v.contiguous() for k, v in release[1].items()}, str(path))
    enc = nm.build_encoder(path, "cpu", config=TINY)
    grids = _grids(1)
    torch.testing.assert_close(enc.encode(grids), models[0].encode(grids), rtol=1e-4, atol=1e-5)


def test_encode_decode_shapes_and_determinism(models):
    enc, gen = models
    grids = _grids(2)
    z = enc.encode(grids)
    assert z.shape == (2, *TINY.z_shape) == (2, 12, 8, 8, 8)
    assert torch.isfinite(z).all()
    torch.testing.assert_close(enc.encode(grids[1:]), z[1:], rtol=1e-4, atol=1e-5)  # batch-independent
    out = gen.decode(z)
    assert out.shape == (2, 4, 32, 32, 32)
    assert torch.isfinite(out).all()
    assert out[:, :3].min() >= 0 and out[:, :3].max() <= 1 and out[:, 3].min() >= 0
    torch.testing.assert_close(gen.decode(z), out, rtol=0, atol=0)
    # smaller grids are zero-padded at the far end, as NeRF-MAE's transform does
    small = grids[:1, :, :24, :20, :28]
    padded = torch.zeros(1, 4, 32, 32, 32)
    padded[:, :, :24, :20, :28] = small
    torch.testing.assert_close(enc.encode(small), enc.encode(padded), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="larger"):
        enc.encode(_grids(1, size=40))


def test_sample_from_grids_and_seeds(models):
    enc, gen = models
    grids = _grids(1, seed=3)
    z, out = gen.sample([grids[0]])
    torch.testing.assert_close(z, enc.encode(grids), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out, gen.decode(z), rtol=1e-4, atol=1e-5)
    z_a, _ = gen.sample([11, 12])
    z_b, _ = gen.sample([12])
    assert z_a.shape == (2, *TINY.z_shape)
    torch.testing.assert_close(z_b[0], z_a[1], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(z_a[0], z_a[1])


def test_bottleneck_features_option(release):
    enc = nm.build_encoder(release[0], "cpu", config=TINY, features="bottleneck")
    z = enc.encode(_grids(1))
    assert z.shape == (1, *enc.z_shape) == (1, 96, 1, 1, 1)
    with pytest.raises(ValueError, match="features"):
        nm.build_encoder(release[0], "cpu", config=TINY, features="stage2")


def test_memory_estimate_at_published_size():
    est = nm.memory_estimate_bytes()
    assert est["weights"] == 4 * 76_184_938
    assert est["z"] == 4 * 96 * 40 ** 3
