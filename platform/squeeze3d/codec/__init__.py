"""The .sq3d codec: container, quantisation, neural compressor with a quality-gated classical fallback
(Draco for point clouds, quantise + zstd for radiance-field grids), evaluation.

Public API (``squeeze3d.codec.compressor``): ``compress_asset`` (any kind), ``compress_points``,
``compress_file``, ``decompress_bytes`` (= ``decompress_asset``), ``decompress_file``, ``interpolate``,
``get_codec``; evaluation: ``squeeze3d.codec.evaluate.evaluate``. Kind-specific behaviour lives in
``squeeze3d.assets`` (one handler per asset kind).
This module stays import-light (no torch) so the CLI starts fast; the defaults live here.
"""

DEFAULT_PAIR = "pointnet_lion"
DEFAULT_DTYPE = None
"""None: the model's own rate ladder (fixed-range k-bit codes for bounded models, else int8)."""
DEFAULT_QUANT = "per_vector"
DEFAULT_MIN_QUALITY_DB = 30.0
"""Quality gate floor in dB of the kind's metric (D1-PSNR / render PSNR); see ``squeeze3d.codec.compressor``."""
DEFAULT_EFFORT = 100
"""Test-time refinement steps at compress time (``codec.refine``; 0: off): measured trade-off of time
against quality in ``jobs/bench_codec.py --suite ladder --efforts`` (docs/benchmarks.md: 80 steps 29.50 dB
in 1.4 s, 150 steps 29.68 dB in 2.55 s); 100 keeps the whole default compress, octree search
included, within ~3 s on 2 cores."""
OFF_BUDGET_BYTES = 100
"""With the gate off (``--min-quality off``) the file is built unmeasured within this many bytes
(``codec.rd_search.RDSearch.gate_off``): for point clouds the shortest neural rung plus the finest
octree enhancement layer that fits; when a rung is asked for (``--prefix``, ``--bits``, ``--dtype``),
without the octree (``--classical draco``, clouds with colour or intensity) or for other kinds, the
largest rung whose raw file fits, stored as the code prior codes it. 100 B: measured on real train
objects, the shortest rung plus its enhancement layer decodes at 30.9 dB (median) in 95 B, where the
longest code within 100 B (128 numbers at 4 bits, 80 B) decodes at 29.6 dB and the 200-byte rung
(153 B) at 29.7 dB. ``--target-bytes`` measures every candidate instead."""
