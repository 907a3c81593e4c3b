"""Exceptions shared across the library. Kept in a leaf module so that ``python -m squeeze3d``
(which runs the CLI as ``__main__``) and library code catch the same class."""


class UserError(Exception):
    """Bad input or state the user can fix; the CLI prints it as one line and exits with status 2."""


class ContainerError(UserError):
    """A .sq3d file (or a payload inside it) is malformed, corrupted, of an unknown version, or does
    not fit the model. Defined here, below ``codec`` and ``baselines``, which both raise it."""


class InputError(UserError):
    """An input asset cannot be read or is not a usable 3D shape."""
