"""The pair contract, for every registered pair (``squeeze3d.pairs.names()``): it builds, samples
conditions of its kind, encodes, decodes, reports its asset metrics, round-trips a tiny (untrained)
mapping through the .sq3d codec, and a sample is bitwise the same alone and inside a batch.

A new pair is covered without editing this file. Sizes are tiny (3 samples, one of them again alone):
the real generators cost up to ~0.7 s per sample here.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch

from squeeze3d.assets import ASSET_KINDS, handler_for
from squeeze3d.pairs import get_pair, names
from squeeze3d.synth.conditions import NoiseSeeds, source_for

IDS = np.array([3, 11, 42], dtype=np.int64)
PROMPTS = ["a red wooden chair.", "a tall glass lamp with a round base.", "a small metal table."]

# Pairs whose generator is not bitwise batch invariant today (the last bits of a sample depend on
# the batch it is drawn in; measured on a 2-core Xeon). Each entry is a defect to fix in the model,
# not a licence; the xfail is not strict only because BLAS/oneDNN kernels, and so the last bits,
# depend on the CPU: an XPASS here means the entry may be ready to go.
NOT_BATCH_INVARIANT: dict[str, str] = {}  # every pair is invariant: encode/decode run per sample (zoo.base.per_sample)


def _prompt_table(tmp_dir) -> str:
    from squeeze3d.prompts.table import prompt_id, write_prompt_table

    rows = [{"prompt_id": prompt_id(0, i), "prompt": p, "category": "chair", "style": "plain",
             "material": "wood", "request_index": i, "seed": i, "backend": "template", "model": "test",
             "mentions_category": True} for i, p in enumerate(PROMPTS)]
    return write_prompt_table(str(tmp_dir), rows, {"samples_per_prompt": 1}).uri


def conditions(kind: str, ids: np.ndarray, tmp_dir) -> list:
    """The ``Generator.sample`` conditions of samples ``ids``, made by the build's own condition
    source for ``kind`` (``squeeze3d.synth.conditions``), exactly as the generator actors get them."""
    src = source_for(kind, prompts=_prompt_table(tmp_dir) if kind == "prompt" else None)
    if isinstance(src, NoiseSeeds):
        batch = {"sample_id": ids, **src.input_columns(ids)}
    else:  # driver-side sources map build positions to conditions; here position = index in ids
        batch = {"sample_id": ids, **src.input_columns(ids, np.arange(len(ids)))}
    return list(src.generator_conditions(batch))


@functools.cache
def _built(name: str):
    """Per pair and process: (pair, encoder, generator, conditions, z_G, assets) for ``IDS``."""
    import tempfile

    pair = get_pair(name)
    enc, gen = pair.build_encoder("cpu"), pair.build_generator("cpu")
    with tempfile.TemporaryDirectory() as d:
        conds = conditions(pair.condition_kind, IDS, d)
    z_g, assets = gen.sample(conds)
    return pair, enc, gen, conds, z_g, assets


PAIRS = names()


@pytest.mark.parametrize("name", PAIRS)
def test_pair_builds_samples_encodes_decodes(name):
    pair, enc, gen, conds, z_g, assets = _built(name)
    assert pair.asset_kind in ASSET_KINDS
    h = handler_for(pair.asset_kind)
    h.check_pair(pair)
    asset_shape = h.asset_shape(h.asset_size(pair))
    assert len(conds) == len(IDS)
    assert z_g.shape == (len(IDS), *pair.z_g_shape) and z_g.dtype == torch.float32
    assert assets.shape == (len(IDS), *asset_shape) and assets.dtype == torch.float32
    assert torch.isfinite(z_g).all() and torch.isfinite(assets).all()
    assert not torch.equal(z_g[0], z_g[1]), "two conditions gave the same z_G"

    z_e = enc.encode(assets)
    assert z_e.shape == (len(IDS), *pair.z_e_shape) and torch.isfinite(z_e).all()
    decoded = gen.decode(z_g)
    assert decoded.shape == assets.shape
    torch.testing.assert_close(decoded, assets, rtol=1e-4, atol=1e-5)  # decode(z_G) is the sampled asset

    for model in (enc.module, gen.module):  # frozen: eval mode, no trainable parameters
        assert not model.training and not any(p.requires_grad for p in model.parameters())
    # weight identities (recorded in manifests and the registry) are stable across builds
    assert pair.build_encoder("cpu").weights_hash() == enc.weights_hash()
    assert pair.build_generator("cpu").weights_hash() == gen.weights_hash()


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xfail(
    strict=False, reason=NOT_BATCH_INVARIANT[n])) if n in NOT_BATCH_INVARIANT else n for n in PAIRS])
def test_pair_sample_is_bitwise_batch_invariant(name):
    """A sample drawn alone equals, bit for bit, the same condition drawn inside a batch of 3: the
    builder's reproducibility (a rerun, a rebuilt shard) rests on it."""
    pair, enc, gen, conds, z_g, assets = _built(name)
    z_one, x_one = gen.sample(conds[1:2])
    assert torch.equal(z_one[0], z_g[1]), f"z_G alone vs in a batch: max |Δ| {(z_one[0] - z_g[1]).abs().max():.3g}"
    assert torch.equal(x_one[0], assets[1]), (f"asset alone vs in a batch: max |Δ| "
                                               f"{(x_one[0] - assets[1]).abs().max():.3g}")


@pytest.mark.parametrize("name", PAIRS)
def test_pair_reports_finite_asset_metrics(name):
    pair, enc, gen, conds, z_g, assets = _built(name)
    other = assets.roll(1, dims=0)  # each asset against another one: a real, nonzero distance
    metrics = pair.asset_metrics(assets, other)
    assert pair.objective in metrics, f"objective {pair.objective!r} not among {sorted(metrics)}"
    for key, v in metrics.items():
        assert v.shape == (len(IDS),), key
        assert torch.isfinite(v).all(), f"{key}: {v}"
    same = pair.asset_metrics(assets, assets)[pair.objective]
    worse = metrics[pair.objective]
    # an asset against itself scores at least as well as against another one
    assert (same >= worse).all() if pair.objective_mode == "max" else (same <= worse).all()


@pytest.mark.parametrize("name", PAIRS)
def test_pair_round_trips_a_tiny_mapping_through_the_codec(name, tmp_path):
    """An untrained mapping of the pair's configured architecture, saved as a checkpoint, compresses
    one sampled asset to .sq3d and decompresses it to an asset of the right shape (gate off: an
    untrained mapping would always fall back)."""
    from squeeze3d.codec.compressor import clear_cache, compress_asset
    from squeeze3d.codec.container import unpack
    from squeeze3d.codec.decompress import decompress_bytes
    from squeeze3d.config import train_config_for_pair
    from squeeze3d.mapping import build_mapping
    from squeeze3d.mapping.checkpoint import save_checkpoint

    pair, enc, gen, conds, z_g, assets = _built(name)
    cfg = train_config_for_pair(name)
    torch.manual_seed(0)
    f_e, f_d = build_mapping(cfg.mapping, pair.z_e_shape, pair.z_g_shape)
    ck = str(save_checkpoint(tmp_path / "mapping", f_e.eval(), f_d.eval(), cfg))
    h = handler_for(pair.asset_kind)
    # the asset as the codec holds it: decode(z_G)[0] for array kinds, G's mesh for meshes
    asset = h.from_generator(gen, z_g[:1])
    try:
        res = compress_asset(asset, pair=name, model=ck, min_quality=None)
        c = unpack(res.data)
        assert c.pair == name and c.codec == "neural" and not res.fallback
        out = decompress_bytes(res.data, model=ck).data
    finally:
        clear_cache()
    seen = h.model_input(h.normalise(out)[0], pair)  # what E would take: the asset's tensor form
    assert seen.shape == h.asset_shape(h.asset_size(pair)) and np.isfinite(seen).all()
    assert res.nbytes < h.raw_bytes(asset)
    assert math.isfinite(h.quality(h.normalise(asset)[0], h.normalise(out)[0]))
