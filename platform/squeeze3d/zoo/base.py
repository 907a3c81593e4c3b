"""The two model contracts every pair is built from.

Encoders and generators are frozen: always in ``eval()`` mode, called under ``torch.no_grad()``,
batched, and placed on a device given as a parameter (the same code path on CPU and GPU).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn


def state_dict_hash(module: nn.Module) -> str:
    """sha256 over the sorted state dict (names, dtypes, shapes, bytes): a weight identity that does
    not depend on file format, so shards and registry versions can name the exact models used."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        # reshape first: 0-dim tensors (BatchNorm's num_batches_tracked) cannot be viewed as bytes
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


class FrozenModel:
    """Common plumbing: a wrapped ``nn.Module`` kept in eval mode on one device."""

    name: str = "model"

    def __init__(self, module: nn.Module, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.module = module.to(self.device).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self._hash: str | None = None

    def weights_hash(self) -> str:
        """The model's identity, which build manifests record: its weights' hash, mixed with
        ``settings()`` when the model has settings outside its weights that change its outputs."""
        if self._hash is None:
            extra = self.settings()
            self._hash = state_dict_hash(self.module)
            if extra:
                doc = json.dumps({"weights": self._hash, "config": extra}, sort_keys=True)
                self._hash = hashlib.sha256(doc.encode()).hexdigest()
        return self._hash

    def settings(self) -> dict:
        """Settings outside the weights that change what the model gives (default: none)."""
        return {}


class Encoder(FrozenModel):
    """E: assets -> z_E. Subclasses implement ``_encode`` on a batch already on ``self.device``."""

    def encode(self, assets: torch.Tensor) -> torch.Tensor:
        """``assets``: a batch (e.g. ``[B, N, 3]`` points). Returns ``[B, *z_e_shape]`` float32.

        Encoded one asset at a time (see ``per_sample``): z_E of an asset is then bitwise the same
        alone or in any batch, which the builder's resume and rebuild guarantees rest on."""
        with torch.no_grad():
            z = per_sample(self._encode, assets.to(self.device, torch.float32))
        return z.float()

    def _encode(self, assets: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class Generator(FrozenModel):
    """G: (conditions) -> (z_G, assets) and z_G -> assets.

    Conditions are per-sample (a noise seed, a prompt, an image); a sample depends only on its own
    condition and not on how samples are batched or which worker runs them, so distributed builds
    are reproducible.
    """

    thread_safe: bool = True
    """Whether two threads may decode at once (the codec's batch mode runs files in parallel threads);
    False for a G whose decode writes into its own modules."""

    def sample(self, conditions: Sequence[Any], rng: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            z_g = self._sample_latents(conditions, rng)
            assets = per_sample(self._decode, z_g)
        return z_g.float(), assets.float()

    def decode(self, z_g: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return per_sample(self._decode, z_g.to(self.device, torch.float32)).float()

    def _sample_latents(self, conditions: Sequence[Any], rng: torch.Generator | None) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover - abstract

    def _decode(self, z_g: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover - abstract


def per_sample(fn, batch: torch.Tensor) -> torch.Tensor:
    """``fn`` applied to one row at a time, results concatenated. BLAS and conv kernels are chosen
    by batch size and CPU, so a batched call differs from a one-row call in the last bits; per-row
    calls make every result independent of its batch. The models here are big enough per row
    (thousands of points or a whole grid) that the lost batching costs little."""
    if batch.shape[0] <= 1:
        return fn(batch)
    return torch.cat([fn(batch[i:i + 1]) for i in range(batch.shape[0])])


def seeded_normal(seeds: Sequence[int], shape: Sequence[int], device: torch.device) -> torch.Tensor:
    """One standard-normal tensor per integer seed, drawn on CPU so values are identical on any
    device, then moved. Returns ``[len(seeds), *shape]``."""
    out = []
    for s in seeds:
        g = torch.Generator().manual_seed(int(s))
        out.append(torch.randn(*shape, generator=g))
    return torch.stack(out).to(device)


def prompt_conditions(conditions: Sequence[Any], name: str) -> list[tuple[str, int]]:
    """Text-conditioned generators' conditions as ``(prompt, seed)`` pairs; a bare prompt means seed 0
    (the same z_G every time). Anything else is a ``TypeError`` naming the generator."""
    pairs = []
    for c in conditions:
        if isinstance(c, str):
            pairs.append((c, 0))
        elif isinstance(c, (tuple, list)) and len(c) == 2 and isinstance(c[0], str):
            pairs.append((c[0], int(c[1])))
        else:
            raise TypeError(f"{name} is text-conditioned: a condition is (prompt, seed) or a prompt, got {c!r}")
    return pairs
