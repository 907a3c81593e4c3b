"""The package installed from a wheel, run from a folder outside the checkout: it must find
everything it ships (pair files, prompt vocabularies, the builder's defaults, the mini zoo's weights,
the shipped mapping models) through the package itself, never through the source tree.

The wheel goes into a fresh venv whose only link to the project's environment is a ``.pth`` file
naming that environment's site-packages (its dependencies, not its editable squeeze3d): the
squeeze3d that runs is the wheel's, which the test checks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import venv
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _run(cmd, cwd, env, timeout=600) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{cmd} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    root = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INDEX="1", OMP_NUM_THREADS="1")
    # built from a copy of what the sdist holds, so the build leaves nothing in the checkout; the
    # project's setuptools builds it (no build isolation: nothing is downloaded)
    src = root / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "platform", src / "platform",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    _run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q",
          "-w", str(root / "dist")], cwd=root, env=env)
    wheel = next((root / "dist").glob("squeeze3d-*.whl"))
    target = root / "venv"
    venv.EnvBuilder(with_pip=False).create(target)
    py = target / "bin" / "python"
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=root, env=env).stdout.strip())
    (site / "_project_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([str(py), "-m", "pip", "install", "--no-deps", "-q", str(wheel)], cwd=root, env=env)
    work = root / "elsewhere"
    work.mkdir()
    env.update(SQUEEZE3D_STATE_DIR=str(root / "state"), XDG_CONFIG_HOME=str(root / "config"),
               XDG_DATA_HOME=str(root / "data"), MLFLOW_TRACKING_URI="", HOME=str(root))
    env.pop("MLFLOW_TRACKING_URI")
    return py, target, work, env


def test_the_wheel_runs_outside_the_checkout(installed):
    py, target, work, env = installed
    where = _run([str(py), "-c", "import squeeze3d; print(squeeze3d.__file__)"], cwd=work, env=env).stdout
    assert where.strip().startswith(str(target)), where

    pairs = _run([str(target / "bin" / "squeeze3d"), "pairs"], cwd=work, env=env).stdout
    assert "pointnet_lion" in pairs and "debug_yaml" in pairs, pairs

    rng = np.random.default_rng(0)
    cloud = rng.normal(size=(2048, 3)).astype(np.float32)
    np.save(work / "cloud.npy", cloud / np.linalg.norm(cloud, axis=1, keepdims=True))
    _run([str(target / "bin" / "squeeze3d"), "compress", "cloud.npy", "-o", "cloud.sq3d", "--no-server"],
         cwd=work, env=env)
    assert (work / "cloud.sq3d").stat().st_size > 0

    script = textwrap.dedent("""
        from squeeze3d.prompts.topics import load_topics
        from squeeze3d.synth.build import build_dataset, defaults_file, resolve_config
        assert load_topics().categories
        # the builder's per-pair defaults ship with the package
        assert defaults_file("debug") is not None and resolve_config("debug").shard_rows == 2048
        s = build_dataset("debug", num_samples=16, output="data_debug", seed=0, shard_rows=8)
        print("rows", s.rows)
    """)
    out = _run([str(py), "-c", script], cwd=work, env=env, timeout=900).stdout
    assert "rows 16" in out, out
