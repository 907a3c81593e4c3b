"""The ``squeeze3d`` console command.

Each area of the library contributes its subcommands from its own module (``add_commands(sub)``),
listed in ``_COMMAND_MODULES``; modules are imported lazily only when the CLI starts, and heavy
imports (torch, ray) happen inside the handlers so ``squeeze3d --help`` stays fast.
Errors a user can fix are raised as ``UserError`` and exit with status 2 and one clear line.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from squeeze3d.errors import UserError

# Modules exposing ``add_commands(subparsers)``. Adding a command group = one line here.
_COMMAND_MODULES = [
    "squeeze3d.cli_core",
    "squeeze3d.codec.cli",
    "squeeze3d.synth.cli",
    "squeeze3d.prompts.cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="squeeze3d", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for mod in _COMMAND_MODULES:
        importlib.import_module(mod).add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc = args.func(args)
    except UserError as e:
        print(f"squeeze3d: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("squeeze3d: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)

