"""LION at the official architecture (squeeze3d.zoo.lion.official): layout against the manifest
derived from nv-tlabs/LION, strict loading of the release's file layout, and G's contract on a
tiny-width build with random weights (no download)."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
import yaml
from official_weights import write_lion_release

from squeeze3d.zoo.lion import official as lo
from squeeze3d.zoo.lion import official_ops as ops

TINY = lo.LionOfficialConfig(style_dim=16, num_points=1024, time_dim=16, prior_channels=16, prior_blocks=2,
                             embedding_dim=16, width=0.25, voxel_resolution=0.25)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """A tiny LION written in the release layout (official_weights.write_lion_release)."""
    return write_lion_release(tmp_path_factory.mktemp("lion_ckpt"), TINY, seed=1)


@pytest.fixture(scope="module")
def gen(release):
    return lo.build_generator(release[0], "cpu", config=TINY, sampler="ddim", steps=2)


# ------------------------------------------------------------------------------------- layout


def test_published_layout_matches_manifest_from_official_code():
    manifest = json.loads(lo.MANIFEST.read_text())
    assert manifest["source"]["repo"] == "https://github.com/nv-tlabs/LION"
    assert len(manifest["source"]["commit"]) == 40
    with torch.device("meta"):
        model = lo.LionOfficial()  # published configuration
    for section, module in (("vae_state_dict", model.vae), ("dae_state_dict", model.dae)):
        ours = {k: [list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in module.state_dict().items()}
        assert list(ours) == list(manifest[section])  # same keys, same order
        assert ours == manifest[section]
    counts = manifest["param_count"]
    assert sum(p.numel() for p in model.vae.parameters()) == counts["vae_state_dict"] == 22_402_731
    assert sum(p.numel() for p in model.dae[0].parameters()) == counts["dae_state_dict.0"] == 77_173_376
    assert sum(p.numel() for p in model.dae[1].parameters()) == counts["dae_state_dict.1"] == 11_420_740
    assert sum(p.numel() for p in model.parameters()) == counts["total"] == 110_996_847
    assert model.c.z_dim == 128 + 2048 * 4


def test_release_cfg_yml_maps_to_published_config(tmp_path):
    cfg = {"data": {"tr_max_sample_points": 2048, "cond_on_cat": 0}, "clipforge": {"enable": 0},
           "ddpm": {"input_dim": 3, "time_dim": 64, "dropout": 0.1, "num_steps": 1000, "beta_1": 1e-4,
                    "beta_T": 0.02, "sched_mode": "linear"},
           "latent_pts": {"style_dim": 128, "skip_weight": 0.01, "pts_sigma_offset": 0.0, "style_mlp": "",
                          "style_prior": "models.score_sde.resnet.PriorSEDrop"},
           "shapelatent": {"latent_dim": 1, "log_sigma_offset": 6.0},
           "sde": {"num_channels_dae": 2048, "num_cell_per_scale_dae": 8, "embedding_dim": 128,
                   "embedding_scale": 1.0, "dropout": 0.2, "mixed_prediction": False}}
    path = tmp_path / "cfg.yml"
    path.write_text(yaml.safe_dump(cfg))
    assert lo.config_from_file(path) == lo.LionOfficialConfig()
    cfg["clipforge"]["enable"] = 1
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(lo.LionOfficialCheckpointError, match="clipforge.enable"):
        lo.config_from_file(path)


# ------------------------------------------------------------------------------------- loading


def test_loads_release_layout_key_for_key(release, gen):
    _, vae, dae, ema = release
    state = gen.module.vae.state_dict()
    assert all(torch.equal(state[k], v) for k, v in vae.items())
    assert all(torch.equal(gen.module.dae.state_dict()[k], v) for k, v in dae.items())
    ema_gen = lo.build_generator(release[0], "cpu", config=TINY, prior_weights="ema")
    names = [n for n, _ in ema_gen.module.dae.named_parameters()]
    assert all(torch.equal(dict(ema_gen.module.dae.named_parameters())[n], ema[i]["ema"]) for i, n in enumerate(names))


def _write_broken(tmp_path, release, edit) -> str:
    ckpt = {"vae_state_dict": dict(release[1]), "dae_state_dict": dict(release[2])}
    edit(ckpt)
    path = tmp_path / "broken.pt"
    torch.save(ckpt, path)
    return str(path)


@pytest.mark.parametrize("edit, names", [
    (lambda c: c["vae_state_dict"].pop("decoder.layers.classifier.2.weight"),
     ["vae_state_dict", "missing", "decoder.layers.classifier.2.weight"]),
    (lambda c: c["dae_state_dict"].__setitem__("0.input_layer.weight", torch.zeros(3, 3, 1, 1)),
     ["dae_state_dict", "shape", "0.input_layer.weight"]),
    (lambda c: c["dae_state_dict"].__setitem__("1.clip_forge_mapping.weight", torch.zeros(2, 2)),
     ["dae_state_dict", "unexpected", "1.clip_forge_mapping.weight"]),
    (lambda c: c.pop("dae_state_dict"), ["missing dae_state_dict"]),
])
def test_bad_checkpoint_is_one_line_naming_the_key(tmp_path, release, edit, names):
    path = _write_broken(tmp_path, release, edit)
    with pytest.raises(lo.LionOfficialCheckpointError) as e:
        lo.load_lion_official(path, TINY)
    msg = str(e.value)
    assert "\n" not in msg
    for n in names:
        assert n in msg


class _Opaque:  # an arbitrary object: weights_only must refuse it
    pass


def test_pickled_objects_are_refused_and_convert_gives_safetensors(tmp_path, release, gen):
    path = tmp_path / "with_object.pt"
    torch.save({"vae_state_dict": release[1], "dae_state_dict": release[2], "args": _Opaque()}, path,
               pickle_module=pickle)
    with pytest.raises(lo.LionOfficialCheckpointError, match="convert") as e:
        lo.load_lion_official(path, TINY)
    assert "\n" not in str(e.value)
    out = tmp_path / "model.safetensors"
    assert lo.main(["convert", str(path), str(out)]) == 2  # never unpickled, not even to convert
    assert not out.exists()
    tensors = tmp_path / "model_tensors.pt"  # what the user re-saves in LION's own environment
    torch.save({"vae_state_dict": release[1], "dae_state_dict": release[2]}, tensors)
    assert lo.main(["convert", str(tensors), str(out)]) == 0
    conv = lo.build_generator(out, "cpu", config=TINY, sampler="ddim", steps=2)
    z = torch.randn(1, TINY.z_dim, generator=torch.Generator().manual_seed(0))
    # same weights in other tensors: float32 kernels may sum in another order (last-bit differences)
    torch.testing.assert_close(conv.decode(z), gen.decode(z), rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------------- G contract


def test_sample_decode_encode_shapes_and_determinism(gen):
    n = TINY.num_points
    z, pts = gen.sample([3, 5])
    assert z.shape == (2, TINY.z_dim) and pts.shape == (2, n, 3)
    assert torch.isfinite(z).all() and torch.isfinite(pts).all()
    assert not torch.allclose(z[0], z[1])
    z5, pts5 = gen.sample([5])  # a sample depends only on its seed, not on its batch
    torch.testing.assert_close(z5[0], z[1], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gen.decode(z), pts, rtol=1e-4, atol=1e-4)
    # decoded points = latent xyz + skip_weight x network output
    latent_xyz = z[:, TINY.style_dim:].reshape(2, n, TINY.point_dim)[..., :3]
    assert (pts - latent_xyz).abs().mean() < 0.1 * latent_xyz.abs().mean()
    # posterior mean: latent xyz sit near the input points (same skip)
    post = gen.encode_latents(pts)
    assert post.shape == (2, TINY.z_dim)
    torch.testing.assert_close(post, gen.encode_latents(pts), rtol=0, atol=0)
    post_xyz = post[:, TINY.style_dim:].reshape(2, n, TINY.point_dim)[..., :3]
    assert (post_xyz - pts).abs().mean() < 0.1 * pts.abs().mean()
    draw = gen.encode_latents(pts, sample=True, seed=1)
    assert not torch.equal(draw, post)
    assert gen.settings() == {"sampler": "ddim", "steps": 2}


def test_generator_rejects_bad_options(release):
    with pytest.raises(ValueError, match="sampler"):
        lo.build_generator(release[0], "cpu", config=TINY, sampler="euler")
    with pytest.raises(ValueError, match="prior_weights"):
        lo.build_generator(release[0], "cpu", config=TINY, prior_weights="best")


def test_missing_file_and_cli_check_exit_2(tmp_path, capsys):
    assert lo.main(["check", str(tmp_path / "none.pt")]) == 2
    assert "not found" in capsys.readouterr().err


# ------------------------------------------------------------------------------------- operators


def test_ball_query_first_in_index_order_padded_with_first():
    pts = torch.tensor([[[0.0, 5.0, 0.1, 0.2, 9.0]], [[0.0] * 5], [[0.0] * 5]]).permute(1, 0, 2)  # [1, 3, 5]
    centres = torch.tensor([[[0.0, 9.0, 50.0]], [[0.0] * 3], [[0.0] * 3]]).permute(1, 0, 2)
    idx = ops.ball_query(centres, pts, radius=0.3, k=4)
    assert idx[0, 0].tolist() == [0, 2, 3, 0]  # in-radius in order, padded with the first
    assert idx[0, 1].tolist() == [4, 4, 4, 4]
    assert idx[0, 2].tolist() == [0, 0, 0, 0]  # nobody in range: the kernel's zero init


def test_fps_voxelise_devoxelise_and_interpolation():
    g = torch.Generator().manual_seed(0)
    pts = torch.rand(2, 3, 200, generator=g)
    idx = ops.furthest_point_sample(pts, 16)
    assert idx[:, 0].tolist() == [0, 0] and all(len(set(r.tolist())) == 16 for r in idx)
    # brute-force check of the second pick: farthest from point 0
    assert idx[0, 1].item() == ((pts[0] - pts[0, :, :1]) ** 2).sum(0).argmax().item()
    # constant features survive voxelise -> devoxelise (means and trilinear weights sum to one)
    r = 8
    vc = torch.rand(2, 3, 200, generator=g) * (r - 1)
    feats = torch.full((2, 4, 200), 2.5)
    grid = ops.avg_voxelize(feats, torch.round(vc).long(), r)
    occupied = torch.zeros(2, r ** 3)
    flat = torch.round(vc).long()
    occupied.scatter_(1, flat[:, 0] * r * r + flat[:, 1] * r + flat[:, 2], 1.0)
    assert torch.allclose(grid.reshape(2, 4, -1)[:, 0][occupied.bool()], torch.tensor(2.5))
    back = ops.trilinear_devoxelize(torch.full((2, 4, r, r, r), 2.5), vc, r)
    torch.testing.assert_close(back, torch.full_like(back, 2.5))
    # a point on a centre takes that centre's features
    centres = pts[:, :, :10]
    cf = torch.randn(2, 5, 10, generator=g)
    out = ops.three_nn_interpolate(pts[:, :, :10], centres, cf)
    torch.testing.assert_close(out, cf, rtol=1e-5, atol=1e-5)
