"""Open a built dataset (local or s3://) for training: Ray datasets per split + provenance."""

from __future__ import annotations

import hashlib
from typing import Any

from squeeze3d.errors import UserError


def open_training_data(uri: str, pair_name: str, check_models: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    """``({"train": ds, "val": ds}, info)`` where ``info`` carries the dataset URI, manifest hash and
    the encoder/generator weight hashes recorded by the builder (they become registry tags)."""
    from squeeze3d import storage
    from squeeze3d.pairs import get_pair
    from squeeze3d.synth.manifest import ManifestError, manifest_location
    from squeeze3d.synth.read import open_dataset, read_dataset

    try:
        root, man = open_dataset(uri)
        manifest_bytes = storage.read_bytes(manifest_location(root))
    except (ManifestError, storage.StorageError, FileNotFoundError, OSError) as e:
        raise UserError(f"cannot open dataset {uri}: {e}") from e
    if man.pair != pair_name:
        raise UserError(f"dataset {uri} holds pair {man.pair!r}, not {pair_name!r}")
    for split in ("train", "val"):
        if man.counts.get(split, 0) < 2:
            raise UserError(f"dataset {uri} has {man.counts.get(split, 0)} {split} rows; build more samples")
    if check_models:
        pair = get_pair(pair_name)
        # the generator as the builder made it: with the build's generator_options (recipes set them)
        options = ((getattr(man, "build", None) or {}).get("settings") or {}).get("generator_options") or {}
        for role, build, rec in (("encoder", pair.build_encoder, man.encoder),
                                 ("generator", lambda d: pair.build_generator(d, **options), man.generator)):
            have = build("cpu").weights_hash()
            if rec.get("weights_hash") != have:
                raise UserError(f"dataset {uri} was built with a different {role} ({str(rec.get('weights_hash'))[:12]}"
                                f" vs installed {have[:12]}); rebuild it with jobs/build_dataset.py --overwrite")
    datasets = {s: read_dataset(uri, s, columns=("z_e", "z_g")) for s in ("train", "val")}
    info = {"uri": uri, "manifest_hash": hashlib.sha256(manifest_bytes).hexdigest(),
            "encoder_hash": man.encoder.get("weights_hash", ""), "generator_hash": man.generator.get("weights_hash", ""),
            "counts": dict(man.counts)}
    return datasets, info
