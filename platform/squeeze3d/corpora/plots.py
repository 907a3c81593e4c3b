"""Pictures of point clouds: PNG grids of 3D scatter plots (the corpus overview ``jobs/corpus_grid.py``
writes, and the zoo benchmark's grid of generated samples)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from squeeze3d.corpora.points import CATEGORIES, DEFAULT_SEED, make_shape


def plot_point_grid(path: str | Path, clouds: Sequence[np.ndarray], titles: Sequence[str], cols: int,
                    point_size: float = 0.6) -> Path:
    """A PNG grid of 3D scatter plots (z up), one cloud per cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = int(np.ceil(len(clouds) / cols))
    fig = plt.figure(figsize=(cols * 1.8, rows * 1.8), dpi=110)
    for k, (p, title) in enumerate(zip(clouds, titles)):
        ax = fig.add_subplot(rows, cols, k + 1, projection="3d")
        ax.scatter(p[:, 0], p[:, 1], p[:, 2], s=point_size, c=p[:, 2], cmap="viridis", linewidths=0)
        ax.set_xlim(-1, 1), ax.set_ylim(-1, 1), ax.set_zlim(-1, 1)
        ax.set_box_aspect((1, 1, 1))
        ax.view_init(elev=20, azim=-60)
        ax.set_axis_off()
        ax.set_title(title, fontsize=6)
    fig.subplots_adjust(left=0, right=1, bottom=0, top=0.95, wspace=0, hspace=0.15)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_corpus_grid(path: str | Path, seed: int = DEFAULT_SEED, per_category: int = 6,
                      num_points: int = 2048) -> Path:
    """PNG grid: one row per category, ``per_category`` objects (the first indices of that category)."""
    clouds, titles = [], []
    for c, name in enumerate(CATEGORIES):
        for k in range(per_category):
            idx = c + k * len(CATEGORIES)
            clouds.append(make_shape(seed, idx, num_points).points)
            titles.append(f"{name} #{idx}")
    return plot_point_grid(path, clouds, titles, cols=per_category)
