"""Shard contract: ids, splits, condition seeds, tensor columns, fingerprints, manifest JSON."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from squeeze3d.synth import schema
from squeeze3d.synth.conditions import NoiseSeeds, source_for
from squeeze3d.synth.manifest import Manifest, ManifestError, ShardEntry, describe_difference


def test_sample_ids_are_deterministic_unique_and_seed_dependent():
    idx = np.arange(200_000)
    a = schema.sample_ids(7, idx)
    assert a.dtype == np.int64 and len(np.unique(a)) == len(idx)
    np.testing.assert_array_equal(a, schema.sample_ids(7, idx))
    np.testing.assert_array_equal(a[1000:1010], schema.sample_ids(7, np.arange(1000, 1010)))
    assert not np.intersect1d(a[:1000], schema.sample_ids(8, idx[:1000])).size


def test_splits_are_80_10_10_by_hash_of_id():
    ids = schema.sample_ids(0, np.arange(100_000))
    names = schema.split_names(ids)
    frac = {s: float(np.mean(names == s)) for s in schema.SPLITS}
    assert abs(frac["train"] - 0.8) < 0.01 and abs(frac["val"] - 0.1) < 0.01 and abs(frac["test"] - 0.1) < 0.01
    # the split depends on the id only: the same id lands in the same split in any build size
    np.testing.assert_array_equal(schema.split_names(ids[5000:5100]), names[5000:5100])


def test_noise_seeds_are_valid_torch_seeds_and_follow_the_id():
    import torch

    ids = schema.sample_ids(3, np.arange(1000))
    seeds = NoiseSeeds().input_columns(ids)["condition"]
    assert seeds.dtype == np.int64 and (seeds >= 0).all() and len(np.unique(seeds)) == 1000
    torch.Generator().manual_seed(int(seeds.max()))
    np.testing.assert_array_equal(seeds[10:20], schema.noise_seeds(ids[10:20]))


def test_unsupported_condition_kind_names_the_available_ones():
    with pytest.raises(ValueError, match="noise"):
        source_for("image")


def test_tensor_columns_and_fingerprint_survive_parquet():
    ze = np.random.default_rng(0).normal(size=(5, 4, 2)).astype(np.float32)
    zg = np.random.default_rng(1).normal(size=(5, 3)).astype(np.float32)
    ids = schema.sample_ids(0, np.arange(5))
    sch = schema.shard_schema(pa.int64(), (4, 2), (3,))
    t = pa.table({"sample_id": ids, "condition": schema.noise_seeds(ids), "z_e": schema.tensor_array(ze),
                  "z_g": schema.tensor_array(zg), "split": schema.split_names(ids).tolist()}, schema=sch)
    data = schema.encode_shard(t, {"pair": "x", "seed": 0})
    f = pq.ParquetFile(pa.BufferReader(data))
    assert schema.shard_fingerprint(f.metadata) == {"pair": "x", "seed": 0}
    back = f.read()
    assert back.schema.remove_metadata().equals(sch)
    np.testing.assert_array_equal(schema.column_to_numpy(back.column("z_e"), (4, 2)), ze)
    # readers that drop the extension type see fixed-size lists; the helper still reshapes them
    plain = pa.FixedSizeListArray.from_arrays(pa.array(zg.reshape(-1)), 3)
    np.testing.assert_array_equal(schema.column_to_numpy(plain, (3,)), zg)


def test_shard_names_roundtrip():
    assert schema.shard_index(schema.shard_name(12)) == 12
    assert schema.shard_index("shard-x.parquet") is None and schema.shard_index("other.parquet") is None


def _manifest(**kw) -> Manifest:
    base = dict(pair="debug", seed=1, num_samples=3, shard_rows=2, z_e_shape=[32], z_g_shape=[16],
                encoder={"name": "e", "weights_hash": "a" * 64}, generator={"name": "g", "weights_hash": "b" * 64},
                condition={"kind": "noise"}, counts={"total": 3, "train": 3, "val": 0, "test": 0},
                shards=[ShardEntry(0, "shards/shard-000000.parquet", 0, 2, 10, "c" * 64, {"train": 2})])
    return Manifest(**{**base, **kw})


def test_manifest_json_roundtrip_and_refusals():
    m = _manifest()
    back = Manifest.from_json(m.to_json())
    assert back == m and back.fingerprint()["encoder_hash"] == "a" * 64
    with pytest.raises(ManifestError, match="schema version"):
        Manifest.from_json(m.to_json().replace('"schema_version": 1', '"schema_version": 99'))
    with pytest.raises(ManifestError, match="not a squeeze3d"):
        Manifest.from_json('{"pair": "debug"}')
    with pytest.raises(ManifestError, match="not valid JSON"):
        Manifest.from_json("{")


def test_fingerprint_difference_names_the_fields():
    msg = describe_difference(_manifest().fingerprint(), _manifest(seed=2, pair="other").fingerprint())
    assert "seed: has 1, requested 2" in msg and "pair" in msg and "num_samples" not in msg
