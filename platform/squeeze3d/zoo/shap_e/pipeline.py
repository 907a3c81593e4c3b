"""Real-format adapter: a diffusers ``ShapEPipeline`` folder (``model_index.json``, ``prior/``,
``shap_e_renderer/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``) as the mesh pair's G.

A user with a local copy of the real Shap-E weights points ``--generator-path`` at the folder (no
download, ever: ``local_files_only``). Sampling is the pipeline's own ``__call__`` with
``output_type="latent"``, one prompt and one seeded ``torch.Generator`` per sample, so every sample is
determined by its (prompt, seed); decoding is the renderer's ``decode_to_mesh`` with the frame
correction of ``shap_e.decode_mesh``. Tests load a folder of random weights at diffusers' tiny test
sizes that the test itself writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from squeeze3d.errors import UserError
from squeeze3d.meshdata import Mesh
from squeeze3d.zoo.base import Generator, prompt_conditions
from squeeze3d.zoo.shap_e.model import decode_mesh, surface_tensor

_PARTS = ("prior", "shap_e_renderer", "text_encoder", "tokenizer", "scheduler")


def load_pipeline(path: str | Path):
    from diffusers import ShapEPipeline

    p = Path(path)
    if not (p / "model_index.json").is_file():
        raise UserError(f"{p}: not a ShapEPipeline folder (no model_index.json)")
    missing = [d for d in _PARTS if not (p / d).is_dir()]
    if missing:
        raise UserError(f"{p}: ShapEPipeline folder lacks {', '.join(d + '/' for d in missing)}")
    pipe = ShapEPipeline.from_pretrained(p, local_files_only=True)
    dec = pipe.shap_e_renderer.mesh_decoder
    if not bool(dec.masks.any()):
        # a checkpoint without marching-cubes tables (e.g. random test weights): derive them
        from squeeze3d.zoo.shap_e.marching_cubes import fill_mesh_decoder

        fill_mesh_decoder(dec)
    return pipe


class _PipelineModule(nn.Module):
    """The pipeline's models under one module (weights hash, device, eval)."""

    def __init__(self, pipe):
        super().__init__()
        self.prior, self.renderer, self.text_encoder = pipe.prior, pipe.shap_e_renderer, pipe.text_encoder


class ShapEPipelineGenerator(Generator):
    name = "shap-e-pipeline"

    def __init__(self, path: str | Path, device: str | torch.device = "cpu", num_points: int = 2048,
                 grid_size: int = 32, steps: int = 16, guidance_scale: float = 3.0):
        self.pipe = load_pipeline(path)
        super().__init__(_PipelineModule(self.pipe), device)
        self.pipe.to(self.device)
        self.weights_hash()  # before decode_to_mesh rewrites the renderer's MLP (see ShapEGenerator)
        cfg = self.pipe.prior.config
        self.z_shape = (int(cfg.num_embeddings), int(cfg.embedding_dim))
        self.num_points, self.grid_size, self.steps, self.guidance = int(num_points), int(grid_size), int(steps), float(guidance_scale)

    def _sample_latents(self, conditions: Sequence, rng: torch.Generator | None) -> torch.Tensor:
        out = []
        for prompt, seed in prompt_conditions(conditions, self.name):
            g = torch.Generator().manual_seed(seed)
            lat = self.pipe(prompt, generator=g, num_inference_steps=self.steps, guidance_scale=self.guidance,
                            output_type="latent").images
            out.append(lat.reshape(1, *self.z_shape).float())
        return torch.cat(out)

    def decode_meshes(self, z_g: torch.Tensor) -> list[Mesh]:
        z = z_g.to(self.device, torch.float32).reshape(-1, *self.z_shape)
        return [decode_mesh(self.pipe.shap_e_renderer, z[i:i + 1], self.grid_size) for i in range(len(z))]

    def _decode(self, z_g: torch.Tensor) -> torch.Tensor:
        return surface_tensor(self.decode_meshes(z_g), self.num_points, self.device)
