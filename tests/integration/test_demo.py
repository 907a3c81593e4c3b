"""The platform demo end to end on the debug pair: Ray Data build → Ray Train → MLflow registry →
champion lookup → codec evaluation against Draco."""

from pathlib import Path

import pytest

from squeeze3d.demo import run_platform_demo

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_platform_demo_debug(ray_session, tmp_path, monkeypatch):
    monkeypatch.setenv("SQUEEZE3D_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    lines = []
    rep = run_platform_demo("debug", num_samples=240, epochs=2, d_code=8, eval_limit=3, out_dir=tmp_path / "demo",
                            log=lines.append)
    assert rep.model_version == "1"
    assert (Path(rep.dataset) / "manifest.json").is_file()
    assert "draco" in rep.eval_markdown.lower() and "sq3d" in rep.eval_markdown.lower()
    for key in ("table", "csv", "rate_distortion"):
        assert Path(rep.eval_paths[key]).is_file(), key
    assert any("champion: models:/squeeze3d-debug/1" in ln for ln in lines)
