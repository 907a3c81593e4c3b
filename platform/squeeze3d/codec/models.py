"""Which mapping model the codec uses: the registry's champion, the model shipped with the package,
or the one that wrote a given file.

- Compressing with no ``--model``: the champion when a registry is configured (``MLFLOW_TRACKING_URI``
  is set, or the local store ``<state>/mlflow.db`` exists; ``squeeze3d.tracking.state_dir`` says
  where the state folder is, whatever the working directory) and has one; otherwise the pair's
  shipped model (``PairSpec.shipped_model``). Either way one ``squeeze3d: model: ...`` line on stderr
  names the model and the registry it came from (or why none was used). Without a registry nothing
  imports mlflow or creates a database, so a fresh clone compresses straight away.
- The champion a registry named is remembered in ``<state>/cache/champion-<pair>.json`` so the next
  compress needs no registry round trip (and does not import mlflow: ~1.4 s). The entry is trusted
  while the tracking URI is the same and, for a sqlite store (the local one), its file has not changed since
  (any registration rewrites it); for a server, for ``SQUEEZE3D_CHAMPION_TTL_S`` seconds (default
  60), after which the registry is asked again. The entry is private (a 0600 file in a 0700 folder)
  and records a hash of the tracking URI, never the URI (it may hold a password).
- Decompressing a version 2 file (which names its model by a weights-hash prefix only): the model
  given with ``--model`` if its hash matches, else the shipped model, the champion, then any
  registered version whose ``weights_hash`` tag has that prefix.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from squeeze3d.errors import UserError


def shipped_path(pair) -> Path | None:
    if not pair.shipped_model:
        return None
    p = Path(__file__).resolve().parent.parent / pair.shipped_model
    return p if (p / "config.json").is_file() else None


def shipped(pair):
    """``ResolvedModel`` of the pair's shipped model, or None."""
    from squeeze3d.mapping.checkpoint import read_config
    from squeeze3d.registry import ResolvedModel

    p = shipped_path(pair)
    if p is None:
        return None
    return ResolvedModel(p, read_config(p)["weights_hash"], None, f"shipped:{pair.shipped_model}")


def registry_configured() -> bool:
    from squeeze3d.tracking import state_dir

    return bool(os.environ.get("MLFLOW_TRACKING_URI")) or (state_dir() / "mlflow.db").is_file()


def _champion_cache(pair) -> Path:
    from squeeze3d.tracking import state_dir

    return state_dir() / "cache" / f"champion-{pair.name}.json"


def _store_stamp() -> dict:
    """What the cached champion is valid for: the tracking URI (its hash: a URI may hold a password),
    and for a sqlite store its files' mtimes."""
    from squeeze3d.redact import uri_digest
    from squeeze3d.tracking import tracking_uri

    uri = tracking_uri()
    mtimes = None
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])
        mtimes = [f.stat().st_mtime_ns if f.is_file() else None for f in (db, db.with_name(db.name + "-wal"))]
    return {"uri_sha256": uri_digest(uri), "mtimes": mtimes}


def _cached_champion(pair):
    from squeeze3d.registry import ResolvedModel

    f = _champion_cache(pair)
    try:
        doc = json.loads(f.read_text())
    except (OSError, ValueError):
        return None
    stamp = _store_stamp()
    if doc.get("stamp") != stamp:
        return None
    if stamp["mtimes"] is None and time.time() - float(doc.get("at", 0)) > float(
            os.environ.get("SQUEEZE3D_CHAMPION_TTL_S", "60")):
        return None
    path = Path(doc["path"])
    if not (path / "config.json").is_file():
        return None
    return ResolvedModel(path, doc["weights_hash"], doc["version"], doc["uri"])


def _private_dir(d: Path) -> Path:
    """``d`` created 0700 (and tightened to 0700 when this user made it earlier with the umask's mode)."""
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = d.stat()
    if st.st_uid == os.getuid() and st.st_mode & 0o077:
        os.chmod(d, 0o700)
    return d


def _remember_champion(pair, r) -> None:
    from squeeze3d.io import atomic_write_bytes
    from squeeze3d.redact import mask_credentials

    doc = {"stamp": _store_stamp(), "at": time.time(), "path": str(r.path), "weights_hash": r.weights_hash,
           "version": r.version, "uri": mask_credentials(r.uri)}
    try:
        f = _champion_cache(pair)
        _private_dir(f.parent)
        atomic_write_bytes(f, json.dumps(doc).encode(), mode=0o600)
    except OSError:
        pass  # a read-only state folder only costs the next lookup


def _registry_label() -> str:
    """Where the registry is, for the model line: the tracking URI without any password."""
    from squeeze3d.tracking import display_uri, tracking_uri

    return display_uri(tracking_uri())


def _say_champion(pair, r) -> None:
    version = f", version {r.version}" if r.version else ""
    print(f"squeeze3d: model: models:/squeeze3d-{pair.name}@champion{version} ({_registry_label()})",
          file=sys.stderr)


def resolve_default(pair):
    """The model to compress with when none is given (see the module docstring). Says which, in one
    line on stderr (once per codec object: a command, or a served request)."""
    from squeeze3d import registry
    from squeeze3d.tracking import state_dir

    if registry_configured():
        cached = _cached_champion(pair)
        if cached is not None:
            _say_champion(pair, cached)
            return cached
        r = registry.bounded(_registered_champion, pair)  # the lookup and the download, in one budget
        if r is not None:
            _remember_champion(pair, r)
            _say_champion(pair, r)
            return r
        why = f"the registry {_registry_label()} has no champion"
    else:
        why = (f"no registry (no MLFLOW_TRACKING_URI, no {state_dir() / 'mlflow.db'}; "
               "SQUEEZE3D_STATE_DIR moves the state folder)")
    s = shipped(pair)
    if s is None:
        raise UserError(f"pair {pair.name}: {why} and no model ships with the package; train one with "
                        f"`make train PAIR={pair.name}` or pass --model PATH")
    print(f"squeeze3d: model: the shipped {pair.name} model ({s.weights_hash[:8]}): {why}", file=sys.stderr)
    return s


def _registered_champion(pair):
    from squeeze3d import registry

    champ = registry.champion(pair.name)
    return registry.resolve_version(champ) if champ is not None else None


def _registered_with_hash(pair, prefix: str):
    from squeeze3d import registry

    champ = registry.champion(pair.name)
    if champ is not None and champ.tags.get("weights_hash", "").startswith(prefix):
        return registry.resolve_version(champ)
    for v in registry.list_versions(pair.name):
        if v.tags.get("weights_hash", "").startswith(prefix):
            return registry.resolve_version(v)
    return None


def resolve_for_hash(pair, prefix: str):
    """The model whose weights hash starts with ``prefix`` (a version 2 header's model id)."""
    from squeeze3d import registry

    s = shipped(pair)
    if s is not None and s.weights_hash.startswith(prefix):
        return s
    if registry_configured():
        cached = _cached_champion(pair)
        if cached is not None and cached.weights_hash.startswith(prefix):
            return cached
        found = registry.bounded(_registered_with_hash, pair, prefix)
        if found is not None:
            return found
    raise UserError(f"the file was written by {pair.name} model {prefix}, which is neither the shipped model nor "
                    "in the registry; pass it with --model PATH (a checkpoint directory) or point "
                    "MLFLOW_TRACKING_URI at the registry that holds it")


def pair_for_codec(name: str):
    """The registered pair ``name``, checked for the codec (an unknown or unloadable pair is a user error)."""
    from squeeze3d.assets import handler_for
    from squeeze3d.pairs import UnknownPairError, get_pair

    try:
        pair = get_pair(name)
    except UnknownPairError as e:
        raise UserError(str(e)) from None
    except ImportError as e:  # a registered pair whose module is not importable in this build
        raise UserError(f"pair {name!r} is registered but cannot be loaded: {e}") from None
    handler_for(pair.asset_kind).check_pair(pair)
    return pair
