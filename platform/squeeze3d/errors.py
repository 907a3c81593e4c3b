"""Exceptions shared across the library. Kept in a leaf module so that ``python -m squeeze3d``
(which runs the CLI as ``__main__``) and library code catch the same class."""


class UserError(Exception):
    """Bad input or state the user can fix; the CLI prints it as one line and exits with status 2."""
