"""``pointnet_lion``: the paper's point-cloud pair, PointNet++ (SSG) encoder + LION-style generator.

The embedded default: both models are the mini zoo trained in-project on the procedural corpus
(``squeeze3d.corpora.points``) and shipped under ``squeeze3d/zoo/weights/pointnet_lion``.
- assets: ``[B, 2048, 3]`` point clouds in the unit sphere (bounding-box centre, max radius 1);
- z_E: the 1024-d PointNet++ global feature (of a fixed-seed 1024-point subset);
- z_G: ``[z_glob (128) | 2048 latent points x (3 + 1)]`` = 8320 numbers, latent points in Morton order;
- conditions: integer noise seeds (DDIM, 32 steps, eta 0).
Mapping defaults follow the paper (App. A.1): deep residual MLP, d_C 1024, dropout 0.3, Muon,
learning rate 1e-3 -> 1e-7.
"""

from squeeze3d.pairs.base import PairSpec

NUM_POINTS = 2048
GLOBAL_DIM = 128
POINT_DIM = 4
Z_G_DIM = GLOBAL_DIM + NUM_POINTS * POINT_DIM  # 8320


def _encoder(device: str):
    from squeeze3d.zoo.pointnet2.model import PointNet2Encoder

    return PointNet2Encoder(device)


def _heldout(n: int):
    """The first ``n`` corpus *test* shapes (real objects G never produced), 2048 normalised points
    each; cached per process because building the meshes (boolean unions) takes a while."""
    import torch

    from squeeze3d.corpora import points as corpus

    if len(_HELDOUT) < n:
        idx = corpus.split_indices("test", 10 * len(corpus.CATEGORIES) * (1 + n // len(corpus.CATEGORIES)))[:n]
        _HELDOUT[:] = [torch.from_numpy(corpus.make_shape(corpus.DEFAULT_SEED, int(i), NUM_POINTS).points)
                       for i in idx]
    return torch.stack(_HELDOUT[:n])


_HELDOUT: list = []


# Training pairs: half from G's prior (DDIM from a noise seed), half G reconstructing a train-split
# corpus object chosen by the seed (its VAE posterior). G's prior alone covers the corpus poorly, so a
# mapping trained only on it leaves ~9 dB on held-out real shapes (the codec issue's calibration).
POSTERIOR_MIX = 0.5
DDIM_STEPS = 16  # measured trade-off: jobs/bench_zoo.py --ddim-steps (README, "Generator sampling")


def _generator(device: str, posterior_mix: float = POSTERIOR_MIX, real_share: float = 0.0):
    """``real_share`` > 0 (the champion recipe's build): that share of the posterior draws are
    augmented real objects of the corpus ``squeeze3d corpus fetch`` builds."""
    from squeeze3d.zoo.lion.model import LionGenerator

    return LionGenerator(device, ddim_steps=DDIM_STEPS, posterior_mix=posterior_mix, real_share=real_share)


def _loss_decoder(device: str):
    from squeeze3d.zoo.lion.model import LionGenerator, load_lion

    model, configs = load_lion(with_priors=False)
    return LionGenerator(device, model=model, configs=configs).loss_decoder()


PAIR = PairSpec(
    name="pointnet_lion",
    description="PointNet++ SSG encoder + LION-style latent point diffusion (mini zoo, 2048-point clouds)",
    asset_kind="point_cloud",
    condition_kind="noise",
    z_e_shape=(1024,),
    z_g_shape=(Z_G_DIM,),
    build_encoder=_encoder,
    build_generator=_generator,
    mapping={"arch": "deep_residual_mlp", "d_code": 1024, "dropout": 0.3},
    optim={"optimizer": "muon", "lr_start": 1e-3, "lr_end": 1e-7},
    normalisation="unit_sphere",
    num_points=NUM_POINTS,
    heldout_assets=_heldout,
    latent_points=(GLOBAL_DIM, NUM_POINTS, POINT_DIM),
    loss_decoder=_loss_decoder,
    shipped_model="zoo/weights/pointnet_lion/mapping",
)
