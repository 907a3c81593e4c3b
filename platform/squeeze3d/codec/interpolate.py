"""The paper's Fig. 8: decode codes on the line between two neural .sq3d files (same pair, same model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from squeeze3d.assets.base import all_output_exts
from squeeze3d.codec.compressor import get_codec
from squeeze3d.codec.container import read_container
from squeeze3d.codec.decompress import model_for
from squeeze3d.errors import UserError


def interpolate(a: str | Path, b: str | Path, steps: int, out_dir: str | Path, *, model: str | None = None,
                device: str = "cpu", fmt: str | None = "ply", preview: bool = True) -> list[Path]:
    """Decode ``steps`` codes on the line between two neural .sq3d files (the paper's Fig. 8).

    Writes ``interp_000.<fmt>`` … and, with ``preview``, ``interpolation.png`` into ``out_dir``;
    centre and scale are interpolated too; ``fmt`` None: the kind's default (ply / npz). Returns the
    written paths (asset files first)."""
    if not 2 <= int(steps) <= 256:
        raise UserError(f"--steps must be between 2 and 256, got {steps}")
    ext = f".{fmt.lstrip('.')}".lower() if fmt is not None else None
    if ext is not None and ext not in all_output_exts():
        raise UserError(f"unsupported output format {fmt!r}; use one of "
                        f"{', '.join(e[1:] for e in all_output_exts())}")
    ca, cb = read_container(a), read_container(b)
    for c, p in ((ca, a), (cb, b)):
        if c.codec != "neural":
            raise UserError(f"{p}: a fallback file (classical codec) has no neural code to interpolate")
    if ca.pair != cb.pair or ca.model_hash != cb.model_hash:
        raise UserError(f"{a} ({ca.pair}, {ca.model_identity}) and {b} ({cb.pair}, {cb.model_identity}) were "
                        "compressed with different pairs or models; their codes do not share a space")
    codec = get_codec(ca.pair, model_for(ca, model, f"{a}: "), device)
    h = codec.handler
    ext = ext or h.output_exts[0]
    if ext not in h.output_exts:
        raise UserError(f"unsupported output format {fmt!r} for a {h.kind.replace('_', ' ')}; use one of "
                        f"{', '.join(e[1:] for e in h.output_exts)}")
    codec.check_identity(ca, f"{a}: ")
    za, zb = (codec.padded(codec.code_of(c)) for c in (ca, cb))  # a stored prefix: the rest reads as zeros
    assets = []
    ts = np.linspace(0.0, 1.0, int(steps))
    for t in ts:
        norm = codec.decode_asset((1 - t) * za + t * zb)
        centre = (1 - t) * np.asarray(ca.centre) + t * np.asarray(cb.centre)
        scale = (1 - t) * ca.scale + t * cb.scale
        assets.append(h.denormalise(norm, centre, scale))
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a directory")
    paths = [h.write(out / f"interp_{i:03d}{ext}", x) for i, x in enumerate(assets)]
    if preview:
        paths.append(h.preview_sequence(out / "interpolation.png", assets, [f"t={t:.2f}" for t in ts]))
    return paths
