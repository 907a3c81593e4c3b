"""Reader for LION's official checkpoint layout (nv-tlabs/LION): a ``cfg.yml`` next to a ``.pt``.

The ``.pt`` is a dict with ``vae_state_dict`` (the VAE: ``style_encoder.*``, ``style_mlp.*``,
``encoder.*``, ``decoder.*``) and ``dae_state_dict`` (a ModuleList of the two priors: ``0.*`` global,
``1.*`` latent points). ``cfg.yml`` carries the hyper-parameters (``latent_pts.style_dim``,
``shapelatent.latent_dim``, ``data.tr_max_sample_points``, ``ddpm.*``, ...).

The mini generator (``squeeze3d.zoo.lion.model``) has LION's latent layout but per-point MLPs instead of
LION's PVCNNs, so this reader
- maps the configuration (latent sizes, number of points, diffusion schedule) onto ``LionConfig``
  (network widths come from a ``squeeze3d_mini`` section when the file was written by
  ``export_official_layout``; otherwise the mini defaults),
- loads every tensor whose name and shape match the mini model under the module mapping
  ``vae_state_dict -> vae.``, ``dae_state_dict.0 -> global_prior.``, ``dae_state_dict.1 -> point_prior.``
  (e.g. a checkpoint exported from the mini model with ``export_official_layout``),
- and reports, per module, everything it cannot load and why.
To use the official weights themselves, use ``squeeze3d.zoo.lion.official``: LION's PVCNN networks
and both priors at the published architecture, loading ``vae_state_dict`` / ``dae_state_dict`` key
for key (``build_generator``; docs/models/lion_official.md).
The ``.pt`` is read with ``torch.load(weights_only=True)``: nothing in the file is executed.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from squeeze3d.errors import CheckpointError
from squeeze3d.zoo.lion.model import LionConfig, LionModel

# "stats" carries the mini model's latent standardisation (LION has no such buffers)
_PRIOR_PREFIX = {"0": "global_prior.", "1": "point_prior.", "stats": ""}


class LionCheckpointError(CheckpointError):
    """The files are not a LION checkpoint (missing sections, unreadable config)."""


@dataclass
class LionCheckpointReport:
    config: LionConfig
    """The mini architecture implied by ``cfg.yml``."""
    config_mapped: dict[str, Any]
    """``LionConfig`` field -> (cfg.yml key, value) for every field taken from the file."""
    loaded: list[str] = field(default_factory=list)
    """Mini-model keys filled from the checkpoint."""
    not_loaded: dict[str, list[str]] = field(default_factory=dict)
    """Official module group (e.g. ``vae.style_encoder``) -> its tensor names that have no match."""
    mismatched: list[str] = field(default_factory=list)
    """Same name, different shape: ``name: official shape vs mini shape``."""
    notes: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.not_loaded and not self.mismatched

    def summary(self) -> str:
        lines = [f"LION checkpoint -> mini LionConfig(global_dim={self.config.global_dim}, "
                 f"point_dim={self.config.point_dim}, num_points={self.config.num_points}, "
                 f"diffusion_steps={self.config.diffusion_steps})",
                 f"  loaded {len(self.loaded)} tensors"]
        for group, names in sorted(self.not_loaded.items()):
            lines.append(f"  cannot load {group}: {len(names)} tensors (no counterpart in the mini per-point "
                         f"MLP architecture; squeeze3d.zoo.lion.official loads LION's PVCNN networks)")
        for m in self.mismatched:
            lines.append(f"  shape mismatch: {m}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _get(cfg: dict, dotted: str) -> Any:
    cur: Any = cfg
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def config_from_yaml(cfg: dict) -> tuple[LionConfig, dict[str, Any], list[str]]:
    """``LionConfig`` from a parsed LION ``cfg.yml``; returns (config, mapping, notes)."""
    mapping = {"global_dim": "latent_pts.style_dim", "point_feat_dim": "shapelatent.latent_dim",
               "num_points": "data.tr_max_sample_points", "diffusion_steps": "ddpm.num_steps",
               "beta_start": "ddpm.beta_1", "beta_end": "ddpm.beta_T"}
    # widths of the mini networks: only present in files written by export_official_layout
    mini = cfg.get("squeeze3d_mini") if isinstance(cfg.get("squeeze3d_mini"), dict) else {}
    kw = {k: v for k, v in asdict(LionConfig.from_dict(mini)).items()} if mini else {}
    mapped, notes = {}, []
    for name, key in mapping.items():
        v = _get(cfg, key)
        if v is not None:
            kw[name] = type(getattr(LionConfig, name))(v)
            mapped[name] = (key, v)
        else:
            notes.append(f"cfg.yml has no {key}; keeping the mini default for {name}")
    input_dim = _get(cfg, "ddpm.input_dim")
    if input_dim is not None and int(input_dim) != 3:
        notes.append(f"ddpm.input_dim = {input_dim}: the mini model handles xyz (3) only")
    sched = _get(cfg, "ddpm.sched_mode")
    if sched is not None and sched != "linear":
        notes.append(f"ddpm.sched_mode = {sched!r}: the mini diffusion uses a linear beta schedule")
    for key in ("shapelatent.encoder_type", "shapelatent.decoder_type", "latent_pts.style_encoder",
                "latent_pts.style_prior"):
        v = _get(cfg, key)
        if v is not None:
            notes.append(f"{key} = {v} (replaced by per-point MLPs in the mini model)")
    return LionConfig(**kw), mapped, notes


def read_lion_checkpoint(cfg_path: str | Path, ckpt_path: str | Path) -> tuple[LionModel, LionCheckpointReport]:
    """Parse ``cfg.yml`` + ``.pt``; build the mini model they imply and fill what matches.

    Returns ``(model, report)``; the model's unmatched parts keep their fresh initialisation, so check
    ``report.complete`` (or read ``report.summary()``) before using it as a generator."""
    import yaml

    cfg_path, ckpt_path = Path(cfg_path), Path(ckpt_path)
    try:
        cfg = yaml.safe_load(cfg_path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise LionCheckpointError(f"cannot read LION config {cfg_path}: {e}") from e
    if not isinstance(cfg, dict):
        raise LionCheckpointError(f"{cfg_path}: expected a YAML mapping (LION cfg.yml), got {type(cfg).__name__}")
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict):
        raise LionCheckpointError(f"{ckpt_path}: expected a dict with vae_state_dict and dae_state_dict")
    missing = [k for k in ("vae_state_dict", "dae_state_dict") if k not in ckpt]
    if missing:
        raise LionCheckpointError(f"{ckpt_path}: not a LION checkpoint, missing {missing}; "
                                  f"top-level keys: {sorted(ckpt)[:12]}")
    config, mapped, notes = config_from_yaml(cfg)
    model = LionModel(config)
    ours = model.state_dict()

    official: dict[str, tuple[str, torch.Tensor]] = {}  # mini-style name -> (group, tensor)
    for k, v in ckpt["vae_state_dict"].items():
        official["vae." + k] = ("vae." + k.split(".")[0], v)
    for k, v in ckpt["dae_state_dict"].items():
        head, _, rest = k.partition(".")
        prefix = _PRIOR_PREFIX.get(head)
        group = f"prior.{head}." + rest.split(".")[0] if prefix is not None else "prior." + head
        official[(prefix if prefix is not None else f"prior{head}.") + rest] = (group, v)

    report = LionCheckpointReport(config=config, config_mapped=mapped, notes=notes)
    new_state = {}
    not_loaded: dict[str, list[str]] = defaultdict(list)
    for name, (group, tensor) in official.items():
        if name in ours and tuple(ours[name].shape) == tuple(tensor.shape):
            new_state[name] = tensor.to(ours[name].dtype)
            report.loaded.append(name)
        elif name in ours:
            report.mismatched.append(f"{name}: official {tuple(tensor.shape)} vs mini {tuple(ours[name].shape)}")
        else:
            not_loaded[group].append(name)
    report.not_loaded = dict(not_loaded)
    untouched = [k for k in ours if k not in new_state]
    if untouched:
        report.notes.append(f"{len(untouched)} mini tensors have no official counterpart and keep their "
                            "initialisation")
    model.load_state_dict(new_state, strict=False)
    return model.eval(), report


def export_official_layout(model: LionModel, cfg_path: str | Path, ckpt_path: str | Path) -> None:
    """Write a mini model in LION's layout (``cfg.yml`` + ``.pt`` with ``vae_state_dict`` and
    ``dae_state_dict``): used to test the reader, and to hand mini weights to tools expecting it."""
    import yaml

    c = model.cfg
    cfg = {"data": {"tr_max_sample_points": c.num_points},
           "ddpm": {"input_dim": 3, "num_steps": c.diffusion_steps, "beta_1": c.beta_start,
                    "beta_T": c.beta_end, "sched_mode": "linear"},
           "shapelatent": {"latent_dim": c.point_feat_dim},
           "latent_pts": {"style_dim": c.global_dim},
           "squeeze3d_mini": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(c).items()}}
    Path(cfg_path).write_text(yaml.safe_dump(cfg))
    state = model.state_dict()
    vae = {k.removeprefix("vae."): v for k, v in state.items() if k.startswith("vae.")}
    dae = {}
    for k, v in state.items():
        if k.startswith("global_prior."):
            dae["0." + k.removeprefix("global_prior.")] = v
        elif k.startswith("point_prior."):
            dae["1." + k.removeprefix("point_prior.")] = v
        elif not k.startswith("vae."):
            dae["stats." + k] = v
    torch.save({"vae_state_dict": vae, "dae_state_dict": dae}, ckpt_path)
