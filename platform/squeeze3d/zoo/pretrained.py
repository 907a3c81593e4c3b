"""Where the zoo's shipped files live, and the one way a zoo model is saved and loaded
(``save_pretrained`` / ``load_pretrained``: config JSON + safetensors, atomic, f16 handled here).

``SHIPPED_WEIGHTS``: the mini zoo's trained weights, one folder per pair (package data, installed with
the wheel). ``MANIFESTS``: the pinned identities of published checkpoints (``zoo/manifests``).
"""

from __future__ import annotations

from pathlib import Path

ZOO_DIR = Path(__file__).resolve().parent
SHIPPED_WEIGHTS = ZOO_DIR / "weights"
MANIFESTS = ZOO_DIR / "manifests"


def _atomic_write(path: Path, write) -> None:
    """``write(tmp_path)`` then rename onto ``path``: a reader never sees half a file."""
    import os

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_pretrained(state: dict, directory: str | Path, name: str, config: dict, fp16: bool = True) -> Path:
    """The one way a zoo model is saved: ``<name>.safetensors`` (floating tensors as float16 when
    ``fp16``: what ships; integer buffers such as BatchNorm counters keep their dtype) and
    ``<name>.json`` (``config``: architecture, provenance, metrics), each written atomically.
    Returns the safetensors path."""
    import json

    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: (v.half() if fp16 and v.is_floating_point() else v).detach().cpu().contiguous()
               for k, v in state.items()}
    wpath = directory / f"{name}.safetensors"
    _atomic_write(wpath, lambda p: save_file(tensors, str(p)))
    text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    _atomic_write(directory / f"{name}.json", lambda p: p.write_text(text))
    return wpath


def load_pretrained(directory: str | Path, name: str, what: str, train_hint: str) -> tuple[dict, dict]:
    """The state dict (floating tensors as float32) and the config written by ``save_pretrained``.
    A missing file is ``FileNotFoundError`` naming ``what`` and how to make it (``train_hint``)."""
    import json

    from safetensors.torch import load_file

    directory = Path(directory)
    wpath, cpath = directory / f"{name}.safetensors", directory / f"{name}.json"
    if not wpath.exists() or not cpath.exists():
        raise FileNotFoundError(f"{what} weights not found at {wpath} (+ {cpath.name}); {train_hint}")
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(wpath)).items()}
    return state, json.loads(cpath.read_text())
