"""Build to a real S3 endpoint (moto's server on loopback), then read back and validate."""

from __future__ import annotations

import json

import boto3
import pytest

from squeeze3d.synth.build import BuildConfigError, build_dataset
from squeeze3d.synth.read import load_split, read_dataset
from squeeze3d.synth.validate import validate_dataset

SMALL = dict(num_samples=40, shard_rows=16, seed=5, generator_workers=1, encoder_workers=1,
             generator_batch_size=8, encoder_batch_size=8, cpus_per_worker=0.5)


@pytest.mark.integration
def test_build_to_s3_read_back_and_validate(ray_session, s3_bucket, moto_endpoint):
    uri = f"s3://{s3_bucket}/datasets/debug"
    s = build_dataset("debug", output=uri, log=lambda m: None, **SMALL)
    assert s.output == uri and (s.rows, s.shards) == (40, 3)

    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket)["Contents"])
    assert keys == ["datasets/debug/manifest.json"] + [f"datasets/debug/shards/shard-00000{k}.parquet" for k in range(3)]
    man = json.loads(s3.get_object(Bucket=s3_bucket, Key="datasets/debug/manifest.json")["Body"].read())

    rep = validate_dataset(uri)
    assert rep.ok and rep.rows == 40, rep.describe()
    z_e, z_g = load_split(uri, "train")
    assert z_e.shape == (man["counts"]["train"], 32) and z_g.shape == (man["counts"]["train"], 16)
    assert read_dataset(uri, "val").count() == man["counts"]["val"]  # Ray workers read S3 too

    again = build_dataset("debug", output=uri, log=lambda m: None, **SMALL)
    assert (again.shards_written, again.shards_reused) == (0, 3)
    with pytest.raises(BuildConfigError, match="seed"):
        build_dataset("debug", output=uri, log=lambda m: None, **{**SMALL, "seed": 6})
    with pytest.raises(BuildConfigError, match="does not exist"):
        build_dataset("debug", output=f"s3://{s3_bucket}-missing/x", log=lambda m: None, **SMALL)
