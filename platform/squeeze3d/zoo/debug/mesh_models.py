"""Tiny random-weight mesh encoder and generator (fixed seed) for the ``debug_mesh`` pair.

Not trained: they exist so the ``mesh`` asset kind runs through synthesis, training and the codec in
seconds. E is a PointNet-style MLP max-pooled over ``[N, 9]`` surface samples (xyz, normal, rgb); G
deforms a fixed icosphere radially and colours its vertices, both smooth functions of the latent, so
(z_E, z_G) is learnable. ``decode_meshes`` gives the meshes (what the codec writes); ``decode`` gives
their surface samples (what shards and the encoder see), ``meshdata.sample_surface(mesh, N, seed=0)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from squeeze3d.meshdata import Mesh, normalise_unit_sphere, sample_surface
from squeeze3d.zoo.base import Encoder, Generator, seeded_normal

WEIGHT_SEED = 4321
ICOSPHERE_SUBDIVISIONS = 2  # 162 vertices, 320 faces


class TinySampleEncoder(nn.Module):
    def __init__(self, latent_dim: int = 32, hidden: int = 64):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(9, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.Linear(hidden, latent_dim))

    def forward(self, samples: torch.Tensor) -> torch.Tensor:  # [B, N, 9] -> [B, D]
        return self.mlp(samples).amax(dim=1)


class TinyMeshDecoder(nn.Module):
    """Latent → per-vertex radius offset and colour of a fixed icosphere."""

    def __init__(self, latent_dim: int = 16, hidden: int = 64):
        super().__init__()
        import trimesh

        ico = trimesh.creation.icosphere(subdivisions=ICOSPHERE_SUBDIVISIONS)
        self.register_buffer("template", torch.tensor(np.asarray(ico.vertices), dtype=torch.float32))
        self.register_buffer("faces", torch.tensor(np.asarray(ico.faces), dtype=torch.int64))
        self.mlp = nn.Sequential(nn.Linear(latent_dim + 3, hidden), nn.Tanh(), nn.Linear(hidden, 4))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # [B, D] -> [B, V, 3] x2
        b, n = z.shape[0], self.template.shape[0]
        t = self.template.expand(b, n, 3)
        out = self.mlp(torch.cat([t, z[:, None, :].expand(b, n, z.shape[1])], dim=-1))
        verts = t * (1.0 + 0.3 * torch.tanh(out[..., :1]))
        return verts, torch.sigmoid(out[..., 1:])


class DebugMeshEncoder(Encoder):
    name = "debug-mesh-encoder"

    def __init__(self, device: str | torch.device = "cpu", latent_dim: int = 32):
        with torch.random.fork_rng():
            torch.manual_seed(WEIGHT_SEED)
            module = TinySampleEncoder(latent_dim)
        super().__init__(module, device)

    def _encode(self, assets: torch.Tensor) -> torch.Tensor:
        return self.module(assets)


class DebugMeshGenerator(Generator):
    name = "debug-mesh-generator"

    def __init__(self, device: str | torch.device = "cpu", latent_dim: int = 16, num_points: int = 512):
        with torch.random.fork_rng():
            torch.manual_seed(WEIGHT_SEED + 1)
            module = TinyMeshDecoder(latent_dim)
        super().__init__(module, device)
        self.latent_dim = latent_dim
        self.num_points = num_points

    def _sample_latents(self, conditions: Sequence[int], rng: torch.Generator | None) -> torch.Tensor:
        return seeded_normal(conditions, (self.latent_dim,), self.device)

    @torch.no_grad()
    def decode_meshes(self, z_g: torch.Tensor) -> list[Mesh]:
        """``[B, D]`` latents → B meshes in the unit-sphere frame (the mesh kind's normalised assets)."""
        out = []
        for i in range(z_g.shape[0]):  # one at a time: a mesh is the same alone or in a batch
            verts, cols = self.module(z_g[i:i + 1].to(self.device, torch.float32))
            m = Mesh(verts[0].cpu().numpy(), self.module.faces.cpu().numpy(), cols[0].cpu().numpy())
            out.append(normalise_unit_sphere(m)[0])
        return out

    def _decode(self, z_g: torch.Tensor) -> torch.Tensor:
        samples = [sample_surface(m, self.num_points, seed=0) for m in self.decode_meshes(z_g)]
        return torch.from_numpy(np.stack(samples)).to(self.device)
