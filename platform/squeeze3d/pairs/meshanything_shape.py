"""``meshanything_shape``: the paper's textured-mesh pair, a MeshAnything-style encoder and a
text-conditioned Shap-E-style generator (the mini zoo, ``squeeze3d.zoo.meshanything.model`` and
``squeeze3d.zoo.shap_e.model``, trained in-project on the captioned corpus ``corpora.meshes``).

- assets: coloured meshes (``meshdata.Mesh``); the models and shards see ``[B, 2048, 9]`` surface
  samples (xyz, normal, sRGB) of the unit-sphere-normalised mesh (``assets.mesh``);
- z_E: MeshAnything's ``process_point_feature`` tokens, ``[65, 64]`` (real MeshAnything: 257 × 1024);
- z_G: Shap-E's renderer latent, ``[128, 64]`` (real Shap-E: 1024 × 1024);
- conditions: text. A build takes a prompt table (``jobs/build_prompts.py``) and samples each prompt
  k times with per-sample seeds; prompts G cannot take (``prompt_problem``) are left out, counted and
  reported in the manifest and the build summary.
Mapping (paper App. A.1, meshes): the residual MLP, d_C 128, hidden 512 (F_E 2.5 M + F_D 4.5 M
parameters: 14 MB in f16).
Output loss (``loss.lambda_output``): G's field (pre-tanh SDF clamped to the band G was fitted in, and
colour) at 4096 fixed query points, ẑ_G against z_G (``ShapEFieldDecoder``, ``field_output_distance``).

Weights: the shipped zoo by default. ``SQUEEZE3D_SHAP_E_PATH`` (a mini Shap-E folder, ``shap_e.save``)
and ``SQUEEZE3D_MESHANYTHING_PATH`` (a folder with ``meshanything_shape.safetensors`` + ``.json``,
``meshanything.save_weights``) point the pair at other weights, e.g. the tiny random-weight models of
the tests. They are read each time a model is built, so Ray workers follow the driver's environment;
the weights' hashes go into manifests and registry versions as for any other weights.
"""

from __future__ import annotations

import os

from squeeze3d.pairs.base import PairSpec

NUM_POINTS = 2048
Z_E_SHAPE = (65, 64)
Z_G_SHAPE = (128, 64)
SHAP_E_PATH_ENV = "SQUEEZE3D_SHAP_E_PATH"
MESHANYTHING_PATH_ENV = "SQUEEZE3D_MESHANYTHING_PATH"

# Prompts G takes: non-empty text of at most MAX_PROMPT_WORDS words and MAX_PROMPT_CHARS characters.
# CLIP (real Shap-E's text encoder) reads 77 tokens; MiniLM (the mini model's) truncates at 256 word
# pieces. Beyond the limit the tail would be cut silently, so such a prompt would not condition G on
# what it says: the build leaves it out and reports it.
MAX_PROMPT_WORDS = 77
MAX_PROMPT_CHARS = 300

# The output loss's query points: near the surfaces of the first QUERY_OBJECTS train-split corpus
# objects (half σ 0.01, half σ 0.05, as G's own training queries) plus uniform points in [-1, 1]³.
QUERY_OBJECTS = 48
QUERY_NEAR_PER_OBJECT = 64
QUERY_UNIFORM = 1024
QUERY_SEED = 1234
SDF_BAND = 1.0
"""G's SDF head was fitted to ``clamp(-sdf / τ, -1, 1)``: beyond ±1 the field carries no shape."""


def prompt_problem(condition) -> str | None:
    """Why G cannot take this condition (a prompt, or ``(prompt, seed)``); None when it can."""
    prompt = condition[0] if isinstance(condition, (tuple, list)) and condition else condition
    if not isinstance(prompt, str):
        return f"not text ({type(prompt).__name__})"
    if not prompt.strip():
        return "empty"
    if len(prompt) > MAX_PROMPT_CHARS:
        return f"longer than {MAX_PROMPT_CHARS} characters"
    if len(prompt.split()) > MAX_PROMPT_WORDS:
        return f"longer than {MAX_PROMPT_WORDS} words"
    return None


def _shap_e_path():
    return os.environ.get(SHAP_E_PATH_ENV) or None


def _encoder(device: str):
    from squeeze3d.zoo.meshanything.model import MeshAnythingEncoder

    return MeshAnythingEncoder(device, weights=os.environ.get(MESHANYTHING_PATH_ENV) or None)


# Share of a build's samples that are G's fitted latents of train-split corpus objects (picked by the
# sample's seed) rather than prior samples: the prior alone under-covers the real objects' latents
# (``ShapEGenerator.posterior_mix``). 0 with other weights (SQUEEZE3D_SHAP_E_PATH): their latents
# would not match the shipped recipe's cache.
POSTERIOR_MIX = 0.5


def _posterior():
    from squeeze3d.zoo_training.shap_e import posterior_latents

    return posterior_latents()


def _generator(device: str):
    from squeeze3d.zoo.shap_e.model import ShapEGenerator

    path = _shap_e_path()
    mix = POSTERIOR_MIX if path is None else 0.0
    return ShapEGenerator(device, path=path, num_points=NUM_POINTS, posterior=_posterior if mix else None,
                          posterior_mix=mix)


def query_points():
    """The output loss's fixed query points ``[4096, 3]`` float32 (deterministic; cached per process:
    building the corpus objects takes ~0.1 s each)."""
    import numpy as np

    from squeeze3d.corpora import meshes as mesh_corpus
    from squeeze3d.meshdata import sample_surface

    if "points" not in _QUERIES:
        rng = np.random.default_rng(QUERY_SEED)
        idx = mesh_corpus.split_indices("train", 2 * QUERY_OBJECTS)[:QUERY_OBJECTS]
        near = []
        for i in idx:
            mesh = mesh_corpus.make_textured(mesh_corpus.DEFAULT_SEED, int(i)).mesh
            s = sample_surface(mesh, QUERY_NEAR_PER_OBJECT, seed=int(i))[:, :3]
            sigma = np.where(np.arange(len(s)) % 2 == 0, 0.01, 0.05)[:, None]
            near.append(s + rng.normal(size=s.shape) * sigma)
        uniform = rng.uniform(-1, 1, size=(QUERY_UNIFORM, 3))
        _QUERIES["points"] = np.clip(np.concatenate([*near, uniform]), -1, 1).astype(np.float32)
    return _QUERIES["points"]


_QUERIES: dict = {}


def _field_decoder_class():
    import torch
    from torch import nn

    from squeeze3d.zoo.shap_e import model as shap_e

    class ShapEFieldDecoder(nn.Module):
        """G's field as a frozen, differentiable ``z_G [B, 8192] (or [B, 128, 64]) -> [B, P, 4]``:
        (pre-tanh SDF clamped to ±``SDF_BAND``, sRGB) at the fixed ``points`` (the same points for
        prediction and target, so the distance compares like with like)."""

        def __init__(self, renderer, points, z_shape):
            super().__init__()
            self.renderer = renderer
            self.z_shape = tuple(z_shape)
            self.register_buffer("points", torch.as_tensor(points, dtype=torch.float32))

        def forward(self, z_g: torch.Tensor, keep: int = 0, generator: torch.Generator | None = None) -> torch.Tensor:
            if keep:
                # the objective subsets prediction and target separately: a field compared at two
                # different point sets would be noise
                raise ValueError("the meshanything_shape field decoder evaluates fixed query points; set "
                                 "loss.output_points=0")
            z = z_g.reshape(-1, *self.z_shape).float()
            pts = self.points.to(z.device).expand(len(z), -1, -1)
            sdf, rgb = shap_e.field_values(self.renderer, z, pts)
            return torch.cat([sdf.clamp(-SDF_BAND, SDF_BAND)[..., None], rgb], -1)

    return ShapEFieldDecoder


def _loss_decoder(device: str):
    gen = _generator(device)
    return _field_decoder_class()(gen.module.renderer, query_points(), Z_G_SHAPE).to(device)


def field_output_distance(pred, target):
    """``[B]`` mean L1 over the field: the SDF channel at every query point, the colour where the target's
    surface is (``|sdf| < SDF_BAND``: off the surface G's colour head was never fitted)."""
    sdf = (pred[..., 0] - target[..., 0]).abs()
    band = (target[..., 0].abs() < SDF_BAND).float()
    rgb = (pred[..., 1:] - target[..., 1:]).abs().mean(-1) * band
    return sdf.mean(1) + rgb.sum(1) / band.sum(1).clamp_min(1)


def _metrics(reference, reconstruction):
    """Chamfer and D1-PSNR of the xyz (``metrics.mesh.surface_sample_metrics``) and a colour PSNR:
    each reference sample's sRGB against its nearest reconstructed sample's (peak 1)."""
    import torch

    from squeeze3d.metrics.mesh import surface_sample_metrics

    out = surface_sample_metrics(reference, reconstruction)
    a, b = reference.float(), reconstruction.float()
    nn_idx = torch.cdist(a[..., :3], b[..., :3]).argmin(-1)
    matched = torch.gather(b[..., 6:9], 1, nn_idx[..., None].expand(-1, -1, 3))
    mse = ((a[..., 6:9] - matched) ** 2).mean((1, 2))
    out["color_psnr"] = -10 * torch.log10(mse.clamp_min(1e-10))
    return out


def _heldout(n: int):
    """Surface samples ``[n, 2048, 9]`` of the first ``n`` textured-corpus *test* objects (never seen by
    G, E or the mapping), exactly as the codec samples a mesh (``assets.mesh``: unit sphere, seed 0);
    cached per process."""
    import torch

    from squeeze3d.corpora import meshes as mesh_corpus
    from squeeze3d.meshdata import normalise_unit_sphere, sample_surface

    if len(_HELDOUT) < n:
        idx = mesh_corpus.split_indices("test", 10 * len(mesh_corpus.CATEGORIES) * (1 + n // len(mesh_corpus.CATEGORIES)))
        for i in idx[len(_HELDOUT):n]:
            mesh = normalise_unit_sphere(mesh_corpus.make_textured(mesh_corpus.DEFAULT_SEED, int(i)).mesh)[0]
            _HELDOUT.append(torch.from_numpy(sample_surface(mesh, NUM_POINTS, seed=0)))
    return torch.stack(_HELDOUT[:n])


_HELDOUT: list = []

PAIR = PairSpec(
    name="meshanything_shape",
    description="MeshAnything-style mesh encoder + text-conditioned Shap-E-style generator (mini zoo, coloured meshes)",
    asset_kind="mesh",
    condition_kind="prompt",
    z_e_shape=Z_E_SHAPE,
    z_g_shape=Z_G_SHAPE,
    build_encoder=_encoder,
    build_generator=_generator,
    mapping={"arch": "residual_mlp", "d_code": 128, "hidden": 512, "dropout": 0.1},
    normalisation="unit_sphere",
    num_points=NUM_POINTS,
    asset_metrics=_metrics,
    objective="d1_psnr",
    objective_mode="max",
    heldout_assets=_heldout,
    loss_decoder=_loss_decoder,
    output_distance=field_output_distance,
    condition_problem=prompt_problem,
    # trained by jobs/recipes/meshanything_shape_champion.yaml (python jobs/ship_champion.py --recipe ...)
    shipped_model="zoo/weights/meshanything_shape/mapping",
)
