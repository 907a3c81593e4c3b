"""Moved to ``squeeze3d.tracking`` (tracking sits beside the registry, below ``train``). This
re-export keeps the old path working for code that still names it; import ``squeeze3d.tracking``."""

from squeeze3d.tracking import *  # noqa: F401,F403
