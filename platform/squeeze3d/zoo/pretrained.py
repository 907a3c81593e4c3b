"""Where the zoo's shipped files live, and the one way a zoo model is saved and loaded.

``SHIPPED_WEIGHTS``: the mini zoo's trained weights, one folder per pair (package data, installed with
the wheel). ``MANIFESTS``: the pinned identities of published checkpoints (``zoo/manifests``).
"""

from __future__ import annotations

from pathlib import Path

ZOO_DIR = Path(__file__).resolve().parent
SHIPPED_WEIGHTS = ZOO_DIR / "weights"
MANIFESTS = ZOO_DIR / "manifests"
