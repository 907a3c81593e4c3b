"""Training pairs in one process, without Ray: the small-scale twin of ``synth.build``.

Used by the core demo, the Ray Train overhead bench and tests, which need a few thousand pairs in
memory rather than Parquet shards.
"""

from __future__ import annotations

import torch

from squeeze3d.pairs import get_pair


def synthesise(pair_name: str, seeds: list[int], batch_size: int = 64, device: str = "cpu"
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(z_E, z_G, assets) for noise seeds: sample G, encode its output with E, in one process."""
    pair = get_pair(pair_name)
    enc, gen = pair.build_encoder(device), pair.build_generator(device)
    zs_e, zs_g, xs = [], [], []
    for s in range(0, len(seeds), batch_size):
        z_g, x = gen.sample(seeds[s:s + batch_size])
        zs_e.append(enc.encode(x).cpu())
        zs_g.append(z_g.cpu())
        xs.append(x.cpu())
    return torch.cat(zs_e), torch.cat(zs_g), torch.cat(xs)
