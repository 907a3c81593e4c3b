"""The Python API (``squeeze3d.compress`` / ``decompress`` / ``load_codec``): the example in docs/codec.md runs
as written, ``import squeeze3d`` stays light, and paths and codecs work as documented."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

README = Path(__file__).resolve().parents[2] / "docs" / "codec.md"  # the codec page holds the API example


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from squeeze3d.config import train_config_for_pair
    from squeeze3d.mapping import build_mapping
    from squeeze3d.mapping.checkpoint import save_checkpoint
    from squeeze3d.pairs import get_pair

    cfg = train_config_for_pair("debug")
    torch.manual_seed(0)
    p = get_pair("debug")
    f_e, f_d = build_mapping(cfg.mapping, p.z_e_shape, p.z_g_shape)
    return str(save_checkpoint(tmp_path_factory.mktemp("ck") / "a", f_e, f_d, cfg))


def test_readme_example_runs(checkpoint):
    text = README.read_text()
    section = text[text.index("From Python (`squeeze3d/api.py`"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    exec(compile(code, "docs/codec.md", "exec"), {"CHECKPOINT": checkpoint})


def test_paths_and_codec(checkpoint, tmp_path):
    import squeeze3d
    from squeeze3d.io import write_points

    pts = np.random.default_rng(1).normal(size=(400, 3)).astype(np.float32) * 5 + 100
    src = write_points(tmp_path / "c.ply", pts)
    data = squeeze3d.compress(src, pair="debug", model=checkpoint, min_quality=None)
    (tmp_path / "c.sq3d").write_bytes(data)
    a = squeeze3d.decompress(tmp_path / "c.sq3d", model=checkpoint)
    codec = squeeze3d.load_codec("debug", model=checkpoint)
    b = squeeze3d.decompress(data, codec=codec)
    assert a.shape == (256, 3) and np.allclose(a, b)
    assert abs(float(a.mean()) - 100) < 20  # back in the input's frame
    with pytest.raises(AttributeError):
        squeeze3d.no_such_thing  # noqa: B018


def test_import_is_light():
    code = "import sys, squeeze3d; print(sorted({'torch', 'mlflow', 'ray'} & {m.split('.')[0] for m in sys.modules}))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stderr
