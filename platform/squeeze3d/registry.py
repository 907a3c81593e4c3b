"""Model registry: one MLflow registered model ``squeeze3d-<pair>`` per pair, alias ``champion``.

``resolve_model`` turns what a user passes as ``--model`` into a local checkpoint directory plus the
identity the codec writes into every .sq3d file:

    None                          → models:/squeeze3d-<pair>@champion
    "7"                           → version 7 of squeeze3d-<pair>
    "models:/squeeze3d-<pair>@a"  → that alias / version (MLflow model URI)
    an existing directory         → a mapping checkpoint on disk (no registry version)

Failures are told apart: a name, version or alias the registry does not hold is ``UserError`` ("has no
…"); a tracking server that does not answer is ``RegistryUnreachable`` ("cannot reach <uri>"), never
"not found". Commands a user types call ``use_cli_network_defaults()`` first, so a dead server costs
about ``SQUEEZE3D_REGISTRY_TIMEOUT`` seconds (default 10) instead of MLflow's default of minutes of
retries; MLflow's own ``MLFLOW_HTTP_REQUEST_TIMEOUT`` / ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` /
``MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR``, when set, win. In those commands the whole lookup -- the
champion or version, and the model's download -- is bounded by that budget too (``bounded``): a
server that answers slowly, stalls mid-download or dies there gives the same one-line "cannot reach"
error, and nothing half-downloaded is left.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from squeeze3d.errors import UserError

CHAMPION = "champion"

TIMEOUT_ENV = "SQUEEZE3D_REGISTRY_TIMEOUT"
DEFAULT_CLI_TIMEOUT_S = 10
# MLflow error codes that mean "the registry answered: there is no such thing"
_NOT_FOUND_CODES = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


class RegistryUnreachable(UserError):
    """The tracking server (or store) did not answer; distinct from a model that does not exist."""


class MissingArtifacts(UserError):
    """A registered version whose run artifacts are gone: re-register, nothing to download."""


def cli_timeout_s() -> float:
    """Total seconds a CLI command waits for an unreachable registry (``$SQUEEZE3D_REGISTRY_TIMEOUT``)."""
    raw = os.environ.get(TIMEOUT_ENV, "")
    try:
        v = float(raw) if raw else DEFAULT_CLI_TIMEOUT_S
    except ValueError:
        raise UserError(f"{TIMEOUT_ENV}={raw!r}: expected a number of seconds") from None
    return max(1.0, v)


_budget_s: float | None = None  # set by use_cli_network_defaults: interactive commands bound lookups
_inside = threading.local()
_partial: set[Path] = set()  # download folders being filled, removed when a lookup is abandoned


def bounded(fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, a registry lookup, within the CLI budget (``cli_timeout_s``) when
    ``use_cli_network_defaults`` was called and the registry is a server (http/https), else unbounded. A lookup past the budget is abandoned
    (its thread finishes or fails on its own; the command exits) and reported as unreachable. Nested
    calls share the outermost budget."""
    if _budget_s is None or getattr(_inside, "active", False):
        return fn(*args, **kwargs)
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")  # unset: the local store (tracking_uri() would create it)
    if not uri.startswith(("http://", "https://")):
        return fn(*args, **kwargs)  # a local store: slow to open on a busy machine, never unreachable
    import mlflow.artifacts  # noqa: F401 - importing is not waiting for the registry: keep it off the clock
    from mlflow import MlflowClient  # noqa: F401

    budget = _budget_s
    box: dict = {}

    def run():
        _inside.active = True
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = e

    t = threading.Thread(target=run, name="squeeze3d-registry", daemon=True)
    t.start()
    t.join(budget)
    if t.is_alive():
        for d in list(_partial):
            shutil.rmtree(d, ignore_errors=True)
        raise _unreachable(uri, f"no complete answer within {budget:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _within_budget(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return bounded(fn, *args, **kwargs)
    return wrapper


def use_cli_network_defaults() -> None:
    """Short HTTP timeouts and few retries for interactive commands, within ``cli_timeout_s()`` in all.

    MLflow reads these variables on every request (``mlflow.utils.rest_utils.http_request``); its own
    defaults (120 s per request, 7 retries with backoff factor 2) wait about four minutes on a dead
    server. Worst case here, a server that accepts no connection and sends no reset: (retries + 1)
    attempts of ``timeout`` each plus backoff sleeps of 0 and 2 s (urllib3 2 sleeps factor·2^(n-1)
    from the second retry on) plus jitter of up to 0.5 s each: 3·2 + 2 + 1 = 9 s for the default 10.
    A refused connection (server stopped) fails in about 2.5 s."""
    global _budget_s
    total = _budget_s = cli_timeout_s()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # not on a user's terminal
    retries = 2
    per_request = max(1, int((total - 2) / (retries + 1)))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(per_request))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(retries))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "0.5")


def _chain(e: BaseException):
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def _unreachable_reason(e: BaseException) -> str | None:
    """Why the registry did not answer, or None if ``e`` is an answer (e.g. not found, bad request)."""
    try:
        import requests
    except ImportError:  # pragma: no cover - mlflow depends on requests
        requests = None
    for x in _chain(e):
        text = str(x)
        if requests is not None and isinstance(x, requests.exceptions.Timeout):
            return f"no answer within {os.environ.get('MLFLOW_HTTP_REQUEST_TIMEOUT', '120')} s"
        if requests is not None and isinstance(x, requests.exceptions.RetryError):
            return "the server kept failing (HTTP 5xx) after retries"
        if requests is not None and isinstance(x, requests.exceptions.ConnectionError):
            if "refused" in text.lower():
                return "connection refused"
            if "timed out" in text.lower() or "timeout" in text.lower():
                return f"no answer within {os.environ.get('MLFLOW_HTTP_REQUEST_TIMEOUT', '120')} s"
            if "name or service not known" in text.lower() or "nodename nor servname" in text.lower():
                return "unknown host"
            return "connection failed"
        if isinstance(x, (ConnectionError, TimeoutError)):
            return type(x).__name__
    code = getattr(e, "error_code", None)
    text = str(e)
    if code not in _NOT_FOUND_CODES and ("API request to" in text and "failed" in text):
        return "request failed"
    if "sqlite" in text.lower() and "unable to open database" in text.lower():
        return "cannot open the database file"
    return None


def _unreachable(uri: str, reason: str) -> RegistryUnreachable:
    if uri.startswith(("http://", "https://")):
        hint = (f"start the server or point MLFLOW_TRACKING_URI at one that runs; to wait longer set "
                f"{TIMEOUT_ENV}=SECONDS (now {cli_timeout_s():g})")
    else:
        hint = "check the path, or point MLFLOW_TRACKING_URI at a tracking server"
    return RegistryUnreachable(f"cannot reach the model registry at {uri} ({reason}); {hint}")


def _is_not_found(e: BaseException) -> bool:
    return getattr(e, "error_code", None) in _NOT_FOUND_CODES and _unreachable_reason(e) is None


@contextlib.contextmanager
def _talking_to(uri: str):
    """Turn what a registry call raises into one-line errors: unreachable → ``RegistryUnreachable``;
    other failures (not "not found", which callers handle) → ``UserError`` with MLflow's first line."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as e:
        if _is_not_found(e):
            raise
        reason = _unreachable_reason(e)
        if reason is not None:
            raise _unreachable(uri, reason) from None
        raise UserError(f"model registry at {uri}: {str(e).strip().splitlines()[0][:300]}") from None
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - requests/urllib3/sqlalchemy errors escape some mlflow calls
        reason = _unreachable_reason(e)
        if reason is None:
            raise
        raise _unreachable(uri, reason) from None


@dataclass(frozen=True)
class ResolvedModel:
    path: Path
    """Local mapping checkpoint directory (``squeeze3d.mapping.checkpoint`` format)."""
    weights_hash: str
    """sha256 of F_E + F_D weights, as recorded in the checkpoint's config.json."""
    version: str | None
    """Registry version number, or None for a checkpoint given by path."""
    uri: str
    """What was resolved, for messages (``models:/squeeze3d-debug/3`` or the path)."""

    @property
    def identity(self) -> str:
        """The model identity a container carries: ``v<version>:<hash>`` or ``path:<hash>``."""
        return f"{'v' + self.version if self.version else 'path'}:{self.weights_hash[:16]}"


def model_name(pair: str) -> str:
    return f"squeeze3d-{pair}"


@_within_budget
def resolve_model(ref: str | None, pair: str) -> ResolvedModel:
    from squeeze3d.mapping.checkpoint import CheckpointError, read_config

    if ref is not None and not ref.startswith("models:/") and not re.fullmatch(r"\d+", ref):
        p = Path(ref)
        if not p.exists():
            raise UserError(f"model {ref!r}: no such checkpoint directory, registry version or models:/ URI")
        try:
            doc = read_config(p)
        except CheckpointError as e:
            raise UserError(str(e)) from e
        ckpt_pair = doc["train_config"].get("pair")
        if ckpt_pair != pair:
            raise UserError(f"checkpoint {p} was trained for pair {ckpt_pair!r}, not {pair!r}")
        return ResolvedModel(p, doc["weights_hash"], None, str(p))
    return _resolve_registered(ref, pair)


@dataclass(frozen=True)
class VersionInfo:
    name: str
    version: str
    run_id: str | None
    source: str
    tags: dict[str, str]
    aliases: tuple[str, ...]

    @property
    def objective_value(self) -> float | None:
        v = self.tags.get("objective_value")
        return float(v) if v not in (None, "") else None


def _uri(client) -> str:
    return str(client._registry_uri)


def _client():
    from mlflow import MlflowClient

    from squeeze3d.tracking import configure

    uri = configure()
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _info(mv, aliases=None) -> VersionInfo:
    return VersionInfo(mv.name, str(mv.version), mv.run_id, mv.source, dict(mv.tags or {}),
                       tuple(aliases if aliases is not None else (getattr(mv, "aliases", None) or ())))


@_within_budget
def champion(pair: str) -> VersionInfo | None:
    """The pair's champion; None only when the registry answers that there is none (an unreachable
    registry raises ``RegistryUnreachable``)."""
    from mlflow.exceptions import MlflowException

    client = _client()
    try:
        with _talking_to(_uri(client)):
            return _info(client.get_model_version_by_alias(model_name(pair), CHAMPION))
    except MlflowException:  # _talking_to lets only "not found" through
        return None


@_within_budget
def list_versions(pair: str | None = None) -> list[VersionInfo]:
    client = _client()
    flt = f"name='{model_name(pair)}'" if pair else "name LIKE 'squeeze3d-%'"
    with _talking_to(_uri(client)):
        versions = client.search_model_versions(flt)
        # search results carry no aliases: read them from each registered model once
        aliases: dict[tuple[str, str], list[str]] = {}
        for name in {mv.name for mv in versions}:
            for alias, ver in (client.get_registered_model(name).aliases or {}).items():
                aliases.setdefault((name, str(ver)), []).append(alias)
    out = [_info(mv, aliases.get((mv.name, str(mv.version)), [])) for mv in versions]
    return sorted(out, key=lambda v: (v.name, int(v.version)))


def register(pair_name: str, run_id: str, artifact_path: str, tags: dict[str, str],
             objective_value: float) -> tuple[VersionInfo, bool, str]:
    """Register ``runs:/<run_id>/<artifact_path>`` as a new version of ``squeeze3d-<pair>`` and move
    the ``champion`` alias to it only if it beats the current champion on the pair's objective.
    Returns (version, promoted, reason)."""

    from squeeze3d.pairs import get_pair

    pair = get_pair(pair_name)
    client = _client()
    with _talking_to(_uri(client)):
        return _register(client, pair, pair_name, run_id, artifact_path, tags, objective_value)


def _register(client, pair, pair_name, run_id, artifact_path, tags, objective_value):
    from mlflow.exceptions import MlflowException

    name = model_name(pair_name)
    try:
        client.create_registered_model(name, description=f"Squeeze3D mapping networks for pair {pair_name}")
    except MlflowException as e:
        if "RESOURCE_ALREADY_EXISTS" not in str(e.error_code if hasattr(e, "error_code") else e):
            raise
    from squeeze3d.redact import mask_credentials

    # tags are shown to anyone who can read the registry: a dataset URI's password or token stays out
    all_tags = {**{k: mask_credentials(str(v)) for k, v in tags.items()}, "objective": pair.objective_metric,
                "objective_mode": pair.objective_mode, "objective_value": repr(float(objective_value))}
    mv = client.create_model_version(name, source=f"runs:/{run_id}/{artifact_path}", run_id=run_id, tags=all_tags)
    current = champion(pair_name)
    if current is None:
        promote, reason = True, "no champion yet"
    elif current.tags.get("objective") != pair.objective_metric:
        promote, reason = True, (f"champion v{current.version} was ranked by {current.tags.get('objective')!r}, "
                                 f"now {pair.objective_metric!r}")
    elif pair.better(float(objective_value), current.objective_value):
        promote, reason = True, (f"{pair.objective_metric} {objective_value:.4g} beats champion v{current.version} "
                                 f"({current.objective_value:.4g})")
    else:
        promote, reason = False, (f"{pair.objective_metric} {objective_value:.4g} does not beat champion "
                                  f"v{current.version} ({current.objective_value:.4g})")
    if promote:
        client.set_registered_model_alias(name, CHAMPION, mv.version)
    return _info(client.get_model_version(name, mv.version)), promote, reason


def _parse_ref(ref: str | None, pair: str) -> tuple[str, str | None, str | None]:
    """→ (model name, version, alias)."""
    name = model_name(pair)
    if ref is None:
        return name, None, CHAMPION
    if re.fullmatch(r"\d+", ref):
        return name, ref, None
    m = re.fullmatch(r"models:/([^/@]+)(?:/(\d+)|@([A-Za-z0-9_-]+))", ref)
    if not m:
        raise UserError(f"cannot parse model URI {ref!r}; use models:/{name}@{CHAMPION} or models:/{name}/VERSION")
    if m.group(1) != name:
        raise UserError(f"model {m.group(1)!r} is not the registered model of pair {pair!r} ({name})")
    return name, m.group(2), m.group(3)


@_within_budget
def get_version(ref: str | None, pair: str) -> VersionInfo:
    from mlflow.exceptions import MlflowException

    name, version, alias = _parse_ref(ref, pair)
    client = _client()
    uri = _uri(client)
    try:
        with _talking_to(uri):
            if alias:
                return _info(client.get_model_version_by_alias(name, alias))
            return _info(client.get_model_version(name, version))
    except MlflowException as e:  # _talking_to lets only "not found" through
        what = f"alias {alias!r}" if alias else f"version {version}"
        raise UserError(f"registry has no {what} of {name} (tracking: {uri}); "
                        f"train one with `make train PAIR={pair}` or `make sweep PAIR={pair}`") from e


def download(info: VersionInfo) -> Path:
    """The version's checkpoint as a local directory, cached under the state folder (atomically)."""
    from squeeze3d.tracking import configure, state_dir

    dest = state_dir() / "models" / info.name / info.version
    if (dest / "config.json").is_file():
        return dest
    uri = configure()
    try:
        return _download(info, dest, uri)
    except MissingArtifacts:
        for d in (dest.parent, dest.parent.parent):  # models/<name>, models: only when empty
            with contextlib.suppress(OSError):
                d.rmdir()
        raise


def _download(info: VersionInfo, dest: Path, uri: str) -> Path:
    import mlflow

    from squeeze3d.mapping.checkpoint import atomic_dir

    quiet = logging.getLogger("mlflow.store.artifact.artifact_repo")  # "No artifacts found": ours says it
    level = quiet.level
    with atomic_dir(dest) as tmp:
        _partial.add(tmp)
        quiet.setLevel(max(level, logging.WARNING))
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{info.name}/{info.version}",
                                                             dst_path=str(tmp)))
        except Exception as e:  # noqa: BLE001 - the version exists (it was just looked up): the store failed
            reason = _unreachable_reason(e) or f"the model download failed: {str(e).strip().splitlines()[0][:200]}"
            raise _unreachable(uri, reason) from None
        finally:
            _partial.discard(tmp)
            quiet.setLevel(level)
        if local != tmp:
            for child in local.iterdir():
                child.rename(tmp / child.name)
        if not (tmp / "config.json").is_file():
            # the registry still lists the version but its run's artifacts are gone (the artifact
            # folder was deleted or moved): MLflow "downloads" nothing. Raising here removes the
            # empty download (atomic_dir), so nothing is left that looks like a model.
            raise MissingArtifacts(_missing_artifacts(info))
    return dest


def _missing_artifacts(info: VersionInfo) -> str:
    pair = info.name.removeprefix("squeeze3d-")
    return (f"{info.name} version {info.version} is registered but its artifacts are missing ({info.source}, "
            f"run {info.run_id}: the run's artifact folder was deleted or moved); register a model again "
            f"(`python jobs/ship_champion.py --register-shipped {pair}` for the shipped model, or "
            f"`make train PAIR={pair}`), or pass a checkpoint directory with --model PATH")


def _resolve_registered(ref: str | None, pair: str) -> ResolvedModel:
    from squeeze3d.tracking import state_dir

    if ref is not None and not os.environ.get("MLFLOW_TRACKING_URI") and not (state_dir() / "mlflow.db").is_file():
        # a version named by a file or a user: asking would create an empty local store (mlflow.db)
        # just to say it is not there
        name, version, alias = _parse_ref(ref, pair)
        what = f"version {version}" if version else f"alias {alias!r}"
        raise UserError(f"{what} of {name} needs a model registry, and none is configured (MLFLOW_TRACKING_URI "
                        f"is unset and {state_dir() / 'mlflow.db'} does not exist); point MLFLOW_TRACKING_URI at "
                        "the registry that holds it, or pass the model's checkpoint directory with --model PATH")
    return resolve_version(get_version(ref, pair))


@_within_budget
def resolve_version(info: VersionInfo) -> ResolvedModel:
    """A version already looked up (``champion``, ``list_versions``) → its local checkpoint, with the
    weights hash checked against the registered tag; no second registry lookup."""
    from squeeze3d.mapping.checkpoint import CheckpointError, read_config

    path = download(info)
    try:
        doc = read_config(path)
    except CheckpointError as e:  # a damaged download in the cache: one line that says what to do
        raise UserError(f"{info.name} version {info.version}: {e}; delete {path} to download it again") from None
    want = info.tags.get("weights_hash")
    if want and want != doc["weights_hash"]:
        raise UserError(f"{info.name} v{info.version}: downloaded weights hash {doc['weights_hash'][:16]} does not "
                        f"match the registered {want[:16]}; delete {path} and retry")
    return ResolvedModel(path, doc["weights_hash"], info.version, f"models:/{info.name}/{info.version}")


def load_mapping(ref: str | None, pair: str, device: str = "cpu", part: str = "both"):
    """The mapping networks for ``models:/squeeze3d-<pair>@champion`` (default), a version number, a
    ``models:/`` URI or a checkpoint directory → ``MappingCheckpoint`` with F_E/F_D in eval mode."""
    from squeeze3d.mapping.checkpoint import load_checkpoint

    return load_checkpoint(resolve_model(ref, pair).path, device, part=part)
