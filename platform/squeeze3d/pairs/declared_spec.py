"""The ``PairSpec`` a pair file declares (``pairs.declared`` reads and finds the files): the models'
builders (``ModelBuilder``, picklable for Ray), the latent shapes read from the models (the adapters'
``latent_shape``, else one probe on CPU) and the spec itself, cached per file version."""

from __future__ import annotations

import copy
import importlib
import json
from pathlib import Path
from typing import Any

from squeeze3d.pairs.declared import (
    KIND_DEFAULTS,
    PROBE_PROMPT,
    Declaration,
    ModelDecl,
    PairFileError,
    read_declaration,
    use_file,
)


class ModelBuilder:
    """``device -> Encoder | Generator`` for one declared model (picklable: Ray ships specs' builders)."""

    def __init__(self, decl: ModelDecl, pair: str):
        self.decl, self.pair = decl, pair

    def __call__(self, device: str):
        from squeeze3d.zoo import adapters

        d = self.decl
        fn = adapters.load(d.kind, d.adapter)
        if d.checkpoint is not None and not Path(d.checkpoint).exists():
            raise FileNotFoundError(f"pair {self.pair}: {d.kind} checkpoint {d.checkpoint} does not exist")
        return fn(d.checkpoint, device, **d.options)

    def declared_shape(self) -> tuple[int, ...] | None:
        from squeeze3d.zoo import adapters

        shape_fn = getattr(adapters.load(self.decl.kind, self.decl.adapter), "latent_shape", None)
        if shape_fn is None:
            return None
        return tuple(int(x) for x in shape_fn(self.decl.checkpoint, **self.decl.options))


def _dummy_asset(kind: str, num_points: int | None, grid: int | None):
    """One input of the asset kind (for reading E's latent shape without sampling G)."""
    import torch

    g = torch.Generator().manual_seed(0)
    if kind == "radiance_field" and grid:
        return torch.rand(1, 4, grid, grid, grid, generator=g)
    if kind in ("point_cloud", "mesh") and num_points:
        xyz = torch.randn(1, num_points, 3, generator=g)
        xyz = xyz / xyz.norm(dim=-1, keepdim=True)
        if kind == "point_cloud":
            return xyz
        return torch.cat([xyz, xyz, torch.full_like(xyz, 0.5)], dim=-1)  # xyz, normal, rgb
    return None


def _probe_condition(kind: str, path: Path):
    if kind == "noise":
        return 0
    if kind == "prompt":
        return (PROBE_PROMPT, 0)
    raise PairFileError(f"{path}: cannot read G's latent shape by sampling an {kind} condition; give the "
                        f"generator adapter a latent_shape function (zoo.adapters)")


_SHAPES: dict[str, tuple[int, ...]] = {}


def _shape_key(decl: ModelDecl) -> str:
    stamp = None
    if decl.checkpoint:
        try:
            stamp = Path(decl.checkpoint).stat().st_mtime_ns
        except OSError:
            stamp = None
    return json.dumps([decl.kind, decl.adapter, decl.checkpoint, stamp, decl.options], sort_keys=True, default=str)


def latent_shapes(decl: Declaration, enc: ModelBuilder, gen: ModelBuilder) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(z_E shape, z_G shape) read from the models: the adapters' ``latent_shape`` (configuration only)
    where they have one, else the models built on CPU and probed with one input (G: one sample of a
    fixed condition; E: a dummy asset of the pair's kind, or G's sample). Cached per process."""
    ke, kg = _shape_key(decl.encoder), _shape_key(decl.generator)
    if ke in _SHAPES and kg in _SHAPES:
        return _SHAPES[ke], _SHAPES[kg]
    doc = decl.doc
    z_g = _SHAPES.get(kg) or gen.declared_shape()
    z_e = _SHAPES.get(ke) or enc.declared_shape()
    assets = None
    if z_g is None:
        z, assets = gen("cpu").sample([_probe_condition(doc["condition_kind"], decl.path)])
        z_g = tuple(z.shape[1:])
    if z_e is None:
        if assets is None:
            assets = _dummy_asset(doc["asset_kind"], doc.get("num_points"), doc.get("grid_resolution"))
        if assets is None:
            _, assets = gen("cpu").sample([_probe_condition(doc["condition_kind"], decl.path)])
        z_e = tuple(enc("cpu").encode(assets).shape[1:])
    _SHAPES[ke], _SHAPES[kg] = tuple(z_e), tuple(z_g)
    return _SHAPES[ke], _SHAPES[kg]


def _import(ref: str):
    module, _, fn = ref.partition(":")
    return getattr(importlib.import_module(module), fn)


_SPECS: dict[tuple[Path, int], Any] = {}


def load_file(path: str | Path):
    """The ``PairSpec`` a pair file declares (cached per file version). Errors are one
    ``PairFileError`` line naming the file and what is wrong."""
    from squeeze3d.pairs.base import PairSpec
    from squeeze3d.zoo.adapters import AdapterError

    decl = read_declaration(path)
    key = (decl.path, decl.path.stat().st_mtime_ns)
    if key in _SPECS:
        return _SPECS[key]
    use_file(decl.path, decl.name)
    doc = decl.doc
    enc, gen = ModelBuilder(decl.encoder, decl.name), ModelBuilder(decl.generator, decl.name)
    try:
        z_e, z_g = latent_shapes(decl, enc, gen)
    except (AdapterError, FileNotFoundError, ValueError, TypeError, KeyError, OSError) as e:
        msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
        raise PairFileError(f"pair {decl.name} ({decl.path}): cannot load its models to read the latent shapes: "
                            f"{msg}") from None
    objective, mode, metrics = KIND_DEFAULTS[doc["asset_kind"]]
    extra: dict[str, Any] = {}
    metrics = doc.get("asset_metrics", metrics)
    try:
        if metrics:
            extra["asset_metrics"] = _import(metrics)
        if doc.get("condition_problem"):
            extra["condition_problem"] = _import(doc["condition_problem"])
    except (ImportError, AttributeError) as e:
        raise PairFileError(f"{decl.path}: cannot import {metrics or doc.get('condition_problem')}: {e}") from None
    spec = PairSpec(
        name=decl.name,
        description=doc.get("description") or f"declared in {decl.path.name}: {decl.encoder.adapter} + "
                                               f"{decl.generator.adapter}",
        asset_kind=doc["asset_kind"], condition_kind=doc["condition_kind"],
        z_e_shape=tuple(z_e), z_g_shape=tuple(z_g),
        build_encoder=enc, build_generator=gen,
        mapping=copy.deepcopy(doc.get("mapping") or {}), optim=copy.deepcopy(doc.get("optim") or {}),
        loss=copy.deepcopy(doc.get("loss") or {}),
        normalisation=doc.get("normalisation", "identity" if doc["asset_kind"] == "radiance_field" else "unit_sphere"),
        num_points=doc.get("num_points"), grid_resolution=doc.get("grid_resolution"),
        objective=doc.get("objective", objective), objective_mode=doc.get("objective_mode", mode),
        **extra)
    _SPECS[key] = spec
    return spec
