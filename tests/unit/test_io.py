"""Asset reading (formats, seeded sampling, validation) and atomic point-cloud writing."""

import numpy as np
import pytest
import trimesh

from squeeze3d import io
from squeeze3d.io import InputError, read_asset, write_points


@pytest.fixture
def box_mesh():
    m = trimesh.creation.box(extents=(2.0, 1.0, 0.5))
    m.apply_translation((10.0, -5.0, 3.0))
    return m


@pytest.mark.parametrize("ext", ["ply", "obj", "off", "stl", "glb"])
def test_meshes_are_sampled_on_the_surface(tmp_path, box_mesh, ext):
    p = tmp_path / f"box.{ext}"
    box_mesh.export(p)
    a = read_asset(p, 500, seed=3)
    assert a.kind == "mesh" and a.points.shape == (500, 3) and a.points.dtype == np.float32
    assert a.file_bytes == p.stat().st_size
    # every sample lies on the box surface: inside the bounds and on at least one face plane
    lo, hi = box_mesh.bounds
    assert np.all(a.points >= lo - 1e-4) and np.all(a.points <= hi + 1e-4)
    on_face = np.isclose(a.points, lo, atol=1e-4) | np.isclose(a.points, hi, atol=1e-4)
    assert on_face.any(axis=1).all()


def test_sampling_is_seeded(tmp_path, box_mesh):
    p = tmp_path / "box.ply"
    box_mesh.export(p)
    a, b, c = read_asset(p, 300, 0), read_asset(p, 300, 0), read_asset(p, 300, 1)
    assert np.array_equal(a.points, b.points)
    assert not np.array_equal(a.points, c.points)


def test_gltf_scene_with_several_meshes(tmp_path):
    scene = trimesh.Scene([trimesh.creation.box(), trimesh.creation.icosphere().apply_translation((3, 0, 0))])
    p = tmp_path / "scene.glb"
    scene.export(p)
    a = read_asset(p, 400)
    assert a.kind == "mesh" and a.points[:, 0].max() > 2.0 and a.points[:, 0].min() < 0  # both parts


def test_point_cloud_files(tmp_path):
    pts = np.random.default_rng(0).normal(size=(1000, 3)).astype(np.float32)
    np.save(tmp_path / "a.npy", pts)
    np.savez(tmp_path / "b.npz", points=pts, colors=np.zeros((1000, 3)))
    np.savez(tmp_path / "c.npz", pts)
    trimesh.PointCloud(pts).export(tmp_path / "d.ply")
    for name in ("a.npy", "b.npz", "c.npz", "d.ply"):
        full = read_asset(tmp_path / name)
        assert full.kind == "points" and np.allclose(full.points, pts), name
        sub = read_asset(tmp_path / name, 256, seed=0)
        assert sub.points.shape == (256, 3) and sub.source_count == 1000
        # a subset of the original points, not a resampling
        assert np.isin(sub.points[:, 0], pts[:, 0]).all()


def _bad_inputs(tmp_path):
    """name → path of an input that must be refused with a clear error."""
    cases = {}
    cases["missing"] = tmp_path / "nope.ply"
    (tmp_path / "x.vtk").write_text("0 0 0\n")
    cases["unsupported format"] = tmp_path / "x.vtk"
    (tmp_path / "empty.ply").write_bytes(b"")
    cases["empty file"] = tmp_path / "empty.ply"
    (tmp_path / "nomesh.obj").write_text("# nothing here\n")
    cases["empty mesh"] = tmp_path / "nomesh.obj"
    nan = np.random.default_rng(0).normal(size=(50, 3))
    nan[7, 1] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    cases["NaN coordinates"] = tmp_path / "nan.npy"
    inf = np.random.default_rng(0).normal(size=(50, 3))
    inf[3, 2] = np.inf
    np.save(tmp_path / "inf.npy", inf)
    cases["Inf coordinates"] = tmp_path / "inf.npy"
    np.save(tmp_path / "one.npy", np.array([[1.0, 2.0, 3.0]]))
    cases["one point"] = tmp_path / "one.npy"
    np.save(tmp_path / "line.npy", np.outer(np.linspace(0, 1, 100), [1.0, 2.0, 3.0]))
    cases["collinear points"] = tmp_path / "line.npy"
    np.save(tmp_path / "same.npy", np.ones((100, 3)))
    cases["coincident points"] = tmp_path / "same.npy"
    flat = trimesh.Trimesh(vertices=[[0, 0, 0], [1, 0, 0], [2, 0, 0], [0, 1, 0]], faces=[[0, 1, 2]], process=False)
    flat.export(tmp_path / "flat.ply")
    cases["zero-area mesh"] = tmp_path / "flat.ply"
    np.save(tmp_path / "shape.npy", np.zeros((10, 2)))
    cases["wrong shape"] = tmp_path / "shape.npy"
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    cases["pickled object array"] = tmp_path / "obj.npy"
    np.savez(tmp_path / "two.npz", a=np.zeros((5, 3)), b=np.zeros((5, 3)))
    cases["ambiguous npz"] = tmp_path / "two.npz"
    (tmp_path / "garbage.stl").write_bytes(b"\x00\xff" * 10)
    cases["garbage stl"] = tmp_path / "garbage.stl"
    return cases


def test_bad_inputs_are_clear_errors(tmp_path):
    for name, path in _bad_inputs(tmp_path).items():
        with pytest.raises(InputError) as ei:
            read_asset(path, 128)
        msg = str(ei.value)
        assert str(path.name) in msg and "\n" not in msg, (name, msg)


def test_very_large_cloud_is_refused_before_loading(tmp_path, monkeypatch):
    np.save(tmp_path / "big.npy", np.random.default_rng(0).normal(size=(5000, 3)))
    np.savez(tmp_path / "big.npz", points=np.random.default_rng(0).normal(size=(5000, 3)))
    monkeypatch.setenv("SQUEEZE3D_MAX_POINTS", "1000")
    for name in ("big.npy", "big.npz"):
        with pytest.raises(InputError, match="exceed the limit of 1000"):
            read_asset(tmp_path / name, 128)
    monkeypatch.setenv("SQUEEZE3D_MAX_INPUT_BYTES", "100")
    with pytest.raises(InputError, match="input limit"):
        read_asset(tmp_path / "big.npy", 128)


def test_planar_cloud_is_accepted():
    g = np.random.default_rng(0).random((100, 2))
    pts = np.c_[g, np.zeros(100)]
    assert io.check_points(pts).shape == (100, 3)


@pytest.mark.parametrize("ext", ["ply", "npz", "obj"])
def test_write_round_trip_and_atomicity(tmp_path, ext):
    pts = np.random.default_rng(1).normal(size=(321, 3)).astype(np.float32) * 50 + 1000
    out = write_points(tmp_path / f"o.{ext}", pts)
    back = read_asset(out).points
    assert np.allclose(back, pts, rtol=0, atol=1e-3 if ext == "obj" else 0)
    assert [p.name for p in tmp_path.iterdir()] == [f"o.{ext}"]  # no temporary file left


def test_write_refuses_unknown_format_and_leaves_nothing(tmp_path):
    with pytest.raises(InputError, match="unsupported output format"):
        write_points(tmp_path / "o.stl", np.zeros((3, 3)))
    assert not list(tmp_path.iterdir())


def test_failed_atomic_write_keeps_old_file(tmp_path):
    target = tmp_path / "keep.bin"
    target.write_bytes(b"old")

    with pytest.raises(TypeError):
        io.atomic_write_bytes(target, object())  # not bytes: fails while writing the temp file
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.bin"]
