"""Synthetic (z_E, z_G) training data: conditions -> G -> E -> Parquet shards + manifest, on Ray Data.

Entry points (import the submodules; this package stays light so ``squeeze3d --help`` is fast):

- ``squeeze3d.synth.build.build_dataset`` -- build or finish a dataset (``jobs/build_dataset.py``); its
  parts: ``build_config`` (``BuildConfig``, per-pair defaults, the loader), ``resume`` (what to compute,
  which earlier shards to reuse), ``pipeline`` (the Ray Data stages and shard assembly);
- ``squeeze3d.synth.read.load_split`` / ``read_dataset`` -- tensors or a ``ray.data.Dataset``;
- ``squeeze3d.synth.validate.validate_dataset`` / ``dataset_stats`` -- ``squeeze3d dataset ...``;
- ``squeeze3d.synth.in_process.synthesise`` -- a few thousand pairs in memory, no Ray (demo, benches, tests).

The on-disk contract (columns, ids, splits, shard naming) is in ``squeeze3d.synth.schema``.
"""
