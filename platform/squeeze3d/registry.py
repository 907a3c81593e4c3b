"""Model registry: one MLflow registered model ``squeeze3d-<pair>`` per pair, alias ``champion``.

``resolve_model`` turns what a user passes as ``--model`` into a local checkpoint directory plus the
identity the codec writes into every .sq3d file:

    None                          → models:/squeeze3d-<pair>@champion
    "7"                           → version 7 of squeeze3d-<pair>
    "models:/squeeze3d-<pair>@a"  → that alias / version (MLflow model URI)
    an existing directory         → a mapping checkpoint on disk (no registry version)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from squeeze3d.errors import UserError

CHAMPION = "champion"


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


def resolve_model(ref: str | None, pair: str) -> ResolvedModel:
    from squeeze3d.mapping.checkpoint import CheckpointError, _read_config

    if ref is not None and not ref.startswith("models:/") and not re.fullmatch(r"\d+", ref):
        p = Path(ref)
        if not p.exists():
            raise UserError(f"model {ref!r}: no such checkpoint directory, registry version or models:/ URI")
        try:
            doc = _read_config(p)
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


def _client():
    from mlflow import MlflowClient

    from squeeze3d.tracking import configure

    uri = configure()
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _info(mv, aliases=None) -> VersionInfo:
    return VersionInfo(mv.name, str(mv.version), mv.run_id, mv.source, dict(mv.tags or {}),
                       tuple(aliases if aliases is not None else (getattr(mv, "aliases", None) or ())))


def champion(pair: str) -> VersionInfo | None:
    from mlflow.exceptions import MlflowException

    try:
        return _info(_client().get_model_version_by_alias(model_name(pair), CHAMPION))
    except MlflowException:
        return None


def list_versions(pair: str | None = None) -> list[VersionInfo]:
    client = _client()
    flt = f"name='{model_name(pair)}'" if pair else "name LIKE 'squeeze3d-%'"
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
    from mlflow.exceptions import MlflowException

    from squeeze3d.pairs import get_pair

    pair = get_pair(pair_name)
    client = _client()
    name = model_name(pair_name)
    try:
        client.create_registered_model(name, description=f"Squeeze3D mapping networks for pair {pair_name}")
    except MlflowException as e:
        if "RESOURCE_ALREADY_EXISTS" not in str(e.error_code if hasattr(e, "error_code") else e):
            raise
    all_tags = {**{k: str(v) for k, v in tags.items()}, "objective": pair.objective_metric,
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


def get_version(ref: str | None, pair: str) -> VersionInfo:
    from mlflow.exceptions import MlflowException

    name, version, alias = _parse_ref(ref, pair)
    client = _client()
    try:
        if alias:
            return _info(client.get_model_version_by_alias(name, alias))
        return _info(client.get_model_version(name, version))
    except MlflowException as e:
        what = f"alias {alias!r}" if alias else f"version {version}"
        raise UserError(f"registry has no {what} of {name} (tracking: {_client()._tracking_client.tracking_uri}); "
                        f"train one with `make train PAIR={pair}` or `make sweep PAIR={pair}`") from e


def download(info: VersionInfo) -> Path:
    """The version's checkpoint as a local directory, cached under the state folder (atomically)."""
    import mlflow

    from squeeze3d.mapping.checkpoint import atomic_dir
    from squeeze3d.tracking import configure, state_dir

    dest = state_dir() / "models" / info.name / info.version
    if (dest / "config.json").is_file():
        return dest
    configure()
    with atomic_dir(dest) as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{info.name}/{info.version}",
                                                         dst_path=str(tmp)))
        if local != tmp:
            for child in local.iterdir():
                child.rename(tmp / child.name)
    return dest


def _resolve_registered(ref: str | None, pair: str) -> ResolvedModel:
    from squeeze3d.mapping.checkpoint import _read_config

    info = get_version(ref, pair)
    path = download(info)
    doc = _read_config(path)
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
