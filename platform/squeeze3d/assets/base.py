"""The asset-kind handler contract: everything the codec, its evaluation and the CLI need to know about
one kind of 3D asset, so that ``squeeze3d.codec`` holds no kind-specific code.

A handler is stateless; the pair (``squeeze3d.pairs.PairSpec``) supplies sizes (``num_points``, the
grid resolution). Arrays cross the interface as numpy, one asset without a batch dimension:

    point_cloud     ``[N, 3]`` float32
    radiance_field  ``[4, R, R, R]`` float32 (r, g, b, σ; see ``squeeze3d.metrics.volume``)
    mesh            ``squeeze3d.meshdata.Mesh`` (vertices, faces, vertex colours); the models see
                    its ``[N, 9]`` surface samples (``model_input``) and G returns meshes
                    (``from_generator``)

The ``.sq3d`` header's ``num_points`` field holds ``asset_size``: the point count for point clouds,
the grid resolution R for radiance fields, the pair's surface-sample count for meshes (the container itself is kind-agnostic; the pair named in
the header gives the kind). Its ``centre``/``scale`` hold the normalisation; its ``draco_bits`` field
holds the fallback codec's rate parameter (Draco bits, or grid bits per value).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from squeeze3d.errors import UserError

# kind -> module defining HANDLER; imported on first use (keeps the CLI start fast). The one list of
# asset kinds: ``squeeze3d.pairs`` validates ``PairSpec.asset_kind`` against it. A new kind (mesh) =
# a module defining HANDLER + one line here.
_HANDLERS: dict[str, str] = {
    "point_cloud": "squeeze3d.assets.point_cloud",
    "radiance_field": "squeeze3d.assets.radiance_field",
    "mesh": "squeeze3d.assets.mesh",
}
ASSET_KINDS: tuple[str, ...] = tuple(_HANDLERS)


class UnsupportedAssetKind(UserError):
    """No codec handler exists for a pair's asset kind."""


@dataclass
class Baseline:
    """One classical codec's result on one object (the evaluation's comparison rows)."""

    method: str
    nbytes: int
    reconstruction: np.ndarray
    compress_ms: float
    decompress_ms: float


@dataclass(frozen=True)
class MetricColumn:
    key: str
    """Column name in rows and CSVs (``d1_psnr``)."""
    header: str
    """Markdown header (``D1-PSNR dB``)."""
    digits: int = 2


class AssetHandler:
    """Base class and documentation of the contract; see ``point_cloud.py`` / ``radiance_field.py``."""

    kind: str = ""
    quality_name: str = ""
    """The quality gate's metric, as shown to users (``D1-PSNR``, ``render PSNR``)."""
    input_exts: tuple[str, ...] = ()
    output_exts: tuple[str, ...] = ()
    fallback_name: str = ""
    """The classical codec used when the neural code misses the floor (``Draco``)."""
    metric_columns: tuple[MetricColumn, ...] = ()
    primary_metric: str = ""
    """The metric the rate-distortion plot and the quantisation table use (dB, higher is better)."""

    # ------------------------------------------------------------------ pairs and sizes
    def check_pair(self, pair) -> None:
        """Raise ``UserError`` when the codec cannot serve this pair."""

    def asset_size(self, pair) -> int:
        """The header's size field for this pair (points, or grid resolution)."""
        raise NotImplementedError

    def asset_shape(self, size: int) -> tuple[int, ...]:
        """Shape of one normalised asset of header size ``size``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ input
    def read(self, path: str | Path, pair, seed: int = 0):
        """One file → an object with ``.data`` (the asset in its own frame, ready for
        ``prepare``), ``.kind``, ``.path`` and ``.file_bytes``. Bad files raise ``InputError``."""
        raise NotImplementedError

    def prepare(self, data: np.ndarray, pair, what: str = "input") -> np.ndarray:
        """Validate an in-memory asset and bring it to the pair's size (``InputError`` when unusable)."""
        raise NotImplementedError

    def prepare_classical(self, data, pair, what: str = "input"):
        """What the classical codec codes when it differs from ``prepare``'s asset (point clouds: every
        input point, validated); None: the prepared asset itself (other kinds)."""
        return None

    def normalise_with(self, data, centre, scale):
        """``data`` in the frame ``normalise`` gave another asset (the gate's reference)."""
        raise NotImplementedError

    def normalise(self, data: np.ndarray) -> tuple[np.ndarray, tuple[float, float, float], float]:
        """Asset → (normalised asset as the encoder expects, centre, scale)."""
        raise NotImplementedError

    def denormalise(self, norm: np.ndarray, centre, scale: float) -> np.ndarray:
        raise NotImplementedError

    # ------------------------------------------------------------------ the models' side
    def model_input(self, norm, pair) -> np.ndarray:
        """What the encoder takes for one normalised asset, without the batch dimension (array kinds:
        the asset itself; meshes: fixed-size surface samples)."""
        return np.asarray(norm, np.float32)

    def from_generator(self, generator, z_g) -> Any:
        """One normalised asset from G for a latent batch ``z_g`` of size 1 (array kinds: ``decode``'s
        first item as CPU float32 numpy; meshes: ``decode_meshes``)."""
        import torch

        return generator.decode(z_g)[0].detach().to("cpu", torch.float32).numpy()

    def resample_desc(self, size: int) -> str:
        """What a decoded file holds, for CLI lines (``a 2048-point resample``)."""
        return f"a {size}-point resample" if self.kind == "point_cloud" else f"a {size}³ grid resample"

    # ------------------------------------------------------------------ gate and fallback
    _refs = threading.local()  # per thread: the codec's batch mode gates files in parallel threads

    def _last_reference(self, key, build: Callable[[], Any]):
        """``build()``'s result for the last reference ``key`` this thread measured against (the gate
        measures many candidates against one input: its renders are made once)."""
        key = (self.kind, key)  # one slot per thread, shared by the kinds: a kind's key never matches another's
        last = getattr(self._refs, "last", None)
        if last is None or last[0] != key:
            last = self._refs.last = (key, build())
        return last[1]

    def tune_for_batch(self) -> None:
        """Called once before a directory of files is compressed: trade a one-off start-up cost for
        a faster gate per file (default: nothing to trade)."""

    def quality(self, reference: np.ndarray, test: np.ndarray) -> float:
        """The gate's metric (dB, higher is better) between two normalised assets."""
        raise NotImplementedError

    def fallback_encode(self, norm: np.ndarray, floor_db: float) -> tuple[bytes, int, float]:
        """Classical coding of a normalised asset at the fewest bits meeting ``floor_db``:
        ``(payload, rate parameter, achieved quality)``."""
        raise NotImplementedError

    fallback_own_frame: bool = False
    """The classical codec stores its own frame (Draco: quantisation origin and range), so the
    compressor hands it the asset as prepared, not normalised, and the file stores no normalisation."""
    refine_target = None
    """``norm -> Tensor`` the compressor's test-time refinement fits the decode to (None: this kind
    is not refined)."""

    fallback_bits: tuple[int, ...] = ()
    """The classical codec's rates the rate-distortion gate may pick from (``fallback_at``), in
    ascending order; fewer bits must never give a larger file (the gate's size-first search relies on it)."""

    def fallback_blob(self, norm: np.ndarray, bits: int) -> bytes:
        """Classical coding of a normalised asset at rate ``bits`` (no quality measured: the gate
        compares sizes first)."""
        raise NotImplementedError

    def fallback_at(self, norm: np.ndarray, bits: int) -> tuple[bytes, float]:
        """Classical coding of a normalised asset at rate ``bits``: ``(payload, achieved quality)``."""
        raise NotImplementedError

    def fallback_decode(self, payload: bytes, param: int, size: int) -> np.ndarray:
        """Payload → normalised asset; anything malformed raises ``ContainerError``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ output
    def check_output_path(self, path: str | Path) -> Path:
        from squeeze3d.io import InputError

        p = Path(path)
        if p.suffix.lower() not in self.output_exts:
            raise InputError(f"{p}: unsupported output format {p.suffix or '(no extension)'!r} for a "
                             f"{self.kind.replace('_', ' ')}; use one of {', '.join(self.output_exts)}")
        if p.is_dir():
            raise InputError(f"{p}: is a directory")
        return p

    def encode_output(self, data: np.ndarray, fmt: str) -> bytes:
        raise NotImplementedError

    def write(self, path: str | Path, data: np.ndarray, attributes: dict | None = None) -> Path:
        """Write a decoded asset (format by extension; point clouds: with their attributes), atomically."""
        from squeeze3d.io import atomic_write_bytes

        p = self.check_output_path(path)
        blob = self.encode_output(data, p.suffix, attributes) if attributes else self.encode_output(data, p.suffix)
        return atomic_write_bytes(p, blob)

    def describe(self, data: np.ndarray) -> str:
        """Short size description for CLI lines (``2048 points``)."""
        raise NotImplementedError

    def raw_bytes(self, data: np.ndarray) -> int:
        """The uncompressed float32 size: the denominator of the compression ratio."""
        return int(np.asarray(data).size) * 4

    # ------------------------------------------------------------------ evaluation
    def corpus_inputs(self, pair, split: str, limit: int, dest: Path, log: Callable[[str], None]) -> list[Path]:
        """Files of a procedural corpus split for ``squeeze3d eval`` (written once into ``dest``)."""
        raise NotImplementedError

    def metric_context(self, reference: np.ndarray) -> Any:
        """Whatever ``eval_metrics`` can reuse across reconstructions of one reference."""
        return reference

    def eval_metrics(self, context: Any, test: np.ndarray) -> dict[str, float]:
        raise NotImplementedError

    def baselines(self, asset, reference: np.ndarray, pair, seed: int, options: dict) -> Iterator[Baseline]:
        raise NotImplementedError

    def preview(self, path: Path, reference: np.ndarray, reconstruction: np.ndarray, title: str) -> Path:
        raise NotImplementedError

    def preview_sequence(self, path: Path, assets: list[np.ndarray], titles: list[str]) -> Path:
        """One panel per asset (interpolation strips)."""
        raise NotImplementedError

    def rd_series(self, rows: list[dict]) -> tuple[dict[str, tuple[list, list]], float | None]:
        """Baseline ladders for the rate-distortion plot, and an optional reference line (dB)."""
        return {}, None

    def definitions(self) -> str:
        """One paragraph under the evaluation table."""
        return ""


def handler_for(kind: str) -> AssetHandler:
    """The handler of an asset kind (``PairSpec.asset_kind``); unknown kinds are a ``UserError``."""
    if kind not in _HANDLERS:
        raise UnsupportedAssetKind(f"the codec has no handler for asset kind {kind!r}; supported: "
                                   f"{', '.join(sorted(_HANDLERS))}")
    return importlib.import_module(_HANDLERS[kind]).HANDLER


def all_output_exts() -> tuple[str, ...]:
    """Every output extension any handler writes, in kind order (checks before the pair is known)."""
    return tuple(dict.fromkeys(e for kind in _HANDLERS for e in handler_for(kind).output_exts))
