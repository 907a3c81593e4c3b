"""MLflow wiring: where tracking goes, and a rank-0 logger the training loop calls.

Embedded default: a sqlite store and an artifact folder under the project's state folder
(``state_dir()``), always absolute so Ray workers in other working directories write to the same
place. ``MLFLOW_TRACKING_URI`` switches to a server (then artifacts go where the server says: e.g. S3).

The state folder does not depend on the working directory, so ``squeeze3d compress`` run from any
folder finds the registry ``make demo`` filled. The first of:

1. ``$SQUEEZE3D_STATE_DIR``;
2. ``<project>/.state`` for the nearest folder at or above the working directory that is a Squeeze3D
   checkout (a ``pyproject.toml`` naming the project ``squeeze3d``);
3. the folder named in the environment's ``<sys.prefix>/etc/squeeze3d/state_dir`` (``make setup``
   writes ``<checkout>/.state`` there), so a user's own folder of scans still sees the project's
   registry; the library never looks for the source checkout itself;
4. ``$XDG_DATA_HOME/squeeze3d`` (default ``~/.local/share/squeeze3d``) for an installed wheel.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

STATE_DIR_ENV = "SQUEEZE3D_STATE_DIR"


def _is_checkout(d: Path) -> bool:
    """Is ``d`` a Squeeze3D project folder (its pyproject.toml names the project ``squeeze3d``)?"""
    try:
        text = (d / "pyproject.toml").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    import re

    return re.search(r'(?m)^\s*name\s*=\s*["\']squeeze3d["\']', text) is not None


def environment_state_file() -> Path:
    """The file in which an environment names its state folder (``make setup`` writes it)."""
    return Path(sys.prefix) / "etc" / "squeeze3d" / "state_dir"


def _environment_state_dir() -> Path | None:
    try:
        text = environment_state_file().read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return Path(text).expanduser().resolve() if text else None


def state_dir() -> Path:
    """The state folder (see the module docstring for the order); absolute, not created here."""
    env = os.environ.get(STATE_DIR_ENV)
    if env:
        return Path(env).expanduser().resolve()
    try:
        cwd = Path.cwd().resolve()
    except OSError:  # the working directory was deleted
        cwd = None
    for d in ([cwd, *cwd.parents] if cwd else []):
        if _is_checkout(d):
            return d / ".state"
    named = _environment_state_dir()
    if named is not None:
        return named
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg).expanduser().resolve() / "squeeze3d"


def display_uri(uri: str) -> str:
    """A tracking URI to print: its credentials (password, token) replaced by ``***``."""
    from squeeze3d.redact import mask_credentials

    return mask_credentials(uri)


def tracking_uri() -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    d = state_dir()
    d.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{d / 'mlflow.db'}"


def artifact_root(uri: str) -> str | None:
    """Where a local store's artifacts go: ``mlartifacts`` beside its database file (for the default
    store, ``<state>/mlartifacts``), absolute whatever the working directory. None for a tracking
    server, which decides itself (e.g. S3).

    Decided from the URI, not from whether ``MLFLOW_TRACKING_URI`` is set: MLflow's
    ``set_tracking_uri`` exports that variable, so the variable cannot tell the user's server from our
    own local store (that mix-up sent artifacts to ``./mlruns`` of whatever folder a command ran in)."""
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):].split("?", 1)[0]).expanduser()
        return (db.resolve().parent / "mlartifacts").as_uri()
    return None


def configure(uri: str | None = None) -> str:
    """Point the mlflow client at ``uri`` (default: the platform's tracking store); returns it.
    Code running in Ray workers passes the driver's URI explicitly: a worker's environment was fixed
    when Ray started, so its own default may point elsewhere.

    ``mlflow.set_tracking_uri`` also exports ``MLFLOW_TRACKING_URI``; when the user had not set it, it
    is taken out again, so that the variable keeps meaning "the user chose a registry" for the rest of
    the process (``registry_configured``, the codec server's settings hash, the registry's budget)."""
    import mlflow

    user_set = os.environ.get("MLFLOW_TRACKING_URI")
    uri = uri or tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if user_set is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = user_set
    return uri


def experiment_id(name: str, uri: str | None = None) -> str:
    import mlflow

    uri = configure(uri)
    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return mlflow.create_experiment(name, artifact_location=artifact_root(uri))
    except Exception:  # created concurrently by another trial: read it back
        exp = mlflow.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def flat_params(d: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat_params(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = str(v)
    return out


class RunLogger:
    """Logs to an existing MLflow run by id (created by the driver); a no-op when run_id is None, so
    non-zero ranks and plain unit runs call it unconditionally."""

    def __init__(self, run_id: str | None, tracking: str | None = None):
        self.run_id = run_id
        self._client = None
        if run_id:
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=tracking or tracking_uri())

    def metrics(self, metrics: dict[str, float], step: int) -> None:
        if not self._client:
            return
        import math
        import time

        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        ms = [Metric(k, float(v), ts, step) for k, v in metrics.items()
              if isinstance(v, (int, float)) and math.isfinite(float(v))]
        self._client.log_batch(self.run_id, metrics=ms)

    def artifacts(self, local_dir: str | Path, artifact_path: str) -> None:
        if self._client:
            self._client.log_artifacts(self.run_id, str(local_dir), artifact_path)

    def text(self, text: str, file_name: str) -> None:
        if self._client:
            self._client.log_text(self.run_id, text, file_name)
