"""tests/unit mirrors the package (``tests/unit/pairs`` tests ``squeeze3d.pairs``, ...); tests of the
top-level modules sit here. The shared test helpers here (``official_weights``, ``tiny_mappings``)
are importable from every folder below."""

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
