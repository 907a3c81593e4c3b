"""The library's error tree, and the one runner that maps it to exit codes.

Two kinds of failure:
- a **user error**: bad input or state the user can fix. One line on stderr (``PROG: error: …``),
  exit status 2. ``UserError`` and its subclasses; plus the classes registered with ``user_error``,
  which keep a builtin base (``ValueError``, ``KeyError``) that library callers catch;
- anything else is an **internal error**: a bug or a broken environment, reported with its
  traceback (exit status 1).

``run_main`` applies this to a command: the ``squeeze3d`` CLI and every ``jobs/`` script go through
it, so no script keeps its own list of exceptions to catch. Kept in a leaf module so that
``python -m squeeze3d`` (which runs the CLI as ``__main__``) and library code catch the same class.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from squeeze3d.redact import mask_credentials


class UserError(Exception):
    """Bad input or state the user can fix; the CLI prints it as one line and exits with status 2.

    Its text is masked when it is made (``squeeze3d.redact``): a message naming a URI never carries
    the URI's password or token, whoever prints, logs or stores it later."""

    def __init__(self, *args):
        super().__init__(*(mask_credentials(a) if isinstance(a, str) else a for a in args))


USER_ERRORS: tuple[type[BaseException], ...] = (UserError,)
"""Every class ``run_main`` reports as a user error (``UserError`` and the registered ones)."""


def user_error(cls: type[BaseException]) -> type[BaseException]:
    """Class decorator: report ``cls`` (and its subclasses) as a user error, keeping its own bases."""
    global USER_ERRORS
    if not issubclass(cls, USER_ERRORS):
        USER_ERRORS = (*USER_ERRORS, cls)
    return cls


class ContainerError(UserError):
    """A .sq3d file (or a payload inside it) is malformed, corrupted, of an unknown version, or does
    not fit the model. Defined here, below ``codec`` and ``baselines``, which both raise it."""


class InputError(UserError):
    """An input asset cannot be read or is not a usable 3D shape."""


@user_error
class CheckpointError(ValueError):
    """A checkpoint (a mapping's or a zoo model's) is missing, malformed, or does not fit the model
    asked for. Models name their own layouts in subclasses (``PointNet2CheckpointError`` …)."""


def run_main(main: Callable[..., int | None], prog: str, *args, user_errors: tuple[type[BaseException], ...] = (),
             report: Callable[[str], None] | None = None) -> int:
    """``main(*args)`` as a command: its return value as the exit status (None: 0); a user error as
    one line ``PROG: error: …`` (through ``report``, default stderr) and status 2; Ctrl-C as
    ``PROG: interrupted`` and 130. Internal errors propagate with their traceback.
    ``user_errors``: classes of a caller that are user errors but not (yet) registered."""
    def say(line: str) -> None:
        if report is not None:
            report(line)
        else:
            print(line, file=sys.stderr)

    try:
        rc = main(*args)
    except (*USER_ERRORS, *user_errors) as e:
        from squeeze3d.redact import mask_credentials  # a leaf module: no secret reaches a terminal

        say(f"{prog}: error: {mask_credentials(str(e))}")
        return 2
    except KeyboardInterrupt:
        say(f"{prog}: interrupted")
        return 130
    return int(rc or 0)
