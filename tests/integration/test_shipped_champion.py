"""The shipped pointnet_lion champion: a fresh checkout compresses real shapes with it (no registry,
no training), beats Draco's 3-bit quality in fewer bytes, and `register_shipped` (what `make demo`
does) puts it in an empty registry as the champion that the codec then resolves."""

import numpy as np
import pytest

from squeeze3d.baselines import draco
from squeeze3d.codec.compressor import clear_cache, compress_points
from squeeze3d.codec.container import unpack
from squeeze3d.codec.decompress import decompress_bytes
from squeeze3d.codec.models import shipped

pytestmark = pytest.mark.integration


def _test_shapes(n):
    from squeeze3d.corpora import points as corpus

    idx = corpus.split_indices("test", 12 * 10 * 2)[:n]
    return [corpus.make_shape(corpus.DEFAULT_SEED, int(i), 2048).points * 5.0 + 1.0 for i in idx]


def test_fresh_checkout_uses_the_shipped_model_and_beats_draco_3bit(tmp_path, monkeypatch):
    from squeeze3d.pairs import get_pair

    monkeypatch.setenv("SQUEEZE3D_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    clear_cache()
    s = shipped(get_pair("pointnet_lion"))
    assert s is not None, "the pointnet_lion champion must ship with the package"
    ours, theirs, sizes, dsizes = [], [], [], []
    for pts in _test_shapes(8):
        res = compress_points(pts, min_quality=None)  # the model's 8-bit code, unmeasured
        c = unpack(res.data)
        assert c.codec == "neural" and c.dtype in ("fixed", "entropy") and s.weights_hash.startswith(c.model_hash)
        out = decompress_bytes(res.data).data  # model found by the header's hash
        ours.append(draco.psnr(pts, out))
        sizes.append(res.nbytes)
        blob = draco.encode_points(pts, 3)
        theirs.append(draco.psnr(pts, draco.decode_points(blob)))
        dsizes.append(len(blob))
    assert max(sizes) <= 250 and np.mean(sizes) < np.mean(dsizes)
    assert np.mean(ours) > np.mean(theirs), (np.mean(ours), np.mean(theirs))
    assert not (tmp_path / "state" / "mlflow.db").exists()


def test_register_shipped_makes_it_the_champion(tmp_path, monkeypatch):
    from squeeze3d import registry
    from squeeze3d.pairs import get_pair
    from squeeze3d.train.champion import register_shipped

    monkeypatch.setenv("SQUEEZE3D_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    clear_cache()
    info, promoted, _ = register_shipped("pointnet_lion", log=lambda m: None)
    assert promoted and info.version == "1"
    champ = registry.champion("pointnet_lion")
    want = shipped(get_pair("pointnet_lion")).weights_hash
    assert champ is not None and champ.tags["weights_hash"] == want and float(champ.tags["test_d1_psnr"]) > 25
    res = compress_points(_test_shapes(1)[0], min_quality=None)  # registry configured now: the champion
    assert unpack(res.data).matches_weights(want)
    assert registry.resolve_model(None, "pointnet_lion").weights_hash == want
    clear_cache()


def test_the_champion_is_remembered_until_the_registry_changes(tmp_path, monkeypatch):
    """After one lookup the codec finds the champion without the registry (no mlflow import); a
    registration (the local store changes) makes it ask again."""
    import json
    import subprocess
    import sys

    from squeeze3d.codec import models
    from squeeze3d.pairs import get_pair
    from squeeze3d.train.champion import register_shipped

    state = tmp_path / "state"
    monkeypatch.setenv("SQUEEZE3D_STATE_DIR", str(state))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    clear_cache()
    register_shipped("pointnet_lion", log=lambda m: None)
    pair = get_pair("pointnet_lion")
    first = models.resolve_default(pair)
    assert first.version == "1" and (state / "cache" / "champion-pointnet_lion.json").is_file()
    code = ("import sys, json\nfrom squeeze3d.codec.models import resolve_default\nfrom squeeze3d.pairs import get_pair\n"
            "r = resolve_default(get_pair('pointnet_lion'))\n"
            "print(json.dumps([r.version, r.weights_hash, 'mlflow' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], env={**__import__("os").environ, "SQUEEZE3D_STATE_DIR": str(state)},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == ["1", first.weights_hash, False]
    register_shipped("pointnet_lion", log=lambda m: None)  # version 2: the store changed
    assert models._cached_champion(pair) is None
    assert models.resolve_default(pair).version in ("1", "2")
    assert models._cached_champion(pair) is not None
    clear_cache()


def test_a_command_in_a_subfolder_finds_the_projects_champion(tmp_path, monkeypatch):
    """`make demo` registers in <project>/.state; compress run from a folder inside the project (no
    SQUEEZE3D_STATE_DIR) uses that champion and says so, naming the registry."""
    import os
    import subprocess
    import sys

    from squeeze3d.train.champion import register_shipped

    proj = tmp_path / "proj"
    (proj / "scans").mkdir(parents=True)
    (proj / "pyproject.toml").write_text('[project]\nname = "squeeze3d"\n')
    monkeypatch.setenv("SQUEEZE3D_STATE_DIR", str(proj / ".state"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    clear_cache()
    register_shipped("pointnet_lion", log=lambda m: None)
    clear_cache()
    np.save(proj / "scans" / "shape.npy", _test_shapes(1)[0])
    env = {k: v for k, v in os.environ.items() if k not in ("SQUEEZE3D_STATE_DIR", "MLFLOW_TRACKING_URI")}
    r = subprocess.run([sys.executable, "-m", "squeeze3d", "compress", "shape.npy", "-o", "shape.sq3d", "--pair",
                        "pointnet_lion", "--min-quality", "off"], cwd=proj / "scans", capture_output=True, text=True,
                       env={**env, "SQUEEZE3D_NO_SERVER": "1"}, timeout=300)
    assert r.returncode == 0, r.stderr
    line = [ln for ln in r.stderr.splitlines() if ln.startswith("squeeze3d: model:")]
    assert line == [f"squeeze3d: model: models:/squeeze3d-pointnet_lion@champion, version 1 "
                    f"(sqlite:///{proj.resolve() / '.state' / 'mlflow.db'})"], r.stderr
