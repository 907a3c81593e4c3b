"""Command-line flags from a config dataclass, and the parsed flags back to overrides for its loader.

One flag per field, so a new field is a new flag: ``num_samples`` is ``--num-samples``; its type is
the field's annotation (``int``, ``float``, ``str``, ``bool``, ``X | None``; a ``dict`` field takes a
YAML/JSON mapping), its help the docstring under the field (``config.field_docs``) or
``field(metadata={"help": ...})``. Every flag defaults to ``None`` (unset), so an unset flag leaves
the value to the loader's lower layers (a YAML file, the dataclass default); a field without a
default is a required flag. ``flag_overrides`` maps the parsed namespace back to
``{field: value}`` of the flags given, what the shared loader takes as explicit overrides
(e.g. ``synth.build.resolve_config(pair, **overrides)``).

A field can opt out with ``field(metadata={"flag": False})``; a caller can refine one flag's argparse
keywords (``custom={"pair": {"type": pair_arg}}``).
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any


def flag_name(field_name: str) -> str:
    """``num_samples`` -> ``--num-samples``."""
    return "--" + field_name.replace("_", "-")


def _mapping(text: str) -> dict:
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise argparse.ArgumentTypeError(f"not YAML/JSON: {e}") from e
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a mapping such as '{{key: value}}', got {text!r}")
    return value


def _flag_kwargs(tp: Any) -> dict:
    """argparse keywords for a field annotation (``X | None`` is ``X``: None means unset anyway)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            tp = args[0]
    if tp is bool:
        return {"action": argparse.BooleanOptionalAction}
    if tp in (int, float, str):
        return {"type": tp}
    if tp is dict or typing.get_origin(tp) is dict:
        return {"type": _mapping, "metavar": "MAPPING"}
    raise TypeError(f"no command-line flag for a field of type {tp!r}; give it metadata={{'flag': False}} "
                    "or a custom type")


def flag_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of ``cls`` that have a flag."""
    return [f for f in dataclasses.fields(cls) if f.metadata.get("flag", True)]


def add_dataclass_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type, *,
                        custom: dict[str, dict] | None = None) -> list[str]:
    """Add one flag per field of the dataclass ``cls`` to ``parser``; returns the field names."""
    from squeeze3d.config import field_docs

    custom = custom or {}
    unknown = sorted(set(custom) - {f.name for f in flag_fields(cls)})
    if unknown:
        raise TypeError(f"custom flags for fields {cls.__name__} lacks (or has no flag for): {unknown}")
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    names = []
    for f in flag_fields(cls):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        kwargs = {**_flag_kwargs(hints[f.name]), "dest": f.name, "default": None,
                  "help": (f.metadata.get("help") or docs.get(f.name, "")).replace("``", "").replace("%", "%%"),
                  **custom.get(f.name, {})}
        if required:
            kwargs["required"] = True
        parser.add_argument(flag_name(f.name), **kwargs)
        names.append(f.name)
    return names


def flag_overrides(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """``{field: value}`` of the flags of ``cls`` that were given (unset flags, None, are left out)."""
    return {f.name: getattr(args, f.name) for f in flag_fields(cls) if getattr(args, f.name, None) is not None}
