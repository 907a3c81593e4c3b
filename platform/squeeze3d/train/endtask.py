"""End-task metrics: what a user of the codec would see, not latent MSE.

- validation: decode G(F_D(F_E(z_E))) and compare with G(z_G), the asset the pair's ground truth
  gives, on a fixed subset of the validation pairs;
- held-out: real assets the generator never produced (the corpus test split), compressed with
  E → F_E and reconstructed with G(F_D(code)).
"""

from __future__ import annotations

import torch

from squeeze3d.mapping.common import MappingHalf
from squeeze3d.pairs.base import PairSpec


def _mean(metrics: dict[str, torch.Tensor], prefix: str) -> dict[str, float]:
    return {f"{prefix}_{k}": float(v.double().mean()) for k, v in metrics.items()}


@torch.no_grad()
def validation_metrics(pair: PairSpec, f_e: MappingHalf, f_d: MappingHalf, z_e: torch.Tensor,
                       z_g: torch.Tensor, generator=None, batch_size: int = 64) -> dict[str, float]:
    dev = next(f_e.parameters()).device
    gen = generator or pair.build_generator(str(dev))
    f_e.eval()
    f_d.eval()
    out: dict[str, list[torch.Tensor]] = {}
    for s in range(0, len(z_e), batch_size):
        ref = gen.decode(z_g[s:s + batch_size].to(dev))
        rec = gen.decode(f_d(f_e(z_e[s:s + batch_size].to(dev))))
        for k, v in pair.asset_metrics(ref, rec).items():
            out.setdefault(k, []).append(v.cpu())
    return _mean({k: torch.cat(v) for k, v in out.items()}, "val")


@torch.no_grad()
def heldout_metrics(pair: PairSpec, f_e: MappingHalf, f_d: MappingHalf, n: int, encoder=None, generator=None,
                    batch_size: int = 32) -> dict[str, float]:
    if pair.heldout_assets is None or n <= 0:
        return {}
    dev = next(f_e.parameters()).device
    enc = encoder or pair.build_encoder(str(dev))
    gen = generator or pair.build_generator(str(dev))
    f_e.eval()
    f_d.eval()
    assets = pair.heldout_assets(n)
    out: dict[str, list[torch.Tensor]] = {}
    for s in range(0, len(assets), batch_size):
        x = assets[s:s + batch_size].to(dev)
        rec = gen.decode(f_d(f_e(enc.encode(x))))
        for k, v in pair.asset_metrics(x, rec).items():
            out.setdefault(k, []).append(v.cpu())
    return _mean({k: torch.cat(v) for k, v in out.items()}, "test")
