"""Procedural shape generators of the corpus (``squeeze3d.corpora.points``): which object index ``i`` is.

Each category is a parametric assembly of primitives (boxes, cylinders between two points, cones,
spheres, tori, surfaces of revolution) with wide variation in proportions and in which parts exist.
Overlapping parts are merged with a boolean union (manifold3d through trimesh) so the surface has no
interior faces: surface samples then only land where a scanner would see geometry.

Deterministic from ``(seed, index)``: ``category_of(index) = index % len(CATEGORIES)`` (balanced by
construction), the shape parameters come from ``object_rng(seed, index, STREAM_SHAPE)``. Axes: z is
up; shapes are built at roughly unit scale (dimensions in "metres-ish" units).

``make_parts`` / ``make_mesh`` are what the point corpus (``corpus``), the textured mesh corpus
(``mesh_corpus``) and the radiance corpus (``radiance_corpus``) build on; sampling, normalisation,
splits and caching are ``corpus``'s.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import trimesh
from trimesh import creation

CATEGORIES: tuple[str, ...] = (
    "airplane", "bench", "bottle", "car", "chair", "lamp",
    "mug", "rocket", "shelf", "sofa", "table", "vase",
)
_SECTIONS = 20  # facets around cylinders / revolutions: round enough at 2048 points, cheap to union

# rng streams of one object: shape parameters and surface sampling never share a stream, so changing
# the number of sampled points does not change the shape.
STREAM_SHAPE, STREAM_SAMPLE = 0, 1


def object_rng(seed: int, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(index), int(stream)])


def category_of(index: int) -> int:
    return int(index) % len(CATEGORIES)


# ----------------------------------------------------------------------------------------------
# primitives (all watertight, z up)


def _box(size, centre) -> trimesh.Trimesh:
    return creation.box(extents=np.asarray(size, float), transform=trimesh.transformations.translation_matrix(centre))


def _rod(p0, p1, radius) -> trimesh.Trimesh:
    """A cylinder between two points (legs, poles, struts)."""
    return creation.cylinder(radius=float(radius), segment=np.array([p0, p1], float), sections=_SECTIONS)


def _sphere(radius, centre) -> trimesh.Trimesh:
    m = creation.icosphere(subdivisions=2, radius=float(radius))
    m.apply_translation(centre)
    return m


def _revolve(profile: Sequence[tuple[float, float]], centre=(0, 0, 0)) -> trimesh.Trimesh:
    """Surface of revolution about z from a (radius, z) profile that starts and ends on the axis,
    so the result is closed."""
    prof = np.asarray(profile, float)
    m = creation.revolve(prof, sections=_SECTIONS * 2)
    m.apply_translation(centre)
    return m


def _rotated(mesh: trimesh.Trimesh, angle: float, axis, point=(0, 0, 0)) -> trimesh.Trimesh:
    mesh.apply_transform(trimesh.transformations.rotation_matrix(angle, axis, point))
    return mesh


def union(parts: list[trimesh.Trimesh]) -> trimesh.Trimesh:
    """Boolean union (no interior surfaces); falls back to a plain concatenation if the engine
    refuses the input, so a shape is never lost (it is then not watertight)."""
    try:
        out = trimesh.boolean.union(parts, engine="manifold")
        if len(out.faces):
            return out
    except Exception:  # noqa: BLE001 - any engine failure -> keep the shape, lose watertightness
        pass
    return trimesh.util.concatenate(parts)


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


# ----------------------------------------------------------------------------------------------
# categories. Each builder returns the parts of one object; dimensions are in "metres-ish" units.


def _legs4(rng, w, d, h, inset, kind, r):
    xs, ys = w / 2 - inset, d / 2 - inset
    parts = []
    for sx in (-1, 1):
        for sy in (-1, 1):
            if kind == "round":
                splay = _u(rng, 0.0, 0.06)
                parts.append(_rod((sx * (xs + splay), sy * (ys + splay), 0), (sx * xs, sy * ys, h), r))
            else:
                parts.append(_box((2 * r, 2 * r, h), (sx * xs, sy * ys, h / 2)))
    return parts


def _chair(rng):
    w, d = _u(rng, 0.4, 0.6), _u(rng, 0.4, 0.6)
    seat_h, seat_t = _u(rng, 0.35, 0.55), _u(rng, 0.03, 0.08)
    back_h = _u(rng, 0.3, 0.7)
    parts = [_box((w, d, seat_t), (0, 0, seat_h + seat_t / 2))]
    if rng.random() < 0.75:
        parts += _legs4(rng, w, d, seat_h, _u(rng, 0.02, 0.06), rng.choice(["round", "square"]), _u(rng, 0.015, 0.035))
    else:  # office chair: pedestal + star base
        parts.append(_rod((0, 0, 0.06), (0, 0, seat_h), _u(rng, 0.025, 0.05)))
        n = int(rng.integers(4, 6))
        for k in range(n):
            a = 2 * np.pi * k / n
            parts.append(_rod((0, 0, 0.05), (0.3 * w * 1.2 * np.cos(a), 0.3 * w * 1.2 * np.sin(a), 0.02), 0.02))
    top = seat_h + seat_t
    if rng.random() < 0.6:  # solid back
        bt = _u(rng, 0.03, 0.07)
        parts.append(_box((w, bt, back_h), (0, -d / 2 + bt / 2, top + back_h / 2)))
    else:  # slatted back: posts + rail + slats
        r = 0.02
        for sx in (-1, 1):
            parts.append(_box((2 * r, 2 * r, back_h), (sx * (w / 2 - r), -d / 2 + r, top + back_h / 2)))
        parts.append(_box((w, 0.04, 0.06), (0, -d / 2 + r, top + back_h - 0.03)))
        for k in range(int(rng.integers(2, 5))):
            x = -w / 2 + w * (k + 1) / (rng.integers(2, 5) + 1)
            parts.append(_box((0.03, 0.02, back_h), (x, -d / 2 + r, top + back_h / 2)))
    if rng.random() < 0.35:  # arms
        ah = _u(rng, 0.15, 0.25)
        for sx in (-1, 1):
            parts.append(_box((0.05, d, 0.04), (sx * (w / 2 - 0.025), 0, top + ah)))
            parts.append(_box((0.04, 0.04, ah), (sx * (w / 2 - 0.025), d / 2 - 0.04, top + ah / 2)))
    return parts


def _table(rng):
    w, d, h = _u(rng, 0.8, 1.8), _u(rng, 0.5, 1.0), _u(rng, 0.45, 0.8)
    t = _u(rng, 0.03, 0.08)
    parts = []
    round_top = rng.random() < 0.35
    if round_top:
        r = _u(rng, 0.35, 0.7)
        parts.append(_rod((0, 0, h - t), (0, 0, h), r))
        w = d = r * 1.3
    else:
        parts.append(_box((w, d, t), (0, 0, h - t / 2)))
    if rng.random() < 0.65:
        parts += _legs4(rng, w, d, h - t, _u(rng, 0.04, 0.12), rng.choice(["round", "square"]), _u(rng, 0.02, 0.05))
        if rng.random() < 0.4:  # lower shelf
            parts.append(_box((w * 0.85, d * 0.85, 0.02), (0, 0, _u(rng, 0.1, 0.3) * h)))
    else:  # pedestal
        parts.append(_rod((0, 0, 0), (0, 0, h - t), _u(rng, 0.04, 0.1)))
        parts.append(_rod((0, 0, 0), (0, 0, 0.04), _u(rng, 0.2, 0.4)))
    return parts


def _lamp(rng):
    parts = []
    base_h = _u(rng, 0.03, 0.1)
    if rng.random() < 0.6:
        parts.append(_rod((0, 0, 0), (0, 0, base_h), _u(rng, 0.1, 0.2)))
    else:
        s = _u(rng, 0.15, 0.35)
        parts.append(_box((s, s, base_h), (0, 0, base_h / 2)))
    pole_h = _u(rng, 0.4, 1.2)
    top = np.array([0.0, 0.0, base_h + pole_h])
    parts.append(_rod((0, 0, base_h / 2), top, _u(rng, 0.01, 0.025)))
    if rng.random() < 0.4:  # angled arm
        end = top + np.array([_u(rng, 0.15, 0.4), 0, _u(rng, -0.05, 0.2)])
        parts.append(_rod(top, end, 0.012))
        parts.append(_sphere(0.025, top))
        top = end
    shade_h, r_top, r_bot = _u(rng, 0.12, 0.3), _u(rng, 0.04, 0.15), _u(rng, 0.1, 0.25)
    kind = rng.choice(["cone", "dome", "drum"])
    if kind == "dome":
        prof = [(0, top[2] - 0.02)] + [(r_bot * np.sin(a), top[2] - 0.02 + r_bot * np.cos(a) * 0.8)
                                       for a in np.linspace(0.05, np.pi / 2, 8)] + [(0, top[2] - 0.02)]
        prof = [(0, top[2] + 0.8 * r_bot)] + prof[1:-1] + [(r_bot, top[2] - 0.03), (0, top[2] - 0.03)]
    elif kind == "drum":
        prof = [(0, top[2] + 0.02), (r_bot, top[2] + 0.02), (r_bot, top[2] - shade_h), (0, top[2] - shade_h)]
    else:
        prof = [(0, top[2] + 0.02), (r_top, top[2] + 0.02), (r_bot, top[2] - shade_h), (0, top[2] - shade_h)]
    parts.append(_revolve(prof, (top[0], top[1], 0)))
    return parts


def _mug(rng):
    r, h = _u(rng, 0.3, 0.5), _u(rng, 0.5, 1.1)
    wall = _u(rng, 0.03, 0.07)
    outer = _rod((0, 0, 0), (0, 0, h), r)
    inner = _rod((0, 0, _u(rng, 0.05, 0.12)), (0, 0, h + 0.1), r - wall)
    try:
        body = trimesh.boolean.difference([outer, inner], engine="manifold")
    except Exception:  # noqa: BLE001
        body = outer
    hr = _u(rng, 0.15, 0.3) * h / 0.8
    handle = creation.torus(major_radius=hr, minor_radius=_u(rng, 0.03, 0.06), major_sections=24, minor_sections=10)
    _rotated(handle, np.pi / 2, (1, 0, 0))
    handle.apply_translation((r, 0, h * _u(rng, 0.45, 0.6)))
    return [body, handle]


def _bottle(rng):
    r, h = _u(rng, 0.12, 0.3), _u(rng, 0.5, 1.0)
    neck_r = r * _u(rng, 0.25, 0.5)
    body_h = h * _u(rng, 0.45, 0.7)
    shoulder = h * _u(rng, 0.08, 0.2)
    prof = [(0, 0), (r * 0.9, 0), (r, 0.03), (r, body_h)]
    if rng.random() < 0.5:  # round shoulder
        for a in np.linspace(0, np.pi / 2, 5)[1:]:
            prof.append((neck_r + (r - neck_r) * np.cos(a), body_h + shoulder * np.sin(a)))
    else:
        prof.append((neck_r, body_h + shoulder))
    prof += [(neck_r, h), (neck_r * 1.15, h), (neck_r * 1.15, h + 0.05), (0, h + 0.05)]
    return [_revolve(prof)]


def _airplane(rng):
    L, fr = _u(rng, 1.5, 2.5), _u(rng, 0.08, 0.16)
    fus = creation.capsule(height=L - 2 * fr, radius=fr, count=[_SECTIONS, _SECTIONS])
    _rotated(fus, np.pi / 2, (0, 1, 0))  # along x
    parts = [fus]
    span, chord, wt = _u(rng, 1.4, 2.8), _u(rng, 0.2, 0.45), _u(rng, 0.02, 0.05)
    sweep = _u(rng, -0.1, 0.5)
    wx = _u(rng, -0.15, 0.15) * L
    wz = _u(rng, -0.6, 0.6) * fr
    for sy in (-1, 1):  # swept half-wings
        wing = _box((chord, span / 2, wt), (0, 0, 0))
        _rotated(wing, sy * sweep, (0, 0, 1))
        wing.apply_translation((wx - sweep * span / 8, sy * span / 4, wz))
        parts.append(wing)
    if rng.random() < 0.6:  # engines
        for sy in (-1, 1):
            y = sy * span * _u(rng, 0.15, 0.3)
            parts.append(_rod((wx - 0.25, y, wz - 0.08), (wx + 0.15, y, wz - 0.08), _u(rng, 0.04, 0.08)))
    tx = -L / 2 + 0.1
    th = _u(rng, 0.25, 0.5)
    fin = _box((chord * 0.8, 0.03, th), (tx, 0, fr + th / 2 - 0.03))
    parts.append(fin)
    tail_span = _u(rng, 0.4, 0.8)
    parts.append(_box((chord * 0.6, tail_span, 0.025), (tx, 0, fr * 0.3 if rng.random() < 0.7 else fr + th - 0.03)))
    return parts


def _car(rng):
    L, W, H = _u(rng, 1.6, 2.6), _u(rng, 0.7, 1.0), _u(rng, 0.25, 0.45)
    wr = _u(rng, 0.14, 0.25)
    clearance = wr * _u(rng, 0.6, 1.0)
    parts = [_box((L, W, H), (0, 0, clearance + H / 2))]
    cab_l = L * _u(rng, 0.35, 0.65)
    cab_h = _u(rng, 0.2, 0.4)
    cab_x = _u(rng, -0.2, 0.1) * L
    if rng.random() < 0.25:  # pickup / van variants: cabin at the front or full length
        cab_x = L / 2 - cab_l / 2 - 0.05 if rng.random() < 0.5 else 0.0
        cab_l = cab_l if cab_x else L * 0.95
    parts.append(_box((cab_l, W * _u(rng, 0.8, 0.95), cab_h), (cab_x, 0, clearance + H + cab_h / 2 - 0.01)))
    wx = L / 2 - wr * _u(rng, 1.2, 1.8)
    for sx in (-1, 1):
        for sy in (-1, 1):
            y = sy * (W / 2 - 0.05)
            parts.append(_rod((sx * wx, y - 0.08, wr), (sx * wx, y + 0.08, wr), wr))
    if rng.random() < 0.3:  # spoiler
        parts.append(_box((0.12, W * 0.9, 0.03), (-L / 2 + 0.08, 0, clearance + H + 0.15)))
        for sy in (-1, 1):
            parts.append(_box((0.04, 0.04, 0.16), (-L / 2 + 0.08, sy * W * 0.3, clearance + H + 0.07)))
    return parts


def _sofa(rng):
    L, D, base_h = _u(rng, 1.2, 2.6), _u(rng, 0.6, 1.0), _u(rng, 0.2, 0.4)
    leg_h = _u(rng, 0.0, 0.12)
    back_h, back_t = _u(rng, 0.25, 0.55), _u(rng, 0.12, 0.25)
    arm_w, arm_h = _u(rng, 0.08, 0.25), _u(rng, 0.08, 0.3)
    z0 = leg_h
    parts = [_box((L, D, base_h), (0, 0, z0 + base_h / 2)),
             _box((L, back_t, back_h), (0, -D / 2 + back_t / 2, z0 + base_h + back_h / 2 - 0.01))]
    if rng.random() < 0.85:
        for sx in (-1, 1):
            parts.append(_box((arm_w, D, arm_h), (sx * (L / 2 - arm_w / 2), 0, z0 + base_h + arm_h / 2 - 0.01)))
    n_cush = int(rng.integers(0, 4))
    for k in range(n_cush):
        cw = (L - 2 * arm_w) / max(n_cush, 1)
        x = -L / 2 + arm_w + cw * (k + 0.5)
        parts.append(_box((cw * 0.95, D - back_t - 0.02, 0.08), (x, back_t / 2, z0 + base_h + 0.03)))
    if leg_h > 0.03:
        parts += _legs4(rng, L, D, leg_h + 0.01, 0.08, "square", 0.03)
    return parts


def _bench(rng):
    L, D, h = _u(rng, 1.0, 2.2), _u(rng, 0.25, 0.5), _u(rng, 0.35, 0.5)
    t = _u(rng, 0.03, 0.08)
    parts = []
    if rng.random() < 0.3:  # slatted seat
        n = int(rng.integers(3, 6))
        for k in range(n):
            y = -D / 2 + D * (k + 0.5) / n
            parts.append(_box((L, D / n * 0.9, t), (0, y, h - t / 2)))
        parts.append(_box((0.06, D, 0.04), (L / 2 - 0.1, 0, h - t - 0.02)))
        parts.append(_box((0.06, D, 0.04), (-L / 2 + 0.1, 0, h - t - 0.02)))
    else:
        parts.append(_box((L, D, t), (0, 0, h - t / 2)))
    if rng.random() < 0.5:  # slab legs
        for sx in (-1, 1):
            parts.append(_box((0.05, D * 0.9, h - t), (sx * (L / 2 - _u(rng, 0.05, 0.2)), 0, (h - t) / 2)))
    else:
        parts += _legs4(rng, L, D, h - t, 0.06, rng.choice(["round", "square"]), 0.025)
    if rng.random() < 0.4:  # backrest
        bh = _u(rng, 0.2, 0.4)
        parts.append(_box((L, 0.04, bh), (0, -D / 2 + 0.02, h + bh / 2 + 0.05)))
        for sx in (-1, 1):
            parts.append(_box((0.04, 0.04, 0.1), (sx * (L / 2 - 0.1), -D / 2 + 0.02, h + 0.03)))
    return parts


def _shelf(rng):
    W, D, H = _u(rng, 0.5, 1.4), _u(rng, 0.2, 0.45), _u(rng, 0.6, 2.0)
    t = _u(rng, 0.02, 0.05)
    n = int(rng.integers(2, 7))
    parts = [_box((t, D, H), (sx * (W / 2 - t / 2), 0, H / 2)) for sx in (-1, 1)]
    for k in range(n + 1):
        z = t / 2 + (H - t) * k / n
        parts.append(_box((W, D, t), (0, 0, z)))
    if rng.random() < 0.6:  # back panel
        parts.append(_box((W, t, H), (0, -D / 2 + t / 2, H / 2)))
    if rng.random() < 0.3:  # middle divider
        parts.append(_box((t, D, H), (_u(rng, -0.2, 0.2) * W, 0, H / 2)))
    return parts


def _vase(rng):
    h = _u(rng, 0.6, 1.4)
    n = int(rng.integers(4, 7))
    zs = np.linspace(0, h, n)
    rs = rng.uniform(0.1, 0.4, n)
    rs[0] = _u(rng, 0.1, 0.25)
    if rng.random() < 0.5:
        rs[-1] = rs[-1] * 0.5  # narrow lip
    fine_z = np.linspace(0, h, 24)
    fine_r = np.interp(fine_z, zs, rs)
    fine_r = np.convolve(np.pad(fine_r, 2, mode="edge"), np.ones(5) / 5, mode="valid")  # smooth the profile
    prof = [(0, 0)] + list(zip(fine_r, fine_z)) + [(0, h)]
    parts = [_revolve(prof)]
    if rng.random() < 0.3:  # a pair of small handles
        for sx in (-1, 1):
            tor = creation.torus(major_radius=0.08, minor_radius=0.02, major_sections=16, minor_sections=8)
            _rotated(tor, np.pi / 2, (1, 0, 0))
            tor.apply_translation((sx * (np.interp(0.7 * h, fine_z, fine_r) + 0.03), 0, 0.7 * h))
            parts.append(tor)
    return parts


def _rocket(rng):
    r, body = _u(rng, 0.08, 0.2), _u(rng, 0.8, 2.0)
    nose = _u(rng, 0.2, 0.6)
    prof = [(0, 0), (r * _u(rng, 0.7, 1.0), 0), (r, 0.1), (r, body)]
    if rng.random() < 0.5:  # ogive nose
        for a in np.linspace(0, 1, 6)[1:-1]:
            prof.append((r * np.sqrt(1 - a**2), body + nose * a))
    prof.append((0, body + nose))
    parts = [_revolve(prof)]
    nf = int(rng.integers(3, 5))
    fh, fw = _u(rng, 0.2, 0.5), _u(rng, 0.12, 0.3)
    for k in range(nf):
        fin = _box((fw, 0.02, fh), (r + fw / 2 - 0.02, 0, fh / 2 + 0.02))
        _rotated(fin, 2 * np.pi * k / nf, (0, 0, 1))
        parts.append(fin)
    if rng.random() < 0.35:  # boosters
        for k in range(2):
            a = np.pi / 2 + np.pi * k
            c = ((r + 0.06) * np.cos(a), (r + 0.06) * np.sin(a))
            parts.append(_revolve([(0, 0.05), (0.06, 0.05), (0.06, body * 0.5), (0, body * 0.5 + 0.12)], (c[0], c[1], 0)))
    return parts


_BUILDERS: dict[str, Callable[[np.random.Generator], list[trimesh.Trimesh]]] = {
    "airplane": _airplane, "bench": _bench, "bottle": _bottle, "car": _car, "chair": _chair,
    "lamp": _lamp, "mug": _mug, "rocket": _rocket, "shelf": _shelf, "sofa": _sofa,
    "table": _table, "vase": _vase,
}
assert set(_BUILDERS) == set(CATEGORIES)


# ----------------------------------------------------------------------------------------------
# object index -> parts, mesh


def make_parts(seed: int, index: int) -> tuple[list[trimesh.Trimesh], int]:
    """The separate parts (before the union) and category label of corpus object ``index``; the
    first part is the object's main body (seat, top, fuselage, ...). The textured corpus colours them."""
    label = category_of(index)
    return _BUILDERS[CATEGORIES[label]](object_rng(seed, index, STREAM_SHAPE)), label


def make_mesh(seed: int, index: int) -> tuple[trimesh.Trimesh, int]:
    """The mesh and category label of corpus object ``index`` (deterministic)."""
    parts, label = make_parts(seed, index)
    return union(parts), label
