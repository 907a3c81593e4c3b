"""Textured procedural corpus with captions: the "real meshes" of the ``mesh`` asset kind.

The geometry is the point corpus's (``corpus_shapes.make_parts``: the same parametric assemblies, indices,
categories and train/val/test splits); each part gets a material from the prompt vocabulary
(``squeeze3d/data/prompts/materials.yaml``) and that material's colour, and the object a caption in the
template backend's phrasing (``a {style} {category} made of {material} ...``), so prompts the LLM
stage writes are in the captions' distribution.

Colours are per part: each face of the boolean union takes the colour of the nearest part, and
vertices are split where two colours meet, so colour borders stay sharp (vertex colours, no UVs).
Everything is deterministic from ``(seed, index)`` (its own rng stream, so the shape is exactly the
point corpus's object). Meshes come normalised to the unit sphere (``meshdata.normalise_unit_sphere``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from squeeze3d.corpora import points as corpus
from squeeze3d.corpora import shapes as corpus_shapes
from squeeze3d.meshdata import Mesh, nearest, normalise_unit_sphere

CATEGORIES = corpus.CATEGORIES
SPLITS = corpus.SPLITS
DEFAULT_SEED = corpus.DEFAULT_SEED
split_of = corpus.split_of
split_indices = corpus.split_indices
_STREAM_TEXTURE = 7  # corpus_shapes streams 0/1 are shape and sampling

# The prompt vocabulary's materials (squeeze3d/data/prompts/materials.yaml) and a base sRGB colour each.
MATERIAL_COLOURS: dict[str, tuple[float, float, float]] = {
    "oak wood": (0.66, 0.47, 0.27), "walnut": (0.36, 0.23, 0.14), "bamboo": (0.80, 0.72, 0.45),
    "brushed steel": (0.62, 0.63, 0.65), "cast iron": (0.22, 0.22, 0.23), "copper": (0.72, 0.42, 0.24),
    "brass": (0.78, 0.64, 0.30), "aluminum": (0.77, 0.78, 0.80), "polished chrome": (0.88, 0.89, 0.91),
    "white ceramic": (0.93, 0.92, 0.89), "terracotta": (0.74, 0.38, 0.24), "porcelain": (0.95, 0.95, 0.97),
    "clear glass": (0.72, 0.85, 0.88), "frosted glass": (0.84, 0.89, 0.91), "marble": (0.90, 0.88, 0.84),
    "granite": (0.45, 0.44, 0.44), "concrete": (0.60, 0.59, 0.56), "red plastic": (0.80, 0.12, 0.10),
    "matte black plastic": (0.10, 0.10, 0.11), "leather": (0.45, 0.27, 0.16), "wicker": (0.74, 0.60, 0.38),
    "velvet": (0.45, 0.10, 0.30), "felt": (0.30, 0.45, 0.35), "rubber": (0.17, 0.17, 0.16),
    "carbon fiber": (0.16, 0.17, 0.19), "gold": (0.85, 0.68, 0.22), "rusted metal": (0.55, 0.30, 0.17),
    "cork": (0.72, 0.56, 0.39), "stone": (0.52, 0.50, 0.46), "ice": (0.80, 0.92, 0.97),
}
MATERIALS: tuple[str, ...] = tuple(MATERIAL_COLOURS)
STYLES: tuple[str, ...] = (
    "modern", "minimalist", "rustic", "vintage", "futuristic", "art deco", "industrial", "scandinavian",
    "baroque", "mid-century", "low-poly", "cartoonish", "steampunk", "gothic", "bauhaus", "victorian",
    "sleek", "chunky", "handcrafted", "ornate", "weathered", "toy-like", "geometric", "organic", "retro",
    "brutalist", "whimsical", "streamlined", "antique", "sci-fi",
)
_COLOUR_JITTER = 0.04  # per object: the same material is never exactly one colour


@dataclass
class TexturedShape:
    index: int
    label: int
    mesh: Mesh
    """Normalised to the unit sphere, with per-part vertex colours."""
    caption: str
    materials: tuple[str, ...]
    """``(main, accent)``: the body's material and the other parts' (the same when single-material)."""
    centre: np.ndarray
    scale: float

    @property
    def category(self) -> str:
        return CATEGORIES[self.label]

    @property
    def split(self) -> str:
        return split_of(self.index)


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def caption_of(category: str, style: str, main: str, accent: str, frame: int) -> str:
    """The caption phrasing (template backend frames: "made of", "{material} {category}")."""
    if main == accent:
        text = (f"{_article(style)} {style} {category} made of {main}" if frame % 2 == 0
                else f"{_article(style)} {style} {main} {category}")
    else:
        text = (f"{_article(style)} {style} {category} made of {main} with {accent} parts" if frame % 2 == 0
                else f"{_article(main)} {main} {category} with {accent} details, in {_article(style)} {style} style")
    return text[0].upper() + text[1:] + "."


def make_textured(seed: int, index: int) -> TexturedShape:
    """Corpus object ``index`` as a coloured mesh with its caption (deterministic)."""
    parts, label = corpus_shapes.make_parts(seed, index)
    union = corpus_shapes.union([p.copy() for p in parts])
    rng = np.random.default_rng([int(seed), int(index), _STREAM_TEXTURE])
    main = MATERIALS[int(rng.integers(len(MATERIALS)))]
    accent = MATERIALS[int(rng.integers(len(MATERIALS)))] if rng.random() < 0.65 else main
    style = STYLES[int(rng.integers(len(STYLES)))]
    frame = int(rng.integers(2))
    jitter = rng.uniform(-_COLOUR_JITTER, _COLOUR_JITTER, size=(2, 3))
    palette = np.clip(np.array([MATERIAL_COLOURS[main], MATERIAL_COLOURS[accent]]) + jitter, 0, 1)

    # each union face takes the part nearest its centroid (part surfaces densely sampled)
    samples, owner = [], []
    for k, p in enumerate(parts):
        pts = corpus.sample_surface(p, 400, np.random.default_rng([int(seed), int(index), _STREAM_TEXTURE, k]))
        samples.append(pts)
        owner.append(np.full(len(pts), 0 if k == 0 else 1))
    _, nn = nearest(np.concatenate(samples), union.triangles_center.astype(np.float32))
    face_colour = np.concatenate(owner)[nn]

    # split vertices where colours meet: key = (vertex, colour)
    keys = union.faces.astype(np.int64) * 2 + face_colour[:, None]
    uniq, inverse = np.unique(keys.reshape(-1), return_inverse=True)
    vertices = np.asarray(union.vertices, np.float32)[uniq // 2]
    colours = palette[uniq % 2].astype(np.float32)
    mesh = Mesh(vertices, inverse.reshape(-1, 3), colours)
    norm, centre, scale = normalise_unit_sphere(mesh)
    return TexturedShape(index=int(index), label=label, mesh=norm, caption=caption_of(CATEGORIES[label], style, main, accent, frame),
                         materials=(main, accent), centre=centre, scale=scale)
