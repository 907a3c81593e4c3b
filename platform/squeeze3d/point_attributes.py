"""The per-point attributes a cloud may carry through the codec (colour, intensity) and their one
validation. A leaf module: the readers (``squeeze3d.io``) and the codec's attribute layer
(``squeeze3d.codec.attributes``) both use it, so neither imports the other."""

from __future__ import annotations

import numpy as np

NAMES = ("colour", "intensity")
"""The attributes the codec keeps, in the order of their bits in the container's attribute mask."""


def check(attrs: dict | None, n: int, what: str = "input") -> dict:
    """Validated attributes aligned with ``n`` points (colour uint8 ``[n, 3]``, intensity uint16 ``[n]``)."""
    from squeeze3d.errors import InputError

    out = {}
    for k, v in (attrs or {}).items():
        if v is None:
            continue
        if k not in NAMES:
            raise InputError(f"{what}: unknown point attribute {k!r}; known: {', '.join(NAMES)}")
        a = np.asarray(v)
        want = (n, 3) if k == "colour" else (n,)
        if k == "intensity" and a.ndim == 2 and a.shape[1] == 1:
            a = a[:, 0]
        if a.shape != want:
            raise InputError(f"{what}: {k} has shape {list(a.shape)}, expected {list(want)} (one per point)")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise InputError(f"{what}: {k} holds NaN or infinite values")
        top = 255 if k == "colour" else 65535
        if a.size and (a.min() < 0 or a.max() > top):
            raise InputError(f"{what}: {k} values must lie in 0..{top}")
        out[k] = np.ascontiguousarray(np.rint(a) if a.dtype.kind == "f" else a, dtype=np.uint8 if k == "colour"
                                      else np.uint16)
    return {k: out[k] for k in NAMES if k in out}
