"""Marching-cubes lookup tables in the layout of diffusers' ``MeshDecoder`` buffers.

diffusers' ``ShapERenderer.mesh_decoder`` registers ``cases [256, 5, 3]`` (local edge indices of up to
five triangles per cube configuration) and ``masks [256, 5]`` (which of them exist) as zero buffers:
the real values come with Shap-E's checkpoint. A mini zoo trained here has no such checkpoint, so
this module *derives* the tables from first principles instead of carrying a copied table:

for each of the 256 inside/outside patterns of a cube's 8 corners, every cube face whose corners
change sign contributes segments between its crossed edges (an ambiguous face, two diagonal corners
inside, is split so the inside corners stay apart: the choice must only be the same for the two
cubes sharing the face, and a rule that looks at the face alone is); the segments close into loops
(each crossed edge lies on exactly two faces), each loop is fanned into triangles, and each triangle
is wound so its normal points from the inside corners to the outside ones (outward normals).

Layout (matching ``MeshDecoder.forward``): corner ``c = x + 2y + 4z`` is bit ``c`` of the case index
and is inside when the field is > 0; local edges 0-3 run along x at (y, z) = (0,0), (1,0), (0,1),
(1,1); 4-7 along y at (x, z) = (0,0), (1,0), (0,1), (1,1); 8-11 along z at (x, y) = (0,0), (1,0),
(0,1), (1,1).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


def _corner(c: int) -> np.ndarray:
    return np.array([c & 1, (c >> 1) & 1, (c >> 2) & 1], float)


def _edges() -> list[tuple[int, int]]:
    """Local edge index -> (corner a, corner b)."""
    out = []
    for axis, others in ((0, (1, 2)), (1, (0, 2)), (2, (0, 1))):
        for k in range(4):  # k's bit 0 is the first other axis, bit 1 the second
            base = [0, 0, 0]
            base[others[0]] = k & 1
            base[others[1]] = (k >> 1) & 1
            a = base[0] + 2 * base[1] + 4 * base[2]
            out.append((a, a + (1 << axis)))
    return out


EDGES = _edges()


def _faces() -> list[list[int]]:
    """The 6 cube faces as corner cycles (each consecutive pair shares a cube edge)."""
    faces = []
    for axis in range(3):
        u, v = [a for a in range(3) if a != axis]
        for side in (0, 1):
            cyc = []
            for du, dv in ((0, 0), (1, 0), (1, 1), (0, 1)):
                p = [0, 0, 0]
                p[axis], p[u], p[v] = side, du, dv
                cyc.append(p[0] + 2 * p[1] + 4 * p[2])
            faces.append(cyc)
    return faces


def _edge_of(a: int, b: int) -> int:
    return EDGES.index((min(a, b), max(a, b)))


def _case_triangles(case: int) -> list[tuple[int, int, int]]:
    inside = [(case >> c) & 1 == 1 for c in range(8)]
    adj: dict[int, list[int]] = {}
    for cyc in _faces():
        crossed = [(i, _edge_of(cyc[i], cyc[(i + 1) % 4])) for i in range(4)
                   if inside[cyc[i]] != inside[cyc[(i + 1) % 4]]]
        if len(crossed) == 2:
            pairs = [(crossed[0][1], crossed[1][1])]
        elif len(crossed) == 4:
            # ambiguous: cut off each inside corner on its own (pair the two edges meeting at it)
            pairs = []
            for i in range(4):
                if inside[cyc[i]]:
                    pairs.append((_edge_of(cyc[i - 1], cyc[i]), _edge_of(cyc[i], cyc[(i + 1) % 4])))
        else:
            pairs = []
        for a, b in pairs:
            adj.setdefault(a, []).append(b)
            adj.setdefault(b, []).append(a)
    tris: list[tuple[int, int, int]] = []
    seen: set[int] = set()
    mid = {e: (_corner(a) + _corner(b)) / 2 for e, (a, b) in enumerate(EDGES)}
    for start in sorted(adj):
        if start in seen:
            continue
        loop, prev, cur = [start], None, start
        seen.add(start)
        while True:
            nxt = [n for n in adj[cur] if n != prev]
            nxt = nxt[0] if nxt else adj[cur][0]
            if nxt == start:
                break
            loop.append(nxt)
            seen.add(nxt)
            prev, cur = cur, nxt
        for i in range(1, len(loop) - 1):
            t = (loop[0], loop[i], loop[i + 1])
            n = np.cross(mid[t[1]] - mid[t[0]], mid[t[2]] - mid[t[0]])
            outward = np.zeros(3)
            for e in t:  # inside -> outside along each of the triangle's edges
                a, b = EDGES[e]
                outward += (_corner(b) - _corner(a)) * (1 if inside[a] else -1)
            tris.append(t if n @ outward > 0 else (t[0], t[2], t[1]))
    return tris


@lru_cache(maxsize=1)
def mc_tables() -> tuple[np.ndarray, np.ndarray]:
    """``(cases [256, 5, 3] int64, masks [256, 5] bool)`` for ``MeshDecoder``'s buffers."""
    cases = np.zeros((256, 5, 3), np.int64)
    masks = np.zeros((256, 5), bool)
    for case in range(256):
        tris = _case_triangles(case)
        if len(tris) > 5:
            raise AssertionError(f"case {case}: {len(tris)} triangles (the buffers hold 5)")
        for i, t in enumerate(tris):
            cases[case, i] = t
            masks[case, i] = True
    return cases, masks


def fill_mesh_decoder(mesh_decoder) -> None:
    """Write the tables into a diffusers ``MeshDecoder``'s ``cases``/``masks`` buffers, in place."""
    import torch

    cases, masks = mc_tables()
    with torch.no_grad():
        mesh_decoder.cases.copy_(torch.from_numpy(cases))
        mesh_decoder.masks.copy_(torch.from_numpy(masks))
