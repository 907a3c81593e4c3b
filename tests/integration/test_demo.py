"""The platform demo end to end on the debug pair: Ray Data build → Ray Train → MLflow registry →
champion lookup → codec evaluation against Draco."""

import csv
import math
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

    # the fit reported the pair's end-task objective, and the registry version carries that value
    from squeeze3d import registry

    objective = rep.train_metrics["val_d1_psnr"]
    assert math.isfinite(objective) and objective > 0 and math.isfinite(rep.train_metrics["val_mse"])
    champ = registry.champion("debug")
    assert champ.version == "1" and float(champ.tags["val_d1_psnr"]) == pytest.approx(objective, rel=1e-4)

    # the evaluation measured every method on the 3 objects: the neural code is smaller than Draco at
    # 14 bits, and Draco's quality rises with its bits
    with open(rep.eval_paths["csv"], newline="") as f:
        rows = {r["method"]: r for r in csv.DictReader(f)}
    sq3d = [r for m, r in rows.items() if m.startswith("sq3d")]
    draco = {int(m.split("-")[1]): r for m, r in rows.items() if m.startswith("draco-")}
    assert sq3d and 14 in draco and 3 in draco
    for r in [*sq3d, *draco.values()]:
        assert int(r["objects"]) == 3 and float(r["bytes"]) > 0 and math.isfinite(float(r["d1_psnr"])), r
    assert float(draco[14]["d1_psnr"]) > float(draco[3]["d1_psnr"]) + 20
    assert all(float(r["bytes"]) < float(draco[14]["bytes"]) for r in sq3d)
