"""The procedural radiance-field corpus: inside test, grid convention, determinism, materials, splits."""

import numpy as np
import pytest
from trimesh import creation

from squeeze3d.corpora import points as corpus
from squeeze3d.corpora import radiance as rc


def _centres(n):
    c = (np.arange(n) + 0.5) * 2 / n - 1
    return np.stack(np.meshgrid(c, c, c, indexing="ij"), -1)


def test_parity_inside_matches_analytic_box_and_sphere():
    n = 32
    p = _centres(n)
    box = creation.box(extents=(1.1, 0.6, 1.3))
    box.apply_translation((0.1, -0.2, 0.05))
    inside = rc.parity_inside(box.vertices, box.faces, n)
    ref = (np.abs(p[..., 0] - 0.1) < 0.55) & (np.abs(p[..., 1] + 0.2) < 0.3) & (np.abs(p[..., 2] - 0.05) < 0.65)
    assert inside.sum() == ref.sum() > 1000 and np.array_equal(inside, ref)
    sphere = creation.icosphere(subdivisions=4, radius=0.7)
    inside = rc.parity_inside(sphere.vertices, sphere.faces, n)
    d = np.linalg.norm(p, axis=-1)
    far = np.abs(d - 0.7) > 0.02  # the icosphere's facets lie within 0.02 of the true sphere
    assert np.array_equal(inside[far], (d < 0.7)[far])
    # axes are (x, y, z): a box long in x only is long along axis 0
    slab = creation.box(extents=(1.6, 0.2, 0.2))
    occ = rc.parity_inside(slab.vertices, slab.faces, n)
    assert occ.any(axis=(1, 2)).sum() > 3 * occ.any(axis=(0, 2)).sum()


def test_grid_convention_and_determinism():
    a = rc.make_grid(0, 4)
    b = rc.make_grid(0, 4)
    assert a.grid.shape == (4, 32, 32, 32) and a.grid.dtype == np.float32
    np.testing.assert_array_equal(a.grid, b.grid)
    rgb, sig = a.grid[:3], a.grid[3]
    assert (sig >= 0).all() and 0.02 < (sig > 0).mean() < 0.6
    assert rgb.min() >= 0 and rgb.max() <= 1
    assert (rgb[:, sig == 0] == 0).all()  # no colour in empty space
    assert a.label == corpus.category_of(4) and a.category == "chair"
    # the object fills its cube up to the margin along its longest axis
    occ = np.argwhere(sig > 0)
    assert occ.min(0).min() <= 3 and occ.max(0).max() >= 28


def test_variation_changes_materials_not_geometry():
    a, v = rc.make_grid(0, 10).grid, rc.make_grid(0, 10, variation=3).grid
    np.testing.assert_array_equal(a[3] > 0, v[3] > 0)
    assert np.abs(a[:3] - v[:3]).max() > 0.1


def test_materials_mix_opaque_and_translucent():
    # per voxel length at 32³: opaque parts ≥ 300·(2/32) ≈ 19, translucent ≤ 20·(2/32) = 1.25
    sig = np.concatenate([rc.make_grid(0, i).grid[3].ravel() for i in range(24)])
    full = sig[sig > 0]
    assert (full > 15).mean() > 0.3
    assert ((full > 0.25) & (full < 1.3)).sum() > 200


def test_resolution_is_a_config_value_and_density_is_per_voxel_length():
    # a bottle: one solid part, so the volume estimate is not dominated by thin-part aliasing
    lo, hi = rc.make_grid(0, 2, rc.GridConfig(resolution=16)), rc.make_grid(0, 2, rc.GridConfig(resolution=32))
    assert lo.grid.shape == (4, 16, 16, 16)
    # total extinction Σσ·voxel_length² (σ per voxel length, over a voxel face) is resolution-free
    mass = [g.grid[3].sum() * (2 / r) ** 2 for g, r in ((lo, 16), (hi, 32))]
    assert mass[0] == pytest.approx(mass[1], rel=0.1)
    with pytest.raises(ValueError, match="multiple of 4"):
        rc.GridConfig(resolution=30)


def test_train_index_walks_the_train_split():
    idx = [rc.train_index(k) for k in range(300)]
    assert len(set(idx)) == 300 and all(corpus.split_of(i) == "train" for i in idx)
    assert idx[:3] == [0, 1, 2] and idx[96] == 120


def test_grid_cache_is_written_once_and_reused(tmp_path):
    cfg = rc.GridConfig(resolution=16)
    d = rc.build_grid_cache(12, cfg, directory=tmp_path)
    assert d["grids"].shape == (12, 4, 16, 16, 16) and d["grids"].dtype == np.float16
    assert list(d["splits"]) == [0] * 12
    files = list(tmp_path.iterdir())
    assert len(files) == 1
    again = rc.build_grid_cache(12, cfg, directory=tmp_path)
    np.testing.assert_array_equal(again["grids"], d["grids"])
    np.testing.assert_allclose(d["grids"][5].astype(np.float32), rc.make_grid(0, 5, cfg).grid, rtol=1e-3, atol=1e-3)
