"""Training configuration: dataclasses with a docstring under each field (shown by
``squeeze3d config``), loadable from YAML and overridable with ``--set a.b=c``.

Resolution order (later wins): dataclass defaults → the architecture's paper defaults (App. A.1 /
Table 6) → the pair's overrides → a YAML file → ``--set`` overrides. Unknown keys and ill-typed
values raise ``ConfigError`` naming the key and what is allowed.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import typing
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from squeeze3d.errors import user_error

ARCHS = ("residual_mlp", "deep_residual_mlp", "unet3d", "official_mlp")


@user_error
class ConfigError(ValueError):
    """A configuration key or value is invalid; the message says which and what is allowed."""


@dataclass
class MappingConfig:
    arch: str = "deep_residual_mlp"
    """Mapping architecture: residual_mlp (meshes), deep_residual_mlp (point clouds), unet3d
    (radiance fields), or official_mlp (the official code's single MLP whose middle activation is
    the code)."""
    d_code: int = 1024
    """d_C: numbers in the compressed code (MLPs). For unet3d the code is code_channels × code grid."""
    hidden: int = 1024
    """Hidden width of the MLP architectures."""
    depth: int = 8
    """Hidden layers of deep_residual_mlp (a local residual every 4th layer); layers per side of
    official_mlp."""
    dropout: float = 0.3
    """Dropout probability (3D spatial dropout for unet3d)."""
    unet_channels: list[int] = field(default_factory=lambda: [32, 64])
    """unet3d: channels per resolution level of F_E (F_D mirrors them); one stride-2 step between
    levels and one more into the code, e.g. 40³→20³→10³ for two levels."""
    code_channels: int = 24
    """unet3d: channels of the code grid (the paper's 24-channel bottleneck)."""
    code_bound: str = "none"
    """none: F_E's output is the code as is; tanh: codes bounded in [-1, 1], which the codec stores as
    fixed-range k-bit integers with no scale (``--dtype fixed``), the compact rate ladder."""
    code_prefixes: list[int] = field(default_factory=list)
    """Nested (prefix) codes, ascending, the last = d_code: in training each row's code is cut to a
    random one of these lengths (the numbers after it zeroed) before F_D, so the first k numbers alone
    decode to a coarser shape and the codec can store any of these prefixes (a rate ladder that buys
    quality with bytes). Empty: off (one code length)."""


@dataclass
class LossConfig:
    lambda_gen: float = 1.0
    """Weight of the latent reconstruction MSE ‖F_D(F_E(z_E)) − z_G‖²."""
    lambda_gram: float = 1e-3
    """Weight of the gram loss ‖Z Zᵀ − I‖²_F on the batch of codes (decorrelates codes)."""
    gram_variant: str = "paper"
    """paper: raw codes, squared Frobenius norm summed; official: row-normalised codes, mean."""
    lambda_set: float = 0.0
    """Weight of the permutation-invariant latent term: Chamfer between the xyz of predicted and
    target latent points (pairs that declare ``latent_points``)."""
    lambda_output: float = 0.0
    """Weight of the output term: Chamfer between G's differentiable decode of ẑ_G and of z_G, i.e.
    between the clouds the user gets (pairs that declare ``loss_decoder``; the pair's
    ``output_distance`` instead of Chamfer when it declares one)."""
    code_noise_bits: int = 0
    """Quantisation-aware training: add uniform noise of one k-bit step to the (bounded) codes during
    training, so a k-bit fixed-range payload loses almost nothing. 0: off."""
    output_points: int = 0
    """Points of each decoded cloud used by the output term (a seeded random subset per step: cdist
    is quadratic in it); 0: all."""
    output_batch: int = 0
    """Rows of each training batch the output term decodes (a seeded random subset per step: the
    decoder costs more than the mapping, e.g. 3D grids); 0: all. Validation decodes every row."""
    lambda_rate: float = 0.0
    """Weight of the code's rate, in bits per code: the k-bit levels (``code_noise_bits``) priced by a
    running histogram of the training codes (``mapping/rate.py``), so the loss is distortion + λ·rate
    and the fitted code prior stores the code in fewer bytes. 0: off. A sweep axis: each λ trades
    bytes for quality. Needs bounded codes and ``code_noise_bits``."""


@dataclass
class OptimConfig:
    optimizer: str = "muon"
    """muon: Muon (``mapping/muon.py``) on 2-D weight matrices + AdamW on the rest; adamw: AdamW on all."""
    lr_start: float = 1e-3
    """Initial learning rate (decays linearly to lr_end over the epochs)."""
    lr_end: float = 1e-7
    """Final learning rate."""
    weight_decay: float = 0.01
    """Decoupled weight decay for both optimisers."""
    muon_momentum: float = 0.95
    """Muon momentum (Nesterov)."""
    muon_ns_steps: int = 6
    """Newton–Schulz iterations Muon uses to orthogonalise each update."""
    epochs: int = 100
    """Passes over the training pairs."""
    batch_size: int = 64
    """Pairs per step (the gram loss is computed over this batch)."""
    grad_clip: float = 1.0
    """Max global gradient norm (0 disables clipping)."""


@dataclass
class TrainConfig:
    pair: str = "debug"
    """Registered pair the mapping networks are trained for (``squeeze3d pairs``)."""
    mapping: MappingConfig = field(default_factory=MappingConfig)
    """Mapping networks F_E and F_D."""
    loss: LossConfig = field(default_factory=LossConfig)
    """Training objective."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimiser and schedule."""
    seed: int = 0
    """Seed for weight init, shuffling and dropout."""
    device: str = "cpu"
    """Torch device for the single-device loop (``cuda`` on GPU workers; same code path)."""
    init_from: str = ""
    """A mapping checkpoint directory whose weights and normalisation start the fit (fine-tuning, e.g.
    the shipped champion retrained for rate); its architecture and latent shapes must match. The
    optimiser and schedule start afresh (unlike resuming). Empty: random initialisation."""


# Paper App. A.1 / Table 6 defaults per architecture. The point-cloud values (d_C 1024, dropout 0.3,
# Muon, 1e-3 → 1e-7) are the paper's; mesh and radiance-field values follow the same recipe.
ARCH_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "deep_residual_mlp": {"mapping": {"d_code": 1024, "hidden": 1024, "depth": 8, "dropout": 0.3},
                          "optim": {"lr_start": 1e-3, "lr_end": 1e-7}},
    "residual_mlp": {"mapping": {"d_code": 512, "hidden": 2048, "dropout": 0.1},
                     "optim": {"lr_start": 1e-3, "lr_end": 1e-6}},
    "unet3d": {"mapping": {"unet_channels": [32, 64], "code_channels": 24, "dropout": 0.1},
               "optim": {"lr_start": 1e-3, "lr_end": 1e-6}},
    "official_mlp": {"mapping": {"d_code": 1024, "hidden": 1024, "depth": 2, "dropout": 0.0},
                     "loss": {"gram_variant": "official"}, "optim": {"lr_start": 1e-3, "lr_end": 1e-6}},
}

_CHOICES = {("mapping", "arch"): ARCHS, ("loss", "gram_variant"): ("paper", "official"),
            ("mapping", "code_bound"): ("none", "tanh"),
            ("optim", "optimizer"): ("muon", "adamw")}


# ---------------------------------------------------------------- field docs (for help output)
@cache
def field_docs(cls: type) -> dict[str, str]:
    """The string literal under each field of a dataclass (attribute docstrings, as nerfstudio)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    docs = {}
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) \
                and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant) \
                and isinstance(nxt.value.value, str):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def describe(cfg: Any, prefix: str = "") -> str:
    """Every leaf as ``key = value  # doc``, one per line."""
    lines = []
    docs = field_docs(type(cfg))
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(v):
            lines.append(describe(v, key + "."))
        else:
            lines.append(f"{key} = {v!r}  # {docs.get(f.name, '')}")
    return "\n".join(lines)


# ---------------------------------------------------------------- dict <-> dataclass
def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is list:
        (inner,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported field type {tp}")  # pragma: no cover - schema bug


def from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Build ``cls`` from a (partial) nested dict, checking keys and types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown key {prefix}{unknown[0]!s}; valid keys here: {', '.join(sorted(known))}")
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = from_dict(tp, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, tp, f"{prefix}{name}")
    cfg = cls(**kwargs)
    return cfg


def validate(cfg: TrainConfig) -> TrainConfig:
    for (section, name), allowed in _CHOICES.items():
        v = getattr(getattr(cfg, section), name)
        if v not in allowed:
            raise ConfigError(f"{section}.{name}: {v!r} is not one of {', '.join(allowed)}")
    m, o, lo = cfg.mapping, cfg.optim, cfg.loss
    checks = [
        (m.d_code >= 1, "mapping.d_code must be >= 1"),
        (m.hidden >= 1, "mapping.hidden must be >= 1"),
        (m.depth >= 1, "mapping.depth must be >= 1"),
        (0.0 <= m.dropout < 1.0, "mapping.dropout must be in [0, 1)"),
        (len(m.unet_channels) >= 1 and all(c >= 1 for c in m.unet_channels),
         "mapping.unet_channels must be a non-empty list of positive integers"),
        (m.code_channels >= 1, "mapping.code_channels must be >= 1"),
        (not m.code_prefixes or (m.arch != "unet3d" and list(m.code_prefixes) == sorted(set(m.code_prefixes))
                                 and m.code_prefixes[0] >= 1 and m.code_prefixes[-1] == m.d_code),
         "mapping.code_prefixes must be ascending distinct lengths ending at mapping.d_code (MLP codes only)"),
        (min(lo.lambda_gen, lo.lambda_gram, lo.lambda_set, lo.lambda_output) >= 0, "loss weights must be >= 0"),
        (lo.lambda_gen + lo.lambda_set + lo.lambda_output > 0,
         "at least one of loss.lambda_gen, loss.lambda_set, loss.lambda_output must be > 0"),
        (0 <= lo.code_noise_bits <= 16, "loss.code_noise_bits must be in 0..16 (0: off)"),
        (lo.code_noise_bits == 0 or m.code_bound == "tanh",
         "loss.code_noise_bits needs bounded codes: set mapping.code_bound=tanh"),
        (lo.lambda_rate >= 0, "loss.lambda_rate must be >= 0"),
        (lo.lambda_rate == 0 or lo.code_noise_bits > 0,
         "loss.lambda_rate prices the k-bit levels of the code: set loss.code_noise_bits (and mapping.code_bound=tanh)"),
        (lo.output_points >= 0, "loss.output_points must be >= 0 (0: all points)"),
        (lo.output_batch >= 0, "loss.output_batch must be >= 0 (0: every row)"),
        (o.lr_start > 0 and o.lr_end > 0, "optim learning rates must be > 0"),
        (o.epochs >= 1, "optim.epochs must be >= 1"),
        (o.batch_size >= 2, "optim.batch_size must be >= 2 (the gram loss needs a batch)"),
        (o.muon_ns_steps >= 1, "optim.muon_ns_steps must be >= 1"),
        (o.grad_clip >= 0, "optim.grad_clip must be >= 0"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ConfigError(msg)
    return cfg


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_sets(sets: list[str]) -> dict[str, Any]:
    """``["a.b=3", "c=x"]`` → nested dict; values parsed as YAML scalars (``1e-3``, ``[8, 16]``)."""
    out: dict[str, Any] = {}
    for item in sets:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {key}: cannot parse value {raw!r}: {e}") from e
        # YAML reads '1e-3' as a string; numbers written that way are meant as floats
        if isinstance(value, str):
            try:
                value = float(value) if any(c in value.lower() for c in "e.") else value
            except ValueError:
                pass
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {p} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping at the top level")
    return data


def resolve(overrides: list[dict[str, Any]]) -> TrainConfig:
    """Apply the resolution order described in the module docstring to a list of override dicts."""
    merged: dict[str, Any] = {}
    for o in overrides:
        merged = _deep_merge(merged, o)
    arch = merged.get("mapping", {}).get("arch", MappingConfig.arch)
    if arch not in ARCHS:
        raise ConfigError(f"mapping.arch: {arch!r} is not one of {', '.join(ARCHS)}")
    return validate(from_dict(TrainConfig, _deep_merge(ARCH_DEFAULTS[arch], merged)))


def train_config_for_pair(pair: str, yaml_path: str | Path | None = None, sets: list[str] | None = None,
                          extra: dict[str, Any] | None = None) -> TrainConfig:
    """The training config for ``pair``: paper defaults → pair overrides → YAML → ``--set``."""
    from squeeze3d.pairs import get_pair

    spec = get_pair(pair)
    layers = [{"pair": pair, "mapping": dict(spec.mapping), "optim": dict(spec.optim), "loss": dict(spec.loss)}]
    if yaml_path:
        layers.append(load_yaml(yaml_path))
    if extra:
        layers.append(extra)
    if sets:
        layers.append(parse_sets(sets))
    cfg = resolve(layers)
    if cfg.pair != pair:
        raise ConfigError(f"config names pair {cfg.pair!r} but {pair!r} was asked for")
    return cfg
