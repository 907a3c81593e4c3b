"""What a source reader yields per object: its metadata and a loader for its geometry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass
class RawObject:
    id: str
    """Stable across package versions and runs: ``<source>/<pack or folder>/<name in the source>``."""
    source: str
    name: str
    category: str
    tags: list[str] = field(default_factory=list)
    licence: str = ""
    creator: str = ""
    origin: str = ""
    """Where the geometry comes from inside the unpacked package (for people, not for code)."""
    load: Callable[[], tuple[np.ndarray, np.ndarray]] | None = None
    """-> (vertices [V, 3] in metres, z up; faces [F, 3]); raises ``MeshRejected`` with a reason."""
