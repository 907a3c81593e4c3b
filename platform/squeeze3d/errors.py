"""Exceptions shared across the library. Kept in a leaf module so that ``python -m squeeze3d``
(which runs the CLI as ``__main__``) and library code catch the same class."""

from squeeze3d.redact import mask_credentials


class UserError(Exception):
    """Bad input or state the user can fix; the CLI prints it as one line and exits with status 2.

    Its text is masked when it is made (``squeeze3d.redact``): a message naming a URI never carries
    the URI's password or token, whoever prints, logs or stores it later."""

    def __init__(self, *args):
        super().__init__(*(mask_credentials(a) if isinstance(a, str) else a for a in args))


class ContainerError(UserError):
    """A .sq3d file (or a payload inside it) is malformed, corrupted, of an unknown version, or does
    not fit the model. Defined here, below ``codec`` and ``baselines``, which both raise it."""


class InputError(UserError):
    """An input asset cannot be read or is not a usable 3D shape."""
