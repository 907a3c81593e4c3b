"""Files shipped inside the package (``squeeze3d/data/``), found with ``importlib.resources``: the
library never reads the source checkout, so an installed wheel has everything it needs.

- ``data/pairs/``: pair files discovered by name (``squeeze3d pairs``);
- ``data/prompts/``: the seed vocabularies of the prompt tables (``squeeze3d.prompts.topics``);
- ``data/datasets/``: the dataset builder's defaults per pair (``squeeze3d.synth.build.defaults_file``).

The mini zoo's weights are ``squeeze3d/zoo/weights`` (``squeeze3d.zoo.pretrained``).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def shipped_path(*parts: str) -> Path:
    """The path of a shipped file or folder under ``squeeze3d/data`` (an installed package is a
    folder on disk: wheels are never run zipped)."""
    return Path(str(resources.files("squeeze3d").joinpath("data", *parts)))
