"""Procedural corpus: determinism, labels and splits, normalisation, caching, the PNG grid."""

import numpy as np
import pytest

from squeeze3d.corpora import plots as corpus_plots
from squeeze3d.corpora import points as corpus


def test_shapes_are_deterministic_per_seed_and_index():
    a = corpus.make_shape(0, 5, num_points=256)
    b = corpus.make_shape(0, 5, num_points=256)
    np.testing.assert_array_equal(a.points, b.points)
    np.testing.assert_array_equal(a.mesh.vertices, b.mesh.vertices)
    assert not np.allclose(corpus.make_shape(1, 5, 256).points, a.points)  # other seed, other object
    assert not np.allclose(corpus.make_shape(0, 5 + len(corpus.CATEGORIES), 256).points, a.points)


def test_point_count_does_not_change_the_object():
    # shape parameters and surface samples use separate streams
    a, b = corpus.make_shape(0, 3, 128), corpus.make_shape(0, 3, 512)
    np.testing.assert_array_equal(a.mesh.vertices, b.mesh.vertices)


def test_every_category_builds_a_watertight_normalised_object():
    n = len(corpus.CATEGORIES)
    assert n >= 12
    for i in range(n):
        s = corpus.make_shape(0, i, num_points=512)
        assert s.category == corpus.CATEGORIES[i]
        assert s.mesh.is_watertight, f"{s.category} #{i} is not watertight"
        r = np.linalg.norm(s.points, axis=1)
        assert r.max() == pytest.approx(1.0, abs=1e-5)
        mid = (s.points.max(0) + s.points.min(0)) / 2
        np.testing.assert_allclose(mid, 0, atol=1e-5)
        raw = s.points * s.scale + s.centre  # centre/scale invert the normalisation onto the mesh
        lo, hi = s.mesh.bounds
        assert (raw >= lo - 1e-4).all() and (raw <= hi + 1e-4).all()


def test_splits_are_fixed_balanced_and_disjoint():
    count = 240
    parts = {s: corpus.split_indices(s, count) for s in corpus.SPLITS}
    assert sum(len(v) for v in parts.values()) == count
    assert len(set.union(*(set(v.tolist()) for v in parts.values()))) == count
    assert len(parts["train"]) == 192 and len(parts["val"]) == 24 and len(parts["test"]) == 24
    for idx in parts.values():  # every split holds every category equally often
        counts = np.bincount([corpus.category_of(i) for i in idx], minlength=len(corpus.CATEGORIES))
        assert counts.min() == counts.max()
    assert corpus.split_of(8 * len(corpus.CATEGORIES)) == "val"
    with pytest.raises(ValueError, match="unknown split"):
        corpus.split_indices("holdout", 10)


def test_resampling_is_independent_but_in_the_same_frame():
    s = corpus.make_shape(0, 2, num_points=1024)
    other = corpus.resample(s, 1024, stream=1)
    assert not np.allclose(other, s.points)
    import torch

    from squeeze3d.metrics.pointcloud import chamfer

    cd = chamfer(torch.from_numpy(s.points)[None], torch.from_numpy(other)[None]).item()
    far = chamfer(torch.from_numpy(s.points)[None], torch.from_numpy(corpus.make_shape(0, 3, 1024).points)[None])
    assert cd < 0.01 and cd < far.item() / 5


def test_point_cache_is_written_once_and_reread(tmp_path):
    a = corpus.build_point_cache(6, num_points=64, cache_dir=tmp_path, streams=2)
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1
    assert a["points"].shape == (6, 2, 64, 3) and a["labels"].tolist() == [0, 1, 2, 3, 4, 5]
    np.testing.assert_array_equal(a["points"][2, 0], corpus.make_shape(0, 2, 64).points)
    b = corpus.build_point_cache(6, num_points=64, cache_dir=tmp_path, streams=2)
    np.testing.assert_array_equal(a["points"], b["points"])


def test_corpus_grid_png(tmp_path):
    path = corpus_plots.write_corpus_grid(tmp_path / "grid.png", per_category=1, num_points=128)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
