"""A small reader for AC3D ``.ac`` files (FlightGear's model format): geometry only.

The format is line-based text: ``MATERIAL`` lines, then ``OBJECT <type>`` blocks with optional
``name``, ``data <n>`` (n characters follow), ``texture``, ``texrep``, ``texoff``, ``rot`` (3x3),
``loc`` (3), ``crease``, ``url``, ``hidden``/``locked``/``folded``, ``numvert <n>`` (n lines of
x y z), ``numsurf <n>`` (``SURF <flags>``, ``mat <i>``, ``refs <k>`` then k lines ``index u v``) and
finally ``kids <n>`` followed by n child objects. A child's vertices are in its parent's frame.

Transforms follow OpenSceneGraph's AC3D loader, which FlightGear uses: with row vectors,
``v_parent = v @ rot + loc``. Surfaces whose type (``flags & 0xF``) is 1 (closed line) or 2 (line)
have no area and are skipped; polygons are triangulated as fans. A file that ends where more kids
were announced keeps the objects read so far. Coordinates are returned as stored
(AC3D is y up; the caller turns them)."""

from __future__ import annotations

import numpy as np

from squeeze3d.realcorpus.meshes import MeshRejected, triangulate_fan


class _Lines:
    def __init__(self, text: str):
        self.lines = text.splitlines()
        self.i = 0

    def next(self) -> str:
        while self.i < len(self.lines):
            line = self.lines[self.i].strip()
            self.i += 1
            if line:
                return line
        raise MeshRejected("AC3D file ends inside an object")

    def at_end(self) -> bool:
        while self.i < len(self.lines) and not self.lines[self.i].strip():
            self.i += 1
        return self.i >= len(self.lines)

    def skip_chars(self, n: int) -> None:
        """``data <n>``: the next n characters (line breaks count as one) are free text."""
        while n > 0 and self.i < len(self.lines):
            n -= len(self.lines[self.i]) + 1
            self.i += 1


def _object(lines: _Lines, parent: np.ndarray, verts: list[np.ndarray], tris: list[np.ndarray],
            count: list[int], depth: int = 0) -> None:
    if depth > 200:
        raise MeshRejected("AC3D objects nested deeper than 200")
    rot, loc = np.eye(3), np.zeros(3)
    local = np.zeros((0, 3))
    polys: list[list[int]] = []
    while True:
        line = lines.next()
        tok = line.split()
        key = tok[0].lower()
        if key == "data":
            lines.skip_chars(int(tok[1]))
        elif key == "rot":
            rot = np.asarray(tok[1:10], np.float64).reshape(3, 3)
        elif key == "loc":
            loc = np.asarray(tok[1:4], np.float64)
        elif key == "numvert":
            n = int(tok[1])
            local = np.array([lines.next().split()[:3] for _ in range(n)], np.float64).reshape(n, 3)
        elif key == "numsurf":
            for _ in range(int(tok[1])):
                if lines.at_end():  # a truncated file (one ships so): keep what was complete
                    return
                head = lines.next().split()
                while head[0].upper() != "SURF":  # tolerate stray lines between surfaces
                    head = lines.next().split()
                flags = int(head[1], 16)
                refs: list[int] = []
                while True:
                    t = lines.next().split()
                    k = t[0].lower()
                    if k == "mat":
                        continue
                    if k == "refs":
                        refs = [int(lines.next().split()[0]) for _ in range(int(t[1]))]
                        break
                    raise MeshRejected(f"unexpected {t[0]!r} in a SURF")
                if flags & 0xF == 0 and len(refs) >= 3:
                    polys.append(refs)
        elif key == "kids":
            # parent maps this object's frame to the file's: x_file = x @ m[:3] + m[3]
            m = np.vstack([rot @ parent[:3], loc @ parent[:3] + parent[3]])
            if len(local):
                if polys:
                    idx = triangulate_fan(polys)
                    if idx.size and (idx.max() >= len(local) or idx.min() < 0):
                        raise MeshRejected("SURF refs a missing vertex")
                    tris.append(idx + count[0])
                verts.append(local @ m[:3] + m[3])
                count[0] += len(local)
            for _ in range(int(tok[1])):
                if lines.at_end():  # a truncated file (one ships so): keep what was complete
                    return
                head = lines.next().split()
                if head[0].upper() != "OBJECT":
                    raise MeshRejected(f"expected OBJECT, got {head[0]!r}")
                _object(lines, m, verts, tris, count, depth + 1)
            return
        # name, texture, texrep, texoff, crease, url, hidden, locked, folded, subdiv: no geometry


def read_ac3d(text: str) -> tuple[np.ndarray, np.ndarray]:
    """``(vertices [V, 3] float64, faces [F, 3] int64)`` of every polygon in the file."""
    lines = _Lines(text)
    try:
        head = lines.next()
    except MeshRejected as e:
        raise MeshRejected("empty AC3D file") from e
    if not head.startswith("AC3D"):
        raise MeshRejected("not an AC3D file (no AC3D header)")
    verts: list[np.ndarray] = []
    tris: list[np.ndarray] = []
    count = [0]
    identity = np.vstack([np.eye(3), np.zeros(3)])
    try:
        while lines.i < len(lines.lines):
            line = lines.lines[lines.i].strip()
            lines.i += 1
            if line.upper().startswith("OBJECT"):
                _object(lines, identity, verts, tris, count)
    except (ValueError, IndexError) as e:
        raise MeshRejected(f"malformed AC3D near line {lines.i}: {e}") from e
    if not tris:
        raise MeshRejected("no polygons")
    return np.concatenate(verts), np.concatenate(tris)
