"""The ``squeeze3d`` console command.

Each area of the library contributes its subcommands from its own module (``add_commands(sub)``),
listed in ``_COMMAND_MODULES``; modules are imported lazily only when the CLI starts, and heavy
imports (torch, ray) happen inside the handlers so ``squeeze3d --help`` stays fast.
Errors a user can fix are raised as ``UserError`` and exit with status 2 and one clear line
(``squeeze3d.errors.run_main``, which the jobs/ scripts share).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys

from squeeze3d.errors import run_main

# Modules exposing ``add_commands(subparsers)``. Adding a command group = one line here.
_COMMAND_MODULES = [
    "squeeze3d.cli_core",
    "squeeze3d.codec.cli",
    "squeeze3d.synth.cli",
    "squeeze3d.prompts.cli",
    "squeeze3d.realcorpus.cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="squeeze3d", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for mod in _COMMAND_MODULES:
        importlib.import_module(mod).add_commands(sub)
    return parser


def main(argv: list[str] | None = None, serve: bool = True) -> int:
    """``serve``: hand a single-file codec command to a running ``squeeze3d serve`` (see
    ``squeeze3d.codec.server``) when there is one; the server itself calls this with False."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if serve and getattr(args, "forwardable", False) and not args.no_server:
            from pathlib import Path

            if Path(args.input).is_file():
                from squeeze3d.codec.server import forward

                rc = forward(list(sys.argv[1:] if argv is None else argv))
                if rc is not None:
                    sys.stdout.flush()
                    return rc
        args.cli_main = lambda a: main(a, serve=False)  # what `squeeze3d serve` runs per request
        rc = run_main(args.func, "squeeze3d", args)
        sys.stdout.flush()  # here, not at exit: a closed pipe is handled below
        return rc
    except BrokenPipeError:
        # `squeeze3d inspect f.sq3d | head -1`: the reader has what it wanted; stop quietly, as cat
        # does, and point stdout at /dev/null so the interpreter's last flush does not complain
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0

