"""Moved to ``squeeze3d.baselines.grid``. This re-export stays while ``codec/compressor.py`` and
``codec/evaluate.py`` still name the old path; import from ``squeeze3d.baselines.grid``."""

from squeeze3d.baselines.grid import *  # noqa: F401,F403
