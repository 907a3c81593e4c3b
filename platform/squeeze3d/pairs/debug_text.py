"""``debug_text``: the ``debug`` pair's encoder with a tiny text-conditioned generator.

The plumbing check for text-conditioned pairs (the mesh pair to come): it is built from a prompt
table (``jobs/build_prompts.py`` -> ``jobs/build_dataset.py --prompts URI``), each prompt sampled k
times, in seconds and without any real text-to-3D model. The generator's z_G depends on the prompt's
words and a per-sample seed (``zoo.debug.models.DebugTextGenerator``).
"""

from squeeze3d.pairs.base import PairSpec


def _encoder(device: str):
    from squeeze3d.zoo.debug.models import DebugEncoder

    return DebugEncoder(device)


def _generator(device: str):
    from squeeze3d.zoo.debug.models import DebugTextGenerator

    return DebugTextGenerator(device)


PAIR = PairSpec(
    name="debug_text",
    description="tiny random-weight point-cloud E and a prompt-conditioned G (plumbing check for text pairs)",
    asset_kind="point_cloud",
    condition_kind="prompt",
    z_e_shape=(32,),
    z_g_shape=(16,),
    build_encoder=_encoder,
    build_generator=_generator,
    mapping={"arch": "deep_residual_mlp", "d_code": 8, "hidden": 64, "depth": 4, "dropout": 0.0},
    optim={"epochs": 30, "batch_size": 64, "lr_start": 3e-3, "lr_end": 1e-5},
    num_points=256,
)
