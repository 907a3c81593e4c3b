"""The ``template`` backend: a small combinatorial grammar over the seed topics.

No model, no network: it lets the whole pipeline (and everything downstream of the prompt table)
run anywhere. Each reply is a pure function of (topic, seed), so runs are reproducible and
independent of how Ray splits the work into batches.
"""

from __future__ import annotations

import re

import numpy as np

from squeeze3d.prompts.topics import Topics

BACKEND = "template"
MODEL_IDENTITY = "template-grammar-v1"

# {a} = an article agreeing with the word after it; {style} {category} {material} {detail} {finish}.
_FRAMES = (
    "{a} {style} {category} made of {material}",
    "{a} {style} {material} {category}",
    "{a} {category} made of {material}, {style} style",
    "{a} {style} {category} made of {material} with {detail}",
    "{a} {material} {category} with {detail}, in {a} {style} style",
    "{a} {style} {category} with {detail}",
    "{a} {finish} {material} {category} in {style} style",
    "{a} {category} with {detail}, crafted from {material}",
    "{a} {style} {category} with {detail} and {a} {finish} {material} finish",
    "a 3d model of {a} {style} {category} made of {material}",
)
_FINISHES = ("glossy", "matte", "polished", "worn", "painted", "lacquered", "smooth", "textured",
             "hand-painted", "speckled")
_GENERIC_DETAILS = ("clean edges", "rounded corners", "a simple silhouette", "fine engravings",
                    "a sturdy base", "subtle bevels")


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def template_reply(topics: Topics, topic: dict, seed: int) -> str:
    """One prompt for ``topic`` (a dict with category, style, material), deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    frame = _FRAMES[int(rng.integers(len(_FRAMES)))]
    details = topics.category(topic["category"]).details or _GENERIC_DETAILS
    if rng.random() < 0.25:
        details = _GENERIC_DETAILS
    values = {
        "style": topic["style"], "category": topic["category"], "material": topic["material"],
        "detail": details[int(rng.integers(len(details)))],
        "finish": _FINISHES[int(rng.integers(len(_FINISHES)))],
    }
    text = frame.format(a="\0", **values)
    text = re.sub(r"\0 (\S)", lambda m: f"{_article(m.group(1))} {m.group(1)}", text)
    return text[0].upper() + text[1:] + "."
