"""The real-object corpus (squeeze3d.realcorpus) on small generated stand-ins: no download.

A fake Sweet Home 3D package (a .deb holding a .sh3f zip with a Latin-1 catalogue, OBJ+MTL and a
licence) and a fake FlightGear package (AC3D files with nested kids, loc, rot and line surfaces) go
through the real fetch -> unpack -> convert -> index -> split -> point_cache path."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from squeeze3d.errors import UserError
from squeeze3d.realcorpus import Augment, load_index, load_mesh, point_cache, sample_points, select, split_of
from squeeze3d.realcorpus.ac3d import read_ac3d
from squeeze3d.realcorpus.fetch import fetch
from squeeze3d.realcorpus.meshes import MeshRejected, clean
from squeeze3d.realcorpus.points import object_views
from squeeze3d.realcorpus.properties import parse_properties
from squeeze3d.realcorpus.sources import SOURCES
from squeeze3d.realcorpus.sweethome3d import pack_licence, place

# ------------------------------------------------------------------------------------ stand-ins

BOX_OBJ = """mtllib box.mtl
o part1
v 0 0 0
v 2 0 0
v 2 1 0
v 0 1 0
v 0 0 4
v 2 0 4
v 2 1 4
v 0 1 4
usemtl wood
f 1 2 3 4
f 5 6 7 8
o part2
vt 0 0
f 1/1 2/1 6/1 5/1
f 2 3 7 6
f 3 4 8 7
f -4 -1 -5 -8
"""
EMPTY_OBJ = "v 0 0 0\nv 1 0 0\nv 0 1 0\n"

CATALOG = """# a catalogue in Latin-1 with an escape and a continuation
id=Test#Catalog
name=Test catalog
id#1=Test#box
name#1=Caf\xe9 table \\u20ac
category#1=Living room
tags#1=Blend Swap, \\
    Table
creator#1=Some\\u00f6ne
model#1=/test/box/box.obj
multiPartModel#1=true
width#1=100
depth#1=50
height#1=75
id#2=Test#turned
name#2=Turned box
category#2=Kitchen
tags#2=
creator#2=Someone
model#2=/test/box/box.obj
width#2=40
depth#2=40
height#2=40
modelRotation#2=1 0 0 0 0 1 0 -1 0
id#3=Test#empty
name#3=Nothing
category#3=Kitchen
creator#3=Someone
model#3=/test/empty/empty.obj
width#3=10
depth#3=10
height#3=10
"""
CC0 = "LICENSE\n\nThis file is under the Creative Commons Zero (Public Domain)\nlicense:\n"

# world -> group (loc 10 0 0) -> quad in a turned frame (rot: 90 degrees about y, loc 0 5 0),
# plus a line surface (type 2) that must not become a triangle, and a data block with keywords.
NESTED_AC = """AC3Db
MATERIAL "a" rgb 1 1 1  amb 1 1 1  emis 0 0 0  spec 0 0 0  shi 0  trans 0
OBJECT world
kids 1
OBJECT group
name "g"
data 13
OBJECT kids 9
loc 10 0 0
kids 2
OBJECT poly
name "quad"
rot 0 0 -1 0 1 0 1 0 0
loc 0 5 0
numvert 5
0 0 0
1 0 0
1 1 0
0 1 0
0 0 7
numsurf 2
SURF 0x10
mat 0
refs 4
0 0 0
1 1 0
2 1 1
3 0 1
SURF 0x2
mat 0
refs 2
0 0 0
4 0 0
kids 0
OBJECT poly
name "box"
numvert 4
0 0 0
1 0 0
0 1 0
0 0 1
numsurf 4
SURF 0x30
refs 3
0 0 0
2 0 0
1 0 0
SURF 0x30
refs 3
0 0 0
1 0 0
3 0 0
SURF 0x30
refs 3
0 0 0
3 0 0
2 0 0
SURF 0x30
refs 3
1 0 0
2 0 0
3 0 0
kids 0
"""
SPRITE_AC = """AC3Db
OBJECT world
kids 1
OBJECT poly
numvert 4
-1 0 -1
1 0 -1
1 0 1
-1 0 1
numsurf 1
SURF 0x10
refs 4
0 0 0
1 0 0
2 0 0
3 0 0
kids 0
"""
FG_COPYRIGHT = """Format: machine-readable copyright 1.0

Files: *
Copyright: 1999-2017 Someone <a@b.c>
 and the team.
License: GPL-2+

Files: debian/*
Copyright: 2020 Other
License: MIT
"""


def _sh3f() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("PluginFurnitureCatalog.properties", CATALOG.encode("latin-1"))
        z.writestr("LICENSE.TXT", CC0)
        z.writestr("test/box/box.obj", BOX_OBJ)
        z.writestr("test/box/box.mtl", "newmtl wood\nKd 0.5 0.3 0.1\n")
        z.writestr("test/empty/empty.obj", EMPTY_OBJ)
    return buf.getvalue()


def _tar_xz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo("./" + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _deb(files: dict[str, bytes]) -> bytes:
    """A Debian package as dpkg writes it: an ar archive of debian-binary, control and data."""
    members = [("debian-binary", b"2.0\n"), ("control.tar.xz", _tar_xz({"control": b"Package: x\n"})),
               ("data.tar.xz", _tar_xz(files))]
    out = b"!<arch>\n"
    for name, data in members:
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n".encode() + data
        out += b"\n" if len(data) % 2 else b""
    return out


@pytest.fixture(scope="module")
def debs(tmp_path_factory):
    d = tmp_path_factory.mktemp("debs")
    sh = _deb({"usr/share/sweethome3d/furniture/Test.sh3f": _sh3f(),
               "usr/share/doc/sweethome3d-furniture/copyright": b"Files: *\nLicense: CC-BY-3.0\n",
               "usr/share/sweethome3d/other.txt": b"not kept"})
    fg = _deb({"usr/share/games/flightgear/Models/Buildings/nested.ac": NESTED_AC.encode(),
               "usr/share/games/flightgear/Models/Geometry/sprite.ac": SPRITE_AC.encode(),
               "usr/share/games/flightgear/Models/Weather/cloud.ac": NESTED_AC.encode(),
               "usr/share/doc/flightgear-data-models/copyright": FG_COPYRIGHT.encode()})
    srcs = {}
    for name, data in (("sweethome3d", sh), ("flightgear", fg)):
        src = dataclasses.replace(SOURCES[name], filename=f"fake-{name}.deb", aliases=(),
                                  sha256=hashlib.sha256(data).hexdigest(), size=len(data))
        (d / src.filename).write_bytes(data)
        srcs[name] = src
    return d, srcs


@pytest.fixture(scope="module")
def corpus(debs, tmp_path_factory):
    d, srcs = debs
    root = tmp_path_factory.mktemp("corpus")
    fetch([srcs["sweethome3d"], srcs["flightgear"]], cache=root, from_dir=d, log=lambda s: None)
    return root


# ------------------------------------------------------------------------------------ parsers


def test_properties_latin1_escapes_continuations():
    p = parse_properties(CATALOG.encode("latin-1"))
    assert p["name#1"] == "Café table €"
    assert p["tags#1"] == "Blend Swap, Table"
    assert p["creator#1"] == "Someöne"
    assert "# a catalogue" not in "".join(p)
    q = parse_properties("a : 1\nb 2\nc=x\\\\\nd\\=e=3\n! comment\n")
    assert q == {"a": "1", "b": "2", "c": "x\\", "d=e": "3"}


def test_pack_licence():
    assert pack_licence(CC0) == "CC0-1.0"
    assert pack_licence("under the Creative Commons Attribution 3.0 Unported license") == "CC-BY-3.0"
    assert pack_licence("Creative Commons Attribution 3.0\nUnited States license") == "CC-BY-3.0-US"


def test_place_rotates_then_scales_to_catalogue_size_z_up():
    # an apex along the file's +z; the rotation (p' = R p, rows given) turns it to +y (up in the file)
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 2]], float)
    r = np.array([1, 0, 0, 0, 0, 1, 0, -1, 0], float)
    out = place(v, 100, 100, 100, r)
    np.testing.assert_allclose(out[3], [-0.5, -0.5, 1.0], atol=1e-12)  # apex on top (z up), metres
    np.testing.assert_allclose(out.min(0), [-0.5, -0.5, 0.0], atol=1e-12)
    plain = place(v, 100, 100, 100)  # without the rotation the apex points to the front (-y)
    assert plain[3, 1] == pytest.approx(-0.5) and plain[3, 2] == pytest.approx(0.0)
    w = place(v, 80, 30, 120)  # width x, depth -> y, height -> z
    np.testing.assert_allclose(w.max(0) - w.min(0), [0.8, 0.3, 1.2], atol=1e-12)


def test_ac3d_nested_transforms_lines_and_data():
    v, f = read_ac3d(NESTED_AC)
    # quad: rot rows (0 0 -1; 0 1 0; 1 0 0), row vectors: (x, y, z) -> (z, y, -x); then + (0 5 0) + (10 0 0)
    np.testing.assert_allclose(v[:5], [[10, 5, 0], [10, 5, -1], [10, 6, -1], [10, 6, 0], [17, 5, 0]])
    assert f[:2].tolist() == [[0, 1, 2], [0, 2, 3]]  # a fan; the line surface made no triangle
    np.testing.assert_allclose(v[5:], [[10, 0, 0], [11, 0, 0], [10, 1, 0], [10, 0, 1]])  # loc of the group only
    assert len(f) == 6 and f[2:].min() == 5
    # a file cut where more kids were announced keeps the complete objects
    cut = NESTED_AC[:NESTED_AC.index('OBJECT poly\nname "box"')]
    v2, f2 = read_ac3d(cut)
    assert len(f2) == 2
    with pytest.raises(MeshRejected, match="AC3D header"):
        read_ac3d("OBJECT world\n")
    with pytest.raises(MeshRejected, match="no polygons"):
        read_ac3d("AC3Db\nOBJECT world\nkids 0\n")


def test_clean_rejects_degenerate():
    with pytest.raises(MeshRejected, match="no faces"):
        clean(np.zeros((3, 3)), np.zeros((0, 3)))
    with pytest.raises(MeshRejected, match="degenerate"):
        clean(np.eye(3), [[0, 0, 1]])
    with pytest.raises(MeshRejected, match="one plane"):
        clean([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], [[0, 1, 2], [1, 3, 2]])
    with pytest.raises(MeshRejected, match="non-finite"):
        clean([[0, 0, 0], [1, 0, 0], [0, np.nan, 1]], [[0, 1, 2]])
    v, f = clean([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [5, 5, 5]], [[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]])
    assert v.dtype == np.float32 and f.dtype == np.int32 and len(v) == 4  # unused vertex dropped


# ------------------------------------------------------------------------------------ fetch + index


def test_fetch_builds_index_and_meshes(corpus):
    idx = load_index(corpus)
    ids = [o["id"] for o in idx["objects"]]
    assert ids == sorted(ids)
    assert ids == ["flightgear/Buildings/nested", "sweethome3d/Test/Test#box", "sweethome3d/Test/Test#turned"]
    by = {o["id"]: o for o in idx["objects"]}
    box = by["sweethome3d/Test/Test#box"]
    assert box["name"] == "Café table €" and box["category"] == "living room"
    assert box["tags"] == ["Blend Swap", "Table"] and box["licence"] == "CC0-1.0" and box["creator"] == "Someöne"
    assert box["n_faces"] == 12 and box["n_vertices"] == 8  # multi-part OBJ: both parts, quads split
    v, f = load_mesh(box, idx)
    np.testing.assert_allclose(v.max(0) - v.min(0), [1.0, 0.5, 0.75], rtol=1e-6)  # w, d, h in metres, z up
    assert load_mesh("sweethome3d/Test/Test#turned", idx)[0].shape == (8, 3)
    fg = by["flightgear/Buildings/nested"]
    assert fg["licence"] == "GPL-2+" and fg["category"] == "buildings"
    assert fg["creator"].startswith("1999-2017 Someone")
    v, _ = load_mesh(fg, idx)
    # the vertex only a line surface used is dropped; y up -> z up: (x, y, z) -> (x, -z, y)
    np.testing.assert_allclose(v.max(0) - v.min(0), [1, 2, 6], atol=1e-6)
    for o in idx["objects"]:
        assert o["split"] == split_of(o["id"])
        assert (Path(corpus) / o["file"]).is_file()
    skipped = {s["id"]: s["reason"] for src in idx["sources"].values() for s in src["skipped"]}
    assert skipped == {"sweethome3d/Test/Test#empty": "no faces", "flightgear/Geometry/sprite": "flat: all vertices in one plane"}
    assert idx["sources"]["sweethome3d"]["n_objects"] == 2 and idx["sources"]["flightgear"]["n_skipped"] == 1
    assert not (Path(corpus) / "raw" / "sweethome3d" / "usr/share/sweethome3d/other.txt").exists()  # only Source.keep


def test_refetch_uses_the_kept_archive_and_keeps_other_sources(debs, tmp_path):
    d, srcs = debs
    fetch([srcs["sweethome3d"]], cache=tmp_path, from_dir=d, log=lambda s: None)
    first = load_index(tmp_path)["objects"]
    fetch([srcs["flightgear"]], cache=tmp_path, from_dir=d, log=lambda s: None)
    # no --from: the archive kept in downloads/ is checked and reused, nothing is downloaded, and
    # the meshes made from it by the same reader are reused
    logs: list[str] = []
    fetch([srcs["sweethome3d"]], cache=tmp_path, log=logs.append)
    assert any("meshes up to date (2 objects)" in line for line in logs)
    idx = load_index(tmp_path)
    assert set(idx["sources"]) == {"sweethome3d", "flightgear"}
    assert [o for o in idx["objects"] if o["source"] == "sweethome3d"] == first
    logs.clear()
    fetch([srcs["sweethome3d"]], cache=tmp_path, log=logs.append, force=True)
    assert not any("up to date" in line for line in logs) and any("2 objects kept" in line for line in logs)
    assert [o for o in load_index(tmp_path)["objects"] if o["source"] == "sweethome3d"] == first


def test_pybullet_wheel_stand_in(tmp_path):
    tetra = "v 0 0 0\nv 2 0 0\nv 0 4 0\nv 0 0 6\nf 1 3 2\nf 1 2 4\nf 1 4 3\nf 2 3 4\n"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("pybullet/__init__.py", "")
        z.writestr("pybullet-3.2.7.dist-info/METADATA", "Name: pybullet\nLicense: zlib\n")
        z.writestr("pybullet_data/random_urdfs/7/7.obj", tetra)
        z.writestr("pybullet_data/random_urdfs/7/7.urdf", '<robot><mesh filename="7.obj" scale="0.5 0.5 0.5"/></robot>')
        z.writestr("pybullet_data/random_urdfs/12/12.obj", tetra.replace("v 0 0 6", "v 0 0 nan"))
    data = buf.getvalue()
    src = dataclasses.replace(SOURCES["pybullet"], filename="fake.whl", sha256=hashlib.sha256(data).hexdigest())
    (tmp_path / "fake.whl").write_bytes(data)
    fetch([src], cache=tmp_path / "c", from_dir=tmp_path, log=lambda s: None)
    idx = load_index(tmp_path / "c")
    (o,) = idx["objects"]
    assert o["id"] == "pybullet/random_urdfs/7" and o["licence"] == "zlib" and o["category"] == "random"
    np.testing.assert_allclose(load_mesh(o, idx)[0].max(0), [1, 2, 3])  # the URDF's scale
    assert idx["sources"]["pybullet"]["skipped"] == [{"id": "pybullet/random_urdfs/12", "reason": "non-finite vertices"}]
    assert not (tmp_path / "c" / "raw" / "pybullet" / "pybullet" / "__init__.py").exists()


def test_sha256_mismatch_is_refused_and_leaves_nothing(debs, tmp_path):
    d, srcs = debs
    bad = dataclasses.replace(srcs["sweethome3d"], sha256="0" * 64)
    with pytest.raises(UserError) as e:
        fetch([bad], cache=tmp_path, from_dir=d, log=lambda s: None)
    assert "sha256 mismatch" in str(e.value) and "\n" not in str(e.value)
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file() or p.name.startswith(".")]
    assert leftovers == []
    assert not (tmp_path / "index.json").exists()


def test_cli_fetch_errors_exit_2_with_one_line(tmp_path):
    # the real pinned source, offered a file of the right name and the wrong content: no network
    src = SOURCES["sweethome3d"]
    offered = tmp_path / "from"
    offered.mkdir()
    (offered / src.filename).write_bytes(b"not the package")
    cache = tmp_path / "cache"
    cmd = [sys.executable, "-m", "squeeze3d", "corpus", "fetch", "--sources", "sweethome3d",
           "--from", str(offered), "--cache", str(cache)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().count("\n") == 0 and "sha256 mismatch" in r.stderr
    assert not (cache / "downloads" / src.filename).exists() and not list((cache / "downloads").iterdir())
    r = subprocess.run(cmd[:6] + ["nosuch"] + cmd[7:], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown corpus source 'nosuch'" in r.stderr
    r = subprocess.run([sys.executable, "-m", "squeeze3d", "corpus", "info", "--cache", str(tmp_path / "none")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "squeeze3d corpus fetch" in r.stderr


def test_cli_info_counts(corpus):
    r = subprocess.run([sys.executable, "-m", "squeeze3d", "corpus", "info", "--cache", str(corpus), "--skipped"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "3 objects" in r.stdout and "kept 2, skipped 1" in r.stdout
    assert "skipped flightgear/Geometry/sprite: flat" in r.stdout


def test_split_fixed_by_id():
    # pinned values: the rule must never change, or trained models would have seen test objects
    assert split_of("sweethome3d/Scopia/Scopia#bed1") == "val"
    assert split_of("flightgear/Buildings/water-tower") == "train"
    assert [split_of(f"obj{i}") for i in range(15)] == [
        "train", "train", "train", "val", "train", "train", "test", "train", "train", "train",
        "train", "train", "val", "test", "test"]
    counts = {s: 0 for s in ("train", "val", "test")}
    for i in range(20000):
        counts[split_of(f"source/pack/object{i}")] += 1
    assert abs(counts["train"] / 20000 - 0.8) < 0.02
    assert abs(counts["val"] / 20000 - 0.1) < 0.01 and abs(counts["test"] / 20000 - 0.1) < 0.01


# ------------------------------------------------------------------------------------ points


def test_sample_points_area_weighted():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [10, 0, 0], [13, 0, 0], [10, 2, 0]], float)
    f = np.array([[0, 1, 2], [3, 4, 5]])  # areas 0.5 and 3
    p = sample_points((v, f), 7000, seed=3)
    assert p.shape == (7000, 3) and p.dtype == np.float32
    share = (p[:, 0] >= 10).mean()
    assert abs(share - 3 / 3.5) < 0.02
    assert np.array_equal(p, sample_points((v, f), 7000, seed=3))
    inside = p[p[:, 0] < 10]
    assert (inside[:, 0] + inside[:, 1] <= 1 + 1e-6).all() and (inside >= -1e-6).all()


def test_point_cache_shapes_normalisation_determinism(corpus):
    idx = load_index(corpus)
    all_ids = [o["id"] for o in idx["objects"]]
    arrs = {}
    for split in ("train", "val", "test"):
        a, ids = point_cache(split, n_points=256, views=3, seed=5, root=corpus, return_ids=True)
        assert ids == [o["id"] for o in select(idx, split)]
        assert a.shape == (len(ids), 3, 256, 3) and a.dtype == np.float32
        if len(ids):
            r = np.linalg.norm(a, axis=-1).max(axis=-1)
            np.testing.assert_allclose(r, 1.0, rtol=1e-5)
            centre = (a.max(axis=2) + a.min(axis=2)) / 2
            np.testing.assert_allclose(centre, 0.0, atol=1e-5)
            assert not np.allclose(a[:, 0], a[:, 1])  # views are independent samplings
        arrs.update(zip(ids, a))
    assert sorted(arrs) == all_ids
    # cached: the same array comes back; the cache file is keyed by the arguments
    again = point_cache("train", n_points=256, views=3, seed=5, root=corpus)
    assert np.array_equal(again, np.stack([arrs[o["id"]] for o in select(idx, "train")]))
    files = sorted((Path(corpus) / "points").glob("*.npy"))
    assert len(files) == 3
    # an object's samples depend on its id, seed and view only
    oid = all_ids[0]
    mesh = load_mesh(oid, idx)
    np.testing.assert_array_equal(object_views(mesh, oid, 256, 3, 5), arrs[oid])
    assert not np.allclose(object_views(mesh, oid, 256, 3, 6), arrs[oid])


def test_point_cache_augment(corpus):
    idx = load_index(corpus)
    oid = "sweethome3d/Test/Test#box"
    mesh = load_mesh(oid, idx)
    plain = object_views(mesh, oid, 512, 4, 0)
    aug = object_views(mesh, oid, 512, 4, 0, Augment(rotate_up=True, tilt_deg=10, scale_range=(0.7, 1.3)))
    assert aug.shape == plain.shape and np.isfinite(aug).all()
    np.testing.assert_allclose(np.linalg.norm(aug, axis=-1).max(-1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(aug, object_views(mesh, oid, 512, 4, 0, Augment(tilt_deg=10)))  # deterministic
    ext = aug.max(1) - aug.min(1)
    assert ext.std(0).max() > 0.02  # views differ in proportions (scale) and heading (rotation)
    # rotation about z only keeps heights: the box's vertical extent relative to its radius is unchanged
    rot_only = object_views(mesh, oid, 512, 4, 0, Augment(rotate_up=True, tilt_deg=0, scale_range=None))
    z_ext = rot_only[..., 2].max(-1) - rot_only[..., 2].min(-1)
    np.testing.assert_allclose(z_ext, z_ext[0], rtol=0.05)
    a = point_cache("train", n_points=128, views=2, seed=0, augment=True, root=corpus)
    b = point_cache("train", n_points=128, views=2, seed=0, augment=None, root=corpus)
    assert a.shape == b.shape and not np.allclose(a, b)


def test_index_json_is_plain_json(corpus):
    doc = json.loads((Path(corpus) / "index.json").read_text(encoding="utf-8"))
    assert doc["up_axis"] == "z" and doc["units"] == "metres" and doc["version"] == 1


def test_a_missing_package_is_one_line_naming_the_client_command_and_the_folder(tmp_path, monkeypatch):
    from squeeze3d.errors import UserError
    from squeeze3d.realcorpus import fetch
    from squeeze3d.realcorpus.sources import SOURCES

    src = SOURCES["sweethome3d"]
    (tmp_path / "from").mkdir()
    with pytest.raises(UserError) as e:
        fetch.obtain_archive(src, tmp_path / "cache", from_dir=tmp_path / "from", log=lambda m: None)
    msg = str(e.value)
    assert "\n" not in msg and f"apt-get download {src.package}={src.version}" in msg and "--from DIR" in msg
    monkeypatch.setattr(fetch.shutil, "which", lambda name: None)
    with pytest.raises(UserError, match="lacks.*apt-get download sweethome3d-furniture=1.8-1.*--from DIR"):
        fetch.obtain_archive(src, tmp_path / "cache", log=lambda m: None)


def test_sources_name_no_archive_host():
    import dataclasses

    from squeeze3d.realcorpus.sources import SOURCES, Source

    assert "url" not in {f.name for f in dataclasses.fields(Source)}
    for s in SOURCES.values():
        assert "http" not in repr(s)
