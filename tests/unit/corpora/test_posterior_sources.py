"""pointnet_lion's real-object training pairs: G's posterior of augmented train-split objects of the
real corpus (a small generated stand-in corpus here: no download), mixed in by ``real_share``."""

import numpy as np
import pytest
import torch

from squeeze3d.corpora import posterior as src
from squeeze3d.realcorpus.index import mesh_file_for, split_of, write_index
from squeeze3d.realcorpus.meshes import save_mesh


def _box(sx, sy, sz):
    v = np.array([[x, y, z] for x in (0, sx) for y in (0, sy) for z in (0, sz)], np.float32)
    f = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                  [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
    return v, f


@pytest.fixture()
def stand_in_corpus(tmp_path, monkeypatch):
    objects, i = [], 0
    while len([o for o in objects if o["split"] == "train"]) < 3 or not any(o["split"] != "train" for o in objects):
        oid = f"sweethome3d/standin/box{i}"
        v, f = _box(1.0 + i, 0.5, 0.2 + 0.1 * i)
        save_mesh(tmp_path / mesh_file_for(oid), v, f)
        objects.append({"id": oid, "source": "sweethome3d", "name": f"box {i}", "category": "box", "licence": "CC0-1.0",
                        "creator": "test", "file": mesh_file_for(oid), "n_vertices": 8, "n_faces": 12,
                        "split": split_of(oid)})
        i += 1
    write_index(tmp_path, {"sweethome3d": {"package": "none"}}, objects)
    monkeypatch.setenv("SQUEEZE3D_CORPUS_DIR", str(tmp_path))
    src._real_train.cache_clear()
    yield objects
    src._real_train.cache_clear()


def test_augment_is_deterministic_normalised_and_varied():
    pts = np.random.default_rng(0).normal(size=(256, 3))
    a = src.augment(pts, np.random.default_rng(1))
    b = src.augment(pts, np.random.default_rng(1))
    c = src.augment(pts, np.random.default_rng(2))
    assert np.array_equal(a, b) and not np.allclose(a, c)
    assert abs(np.linalg.norm(a, axis=1).max() - 1.0) < 1e-5
    r = src.random_rotation(np.random.default_rng(3))
    assert np.allclose(r @ r.T, np.eye(3), atol=1e-9) and np.linalg.det(r) > 0


def test_real_cloud_draws_train_objects_only(stand_in_corpus):
    clouds, ident = src._real_train(128, 2)
    n_train = sum(o["split"] == "train" for o in stand_in_corpus)
    assert clouds.shape == (n_train, 2, 128, 3) and len(ident) == 16
    x = src.real_cloud(11, 128, views=2)
    assert x.shape == (128, 3) and x.dtype == np.float32
    assert np.array_equal(x, src.real_cloud(11, 128, views=2))


def test_lion_generator_mixes_real_posteriors(stand_in_corpus):
    from squeeze3d.pairs import get_pair

    spec = get_pair("pointnet_lion")
    plain = spec.build_generator("cpu")
    mixed = spec.build_generator("cpu", posterior_mix=1.0, real_share=1.0)
    assert plain.settings() == {} and mixed.settings()["real_share"] == 1.0
    assert plain.weights_hash() != mixed.weights_hash()  # shards of other settings are never reused
    assert mixed.uses_real(5) and mixed.uses_posterior(5)
    z, x = mixed.sample([5])
    z2, _ = mixed.sample([5])
    assert z.shape == (1, spec.z_g_shape[0]) and torch.equal(z, z2)
    want = mixed.encode_latents(torch.from_numpy(src.real_cloud(5, 2048))[None])
    assert torch.equal(z.cpu(), want.cpu())
    with pytest.raises(ValueError, match="real_share"):
        spec.build_generator("cpu", real_share=1.5)
