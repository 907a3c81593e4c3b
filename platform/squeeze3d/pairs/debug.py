"""``debug``: tiny random-weight point-cloud encoder and generator, for tests and smoke runs."""

from squeeze3d.pairs.base import PairSpec


def _encoder(device: str):
    from squeeze3d.zoo.debug.models import DebugEncoder

    return DebugEncoder(device)


def _generator(device: str):
    from squeeze3d.zoo.debug.models import DebugGenerator

    return DebugGenerator(device)


PAIR = PairSpec(
    name="debug",
    description="tiny random-weight point-cloud E and G (seconds per stage; for tests and smoke runs)",
    asset_kind="point_cloud",
    condition_kind="noise",
    z_e_shape=(32,),
    z_g_shape=(16,),
    build_encoder=_encoder,
    build_generator=_generator,
    mapping={"arch": "deep_residual_mlp", "d_code": 8, "hidden": 64, "depth": 4, "dropout": 0.0},
    optim={"epochs": 30, "batch_size": 64, "lr_start": 3e-3, "lr_end": 1e-5},
    num_points=256,
)
