"""The layout a newcomer reads: the library never reads the source checkout, no library file is
longer than 500 lines, and tests/unit mirrors the package's folders."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "platform" / "squeeze3d"
MAX_LINES = 500


def test_the_library_never_finds_the_checkout_from_its_own_path():
    hits = [f"{p.relative_to(ROOT)}:{i}" for p in sorted(PACKAGE.rglob("*.py"))
            for i, line in enumerate(p.read_text().splitlines(), 1) if re.search(r"parents\[[23]\]", line)]
    assert not hits, f"the library looks for the source checkout from __file__: {hits}"


def test_no_library_file_over_500_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in sorted(PACKAGE.rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def test_unit_test_folders_mirror_the_package():
    here = Path(__file__).resolve().parent
    folders = [d.relative_to(here) for d in sorted(here.rglob("*")) if d.is_dir() and d.name != "__pycache__"]
    missing = [str(d) for d in folders if not (PACKAGE / d).is_dir()]
    assert not missing, f"tests/unit folders without a package folder of the same path: {missing}"
