"""Size limits on user inputs (environment-tunable). A leaf module: the readers in ``io`` and
``cloud_io`` both use them without importing each other."""

from __future__ import annotations

import os


def max_points() -> int:
    """Largest point/vertex count accepted (``$SQUEEZE3D_MAX_POINTS``, default 20 million)."""
    return int(os.environ.get("SQUEEZE3D_MAX_POINTS", 20_000_000))


def max_input_bytes() -> int:
    """Largest input file accepted (``$SQUEEZE3D_MAX_INPUT_BYTES``, default 2 GiB)."""
    return int(os.environ.get("SQUEEZE3D_MAX_INPUT_BYTES", 2 << 30))
