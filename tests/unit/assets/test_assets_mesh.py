"""The ``mesh`` asset kind: reading OBJ + MTL + PNG (texture baked to vertex colours), GLB and PLY;
every refused input (one line, naming the file, nothing written); writing GLB/OBJ/PLY; the CPU
rasteriser (determinism, silhouette and colour, PSNR of identical and perturbed meshes); Draco mesh
round trips at each ladder depth and malformed payloads; the codec end to end on ``debug_mesh``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from squeeze3d.assets import handler_for
from squeeze3d.assets.mesh_io import MeshFileError, encode_mesh, read_mesh
from squeeze3d.baselines import draco_mesh
from squeeze3d.corpora.meshes import make_textured
from squeeze3d.errors import ContainerError, UserError
from squeeze3d.meshdata import Mesh
from squeeze3d.metrics import mesh as mm
from squeeze3d.metrics.mesh_render import render

H = handler_for("mesh")


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors on a shared 2-core machine: threads cost more than they give
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def corpus_mesh() -> Mesh:
    return make_textured(0, 3).mesh


def _textured_obj(d, texture: bool = True):
    """A unit quad split in two triangles, UVs at the centres of a 2×2 texture's four texels."""
    (d / "quad.obj").write_text("mtllib quad.mtl\nv 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\n"
                                "vt 0.25 0.25\nvt 0.75 0.25\nvt 0.75 0.75\nvt 0.25 0.75\n"
                                "usemtl skin\nf 1/1 2/2 3/3\nf 1/1 3/3 4/4\n")
    (d / "quad.mtl").write_text("newmtl skin\nKd 1 1 1\nmap_Kd tex.png\n")
    if texture:
        img = np.zeros((2, 2, 3), np.uint8)  # row 0 is the top of the image (v = 1)
        img[1, 0], img[1, 1], img[0, 1], img[0, 0] = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)
        Image.fromarray(img).save(d / "tex.png")
    return d / "quad.obj"


# ------------------------------------------------------------------------------------ reading


def test_textured_obj_bakes_the_texture_and_counts_sidecar_bytes(tmp_path):
    p = _textured_obj(tmp_path)
    mesh, nbytes = read_mesh(p)
    assert mesh.num_faces == 2 and mesh.num_vertices == 4
    want = {(0, 0): (1, 0, 0), (1, 0): (0, 1, 0), (1, 1): (0, 0, 1), (0, 1): (1, 1, 0)}
    for v, c in zip(mesh.vertices, mesh.colors):
        np.testing.assert_allclose(c, want[(int(v[0]), int(v[1]))], atol=1 / 255)
    assert nbytes == sum((tmp_path / n).stat().st_size for n in ("quad.obj", "quad.mtl", "tex.png"))
    asset = H.read(p, None)
    assert asset.file_bytes == nbytes and asset.kind == "mesh"


@pytest.mark.parametrize("fmt", ["glb", "ply", "obj"])
def test_written_files_read_back_with_the_same_arrays(fmt, corpus_mesh, tmp_path):
    p = tmp_path / f"m.{fmt}"
    p.write_bytes(encode_mesh(corpus_mesh, fmt))
    back, nbytes = read_mesh(p)
    assert nbytes == p.stat().st_size
    np.testing.assert_array_equal(back.faces, corpus_mesh.faces)
    np.testing.assert_array_equal(back.vertices, corpus_mesh.vertices)
    np.testing.assert_allclose(back.colors, corpus_mesh.colors, atol=0.5 / 255 + 1e-6)  # 8-bit colours


def test_foreign_ply_and_glb_with_vertex_and_face_colours(tmp_path):
    box = trimesh.creation.box((2.0, 1.0, 0.5))
    box.visual.vertex_colors = np.tile([[200, 30, 40, 255]], (len(box.vertices), 1))
    (tmp_path / "box.ply").write_bytes(box.export(file_type="ply"))
    (tmp_path / "box.glb").write_bytes(box.export(file_type="glb"))
    for name in ("box.ply", "box.glb"):
        m, _ = read_mesh(tmp_path / name)
        assert m.num_faces == 12
        np.testing.assert_allclose(m.colors, np.tile([[200 / 255, 30 / 255, 40 / 255]], (m.num_vertices, 1)), atol=1e-6)
    face = trimesh.creation.box()
    face.visual.face_colors = np.tile([[0, 0, 255, 255]], (12, 1))
    face.visual.face_colors[0] = [255, 0, 0, 255]
    (tmp_path / "faces.ply").write_bytes(face.export(file_type="ply"))
    m, _ = read_mesh(tmp_path / "faces.ply")
    assert m.num_faces == 12 and np.allclose(m.colors[m.faces[0]], [1, 0, 0])
    assert np.allclose(m.colors[m.faces[1:]].reshape(-1, 3), [0, 0, 1])


def test_gltf_with_external_buffers_counts_them_and_refuses_a_missing_one(tmp_path):
    box = trimesh.creation.box()
    box.visual.vertex_colors = np.tile([[10, 200, 40, 255]], (8, 1))
    files = box.export(file_type="gltf")
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    m, nbytes = read_mesh(tmp_path / "model.gltf")
    assert m.num_faces == 12 and np.allclose(m.colors * 255, [10, 200, 40])
    assert nbytes == sum(len(d) for d in files.values())
    (tmp_path / next(n for n in files if n.endswith(".bin"))).unlink()
    with pytest.raises(MeshFileError, match="model.gltf: referenced buffer file"):
        read_mesh(tmp_path / "model.gltf")


# ------------------------------------------------------------------------------------ refusals


def _bad_files(d):
    """name → (path, words the one-line error must contain)."""
    out = {}
    sub = d / "notex"
    sub.mkdir()
    out["missing texture"] = (_textured_obj(sub, texture=False), "tex.png")
    nomtl = d / "nomtl.obj"
    nomtl.write_text("mtllib gone.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    out["missing mtl"] = (nomtl, "gone.mtl")
    empty = d / "empty.obj"
    empty.write_text("# nothing here\n")
    out["empty"] = (empty, "")
    nan = d / "nan.obj"
    nan.write_text("v 0 0 0\nv nan 0 0\nv 0 1 0\nf 1 2 3\n")
    out["nan vertices"] = (nan, "NaN")
    pts = d / "cloud.ply"
    pts.write_bytes(trimesh.PointCloud(np.random.default_rng(0).random((20, 3))).export(file_type="ply"))
    out["no faces"] = (pts, "no faces")
    # an edge (v0, v1) shared by three triangles
    fin = d / "fin.ply"
    fin.write_bytes(trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1]],
                                    [[0, 1, 2], [1, 0, 3], [0, 1, 4]], process=False).export(file_type="ply"))
    out["non-manifold"] = (fin, "non-manifold")
    flat = d / "flat.ply"
    flat.write_bytes(trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [2, 0, 0]], [[0, 1, 2]],
                                     process=False).export(file_type="ply"))
    out["degenerate"] = (flat, "degenerate")
    junk = d / "junk.glb"
    junk.write_bytes(b"glTF this is not a real binary")
    out["unreadable"] = (junk, "")
    return out


def test_bad_mesh_files_are_one_line_errors_naming_the_file(tmp_path):
    for name, (path, words) in _bad_files(tmp_path).items():
        with pytest.raises(UserError) as e:
            read_mesh(path)
        msg = str(e.value)
        assert isinstance(e.value, MeshFileError), name
        assert "\n" not in msg and str(path) in msg, (name, msg)
        assert words in msg, (name, msg)
        assert "Traceback" not in msg


def test_faces_indexing_missing_vertices_are_refused():
    with pytest.raises(UserError, match="faces index vertices that do not exist"):
        H.prepare(Mesh(np.eye(3), [[0, 1, 5]], np.ones((3, 3))), None, "m.obj")
    with pytest.raises(UserError, match="takes a squeeze3d.meshdata.Mesh"):
        H.prepare(np.zeros((10, 3)), None, "arr")


def test_tolerated_oddities_open_boundaries_and_repeated_index_faces(tmp_path):
    m = Mesh([[0, 0, 0], [1, 0, 0], [0, 1, 0], [9, 9, 9]], [[0, 1, 2], [0, 0, 1]], np.full((4, 3), 0.5))
    out = H.prepare(m, None)  # an open triangle, an unreferenced vertex, a repeated-index face
    assert out.num_faces == 1


# ------------------------------------------------------------------------------------ renderer


def test_render_is_deterministic_and_shows_the_known_colour_and_silhouette():
    # a square facing the camera ring's first view (+x at 30° elevation): colour pure red
    quad = Mesh([[0, -0.5, -0.5], [0, 0.5, -0.5], [0, 0.5, 0.5], [0, -0.5, 0.5]], [[0, 1, 2], [0, 2, 3]],
                np.tile([[1.0, 0.0, 0.0]], (4, 1)))
    img, mask = render(quad, num_views=4, image_size=64, return_mask=True)
    again = render(quad, num_views=4, image_size=64)
    assert torch.equal(img, again)
    assert img.shape == (4, 3, 64, 64)
    front = img[0]
    assert torch.all(front[:, ~mask[0]] == 1.0)  # white background
    covered = front[:, mask[0]]
    assert covered.shape[1] > 200 and torch.all(covered[1:] == 0) and torch.all(covered[0] > 0.3)
    assert mask[0, 32, 32] and not mask[0, 0, 0]  # centred on the image
    # seen edge-on from the side views (90° and 270° azimuth): almost nothing covered
    assert mask[1].sum() < 0.05 * mask[0].sum() and mask[3].sum() < 0.05 * mask[0].sum()


def test_render_psnr_identical_is_the_cap_and_falls_with_perturbation(corpus_mesh):
    ref = mm.render_ring(corpus_mesh)
    assert mm.render_psnr(ref, mm.render_ring(corpus_mesh.copy())) == pytest.approx(100.0)
    rng = np.random.default_rng(0)
    last = math.inf
    for sigma in (0.005, 0.02, 0.08):
        noisy = Mesh(corpus_mesh.vertices + rng.normal(0, sigma, corpus_mesh.vertices.shape), corpus_mesh.faces,
                     corpus_mesh.colors)
        p = mm.render_psnr(ref, mm.render_ring(noisy))
        assert p < last
        last = p
    assert last < 25.0
    recoloured = Mesh(corpus_mesh.vertices, corpus_mesh.faces, 1.0 - corpus_mesh.colors)
    assert mm.render_psnr(ref, mm.render_ring(recoloured)) < 20.0


def test_eval_metrics_identity_and_frame(corpus_mesh):
    ctx = H.metric_context(corpus_mesh)
    same = H.eval_metrics(ctx, corpus_mesh)
    assert same["psnr"] == pytest.approx(100.0) and same["ms_ssim"] == pytest.approx(1.0, abs=1e-5)
    assert same["chamfer"] < 1e-7 and same["fscore"] == 1.0
    moved = Mesh(corpus_mesh.vertices * 5.0 + 3.0, corpus_mesh.faces, corpus_mesh.colors)
    ctx2 = H.metric_context(moved)  # metrics live in the reference's unit-sphere frame
    assert H.eval_metrics(ctx2, moved)["psnr"] == pytest.approx(100.0)
    other = make_textured(0, 4).mesh
    worse = H.eval_metrics(ctx, other)
    assert worse["psnr"] < 25 and worse["chamfer"] > 1e-3 and worse["fscore"] < 0.9


# ------------------------------------------------------------------------------------ Draco and fallback


@pytest.mark.parametrize("bits", draco_mesh.BASELINE_BITS)
def test_draco_mesh_round_trip_at_each_ladder_depth(bits, corpus_mesh):
    blob = draco_mesh.encode_mesh(corpus_mesh, bits)
    back = draco_mesh.decode_mesh(blob)
    assert back.num_faces == corpus_mesh.num_faces
    step = 2.0 / (2 ** bits - 1)  # the normalised mesh spans at most 2 per axis
    # Draco reorders vertices, and colour borders hold coincident vertices: match each decoded vertex
    # to the original vertices within one quantisation step and ask that one of them has its colour
    near = np.abs(back.vertices[:, None, :] - corpus_mesh.vertices[None, :, :]).max(-1) <= step
    assert near.any(axis=1).all()
    dc = np.abs(back.colors[:, None, :] - corpus_mesh.colors[None, :, :]).max(-1)
    assert np.where(near, dc, np.inf).min(axis=1).max() <= 0.5 / 255 + 1e-6


def test_draco_more_bits_more_bytes_higher_quality(corpus_mesh):
    rows = [(len(b), q) for b, q in (H.fallback_at(corpus_mesh, k) for k in (4, 8, 14))]
    assert rows[0][0] < rows[1][0] < rows[2][0] and rows[0][1] < rows[1][1] < rows[2][1]
    blob, bits, q = H.fallback_encode(corpus_mesh, 30.0)
    assert q >= 30.0 and bits in H.fallback_bits
    assert bits == H.fallback_bits[0] or H.fallback_at(corpus_mesh, bits - 1)[1] < 30.0
    assert H.fallback_decode(blob, bits, 512).num_faces == corpus_mesh.num_faces


def test_malformed_draco_payloads_are_container_errors(corpus_mesh):
    import DracoPy

    good = draco_mesh.encode_mesh(corpus_mesh, 8)
    cloud = DracoPy.encode(corpus_mesh.vertices, quantization_bits=8)
    for bad in (b"", b"DRACO", good[: len(good) // 2], bytes(len(good)), cloud):
        with pytest.raises(ContainerError):
            H.fallback_decode(bad, 8, 512)


# ------------------------------------------------------------------------------------ handler odds and ends


def test_raw_bytes_describe_and_previews(corpus_mesh, tmp_path):
    m = corpus_mesh
    assert H.raw_bytes(m) == m.num_vertices * 24 + m.num_faces * 12
    assert H.describe(m) == f"{m.num_vertices} vertices, {m.num_faces} faces"
    p = H.preview(tmp_path / "p.png", m, draco_mesh.decode_mesh(draco_mesh.encode_mesh(m, 6)), "t")
    q = H.preview_sequence(tmp_path / "s.png", [m, m, m], ["a", "b", "c"])
    for f in (p, q):
        assert Image.open(f).size[0] > 100
    names = [b.method for b in H.baselines(None, m, None, 0, {})]
    assert names == [f"draco-{b}" for b in draco_mesh.BASELINE_BITS] + ["raw-glb"]


def test_corpus_inputs_write_readable_glbs(tmp_path):
    files = H.corpus_inputs(None, "test", 2, tmp_path, lambda s: None)
    assert len(files) == 2 and all(f.suffix == ".glb" for f in files)
    mesh, _ = read_mesh(files[0])
    idx = int(files[0].name.split("_")[1])
    np.testing.assert_array_equal(mesh.faces, make_textured(0, idx).mesh.faces)


# ------------------------------------------------------------------------------------ codec end to end


@pytest.fixture(scope="module")
def mesh_ckpt(tmp_path_factory):
    from squeeze3d.config import train_config_for_pair
    from squeeze3d.mapping.checkpoint import save_checkpoint
    from squeeze3d.synth.in_process import synthesise
    from squeeze3d.train.loop import TensorPairs, fit

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        z_e, z_g, _ = synthesise("debug_mesh", list(range(96)))
        cfg = train_config_for_pair("debug_mesh", sets=["optim.epochs=2"])
        r = fit(cfg, z_e.shape[1:], z_g.shape[1:], TensorPairs(z_e, z_g, 32))
    finally:
        torch.set_num_threads(threads)
    return str(save_checkpoint(tmp_path_factory.mktemp("mck") / "a", r.f_e, r.f_d, cfg))


def test_codec_round_trip_on_debug_mesh(mesh_ckpt, tmp_path):
    from squeeze3d.cli import main
    from squeeze3d.codec.compressor import compress_file
    from squeeze3d.codec.container import read_container
    from squeeze3d.codec.decompress import decompress_file
    from squeeze3d.codec.interpolate import interpolate

    src = _textured_obj(tmp_path)
    raw = Mesh(make_textured(0, 3).mesh.vertices * 20 + 7, make_textured(0, 3).mesh.faces, make_textured(0, 3).mesh.colors)
    big = tmp_path / "car.glb"
    big.write_bytes(encode_mesh(raw, "glb"))
    res = compress_file(big, tmp_path / "c.sq3d", pair="debug_mesh", model=mesh_ckpt, min_quality=None)
    c = read_container(tmp_path / "c.sq3d")
    assert c.codec == "neural" and c.num_points == 512 and res.asset.file_bytes == big.stat().st_size
    for ext in ("glb", "obj", "ply"):
        out = decompress_file(tmp_path / "c.sq3d", tmp_path / f"o.{ext}", model=mesh_ckpt)
        assert isinstance(out.data, Mesh) and out.data.num_faces == 320
        back, _ = read_mesh(tmp_path / f"o.{ext}")
        lo, hi = back.vertices.min(0), back.vertices.max(0)
        assert np.allclose((lo + hi) / 2, (raw.vertices.min(0) + raw.vertices.max(0)) / 2, atol=0.1)  # frame restored
    # the gate: an untrained debug generator cannot reach 30 dB, so the Draco mesh fallback is chosen
    res = compress_file(src, tmp_path / "g.sq3d", pair="debug_mesh", model=mesh_ckpt, min_quality=30.0)
    assert res.fallback and res.psnr >= 30.0 and read_container(tmp_path / "g.sq3d").codec == "fallback"
    out = decompress_file(tmp_path / "g.sq3d", tmp_path / "g.glb")
    assert out.data.num_faces == 2
    compress_file(big, tmp_path / "d.sq3d", pair="debug_mesh", model=mesh_ckpt, min_quality=None, seed=1)
    paths = interpolate(tmp_path / "c.sq3d", tmp_path / "d.sq3d", 3, tmp_path / "interp", model=mesh_ckpt, fmt=None)
    assert [p.name for p in paths] == ["interp_000.glb", "interp_001.glb", "interp_002.glb", "interpolation.png"]
    # a bad input through the CLI: exit 2, one line, nothing written
    (tmp_path / "bad").mkdir()
    bad = _bad_files(tmp_path / "bad")["missing texture"][0]
    rc = main(["compress", str(bad), "-o", str(tmp_path / "bad.sq3d"), "--pair", "debug_mesh", "--model", mesh_ckpt])
    assert rc == 2 and not (tmp_path / "bad.sq3d").exists()
