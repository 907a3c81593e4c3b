"""Mapping checkpoints: a directory of safetensors + JSON, never pickle.

    config.json          format, version, train config, latent/code shapes, weights hash, meta
    f_e.safetensors      F_E (with its z_E standardisation buffers)
    f_d.safetensors      F_D (with its z_G standardisation buffers)
    optimizer.safetensors + trainer.json   only in training checkpoints (resume)

A receiver can load F_D alone (``part="f_d"``) and a sender F_E alone. Directories are written to a
temporary sibling and renamed, so a crash never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from squeeze3d.config import TrainConfig, from_dict, to_dict
from squeeze3d.errors import CheckpointError
from squeeze3d.mapping import Mapping, build_mapping
from squeeze3d.mapping.common import MappingHalf
from squeeze3d.zoo.base import state_dict_hash

FORMAT = "squeeze3d-mapping"
VERSION = 1


@dataclass
class MappingCheckpoint:
    config: TrainConfig
    z_e_shape: tuple[int, ...]
    z_g_shape: tuple[int, ...]
    code_shape: tuple[int, ...]
    weights_hash: str
    f_e: MappingHalf | None = None
    f_d: MappingHalf | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    optimizer_state: list[dict] | None = None
    trainer_state: dict[str, Any] | None = None


@contextlib.contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to fill; on success it replaces ``path`` in one rename,
    on any error it is removed, so readers never see a half-written directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def weights_hash(f_e: MappingHalf, f_d: MappingHalf) -> str:
    return state_dict_hash(Mapping(f_e, f_d))


def _flatten_optimizer(states: list[dict]) -> tuple[dict[str, torch.Tensor], list[dict]]:
    tensors: dict[str, torch.Tensor] = {}
    skeleton = []
    for i, sd in enumerate(states):
        scalars: dict[str, dict[str, Any]] = {}
        for pid, pstate in sd["state"].items():
            for k, v in pstate.items():
                if torch.is_tensor(v):
                    tensors[f"{i}.{pid}.{k}"] = v.detach().to("cpu").contiguous()
                else:
                    scalars.setdefault(str(pid), {})[k] = v
        skeleton.append({"param_groups": sd["param_groups"], "scalars": scalars,
                         "tensor_params": sorted({str(p) for p in sd["state"]})})
    return tensors, skeleton


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], skeleton: list[dict]) -> list[dict]:
    states = []
    for i, sk in enumerate(skeleton):
        state: dict[int, dict[str, Any]] = {int(p): dict(sk["scalars"].get(p, {})) for p in sk["tensor_params"]}
        for name, t in tensors.items():
            oi, pid, key = name.split(".", 2)
            if int(oi) == i:
                state.setdefault(int(pid), {})[key] = t
        states.append({"state": state, "param_groups": sk["param_groups"]})
    return states


def save_checkpoint(path: str | Path, f_e: MappingHalf, f_d: MappingHalf, config: TrainConfig, *,
                    meta: dict[str, Any] | None = None, optimizer_state: list[dict] | None = None,
                    trainer_state: dict[str, Any] | None = None) -> Path:
    path = Path(path)
    with atomic_dir(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in f_e.state_dict().items()}, tmp / "f_e.safetensors")
        save_file({k: v.detach().cpu().contiguous() for k, v in f_d.state_dict().items()}, tmp / "f_d.safetensors")
        doc = {
            "format": FORMAT, "version": VERSION, "train_config": to_dict(config),
            "z_e_shape": list(f_e.in_shape), "z_g_shape": list(f_d.out_shape), "code_shape": list(f_e.out_shape),
            "weights_hash": weights_hash(f_e, f_d), "meta": meta or {},
        }
        if optimizer_state is not None:
            tensors, skeleton = _flatten_optimizer(optimizer_state)
            save_file(tensors, tmp / "optimizer.safetensors")
            (tmp / "trainer.json").write_text(json.dumps({"optimizer": skeleton, **(trainer_state or {})}))
        (tmp / "config.json").write_text(json.dumps(doc, indent=2, sort_keys=True))
    return path


def read_config(path: Path) -> dict[str, Any]:
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise CheckpointError(f"{path} is not a mapping checkpoint (no config.json)")
    try:
        doc = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{cfg_file} is not valid JSON: {e}") from e
    if doc.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format {doc.get('format')!r}, expected {FORMAT!r}")
    if doc.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {doc.get('version')} is not supported (this "
                              f"build reads version {VERSION})")
    return doc


def _load_half(half: MappingHalf, file: Path) -> None:
    if not file.is_file():
        raise CheckpointError(f"missing weights file {file}")
    sd = load_file(str(file))
    own = half.state_dict()
    missing, extra = sorted(set(own) - set(sd)), sorted(set(sd) - set(own))
    bad = sorted(k for k in set(own) & set(sd) if own[k].shape != sd[k].shape)
    if missing or extra or bad:
        raise CheckpointError(f"{file.name} does not fit the configured network: missing {missing[:5]}, "
                              f"unexpected {extra[:5]}, mis-shaped {bad[:5]}")
    half.load_state_dict(sd)


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu", part: str = "both",
                    with_train_state: bool = False, verify: bool = True) -> MappingCheckpoint:
    """Load a checkpoint directory. ``part``: both | f_e | f_d. Modules come back in eval mode."""
    if part not in ("both", "f_e", "f_d"):
        raise ValueError(f"part must be both, f_e or f_d, got {part!r}")
    path = Path(path)
    doc = read_config(path)
    cfg = from_dict(TrainConfig, doc["train_config"])
    f_e, f_d = build_mapping(cfg.mapping, tuple(doc["z_e_shape"]), tuple(doc["z_g_shape"]))
    ck = MappingCheckpoint(config=cfg, z_e_shape=tuple(doc["z_e_shape"]), z_g_shape=tuple(doc["z_g_shape"]),
                           code_shape=tuple(doc["code_shape"]), weights_hash=doc["weights_hash"],
                           meta=doc.get("meta", {}))
    if part in ("both", "f_e"):
        _load_half(f_e, path / "f_e.safetensors")
        ck.f_e = f_e.to(device).eval()
    if part in ("both", "f_d"):
        _load_half(f_d, path / "f_d.safetensors")
        ck.f_d = f_d.to(device).eval()
    if part == "both" and verify and weights_hash(f_e, f_d) != ck.weights_hash:
        raise CheckpointError(f"{path}: weights do not match the hash recorded in config.json "
                              "(files corrupted or mixed from different checkpoints)")
    if with_train_state:
        tfile = path / "trainer.json"
        if not tfile.is_file():
            raise CheckpointError(f"{path} has no training state (trainer.json): it cannot be resumed")
        trainer = json.loads(tfile.read_text())
        skeleton = trainer.pop("optimizer")
        ck.optimizer_state = _unflatten_optimizer(load_file(str(path / "optimizer.safetensors")), skeleton)
        ck.trainer_state = trainer
    return ck


def export_checkpoint(src: str | Path, dst: str | Path, fp16: bool = True, meta: dict[str, Any] | None = None) -> Path:
    """A compact inference copy of checkpoint ``src`` (no optimiser state), e.g. to ship with the
    package. ``fp16``: weights stored in float16 (half the bytes); they load back into float32
    modules, and the recorded weights hash is that of the float16-rounded weights, so the copy
    verifies against itself and the codec names it by what it really computes."""
    ck = load_checkpoint(src, "cpu")
    if fp16:
        with torch.no_grad():
            for half in (ck.f_e, ck.f_d):
                for t in half.state_dict().values():
                    if t.is_floating_point():
                        t.copy_(t.half().float())
    path = Path(dst)
    with atomic_dir(path) as tmp:
        for name, half in (("f_e", ck.f_e), ("f_d", ck.f_d)):
            sd = {k: (v.half() if fp16 and v.is_floating_point() else v).detach().contiguous()
                  for k, v in half.state_dict().items()}
            save_file(sd, tmp / f"{name}.safetensors")
        doc = {"format": FORMAT, "version": VERSION, "train_config": to_dict(ck.config),
               "z_e_shape": list(ck.z_e_shape), "z_g_shape": list(ck.z_g_shape), "code_shape": list(ck.code_shape),
               "weights_hash": weights_hash(ck.f_e, ck.f_d),
               "meta": {**ck.meta, **(meta or {}), "exported_from": ck.weights_hash, "fp16": bool(fp16)}}
        (tmp / "config.json").write_text(json.dumps(doc, indent=2, sort_keys=True))
    return path
