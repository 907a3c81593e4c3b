"""FlightGear scenery and vehicle models (Debian ``flightgear-data-models``): AC3D files under
``usr/share/games/flightgear/Models/<Category>/...``, in metres, y up (turned to z up here).

Folders that hold no objects are left out: clouds and sky (``Weather``, ``Astro``), light and
particle effects (``Effects``) and cursor sprites (``Autopush``). The category is the top folder."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from squeeze3d.realcorpus.ac3d import read_ac3d
from squeeze3d.realcorpus.meshes import Y_UP_TO_Z_UP
from squeeze3d.realcorpus.objects import RawObject

MODELS_DIR = "usr/share/games/flightgear/Models"
COPYRIGHT = "usr/share/doc/flightgear-data-models/copyright"
EXCLUDED = ("Weather", "Astro", "Effects", "Autopush")


def copyright_of(text: str) -> tuple[str, str]:
    """``(licence, copyright holders)`` of the ``Files: *`` stanza of a Debian copyright file."""
    for stanza in re.split(r"\n\s*\n", text):
        if re.search(r"^Files:\s*\*\s*$", stanza, re.M):
            lic = re.search(r"^License:\s*(\S+)", stanza, re.M)
            cop = re.search(r"^Copyright:\s*(.*(?:\n[ \t].*)*)", stanza, re.M)
            return (lic.group(1) if lic else "unknown",
                    " ".join(cop.group(1).split()) if cop else "")
    return "unknown", ""


def objects(raw_dir: str | Path) -> Iterator[RawObject]:
    raw = Path(raw_dir)
    cp = raw / COPYRIGHT
    licence, holders = copyright_of(cp.read_text(errors="replace")) if cp.exists() else ("unknown", "")
    root = raw / MODELS_DIR
    for path in sorted(root.rglob("*.ac")):
        rel = path.relative_to(root)
        if rel.parts[0] in EXCLUDED or len(rel.parts) < 2:
            continue

        def load(path=path) -> tuple[np.ndarray, np.ndarray]:
            v, f = read_ac3d(path.read_text(encoding="latin-1"))
            return v @ Y_UP_TO_Z_UP.T, f

        yield RawObject(
            id=f"flightgear/{rel.with_suffix('').as_posix()}",
            source="flightgear",
            name=path.stem,
            category=rel.parts[0].lower(),
            tags=[p.lower() for p in rel.parts[1:-1]],
            licence=licence,
            creator=holders,
            origin=f"{MODELS_DIR}/{rel.as_posix()}",
            load=load,
        )
