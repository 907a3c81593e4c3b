"""Point-cloud preview images (matplotlib, Agg backend: no display needed).

All panels of one figure share the view and the axis limits, so a reconstruction that is shifted or
scaled shows as such next to its original. Points are coloured by height (z up, as the corpus).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

DEFAULT_VIEW = (20.0, -60.0)  # elevation, azimuth in degrees


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save_atomic(fig, path: Path, dpi: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=dpi, format="png")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def render_clouds(path: str | Path, clouds: Sequence[np.ndarray], titles: Sequence[str] | None = None,
                  cols: int | None = None, view: tuple[float, float] = DEFAULT_VIEW, point_size: float = 3.0,
                  panel_inches: float = 3.0, dpi: int = 100, suptitle: str | None = None) -> Path:
    """One 3D scatter panel per cloud (``[N, 3]`` arrays), same view and limits; PNG written atomically."""
    plt = _plt()
    clouds = [np.asarray(c, dtype=np.float32).reshape(-1, 3) for c in clouds]
    if not clouds:
        raise ValueError("nothing to render")
    titles = list(titles) if titles is not None else [""] * len(clouds)
    cols = cols or len(clouds)
    rows = -(-len(clouds) // cols)
    allp = np.concatenate([c for c in clouds if len(c)]) if any(len(c) for c in clouds) else np.zeros((1, 3))
    lo, hi = allp.min(axis=0), allp.max(axis=0)
    mid, half = (lo + hi) / 2, max(float((hi - lo).max()) / 2, 1e-9) * 1.05
    fig = plt.figure(figsize=(panel_inches * cols, panel_inches * rows + (0.3 if suptitle else 0)))
    try:
        for i, (pts, title) in enumerate(zip(clouds, titles)):
            ax = fig.add_subplot(rows, cols, i + 1, projection="3d")
            if len(pts):
                ax.scatter(pts[:, 0], pts[:, 1], pts[:, 2], s=point_size, c=pts[:, 2], cmap="viridis",
                           vmin=lo[2], vmax=hi[2], linewidths=0, depthshade=False)
            for setlim, m in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), mid):
                setlim(m - half, m + half)
            ax.set_box_aspect((1, 1, 1))
            ax.view_init(elev=view[0], azim=view[1])
            ax.set_axis_off()
            ax.set_title(title, fontsize=8)
        if suptitle:
            fig.suptitle(suptitle, fontsize=9)
        fig.tight_layout()
        return _save_atomic(fig, Path(path), dpi)
    finally:
        plt.close(fig)


def render_before_after(path: str | Path, original: np.ndarray, reconstruction: np.ndarray,
                        title: str | None = None, labels: tuple[str, str] = ("original", "reconstruction"),
                        **kw) -> Path:
    """Original vs reconstruction side by side, same view (the codec's per-object preview)."""
    return render_clouds(path, [original, reconstruction], list(labels), cols=2, suptitle=title, **kw)


def plot_rate_distortion(path: str | Path, series: dict[str, tuple[Sequence[float], Sequence[float]]],
                         floor_db: float | None = None, title: str = "rate-distortion",
                         xlabel: str = "bytes per object (log scale)", ylabel: str = "D1-PSNR (dB)",
                         dpi: int = 110) -> Path:
    """Lines/markers per method: ``{name: (bytes, psnr)}``; an optional horizontal reference line."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    try:
        for name, (x, y) in series.items():
            style = "o-" if len(x) > 1 else "*"
            ax.plot(list(x), list(y), style, label=name, markersize=6 if len(x) > 1 else 12)
        if floor_db is not None and np.isfinite(floor_db):
            ax.axhline(floor_db, color="grey", ls="--", lw=1, label=f"resampling floor {floor_db:.1f} dB")
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        return _save_atomic(fig, Path(path), dpi)
    finally:
        plt.close(fig)
