"""The shipped nerfmae champion: a fresh checkout compresses held-out radiance grids with it (no
registry, no training) into files of at most 300 bytes, decodes them by the header's hash, and the
neural code is clearly better than decoding another object's code."""

import numpy as np
import pytest

from squeeze3d.codec.compressor import clear_cache, compress_asset
from squeeze3d.codec.container import unpack
from squeeze3d.codec.decompress import decompress_bytes
from squeeze3d.codec.models import shipped

pytestmark = pytest.mark.integration


def test_fresh_checkout_compresses_radiance_fields_with_the_shipped_model(tmp_path, monkeypatch):
    import torch

    from squeeze3d.metrics.volume import radiance_metrics
    from squeeze3d.pairs import get_pair

    monkeypatch.setenv("SQUEEZE3D_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    clear_cache()
    pair = get_pair("nerfmae")
    s = shipped(pair)
    assert s is not None, "the nerfmae champion must ship with the package"
    grids = pair.heldout_assets(4)
    outs, sizes = [], []
    for g in grids:
        res = compress_asset(g.numpy(), pair="nerfmae", min_quality=None)  # the model's own code, unmeasured
        c = unpack(res.data)
        assert c.version == 2 and c.codec == "neural" and s.weights_hash.startswith(c.model_hash)
        out = decompress_bytes(res.data).data  # model found by the header's hash
        assert out.shape == (4, 32, 32, 32)
        outs.append(out)
        sizes.append(res.nbytes)
    assert max(sizes) <= 300
    rec = torch.from_numpy(np.stack(outs))
    m = radiance_metrics(grids, rec)["psnr"]
    wrong = radiance_metrics(grids, rec.roll(1, 0))["psnr"]
    assert float(m.mean()) > float(wrong.mean()) + 3, (m, wrong)
    assert not (tmp_path / "state" / "mlflow.db").exists()
    clear_cache()
