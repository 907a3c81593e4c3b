"""Where the state folder (registry, caches) is: not wherever the command happens to run. The
variable wins; then the enclosing Squeeze3D checkout; then the folder the environment names (``make
setup``); then the XDG data folder. The codec says which model and registry it used."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

import squeeze3d
from squeeze3d import tracking

PYPROJECT = '[project]\nname = "squeeze3d"\nversion = "0"\n'


def _checkout(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(PYPROJECT)
    return root


def test_the_variable_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("SQUEEZE3D_STATE_DIR", str(tmp_path / "mine"))
    monkeypatch.chdir(_checkout(tmp_path / "proj"))
    assert tracking.state_dir() == (tmp_path / "mine").resolve()


def test_the_enclosing_checkout_from_any_subfolder(tmp_path, monkeypatch):
    monkeypatch.delenv("SQUEEZE3D_STATE_DIR", raising=False)
    proj = _checkout(tmp_path / "proj")
    deep = proj / "scans" / "2026"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert tracking.state_dir() == proj.resolve() / ".state"
    # another project's pyproject.toml is not ours
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "pyproject.toml").write_text('[project]\nname = "squeeze3d-plugin"\n')
    monkeypatch.chdir(other)
    assert tracking.state_dir() != other.resolve() / ".state"


def test_outside_any_checkout_the_environments_state_then_xdg(tmp_path, monkeypatch):
    monkeypatch.delenv("SQUEEZE3D_STATE_DIR", raising=False)
    outside = tmp_path / "home" / "scans"
    outside.mkdir(parents=True)
    monkeypatch.chdir(outside)
    # `make setup` names the checkout's state folder in the environment (sys.prefix)
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "venv"))
    marker = tracking.environment_state_file()
    assert marker == tmp_path / "venv" / "etc" / "squeeze3d" / "state_dir"
    marker.parent.mkdir(parents=True)
    marker.write_text(str(tmp_path / "proj" / ".state") + "\n")
    assert tracking.state_dir() == (tmp_path / "proj").resolve() / ".state"
    # an installed wheel (no checkout around the working directory, nothing named): the XDG data folder
    marker.unlink()
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert tracking.state_dir() == (tmp_path / "xdg").resolve() / "squeeze3d"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert tracking.state_dir() == (tmp_path / "home").resolve() / ".local" / "share" / "squeeze3d"


def test_the_library_does_not_look_for_its_source_checkout(tmp_path, monkeypatch):
    """Outside a checkout, where the package's files lie says nothing about the state folder."""
    monkeypatch.delenv("SQUEEZE3D_STATE_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "venv"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    checkout = Path(squeeze3d.__file__).resolve().parents[2]
    assert tracking.state_dir() == (tmp_path / "xdg").resolve() / "squeeze3d" != checkout / ".state"


def test_printed_uris_hide_passwords():
    assert tracking.display_uri("https://bob:s3cret@mlflow.example:5000/x") == "https://bob:***@mlflow.example:5000/x"
    assert tracking.display_uri("sqlite:////a/.state/mlflow.db") == "sqlite:////a/.state/mlflow.db"


def test_compress_from_a_subfolder_uses_and_names_the_projects_state(tmp_path):
    """The issue's case: the project's state, not ``<cwd>/.state``, and a line saying which model."""
    proj = _checkout(tmp_path / "proj")
    scans = proj / "scans"
    scans.mkdir()
    np.save(scans / "cloud.npy", np.random.default_rng(0).normal(size=(3000, 3)))
    env = {k: v for k, v in os.environ.items() if k not in ("SQUEEZE3D_STATE_DIR", "MLFLOW_TRACKING_URI")}
    env["SQUEEZE3D_NO_SERVER"] = "1"
    r = subprocess.run([sys.executable, "-m", "squeeze3d", "compress", "cloud.npy", "-o", "cloud.sq3d", "--pair",
                        "pointnet_lion", "--min-quality", "off"], cwd=scans, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("squeeze3d: model:")]
    assert len(lines) == 1, r.stderr
    assert "the shipped pointnet_lion model" in lines[0] and str(proj / ".state" / "mlflow.db") in lines[0]
    assert not (scans / ".state").exists()
