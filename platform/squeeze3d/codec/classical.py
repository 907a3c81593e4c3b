"""The classical codecs behind one interface, for the compressor's rate–distortion choice.

Each asset kind names its classical codecs (``handler.classical_codecs``, the default first):
point clouds ``octree`` (``codec.octree``: G-PCC-class octree coding with trained contexts, on
the de-duplicated grid) and ``draco`` (interoperability); meshes ``draco``; radiance grids ``qz``.
A codec turns the asset into ``(blob, param, quality)`` candidates and a blob back into the asset;
``param`` is what the container's rate field stores (Draco / qz bits; 0 for the octree, whose grid
travels in its own stream).
"""

from __future__ import annotations

import numpy as np


class Classical:
    name = ""
    coder = "draco"
    """The container's ``coder`` field for this codec's files."""

    def __init__(self, handler):
        self.h = handler

    @property
    def own_frame(self) -> bool:
        return bool(self.h.fallback_own_frame)

    def smallest(self, x, attributes=None) -> bytes:
        raise NotImplementedError

    def at_floor(self, x, floor_db: float, attributes=None) -> tuple[bytes, int, float]:
        raise NotImplementedError

    def ladder(self, x, attributes=None) -> list[tuple[bytes, int, float]]:
        raise NotImplementedError

    def decode(self, blob: bytes, param: int):
        raise NotImplementedError


class HandlerClassical(Classical):
    """The kind handler's own fallback (Draco for point clouds and meshes, quantise + zstd for grids)."""

    def __init__(self, handler):
        super().__init__(handler)
        self.name = handler.fallback_name

    # ``attributes`` (point clouds: colour, intensity) go to the handler's codec only when given, so
    # kinds whose fallback takes none keep their signatures
    def smallest(self, x, **akw) -> bytes:
        return self.h.fallback_blob(x, min(self.h.fallback_bits), **akw)

    def at_floor(self, x, floor_db, **akw):
        return self.h.fallback_encode(x, float(floor_db), **akw)

    def ladder(self, x, **akw):
        out = []
        for b in self.h.fallback_bits:
            blob, q = self.h.fallback_at(x, b, **akw)
            out.append((blob, b, float(q)))
        return out

    def decode(self, blob, param, max_level: int | None = None):
        return self.h.fallback_decode(blob, param, None)


class OctreeClassical(Classical):
    """Point clouds on an octree (``codec.octree``): one point per occupied grid cell."""

    name = "octree"
    coder = "octree"
    LADDER_STEP = 4  # quarter-bit rungs for ``--target-bytes``

    @property
    def own_frame(self) -> bool:
        return True  # the stream carries its own grid (origin and step)

    # attributes are coded beside the octree (``codec.attributes``) by the compressor
    def smallest(self, x) -> bytes:
        from squeeze3d.codec import octree

        return octree.encode_points(x, octree.exponent_range(x)[1])

    def at_floor(self, x, floor_db):
        from squeeze3d.codec import octree

        blob, _, q = octree.encode_min_quality(np.asarray(x), float(floor_db), self.h.quality)
        return blob, 0, q

    def ladder(self, x):
        from squeeze3d.codec import octree

        fine, coarse = octree.exponent_range(x)
        out = []
        for e in range(coarse, fine - 1, -self.LADDER_STEP):
            q, smooth = octree.best_reconstruction(x, e, self.h.quality)
            out.append((octree.encode_points(x, e, smooth=smooth), 0, q))
        return out

    def decode(self, blob, param, max_level: int | None = None):
        from squeeze3d.codec import octree

        return octree.decode_points(blob, max_level=max_level)


def classical_for(handler, name: str | None = None, has_attributes: bool = False) -> Classical:
    """The kind's classical codec called ``name`` (default: its first; for a cloud that keeps
    attributes, Draco, which codes colour and intensity itself)."""
    names = tuple(getattr(handler, "classical_codecs", ()))  # point clouds: ("octree", "draco")
    if name is not None and name not in names:
        from squeeze3d.codec.options import OptionError

        raise OptionError("classical", f"{name}: this asset kind's classical codec is not selectable" if not names
                          else f"{name}: choose one of {', '.join(names)}")
    if name is None and has_attributes and "draco" in names:
        name = "draco"
    name = name or (names[0] if names else None)
    return OctreeClassical(handler) if name == "octree" else HandlerClassical(handler)


def for_container(handler, coder: str) -> Classical:
    """The codec that reads a fallback container's payload."""
    return OctreeClassical(handler) if coder == "octree" else HandlerClassical(handler)


def decode_payload(h, c) -> tuple[np.ndarray, dict]:
    """A fallback container's payload → (its points, in the payload's frame; the attributes the file
    keeps). ``h``: the kind's handler."""
    from squeeze3d.codec import attributes as attributes_

    if c.attributes and not c.attr_payload:  # the classical payload carries them (Draco)
        return h.fallback_decode_attributes(c.payload, c.attributes)
    pts = for_container(h, c.coder).decode(c.payload, c.draco_bits)
    return pts, (attributes_.decode_for_points(c.attr_payload, pts, c.attributes) if c.attributes else {})
