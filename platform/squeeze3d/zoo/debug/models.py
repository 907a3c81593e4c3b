"""Tiny random-weight point-cloud encoder and generator (fixed seed) for the ``debug`` pair.

They are not trained: they exist so that every stage of the platform (synthesis, training, registry,
codec) can be exercised end to end in seconds. The generator is a smooth map from a small Gaussian
latent to a point cloud, so the (z_E, z_G) relation is learnable and the debug pair's metrics move.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from squeeze3d.zoo.base import Encoder, Generator, prompt_conditions, seeded_normal

WEIGHT_SEED = 1234


class TinyPointEncoder(nn.Module):
    """PointNet-style: shared per-point MLP, max-pool over points."""

    def __init__(self, latent_dim: int = 32, hidden: int = 64):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(3, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.Linear(hidden, latent_dim))

    def forward(self, points: torch.Tensor) -> torch.Tensor:  # [B, N, 3] -> [B, D]
        return self.mlp(points).amax(dim=1)


class TinyPointDecoder(nn.Module):
    """Latent -> N points: a fixed template sphere deformed by a latent-conditioned MLP."""

    def __init__(self, latent_dim: int = 16, num_points: int = 256, hidden: int = 64):
        super().__init__()
        g = torch.Generator().manual_seed(WEIGHT_SEED + 1)
        template = torch.randn(num_points, 3, generator=g)
        self.register_buffer("template", template / template.norm(dim=-1, keepdim=True))
        self.mlp = nn.Sequential(nn.Linear(latent_dim + 3, hidden), nn.Tanh(), nn.Linear(hidden, 3))

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # [B, D] -> [B, N, 3]
        b, n = z.shape[0], self.template.shape[0]
        t = self.template.expand(b, n, 3)
        x = torch.cat([t, z[:, None, :].expand(b, n, z.shape[1])], dim=-1)
        pts = t + 0.3 * self.mlp(x)
        # unit-sphere normalisation keeps generated assets in the frame encoders expect
        pts = pts - pts.mean(dim=1, keepdim=True)
        return pts / pts.norm(dim=-1).amax(dim=1).clamp_min(1e-6)[:, None, None]




class DebugEncoder(Encoder):
    name = "debug-encoder"

    def __init__(self, device: str | torch.device = "cpu", latent_dim: int = 32, module: TinyPointEncoder | None = None):
        """``module``: these weights (e.g. a checkpoint's, ``zoo.debug.adapter``); default the fixed seed's."""
        if module is None:
            with torch.random.fork_rng():
                torch.manual_seed(WEIGHT_SEED)
                module = TinyPointEncoder(latent_dim)
        super().__init__(module, device)

    def _encode(self, assets: torch.Tensor) -> torch.Tensor:
        return self.module(assets)


class DebugGenerator(Generator):
    name = "debug-generator"

    def __init__(self, device: str | torch.device = "cpu", latent_dim: int = 16, num_points: int = 256,
                 module: TinyPointDecoder | None = None):
        if module is None:
            with torch.random.fork_rng():
                torch.manual_seed(WEIGHT_SEED + 2)
                module = TinyPointDecoder(latent_dim, num_points)
        super().__init__(module, device)
        self.latent_dim = module.mlp[0].in_features - 3

    def _sample_latents(self, conditions: Sequence[int], rng: torch.Generator | None) -> torch.Tensor:
        return seeded_normal(conditions, (self.latent_dim,), self.device)

    def _decode(self, z_g: torch.Tensor) -> torch.Tensor:
        return self.module(z_g)


# --- debug_text: the plumbing check for text-conditioned pairs ------------------------------------

TEXT_BUCKETS = 256


def hashed_words(texts: Sequence[str], buckets: int = TEXT_BUCKETS) -> torch.Tensor:
    """Bag of words hashed into ``buckets`` signed counts (blake2b: stable across processes, unlike
    ``hash``), L2-normalised. Prompts that share words get nearby vectors."""
    import hashlib
    import re

    out = torch.zeros(len(texts), buckets)
    for i, t in enumerate(texts):
        for w in re.findall(r"[a-z0-9]+", str(t).lower()):
            d = hashlib.blake2b(w.encode(), digest_size=8).digest()
            out[i, int.from_bytes(d[:4], "little") % buckets] += 1.0 if d[4] & 1 else -1.0
    return out / out.norm(dim=1, keepdim=True).clamp_min(1e-6)


class TextDebugModule(nn.Module):
    """A fixed random projection of hashed words (the "text encoder") + the debug point decoder."""

    def __init__(self, latent_dim: int = 16, num_points: int = 256, buckets: int = TEXT_BUCKETS):
        super().__init__()
        g = torch.Generator().manual_seed(WEIGHT_SEED + 3)
        # unit-norm word vector @ N(0, 1) entries: per-coordinate scale ~1, twice the per-sample noise
        self.register_buffer("text_proj", torch.randn(buckets, latent_dim, generator=g))
        self.decoder = TinyPointDecoder(latent_dim, num_points)


class DebugTextGenerator(Generator):
    """Text-conditioned debug G: ``(prompt, seed)`` -> z_G = text_mean(prompt) + 0.5 * N(0, I; seed)
    -> points. Not a model of anything: deterministic in the prompt and seed, and the prompt visibly
    moves z_G, so prompt-conditioned builds (prompt table -> shards -> training) can be tested in
    seconds, as the ``debug`` pair does for noise-conditioned ones."""

    name = "debug-text-generator"
    noise_scale = 0.5

    def __init__(self, device: str | torch.device = "cpu", latent_dim: int = 16, num_points: int = 256):
        with torch.random.fork_rng():
            torch.manual_seed(WEIGHT_SEED + 2)
            module = TextDebugModule(latent_dim, num_points)
        super().__init__(module, device)
        self.latent_dim = latent_dim

    def text_means(self, prompts: Sequence[str]) -> torch.Tensor:
        # One matmul per prompt: BLAS picks kernels by the batch size and the CPU, so a batched
        # product differs from a one-row product in the last bits. Row by row, a sample's z_G is
        # bitwise the same alone or in any batch (builder reruns and shard rebuilds rely on it).
        words = hashed_words(prompts, self.module.text_proj.shape[0]).to(self.device)
        return torch.cat([row[None] @ self.module.text_proj for row in words])

    def _sample_latents(self, conditions: Sequence, rng: torch.Generator | None) -> torch.Tensor:
        pairs = prompt_conditions(conditions, self.name)
        mean = self.text_means([p for p, _ in pairs])
        noise = seeded_normal([s for _, s in pairs], (self.latent_dim,), self.device)
        return mean + self.noise_scale * noise

    def _decode(self, z_g: torch.Tensor) -> torch.Tensor:
        return self.module.decoder(z_g)
