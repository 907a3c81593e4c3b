"""Moved to ``squeeze3d.baselines.draco``. This re-export stays while ``codec/compressor.py`` and
``codec/evaluate.py`` still name the old path; import from ``squeeze3d.baselines.draco``."""

from squeeze3d.baselines.draco import *  # noqa: F401,F403
