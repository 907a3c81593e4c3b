"""Adapters: named builders of encoders and generators from a checkpoint, for pairs declared in YAML.

Each entry maps a name to ``"module:function"``; the module is imported only when the adapter is
used (Ray's release-harness pattern), so listing adapters or reading a pair file never imports torch
model code, and an adapter whose module is not installed still lists.

An adapter function has the signature ``(checkpoint_path: str | None, device: str, **options)`` and
returns a ``zoo.base.Encoder`` (ENCODERS) or ``zoo.base.Generator`` (GENERATORS). ``options`` come
from the pair file's ``encoder.options`` / ``generator.options``.

Latent shapes are never declared in pair files. The platform reads them from the model: a function
may carry ``fn.latent_shape = shape_fn`` with ``shape_fn(checkpoint_path, **options) -> tuple``
that reads only the checkpoint's configuration (cheap for models of hundreds of millions of
parameters); otherwise the model is built on CPU and probed with one dummy input
(``pairs.declared``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

ENCODERS: dict[str, str] = {
    # tiny random-weight point MLP (fixed seed, or a checkpoint written by debug_models.save_checkpoint)
    "debug": "squeeze3d.zoo.debug.adapter:debug_encoder",
    # mini zoo (shipped weights when checkpoint is null; else a folder in the zoo's own format)
    "pointnet2": "squeeze3d.zoo.pointnet2.adapter:pointnet2_encoder",
    "meshanything_mini": "squeeze3d.zoo.meshanything.adapter:meshanything_mini_encoder",
    "nerfmae_mini": "squeeze3d.zoo.nerfmae.adapter:nerfmae_mini_encoder",
    # real checkpoints in their published layout
    "meshanything_350m": "squeeze3d.zoo.meshanything.adapter:meshanything_350m_encoder",
    # NeRF-MAE's run_swin_mae3d.py checkpoint file (.pt, or a .safetensors of its state dict)
    "nerfmae_swin3d": "squeeze3d.zoo.nerfmae.swin3d:build_encoder",
}

GENERATORS: dict[str, str] = {
    "debug": "squeeze3d.zoo.debug.adapter:debug_generator",
    "debug_text": "squeeze3d.zoo.debug.adapter:debug_text_generator",
    "lion_mini": "squeeze3d.zoo.lion.adapter:lion_mini_generator",
    "shap_e_mini": "squeeze3d.zoo.shap_e.adapter:shap_e_mini_generator",
    "nerfmae_mini": "squeeze3d.zoo.nerfmae.adapter:nerfmae_mini_generator",
    # a diffusers ShapEPipeline folder (openai/shap-e layout)
    "shap_e_diffusers": "squeeze3d.zoo.shap_e.adapter:shap_e_diffusers_generator",
    # LION's released checkpoints/model.pt (cfg.yml beside it or one folder up); LION has no encoder role
    "lion_official": "squeeze3d.zoo.lion.official:build_generator",
    "nerfmae_swin3d": "squeeze3d.zoo.nerfmae.swin3d:build_generator",
}

KINDS = {"encoder": ENCODERS, "generator": GENERATORS}


def need_checkpoint(checkpoint_path, adapter: str) -> Path:
    """The checkpoint path an adapter without shipped weights needs; missing or absent: one line."""
    if not checkpoint_path:
        raise ValueError(f"adapter {adapter!r} needs a checkpoint path (it has no shipped weights)")
    p = Path(checkpoint_path)
    if not p.exists():
        raise FileNotFoundError(f"adapter {adapter!r}: checkpoint {p} does not exist")
    return p


def dir_or_shipped(checkpoint_path, adapter: str) -> Path | None:
    """None (the shipped weights) when no checkpoint is given, else the checked path."""
    return None if checkpoint_path is None else need_checkpoint(checkpoint_path, adapter)


class AdapterError(ValueError):
    """An unknown adapter name, or one whose module or function cannot be imported."""


def names(kind: str) -> list[str]:
    return sorted(KINDS[kind])


def target(kind: str, name: str) -> str:
    """The ``module:function`` string registered as ``name`` (no import)."""
    table = KINDS[kind]
    if name not in table:
        raise AdapterError(f"unknown {kind} adapter {name!r}; known: {', '.join(sorted(table))}")
    return table[name]


def load(kind: str, name: str) -> Callable:
    """The adapter function, imported now; a missing module or function is one ``AdapterError`` line."""
    spec = target(kind, name)
    module_name, _, fn_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name):
            raise AdapterError(f"{kind} adapter {name!r} needs module {module_name}, which is not installed in "
                               f"this version of squeeze3d") from None
        raise AdapterError(f"{kind} adapter {name!r}: importing {module_name} failed: {e}") from None
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise AdapterError(f"{kind} adapter {name!r}: {module_name} has no function {fn_name}")
    return fn


def available(kind: str, name: str) -> bool:
    """Whether the adapter's module can be found (without importing it)."""
    import importlib.util

    module_name = target(kind, name).partition(":")[0]
    try:
        return importlib.util.find_spec(module_name) is not None
    except ModuleNotFoundError:
        return False
