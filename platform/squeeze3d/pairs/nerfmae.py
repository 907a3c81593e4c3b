"""``nerfmae``: the paper's radiance-field pair, a NeRF-MAE-style autoencoder as both E and G.

Both models are the mini zoo trained in-project on the procedural radiance corpus
(``squeeze3d.corpora.radiance``) and shipped under ``squeeze3d/zoo/weights/nerfmae``.
- assets: ``[B, 4, 32, 32, 32]`` (r, g, b, σ) grids, axes (x, y, z), σ per voxel length, the object
  in the cube [-1, 1]³ (grids need no normalisation at the codec: ``identity``);
- z_E = z_G: the ¼-resolution decoder features, 32 channels at 8³ (NeRF-MAE: 96 at 40³ for 160³);
- conditions: integer seeds, each one a procedural train-split object with re-drawn colours and
  materials, encoded and decoded by the autoencoder (NeRF-MAE has no generative prior).
Mapping (paper App. A.1): the 3D conv U-Net with bottleneck ResNet-V2 blocks and a 24-channel code;
two levels (8³ → 4³ → 2³, the default here) give a code of 24 × 2³ = 192 numbers. The shipped
champion (``jobs/recipes/nerfmae_champion.yaml``) uses one level: 24 × 4³ = 1536 values, 1 bit each
(quantisation-aware), because the code's spatial resolution mattered more than its bits (README).
End-task metrics: render PSNR and MS-SSIM (``squeeze3d.metrics.volume``, a fixed camera ring).
Output loss (``loss.lambda_output``): an occupancy-weighted MSE between G's decodes of ẑ_G and z_G.
"""

from squeeze3d.pairs.base import PairSpec

RESOLUTION = 32
FEATURE_CHANNELS = 32
Z_SHAPE = (FEATURE_CHANNELS, RESOLUTION // 4, RESOLUTION // 4, RESOLUTION // 4)


def _encoder(device: str):
    from squeeze3d.zoo.nerfmae.model import NerfMAEEncoder

    return NerfMAEEncoder(device)


def _generator(device: str):
    from squeeze3d.zoo.nerfmae.model import NerfMAEGenerator

    return NerfMAEGenerator(device)


def _loss_decoder(device: str):
    from squeeze3d.zoo.nerfmae.model import NerfMAEGenerator

    return NerfMAEGenerator(device).loss_decoder()


def _output_distance(pred, target):
    from squeeze3d.zoo.nerfmae.model import grid_output_distance

    return grid_output_distance(pred, target)


def _metrics(reference, reconstruction):
    from squeeze3d.metrics.volume import radiance_metrics

    return radiance_metrics(reference, reconstruction)


def _heldout(n: int):
    """The first ``n`` radiance-corpus *test* objects (canonical colours; never seen by G or the
    mapping networks), cached per process."""
    import torch

    from squeeze3d.corpora import points as corpus
    from squeeze3d.corpora import radiance as radiance_corpus

    if len(_HELDOUT) < n:
        idx = corpus.split_indices("test", 10 * len(corpus.CATEGORIES) * (1 + n // len(corpus.CATEGORIES)))[:n]
        cfg = radiance_corpus.GridConfig(resolution=RESOLUTION)
        _HELDOUT[:] = [torch.from_numpy(radiance_corpus.make_grid(radiance_corpus.DEFAULT_SEED, int(i), cfg).grid)
                       for i in idx]
    return torch.stack(_HELDOUT[:n])


_HELDOUT: list = []

PAIR = PairSpec(
    name="nerfmae",
    description="NeRF-MAE-style 3D autoencoder as E and G on (rgb, σ) grids (mini zoo, 32³, z 32×8³)",
    asset_kind="radiance_field",
    condition_kind="noise",
    z_e_shape=Z_SHAPE,
    z_g_shape=Z_SHAPE,
    build_encoder=_encoder,
    build_generator=_generator,
    # the paper's radiance-field mapping; optimiser, dropout and learning rates stay at the paper's
    # defaults (Muon only takes 2-D weights: in this all-conv net AdamW does nearly all the work)
    mapping={"arch": "unet3d", "code_channels": 24, "unet_channels": [32, 64]},
    # the paper's gram term on these raw 192-number codes is ~5e6 per batch early on (measured)
    # against a latent MSE of ~1: at the default λ_gram = 1e-3 it would swamp the fit
    loss={"lambda_gram": 1e-7},
    normalisation="identity",
    num_points=None,
    grid_resolution=RESOLUTION,
    asset_metrics=_metrics,
    objective="psnr",
    objective_mode="max",
    heldout_assets=_heldout,
    # the output loss (loss.lambda_output): G's decode of ẑ_G against G's decode of z_G, as grids
    loss_decoder=_loss_decoder,
    output_distance=_output_distance,
    # trained by jobs/recipes/nerfmae_champion.yaml (python jobs/ship_champion.py --recipe ...)
    shipped_model="zoo/weights/nerfmae/mapping",
)
