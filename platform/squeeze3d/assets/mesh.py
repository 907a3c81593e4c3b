"""Textured meshes: OBJ (+ MTL + textures), GLB/GLTF and PLY in, GLB/OBJ/PLY out (``mesh_io``);
render-PSNR gate; Draco mesh fallback; Draco ladder + raw GLB as evaluation baselines.

- the asset: a ``meshdata.Mesh`` (vertices, faces, per-vertex sRGB colours; textures baked to vertex
  colours on reading). The models see fixed-size surface samples ``[N, 9]`` (xyz, normal, rgb;
  ``meshdata.sample_surface(mesh, pair.num_points, seed=0)``, ``model_input``) and the generator
  returns meshes (``generator.decode_meshes``, ``from_generator``);
- size: the header's ``num_points`` holds the pair's surface-sample count (a mesh has no fixed size);
- normalisation: bounding-box centre, farthest vertex at radius 1 (``meshdata.normalise_unit_sphere``);
- gate: render PSNR over the metric ring (8 views × 128 px, ``metrics.mesh_render``);
- fallback: Draco mesh mode at the fewest position bits (4…14) that meet the floor;
- evaluation: render PSNR, MS-SSIM, Chamfer and F-score in the reference's unit-sphere frame
  (``metrics.mesh``); baselines: Draco at 14 / 11 / 8 / 7 / 4 bits (bare bitstream) and the raw GLB
  (lossless at 8-bit colours);
- raw size (CR raw): float32 vertices + int32 faces + float32 colours, ``V·3·4 + F·3·4 + V·3·4``
  bytes; CR file: the input file with its MTL and texture files.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from squeeze3d.assets.base import AssetHandler, Baseline, MetricColumn
from squeeze3d.assets.mesh_io import INPUT_EXTS, OUTPUT_EXTS, MeshFileError, encode_mesh, read_mesh, validate
from squeeze3d.errors import ContainerError, UserError
from squeeze3d.meshdata import Mesh, MeshError

FALLBACK_BITS = tuple(range(4, 15))
"""Draco position bits the gate may pick (below 4 bits most corpus objects collapse to a few cells)."""


@dataclass
class MeshAsset:
    data: Mesh
    """In the file's own frame, validated (``mesh_io.validate``)."""
    kind: str = "mesh"
    path: Path | None = None
    file_bytes: int | None = None
    """The file plus its sidecars (MTL, textures, GLTF buffers)."""


@dataclass
class _Context:
    mesh: Mesh
    """The reference in its unit-sphere frame."""
    centre: np.ndarray
    scale: float
    renders: torch.Tensor
    samples: np.ndarray


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1e3


def _key(mesh: Mesh) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for a in (mesh.vertices, mesh.faces, mesh.colors):
        h.update(np.ascontiguousarray(a).tobytes())
        h.update(str(a.shape).encode())
    return h.digest()


class MeshHandler(AssetHandler):
    kind = "mesh"
    quality_name = "render PSNR"
    fallback_name = "Draco mesh"
    input_exts = INPUT_EXTS
    output_exts = OUTPUT_EXTS
    metric_columns = (MetricColumn("psnr", "render PSNR dB", 2), MetricColumn("ms_ssim", "MS-SSIM", 4),
                      MetricColumn("chamfer", "Chamfer", 5), MetricColumn("fscore", "F@0.02", 3))
    primary_metric = "psnr"
    fallback_bits = FALLBACK_BITS

    def check_pair(self, pair) -> None:
        if not pair.num_points:
            raise UserError(f"pair {pair.name!r}: a mesh pair needs num_points (its surface-sample count)")
        if pair.normalisation != "unit_sphere":
            raise UserError(f"pair {pair.name!r}: normalisation {pair.normalisation!r} is not supported for meshes")

    def asset_size(self, pair) -> int:
        return int(pair.num_points)

    def asset_shape(self, size: int) -> tuple[int, ...]:
        return (int(size), 9)  # the platform's tensor form: surface samples

    # ------------------------------------------------------------------ input
    def read(self, path, pair, seed: int = 0) -> MeshAsset:
        p = Path(path)
        mesh, nbytes = read_mesh(p)
        return MeshAsset(mesh, "mesh", p, nbytes)

    def prepare(self, data, pair, what: str = "input") -> Mesh:
        if not isinstance(data, Mesh):
            raise MeshFileError(f"{what}: a mesh pair takes a squeeze3d.meshdata.Mesh, got {type(data).__name__}")
        try:
            return validate(data, what)
        except MeshError as e:
            raise MeshFileError(str(e)) from None

    def normalise(self, data: Mesh):
        from squeeze3d.meshdata import normalise_unit_sphere

        norm, centre, scale = normalise_unit_sphere(data)
        return norm, tuple(float(v) for v in centre), float(scale)

    def denormalise(self, norm: Mesh, centre, scale) -> Mesh:
        from squeeze3d.meshdata import denormalise

        return denormalise(norm, centre, scale)

    # ------------------------------------------------------------------ the models' side
    def model_input(self, norm: Mesh, pair) -> np.ndarray:
        from squeeze3d.meshdata import sample_surface

        return sample_surface(norm, int(pair.num_points), seed=0)

    def from_generator(self, generator, z_g) -> Mesh:
        mesh = generator.decode_meshes(z_g)[0]
        if not isinstance(mesh, Mesh):
            raise UserError(f"the generator's decode_meshes returned {type(mesh).__name__}, not a Mesh")
        return mesh

    def resample_desc(self, size: int) -> str:
        # a neural code decodes to G's mesh, a fallback to the Draco-quantised input: say both
        return "G's mesh (neural) or the Draco-quantised input (fallback), vertex-coloured"

    # ------------------------------------------------------------------ gate and fallback
    def _reference_render(self, mesh: Mesh) -> torch.Tensor:
        """Renders of the last reference (the gate measures many candidates against one input)."""
        from squeeze3d.metrics.mesh import render_ring

        key = _key(mesh)
        return self._last_reference(key, lambda: render_ring(mesh))

    def quality(self, reference: Mesh, test: Mesh) -> float:
        from squeeze3d.metrics.mesh import render_psnr, render_ring

        return render_psnr(self._reference_render(reference), render_ring(test))

    def fallback_blob(self, norm: Mesh, bits: int) -> bytes:
        from squeeze3d.baselines import draco_mesh

        return draco_mesh.encode_mesh(norm, int(bits))

    def fallback_at(self, norm: Mesh, bits: int) -> tuple[bytes, float]:
        from squeeze3d.baselines import draco_mesh

        blob = self.fallback_blob(norm, bits)
        return blob, self.quality(norm, draco_mesh.decode_mesh(blob))

    def fallback_encode(self, norm: Mesh, floor_db: float) -> tuple[bytes, int, float]:
        """Fewest bits of ``fallback_bits`` meeting ``floor_db``; the most bits' coding if none does."""
        best = None
        for b in self.fallback_bits:
            blob, q = self.fallback_at(norm, b)
            best = (blob, b, q)
            if q >= floor_db:
                break
        assert best is not None
        return best

    def fallback_decode(self, payload: bytes, param: int, size: int) -> Mesh:
        from squeeze3d.baselines import draco_mesh

        mesh = draco_mesh.decode_mesh(payload)
        try:
            return validate(mesh, "the Draco mesh payload")
        except UserError as e:
            raise ContainerError(str(e)) from None

    # ------------------------------------------------------------------ output
    def encode_output(self, data: Mesh, fmt: str) -> bytes:
        return encode_mesh(data, fmt)

    def describe(self, data: Mesh) -> str:
        return f"{data.num_vertices} vertices, {data.num_faces} faces"

    def raw_bytes(self, data: Mesh) -> int:
        """float32 vertices + int32 faces + float32 colours."""
        return int(data.num_vertices) * 12 + int(data.num_faces) * 12 + int(data.num_vertices) * 12

    # ------------------------------------------------------------------ evaluation
    def corpus_inputs(self, pair, split: str, limit: int, dest: Path, log: Callable[[str], None]) -> list[Path]:
        """The first ``limit`` objects of the textured corpus split (``corpora.meshes``) as GLB files
        with vertex colours in ``dest`` (written once)."""
        from squeeze3d.corpora import meshes as mesh_corpus
        from squeeze3d.io import atomic_write_bytes

        if split not in mesh_corpus.SPLITS:
            raise UserError(f"unknown split {split!r}; choose one of {', '.join(mesh_corpus.SPLITS)}")
        out, idx = [], 0
        dest.mkdir(parents=True, exist_ok=True)
        while len(out) < limit:
            if mesh_corpus.split_of(idx) == split:
                path = dest / f"{split}_{idx:05d}_{mesh_corpus.CATEGORIES[mesh_corpus.corpus.category_of(idx)]}.glb"
                if not path.exists():
                    shape = mesh_corpus.make_textured(mesh_corpus.DEFAULT_SEED, idx)
                    atomic_write_bytes(path, encode_mesh(shape.mesh, "glb"))
                out.append(path)
            idx += 1
        log(f"{len(out)} {split}-split textured corpus meshes in {dest}")
        return out

    def metric_context(self, reference: Mesh) -> _Context:
        from squeeze3d.meshdata import normalise_unit_sphere
        from squeeze3d.metrics.mesh import render_ring, surface_samples

        norm, centre, scale = normalise_unit_sphere(reference)
        return _Context(norm, centre, scale, render_ring(norm), surface_samples(norm))

    def eval_metrics(self, context: _Context, test: Mesh) -> dict[str, float]:
        """Render PSNR, MS-SSIM, Chamfer and F-score, ``test`` moved into the reference's unit-sphere frame."""
        from squeeze3d.metrics.mesh import (
            chamfer_fscore,
            render_ms_ssim,
            render_psnr,
            render_ring,
            surface_samples,
        )

        v = (test.vertices.astype(np.float64) - context.centre) / context.scale
        t = Mesh(v.astype(np.float32), test.faces, test.colors)
        imgs = render_ring(t)
        cd, f = chamfer_fscore(context.samples, surface_samples(t))
        return {"psnr": render_psnr(context.renders, imgs), "ms_ssim": render_ms_ssim(context.renders, imgs),
                "chamfer": cd, "fscore": f}

    def baselines(self, asset, reference: Mesh, pair, seed: int, options: dict) -> Iterator[Baseline]:
        from squeeze3d.baselines import draco as point_draco
        from squeeze3d.baselines import draco_mesh

        bits = options.get("draco_bits")
        # the evaluation passes the point-cloud ladder by default; meshes have their own
        if bits is None or tuple(bits) == tuple(point_draco.BASELINE_BITS):
            bits = draco_mesh.BASELINE_BITS
        level = options.get("level", draco_mesh.DEFAULT_LEVEL)
        for b in bits:
            t0 = time.perf_counter()
            blob = draco_mesh.encode_mesh(reference, b, level)
            c_ms = _ms(t0)
            t0 = time.perf_counter()
            rec = draco_mesh.decode_mesh(blob)
            yield Baseline(f"draco-{b}", len(blob), rec, c_ms, _ms(t0))
        t0 = time.perf_counter()
        glb = encode_mesh(reference, "glb")
        c_ms = _ms(t0)
        yield Baseline("raw-glb", len(glb), reference, c_ms, float("nan"))

    def preview(self, path, reference: Mesh, reconstruction: Mesh, title: str) -> Path:
        return self.preview_sequence(path, [reference, reconstruction], ["original", "reconstruction"],
                                     views=4, suptitle=title)

    def preview_sequence(self, path, assets, titles, views: int = 1, suptitle: str | None = None) -> Path:
        """Renders (``metrics.mesh_render``): one row per asset with ``views`` views of a 4-view ring,
        or one strip with one view each when ``views`` is 1. Each asset is shown in its own
        unit-sphere frame (previews compare appearance; the metrics compare frames)."""
        from squeeze3d.assets.radiance_field import image_grid
        from squeeze3d.meshdata import normalise_unit_sphere
        from squeeze3d.metrics.mesh_render import render

        imgs = []
        for a in assets:
            norm = normalise_unit_sphere(a)[0]
            imgs.append(render(norm, num_views=max(views, 4), image_size=128)[:views].permute(0, 2, 3, 1).numpy())
        return image_grid(Path(path), np.stack(imgs), list(titles), suptitle)

    def rd_series(self, rows):
        dr = sorted((r for r in rows if r["method"].startswith("draco-")), key=lambda r: r["bytes"])
        series = {"Draco mesh (level 10)": ([r["bytes"] for r in dr], [r["psnr"] for r in dr])}
        return {k: v for k, v in series.items() if v[0]}, None

    def definitions(self) -> str:
        return ("Definitions: render PSNR over 8 views × 128² px (z-buffer rasteriser, Lambert shading of vertex "
                "colours, camera ring at 30° elevation, white background; `squeeze3d.metrics.mesh_render`; the paper "
                "uses 36 views at 512 px), identical meshes score 100 dB; MS-SSIM with 4 scales; Chamfer = both "
                "directed mean squared NN distances of 4096 surface samples each, F@0.02 = F-score at τ = 0.02, both "
                "in the reference's unit-sphere frame; LPIPS is not computed (no pre-trained backbone weights here); "
                "CR raw = (V·3·4 vertices + F·3·4 faces + V·3·4 colours) bytes / bytes; CR file = the input file "
                "with its MTL/texture files / bytes; neural bytes include the .sq3d header, Draco bytes are the "
                "bare bitstream (positions at b bits, 8-bit colours, level 10), raw-glb = the GLB with 8-bit vertex "
                "colours; ms = median per object on this machine.")


HANDLER = MeshHandler()
