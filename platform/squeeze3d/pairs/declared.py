"""Pairs declared from weights: a YAML file names an encoder adapter + checkpoint and a generator
adapter + checkpoint (``zoo.adapters``), the asset and condition kinds and the mapping defaults; the
latent shapes are read from the models, never written in the file. This module reads and finds the
files; ``pairs.declared_spec.load_file`` builds the ``PairSpec`` a file declares.

Where pair files are found (``squeeze3d pairs`` lists them next to the registered pairs):
- the pair files shipped with the package (``squeeze3d/data/pairs/*.yaml``) and ``datasets/pairs/*.yaml``
  of the working directory;
- every directory in ``$SQUEEZE3D_PAIRS_DIR`` (``os.pathsep``-separated), else the user directory
  ``$XDG_CONFIG_HOME/squeeze3d/pairs`` (``~/.config/squeeze3d/pairs``), where ``squeeze3d pairs add``
  copies files;
- any file given as ``--pair path/to/pair.yaml``: the pair is then known by its name in this process,
  in its subprocesses (``$SQUEEZE3D_PAIR_FILES``) and in Ray workers (the name handed to them carries
  the path and registers it when unpickled, so a worker resolves the same file lazily).

File format (``docs/plug_in_models.md``)::

    name: my_pair                       # [a-z0-9_]{1,64}; the MLflow model is squeeze3d-<name>
    description: one line for `squeeze3d pairs`
    asset_kind: point_cloud             # point_cloud | mesh | radiance_field
    condition_kind: noise               # noise | prompt | image
    encoder: {adapter: debug, checkpoint: ${CKPTS}/enc.safetensors, options: {}}
    generator: {adapter: debug, checkpoint: null, options: {num_points: 256}}
    num_points: 256                     # point clouds and meshes
    mapping: {arch: deep_residual_mlp, d_code: 8}
    optim: {epochs: 30}
    loss: {}

Checkpoint paths expand ``~`` and ``${VAR}`` (an unset variable is an error naming it); a relative
path is relative to the pair file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from squeeze3d.pairs import UnknownPairError

DIRS_ENV = "SQUEEZE3D_PAIRS_DIR"
FILES_ENV = "SQUEEZE3D_PAIR_FILES"
NAME_RE = re.compile(r"[a-z0-9_]{1,64}")  # the .sq3d header's pair tag (codec.container)

TOP_KEYS = {
    "name": "pair name, [a-z0-9_]{1,64}",
    "description": "one line for `squeeze3d pairs`",
    "asset_kind": "point_cloud | mesh | radiance_field",
    "condition_kind": "noise | prompt | image",
    "encoder": "{adapter, checkpoint, options}",
    "generator": "{adapter, checkpoint, options}",
    "num_points": "points E takes and G produces (point clouds, mesh surface samples)",
    "grid_resolution": "R of the [4, R, R, R] grids (radiance fields)",
    "normalisation": "unit_sphere | identity",
    "mapping": "MappingConfig overrides",
    "optim": "OptimConfig overrides",
    "loss": "LossConfig overrides",
    "objective": "the asset metric that ranks models",
    "objective_mode": "max | min",
    "asset_metrics": "module:function (default: the asset kind's metrics)",
    "condition_problem": "module:function (condition -> reason G cannot take it, or None)",
    "tuning": "the sweep's search space YAML (relative: to the pair file) when tuning/<name>.yaml is absent",
}
REQUIRED = ("name", "asset_kind", "condition_kind", "encoder", "generator")
MODEL_KEYS = ("adapter", "checkpoint", "options")
# per asset kind: (objective, mode, "module:function" of the metrics; None = PairSpec's default)
KIND_DEFAULTS = {
    "point_cloud": ("d1_psnr", "max", None),
    "mesh": ("d1_psnr", "max", "squeeze3d.metrics.mesh:surface_sample_metrics"),
    "radiance_field": ("psnr", "max", "squeeze3d.metrics.volume:radiance_metrics"),
}
PROBE_PROMPT = "a small wooden chair"
PAIR_HELP = "a pair name (squeeze3d pairs) or a pair file path/to/pair.yaml (docs/plug_in_models.md)"


class PairFileError(UnknownPairError):
    """A pair file that cannot be used (bad YAML, a bad key, an unknown adapter, a missing checkpoint).
    A subclass of ``UnknownPairError`` so every command that reports unknown pairs reports it too."""


@dataclass(frozen=True)
class ModelDecl:
    kind: str
    adapter: str
    checkpoint: str | None
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Declaration:
    """A validated pair file (nothing loaded)."""

    path: Path
    name: str
    doc: dict
    encoder: ModelDecl
    generator: ModelDecl


# --- reading a file -------------------------------------------------------------------------------

def looks_like_path(value: str) -> bool:
    """Pair names are ``[a-z0-9_]``: anything ending in .yaml/.yml or holding a slash is a file."""
    return str(value).endswith((".yaml", ".yml")) or "/" in str(value) or os.sep in str(value)


_VAR_RE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_CARRIED: dict[Path, dict[str, str]] = {}
"""Per pair file: the values its ``${VAR}``s had in the driver (``PairName``), which win in a worker."""


def referenced_vars(path: Path) -> dict[str, str]:
    """The environment variables a pair file refers to, with their values here (set ones only)."""
    try:
        names = {a or b for a, b in _VAR_RE.findall(Path(path).read_text())}
    except OSError:
        return {}
    env = {**os.environ, **_CARRIED.get(Path(path), {})}
    return {n: env[n] for n in sorted(names) if n in env}


def _expand(value: str, where: str, base: Path, path: Path | None = None) -> str:
    env = {**os.environ, **_CARRIED.get(path, {})} if path is not None else dict(os.environ)

    def var(m: re.Match) -> str:
        n = m.group(1) or m.group(2)
        if n not in env:
            raise PairFileError(f"{where} uses ${{{n}}}, which is not set; export it (the directory of your "
                                f"checkpoints) or write the path out")
        return env[n]

    s = os.path.expanduser(_VAR_RE.sub(var, str(value)))
    p = Path(s)
    return str(p if p.is_absolute() else (base / p))


def _model(doc: Any, kind: str, path: Path) -> ModelDecl:
    from squeeze3d.zoo import adapters

    where = f"{path}: {kind}"
    if isinstance(doc, str):
        doc = {"adapter": doc}
    if not isinstance(doc, dict):
        raise PairFileError(f"{where}: expected a mapping with keys {', '.join(MODEL_KEYS)}")
    bad = sorted(set(doc) - set(MODEL_KEYS))
    if bad:
        raise PairFileError(f"{where}.{bad[0]}: unknown key; allowed: {', '.join(MODEL_KEYS)}")
    if "adapter" not in doc:
        raise PairFileError(f"{where}.adapter: missing; known {kind} adapters: {', '.join(adapters.names(kind))}")
    name = doc["adapter"]
    if name not in adapters.KINDS[kind]:
        raise PairFileError(f"{where}.adapter: unknown {kind} adapter {name!r}; known: "
                            f"{', '.join(adapters.names(kind))}")
    options = doc.get("options") or {}
    if not isinstance(options, dict):
        raise PairFileError(f"{where}.options: expected a mapping of keyword arguments")
    ckpt = doc.get("checkpoint")
    ckpt = None if ckpt in (None, "") else _expand(ckpt, f"{where}.checkpoint", _base_dir(path), path)
    return ModelDecl(kind, name, ckpt, dict(options))


def read_declaration(path: str | Path) -> Declaration:
    """Parse and validate a pair file (keys, kinds, adapter names, paths); loads no model."""
    import yaml

    from squeeze3d.assets.base import ASSET_KINDS
    from squeeze3d.pairs.base import CONDITION_KINDS

    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise PairFileError(f"pair file {path} does not exist")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise PairFileError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(doc, dict):
        raise PairFileError(f"{path}: expected a mapping at the top level (name, asset_kind, encoder, ...)")
    for k in ("z_e_shape", "z_g_shape"):
        if k in doc:
            raise PairFileError(f"{path}: {k}: latent shapes are read from the loaded models; remove the key")
    bad = sorted(set(doc) - set(TOP_KEYS))
    if bad:
        raise PairFileError(f"{path}: {bad[0]}: unknown key; allowed: {', '.join(TOP_KEYS)}")
    missing = [k for k in REQUIRED if k not in doc]
    if missing:
        raise PairFileError(f"{path}: {missing[0]}: missing ({TOP_KEYS[missing[0]]})")
    name = doc["name"]
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise PairFileError(f"{path}: name: {name!r} is not a pair name ([a-z0-9_], 1 to 64 characters)")
    from squeeze3d.pairs import _REGISTRY

    if name in _REGISTRY:
        raise PairFileError(f"{path}: name: {name!r} is a registered pair; choose another name")
    if doc["asset_kind"] not in ASSET_KINDS:
        raise PairFileError(f"{path}: asset_kind: {doc['asset_kind']!r} is not one of {', '.join(ASSET_KINDS)}")
    if doc["condition_kind"] not in CONDITION_KINDS:
        raise PairFileError(f"{path}: condition_kind: {doc['condition_kind']!r} is not one of "
                            f"{', '.join(CONDITION_KINDS)}")
    for k in ("mapping", "optim", "loss"):
        if not isinstance(doc.get(k) or {}, dict):
            raise PairFileError(f"{path}: {k}: expected a mapping of overrides")
    for k in ("num_points", "grid_resolution"):
        v = doc.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v <= 0):
            raise PairFileError(f"{path}: {k}: expected a positive integer, got {v!r}")
    if doc.get("objective_mode", "max") not in ("max", "min"):
        raise PairFileError(f"{path}: objective_mode: {doc['objective_mode']!r} is not max or min")
    for k in ("asset_metrics", "condition_problem"):
        if k in doc and (not isinstance(doc[k], str) or ":" not in doc[k]):
            raise PairFileError(f"{path}: {k}: expected 'module:function', got {doc[k]!r}")
    return Declaration(path, name, doc, _model(doc["encoder"], "encoder", path),
                       _model(doc["generator"], "generator", path))


def _base_dir(path: Path) -> Path:
    return _BASE.get(path, path.parent)


# --- where files are found --------------------------------------------------------------------------

_FILES: dict[str, Path] = {}  # name -> file given in this process (--pair FILE, PairName unpickled)


def user_dir() -> Path:
    """Where ``squeeze3d pairs add`` copies files: the first ``$SQUEEZE3D_PAIRS_DIR`` entry, else
    ``$XDG_CONFIG_HOME/squeeze3d/pairs``."""
    env = [d for d in os.environ.get(DIRS_ENV, "").split(os.pathsep) if d]
    if env:
        return Path(env[0]).expanduser()
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "squeeze3d" / "pairs"


def search_dirs() -> list[Path]:
    from squeeze3d.package_data import shipped_path

    out: list[Path] = []
    for d in [shipped_path("pairs"), Path("datasets/pairs"), *[Path(x).expanduser() for x in
                                              os.environ.get(DIRS_ENV, "").split(os.pathsep) if x], user_dir()]:
        d = d.resolve()
        if d.is_dir() and d not in out:
            out.append(d)
    return out


def _candidate_files() -> list[Path]:
    files = list(_FILES.values())
    files += [Path(f) for f in os.environ.get(FILES_ENV, "").split(os.pathsep) if f]
    for d in search_dirs():
        files += sorted([*d.glob("*.yaml"), *d.glob("*.yml")])
    seen, out = set(), []
    for f in files:
        f = f.resolve()
        if f not in seen and f.is_file():
            seen.add(f)
            out.append(f)
    return out


_NAME_CACHE: dict[tuple[Path, int], str | None] = {}


def _name_of(path: Path) -> str | None:
    """The ``name:`` of a pair file (cheap: YAML only), None when unreadable."""
    import yaml

    try:
        key = (path, path.stat().st_mtime_ns)
    except OSError:
        return None
    if key not in _NAME_CACHE:
        try:
            doc = yaml.safe_load(path.read_text())
            _NAME_CACHE[key] = doc.get("name") if isinstance(doc, dict) and isinstance(doc.get("name"), str) else None
        except (OSError, yaml.YAMLError):
            _NAME_CACHE[key] = None
    return _NAME_CACHE[key]


def declared_files() -> dict[str, list[Path]]:
    """name -> the files declaring it (more than one is an ambiguity, reported when the name is used)."""
    out: dict[str, list[Path]] = {}
    for f in _candidate_files():
        n = _name_of(f)
        if n:
            out.setdefault(n, []).append(f)
    return out


def names() -> list[str]:
    return sorted(declared_files())


def find(name: str) -> Path | None:
    """The file declaring ``name``: one given in this process wins; else exactly one found."""
    if name in _FILES:
        return _FILES[name]
    files = declared_files().get(name, [])
    if len(files) > 1:
        raise PairFileError(f"pair {name!r} is declared by {len(files)} files ({', '.join(map(str, files))}); "
                            f"rename one, or pass the file with --pair PATH")
    return files[0] if files else None


def use_file(path: str | Path, name: str | None = None) -> str:
    """Remember a pair file for this process and its children; returns the pair's name."""
    path = Path(path).resolve()
    name = name or read_declaration(path).name
    other = _FILES.get(name)
    if other is not None and other != path:
        raise PairFileError(f"pair {name!r} is declared by both {other} and {path}")
    _FILES[name] = path
    listed = [f for f in os.environ.get(FILES_ENV, "").split(os.pathsep) if f]
    if str(path) not in listed:
        os.environ[FILES_ENV] = os.pathsep.join([*listed, str(path)])
    return name


class PairName(str):
    """A pair's name that carries the file declaring it: equal to (and printed as) the plain name, so
    tags, model names and manifests are unchanged, but unpickling it in a Ray worker registers the
    file there, so the worker's ``get_pair(name)`` resolves the same declaration."""

    path: str
    env: dict
    text: str

    def __new__(cls, name: str, path: str | Path, env: dict | None = None, text: str | None = None):
        obj = super().__new__(cls, name)
        obj.path = str(path)
        # the ${VAR}s of the file as the driver sees them: a worker may not have the driver's environment
        obj.env = dict(env) if env is not None else referenced_vars(Path(path))
        # the file itself, for a worker on a node where the path does not exist
        obj.text = text if text is not None else Path(path).read_text()
        return obj

    def __reduce__(self):
        return (_restore_pair_name, (str(self), self.path, self.env, self.text))


_BASE: dict[Path, Path] = {}
"""Copies of pair files written on a worker node -> the directory of the original (relative paths)."""


def _restore_pair_name(name: str, path: str, env: dict, text: str) -> PairName:
    import hashlib
    import tempfile

    p = Path(path)
    if not p.is_file() or p.read_text() != text:
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        copy_path = Path(tempfile.gettempdir()) / "squeeze3d_pairs" / digest / p.name
        if not copy_path.is_file():
            copy_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = copy_path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(text)
            tmp.replace(copy_path)
        _BASE[copy_path.resolve()] = p.parent
        p = copy_path.resolve()
    _CARRIED[p] = dict(env)
    _FILES[name] = p  # the driver's declaration wins over any file of that name on this node
    return PairName(name, p, env, text)


def pair_arg(value: str) -> str:
    """``argparse`` type of every ``--pair``: a name passes through (checked later with the usual error);
    a file is validated now (a bad one is an argparse error, exit 2) and becomes its pair's name."""
    import argparse

    if value is None or not looks_like_path(value):
        return value
    try:
        decl = read_declaration(value)
        use_file(decl.path, decl.name)
    except PairFileError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return PairName(decl.name, decl.path)


def search_space_path(name: str, tuning_dir: str | Path) -> Path:
    """The sweep's default search space: ``<tuning_dir>/<name>.yaml`` when it exists, else the ``tuning:``
    file named in the pair's declaration, else the (missing) first path, which the sweep reports."""
    default = Path(tuning_dir) / f"{name}.yaml"
    path = None if default.is_file() else source_of(name)
    if path is None:
        return default
    decl = read_declaration(path)
    t = decl.doc.get("tuning")
    return Path(_expand(t, f"{path}: tuning", _base_dir(path), path)) if t else default


def source_of(name: str) -> Path | None:
    """The file a declared pair comes from (None for registered or unknown names)."""
    try:
        return find(name)
    except PairFileError:
        return None
