"""Point clouds: meshes and clouds in (``squeeze3d.io``), unit-sphere normalisation, D1-PSNR gate,
Draco fallback, and the Draco ladder + resampling floor as evaluation baselines.

- size: the pair's ``num_points``; inputs larger than that are reduced to a seeded subset, meshes are
  sampled to it (area-uniform, seeded);
- normalisation: bounding-box centre, farthest point at radius 1 (centre and scale in the header);
- gate: D1-PSNR (MPEG p2point, peak = the reference's bounding-box diagonal; frame-independent);
- fallback: Draco at the fewest quantisation bits that meet the floor;
- evaluation: Chamfer and D1-PSNR in the reference's unit-sphere frame; baselines: Draco at several
  bit depths (bare bitstream, no container) and, for meshes, a second independent surface sampling
  (the resampling floor: the best a codec reproducing the surface rather than the samples can do).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from squeeze3d.assets.base import AssetHandler, Baseline, MetricColumn
from squeeze3d.errors import UserError


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1e3


class PointCloudHandler(AssetHandler):
    kind = "point_cloud"
    quality_name = "D1-PSNR"
    fallback_name = "Draco"
    classical_codecs = ("octree", "draco")
    """The classical codecs ``--classical`` picks from (``codec.classical``), the default first."""
    metric_columns = (MetricColumn("chamfer", "Chamfer", 5), MetricColumn("d1_psnr", "D1-PSNR dB", 2))
    primary_metric = "d1_psnr"

    @property
    def input_exts(self):
        from squeeze3d.io import INPUT_EXTS

        return INPUT_EXTS

    @property
    def output_exts(self):
        from squeeze3d.io import OUTPUT_EXTS

        return OUTPUT_EXTS

    def check_pair(self, pair) -> None:
        if not pair.num_points:
            raise UserError(f"pair {pair.name!r}: a point-cloud pair needs num_points")
        if pair.normalisation != "unit_sphere":
            raise UserError(f"pair {pair.name!r}: normalisation {pair.normalisation!r} is not supported by the codec")

    def asset_size(self, pair) -> int:
        return int(pair.num_points)

    def asset_shape(self, size: int) -> tuple[int, ...]:
        return (int(size), 3)

    def read(self, path, pair, seed: int = 0):
        from squeeze3d.io import read_asset

        return read_asset(path, int(pair.num_points), seed)

    def prepare(self, data, pair, what: str = "input") -> np.ndarray:
        from squeeze3d.io import check_points

        pts = check_points(data, what)
        n = int(pair.num_points)
        if len(pts) > n:  # as read_asset does: a seeded subset of the pair's size
            pts = pts[np.sort(np.random.default_rng(0).choice(len(pts), n, replace=False))]
        return pts

    def prepare_classical(self, data, pair, what: str = "input") -> np.ndarray:
        """Every point of the input (the classical codec keeps them all; the neural rungs the resample)."""
        from squeeze3d.io import check_points

        return check_points(data, what)

    def normalise_with(self, data, centre, scale) -> np.ndarray:
        return ((np.asarray(data, np.float64) - np.asarray(centre)) / scale).astype(np.float32)

    def normalise(self, data):
        from squeeze3d.metrics.pointcloud import normalise_unit_sphere

        norm, centre, scale = normalise_unit_sphere(torch.from_numpy(np.asarray(data))[None].double())
        return (norm[0].float().numpy(), tuple(float(v) for v in centre[0]), float(scale[0]))

    def denormalise(self, norm, centre, scale) -> np.ndarray:
        return (np.asarray(norm, np.float64) * scale + np.asarray(centre)).astype(np.float32)

    def tune_for_batch(self) -> None:
        from squeeze3d.metrics.pointcloud import use_kdtree

        use_kdtree(True)  # D1 by kd-trees: 4 ms instead of 14 ms a pair, after a 0.25 s import

    def quality(self, reference, test) -> float:
        from squeeze3d.baselines import draco

        return draco.psnr(reference, test)

    def fallback_encode(self, norm, floor_db, attributes=None):
        from squeeze3d.baselines import draco

        return draco.encode_min_bits(np.asarray(norm), float(floor_db), attributes=attributes)

    fallback_bits = tuple(range(1, 15))
    fallback_own_frame = True

    @staticmethod
    def refine_target(norm) -> torch.Tensor:
        return torch.from_numpy(np.asarray(norm, np.float32))

    def fallback_blob(self, norm, bits, attributes=None) -> bytes:
        from squeeze3d.baselines import draco

        return draco.encode_points(np.asarray(norm), int(bits), attributes=attributes)

    def fallback_at(self, norm, bits, attributes=None):
        from squeeze3d.baselines import draco

        blob = self.fallback_blob(norm, bits, attributes)
        return blob, self.quality(norm, draco.decode_points(blob))

    def fallback_decode_attributes(self, payload, names) -> tuple[np.ndarray, dict]:
        """The classical payload's points and the attributes it carries (Draco's colour and generic
        attributes)."""
        from squeeze3d.baselines import draco

        return draco.decode_cloud(payload, tuple(names))

    def fallback_decode(self, payload, param, size) -> np.ndarray:
        from squeeze3d.baselines import draco

        return draco.decode_points(payload, expected_points=None)  # Draco merges duplicates: its count wins

    def encode_output(self, data, fmt, attributes=None) -> bytes:
        from squeeze3d.io import encode_points

        return encode_points(data, fmt, attributes)

    def describe(self, data) -> str:
        return f"{len(data)} points"

    # ------------------------------------------------------------------ evaluation
    def corpus_inputs(self, pair, split: str, limit: int, dest: Path, log: Callable[[str], None]) -> list[Path]:
        """The first ``limit`` objects of the procedural mesh corpus split (``squeeze3d.corpora.points``)
        as PLY meshes in ``dest``."""
        from squeeze3d.corpora import points as corpus
        from squeeze3d.corpora import shapes as corpus_shapes
        from squeeze3d.io import atomic_write_bytes

        out, idx = [], 0
        dest.mkdir(parents=True, exist_ok=True)
        while len(out) < limit:
            if corpus.split_of(idx) == split:
                path = dest / f"{split}_{idx:05d}_{corpus.CATEGORIES[corpus.category_of(idx)]}.ply"
                if not path.exists():
                    mesh, _ = corpus_shapes.make_mesh(corpus.DEFAULT_SEED, idx)
                    atomic_write_bytes(path, mesh.export(file_type="ply"))
                out.append(path)
            idx += 1
        log(f"{len(out)} {split}-split corpus meshes in {dest}")
        return out

    def eval_metrics(self, context, test) -> dict[str, float]:
        """Chamfer and D1-PSNR in the reference's unit-sphere frame."""
        from squeeze3d.metrics.pointcloud import chamfer, d1_psnr

        ref = context
        centre = (ref.max(0) + ref.min(0)) / 2
        scale = max(float(np.linalg.norm(ref - centre, axis=1).max()), 1e-12)
        a = torch.from_numpy(((ref - centre) / scale).astype(np.float32))[None]
        b = torch.from_numpy(((np.asarray(test) - centre) / scale).astype(np.float32))[None]
        return {"chamfer": float(chamfer(a, b)[0]), "d1_psnr": float(d1_psnr(a, b)[0])}

    def baselines(self, asset, reference, pair, seed: int, options: dict) -> Iterator[Baseline]:
        from squeeze3d.baselines import draco
        from squeeze3d.io import read_asset

        level = options.get("level", draco.DEFAULT_LEVEL)
        for bits in options.get("draco_bits", draco.BASELINE_BITS):
            t0 = time.perf_counter()
            blob = draco.encode_points(reference, bits, level)
            c_ms = _ms(t0)
            t0 = time.perf_counter()
            pts = draco.decode_points(blob)
            yield Baseline(f"draco-{bits}", len(blob), pts, c_ms, _ms(t0))
        if asset.kind == "mesh" and asset.path is not None:
            second = read_asset(asset.path, len(reference), seed + 1).points
            yield Baseline("resample-floor", self.raw_bytes(reference), second, float("nan"), float("nan"))

    def preview(self, path, reference, reconstruction, title) -> Path:
        from squeeze3d.metrics.render import render_before_after

        return render_before_after(path, reference, reconstruction, title=title)

    def preview_sequence(self, path, assets, titles) -> Path:
        from squeeze3d.metrics.render import render_clouds

        return render_clouds(path, assets, titles, cols=min(len(assets), 8))

    def rd_series(self, rows):
        dr = [r for r in rows if r["method"].startswith("draco-")]
        floor = next((r["d1_psnr"] for r in rows if r["method"] == "resample-floor"), None)
        return {"Draco (level 10)": ([r["bytes"] for r in dr], [r["d1_psnr"] for r in dr])}, floor

    def definitions(self) -> str:
        return ("Definitions: D1-PSNR = MPEG p2point, peak = reference bounding-box diagonal; Chamfer = sum of "
                "both directed mean squared NN distances in the reference's unit-sphere frame; neural bytes include "
                "the .sq3d header, Draco bytes are the bare bitstream; CR raw = num_points·3·4 bytes / bytes; "
                "ms = median per object on this machine.")


HANDLER = PointCloudHandler()
