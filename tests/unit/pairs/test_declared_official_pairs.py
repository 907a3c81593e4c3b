"""The example real-pair files ``datasets/pairs/real/pointnet_lion_official.yaml`` and
``nerfmae_swin3d.yaml``, unchanged, with ``$SQUEEZE3D_CHECKPOINTS`` pointing at tiny random weights
written in the official file layouts: the pairs resolve through ``get_pair(path)`` with latent shapes
read from the checkpoints' configuration (no weights loaded for that), and G samples on CPU and E
encodes the sample."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from official_weights import write_lion_release, write_nerfmae_checkpoint

from squeeze3d.pairs import declared, declared_spec, get_pair
from squeeze3d.zoo.lion import official as lo
from squeeze3d.zoo.nerfmae import swin3d as nm

REAL = Path(__file__).resolve().parents[3] / "datasets" / "pairs" / "real"

# LION's tree at a tiny width (read from the weights) with a 3-step schedule (ddpm.num_steps in cfg.yml),
# so the example file's own options (1000-step DDPM at full size) run here in seconds
LION_TINY = lo.LionOfficialConfig(style_dim=16, num_points=1024, time_dim=16, prior_channels=16, prior_blocks=2,
                                  embedding_dim=16, num_steps=3, width=0.25)
NERFMAE_TINY = nm.NerfMAESwinConfig(resolution=32, embed_dim=12)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """Fresh per-process caches of pair files and shapes: the example files are resolved against this
    test's checkpoints only."""
    for cache in ("_FILES", "_CARRIED"):
        monkeypatch.setattr(declared, cache, {})
    for cache in ("_SPECS", "_SHAPES"):
        monkeypatch.setattr(declared_spec, cache, {})
    monkeypatch.setenv(declared.FILES_ENV, "")
    monkeypatch.setenv(declared.DIRS_ENV, str(tmp_path / "user_pairs"))
    monkeypatch.setenv("SQUEEZE3D_CHECKPOINTS", str(tmp_path / "ckpts"))


def _no_weight_loading(monkeypatch):
    """Resolving a pair must not build the models: their loaders fail if called."""
    def refuse(*a, **k):
        raise AssertionError("latent shapes must come from the configuration, not from loading the weights")

    monkeypatch.setattr(lo, "load_lion_official", refuse)
    monkeypatch.setattr(nm, "load_nerfmae", refuse)


def _write_pointnet2(path: Path) -> None:
    """The reference PointNet++ training script's best_model.pth (random weights, 40 classes)."""
    from squeeze3d.zoo.pointnet2 import model as pn

    torch.manual_seed(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": 3, "instance_acc": 0.9, "model_state_dict": pn.PointNet2Cls(40).state_dict()}, path)


def test_pointnet_lion_official_example_with_tiny_official_weights(monkeypatch, tmp_path):
    root = tmp_path / "ckpts"
    _write_pointnet2(root / "pointnet2" / "best_model.pth")
    write_lion_release(root / "LION" / "unconditional" / "all55", LION_TINY, seed=4)
    with monkeypatch.context() as m:
        _no_weight_loading(m)
        pair = get_pair(str(REAL / "pointnet_lion_official.yaml"))
    # z_G from cfg.yml (16 + 1024 x (3 + 1)); z_E probed from the PointNet++ checkpoint
    assert pair.z_g_shape == (LION_TINY.z_dim,) == (16 + 1024 * 4,)
    assert pair.z_e_shape == (1024,)
    gen = pair.build_generator("cpu")
    assert gen.settings() == {"sampler": "ddpm", "steps": 3}  # the file's sampler over the file's schedule
    assert gen.module.c.width == 0.25  # read from the weights
    z_g, clouds = gen.sample([7])
    assert z_g.shape == (1, *pair.z_g_shape) and clouds.shape == (1, 1024, 3)
    assert torch.isfinite(z_g).all() and torch.isfinite(clouds).all()
    z_e = pair.build_encoder("cpu").encode(clouds)
    assert z_e.shape == (1, *pair.z_e_shape) and torch.isfinite(z_e).all()


def test_nerfmae_swin3d_example_with_tiny_official_weights(monkeypatch, tmp_path):
    write_nerfmae_checkpoint(tmp_path / "ckpts" / "NeRF-MAE" / "nerf_mae_pretrained.pt", NERFMAE_TINY)
    with monkeypatch.context() as m:
        _no_weight_loading(m)
        pair = get_pair(str(REAL / "nerfmae_swin3d.yaml"))
    # the architecture is read from the tensor shapes: decoder2 features, 12 channels at (32/4)³
    assert pair.z_e_shape == pair.z_g_shape == NERFMAE_TINY.z_shape == (12, 8, 8, 8)
    enc, gen = pair.build_encoder("cpu"), pair.build_generator("cpu")
    assert enc.module.c == gen.module.c == NERFMAE_TINY
    z_g, grids = gen.sample([3])
    assert z_g.shape == (1, 12, 8, 8, 8) and grids.shape == (1, 4, 32, 32, 32)
    z_e = enc.encode(grids)
    assert z_e.shape == (1, *pair.z_e_shape) and torch.isfinite(z_e).all()


def test_config_inferred_from_shapes_is_the_published_one_and_options_override():
    with torch.device("meta"):
        published = nm.SwinMAE3D(nm.NerfMAESwinConfig())
    shapes = {k: tuple(v.shape) for k, v in published.state_dict().items()}
    assert nm.config_from_shapes(shapes) == nm.NerfMAESwinConfig()
    assert nm.generator_latent_shape("unused.pt", config={"resolution": 64, "embed_dim": 24}) == (24, 16, 16, 16)
    assert nm.encoder_latent_shape("unused.pt", config={"resolution": 64}, features="bottleneck") == (768, 2, 2, 2)
    with pytest.raises(nm.NerfMAECheckpointError, match="pos_embed"):
        nm.config_from_shapes({k: v for k, v in shapes.items() if k != "pos_embed"})


def test_lion_latent_shape_reads_cfg_yml_and_overrides(tmp_path):
    path, *_ = write_lion_release(tmp_path / "rel", LION_TINY, seed=1)
    assert lo.latent_shape(path) == (LION_TINY.z_dim,)
    assert lo.latent_shape(path, config={"num_points": 512}, sampler="ddim") == (16 + 512 * 4,)
    with pytest.raises(lo.LionOfficialCheckpointError, match="unknown LION config field 'widht'"):
        lo.latent_shape(path, config={"widht": 0.5})
