"""``debug_mesh``: tiny random-weight mesh encoder and generator (the ``mesh`` asset kind), for tests
and smoke runs; not a model of anything."""

from squeeze3d.pairs.base import PairSpec

NUM_POINTS = 512


def _encoder(device: str):
    from squeeze3d.zoo.debug.mesh_models import DebugMeshEncoder

    return DebugMeshEncoder(device)


def _generator(device: str):
    from squeeze3d.zoo.debug.mesh_models import DebugMeshGenerator

    return DebugMeshGenerator(device, num_points=NUM_POINTS)


def _metrics(reference, reconstruction):
    from squeeze3d.metrics.mesh import surface_sample_metrics

    return surface_sample_metrics(reference, reconstruction)


PAIR = PairSpec(
    name="debug_mesh",
    description="tiny random-weight mesh E (MLP over surface samples) and G (deformed, coloured icosphere)",
    asset_kind="mesh",
    condition_kind="noise",
    z_e_shape=(32,),
    z_g_shape=(16,),
    build_encoder=_encoder,
    build_generator=_generator,
    mapping={"arch": "deep_residual_mlp", "d_code": 8, "hidden": 64, "depth": 4, "dropout": 0.0},
    optim={"epochs": 30, "batch_size": 64, "lr_start": 3e-3, "lr_end": 1e-5},
    num_points=NUM_POINTS,
    asset_metrics=_metrics,
)
