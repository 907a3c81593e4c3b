"""What compress and decompress return, and the one-word name of a file's variant."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from squeeze3d.codec.container import LEVEL_DTYPES, Container


@dataclass
class CompressResult:
    data: bytes
    """The .sq3d bytes."""
    container: Container
    fallback: bool
    """True when the neural reconstruction missed the floor and the classical codec was used."""
    neural_psnr: float | None
    """Gate metric (D1-PSNR / render PSNR) of the neural reconstruction vs the input (None: gate off)."""
    psnr: float | None
    """Gate metric of what decompression will produce (neural or fallback; None: gate off)."""
    encode_ms: float
    """Normalise → E → F_E → quantise → pack (no gate)."""
    gate_ms: float
    """Gate: decode + measure (+ the fallback's search when falling back)."""
    asset: object | None = None
    """What ``compress_file`` read (``squeeze3d.io.Asset`` or the kind's equivalent: ``.data``, ``.file_bytes``)."""
    output: Path | None = None
    decoded_points: int | None = None
    """Point clouds: how many points the file decodes to (the resample for neural files; every input
    point, less exact duplicates on the grid, for classical ones)."""
    attribute_psnr: dict | None = None
    """Per kept attribute: PSNR of what decompression gives vs the input (``colour``: on Y, BT.709,
    peak 255; ``intensity``: peak 65535); None when the file keeps none."""

    @property
    def attributes(self) -> tuple[str, ...]:
        return tuple(self.container.attributes)

    @property
    def nbytes(self) -> int:
        return len(self.data)

    @property
    def variant(self) -> str:
        """Which candidate the rate-distortion choice kept (``neural fixed-6``, ``fallback 4-bit``, ...)."""
        return label(self.container)


@dataclass
class DecompressResult:
    data: np.ndarray
    """The asset in the original frame: ``[num_points, 3]`` points, a ``[4, R, R, R]`` grid (float32)
    or a ``squeeze3d.meshdata.Mesh``."""
    container: Container
    decode_ms: float
    output: Path | None = None
    attributes: dict | None = None
    """Point clouds: the per-point attributes the file keeps (``colour`` uint8 [N, 3], ``intensity``
    uint16 [N]), aligned with ``data``."""

    @property
    def points(self) -> np.ndarray:
        """Alias of ``data`` (point clouds; kept for callers of the point-cloud API)."""
        return self.data


def label(c: Container) -> str:
    """A variant's name for messages and tables: ``neural fixed-6``, ``neural int8``, ``fallback 4-bit``."""
    if c.codec == "fallback":
        return "fallback octree" if c.coder == "octree" else f"fallback {c.draco_bits}-bit"
    tail = " + octree" if c.enhancement else ""
    return f"neural {c.dtype}{'-' + str(c.draco_bits) if c.dtype in LEVEL_DTYPES else ''}{tail}"
