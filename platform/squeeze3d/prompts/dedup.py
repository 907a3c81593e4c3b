"""De-duplication (exact after normalisation, then near-duplicates by embedding similarity) and
the diversity measures reported for a prompt table.

Both passes are order-preserving and greedy: the earliest prompt (lowest request index) of a
group is kept, so the result does not depend on how Ray partitioned the work.
"""

from __future__ import annotations

import re

import numpy as np

from squeeze3d.prompts.parse import normalize

DEFAULT_NEAR_THRESHOLD = 0.9
"""Cosine similarity at or above which two prompts count as near-duplicates (all-MiniLM-L6-v2)."""


def exact_duplicates(prompts: list[str]) -> list[int | None]:
    """For each prompt, the index of the earlier prompt it duplicates after ``normalize``, else None."""
    first: dict[str, int] = {}
    out: list[int | None] = []
    for i, p in enumerate(prompts):
        key = normalize(p)
        out.append(first.get(key))
        first.setdefault(key, i)
    return out


def near_duplicates(emb: np.ndarray, threshold: float = DEFAULT_NEAR_THRESHOLD,
                    active: np.ndarray | None = None, block: int = 1024) -> list[int | None]:
    """For each row of ``emb`` (unit-norm), the index of an earlier *kept* row with cosine
    similarity >= ``threshold``, else None. Rows with ``active`` False are neither kept nor
    compared (e.g. exact duplicates already removed). Memory stays O(block * N)."""
    n = emb.shape[0]
    active = np.ones(n, dtype=bool) if active is None else np.asarray(active, dtype=bool)
    emb = np.asarray(emb, dtype=np.float32)
    # Sparse neighbour lists: for each i, earlier active j with sim >= threshold (computed blockwise).
    neighbours: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * n
    idx = np.flatnonzero(active)
    sub = emb[idx]
    for s in range(0, len(idx), block):
        sims = sub[s:s + block] @ sub[: s + block].T
        for r in range(sims.shape[0]):
            row = s + r
            hits = np.flatnonzero(sims[r, :row] >= threshold)
            if hits.size:
                neighbours[idx[row]] = idx[hits]
    out: list[int | None] = [None] * n
    kept = np.zeros(n, dtype=bool)
    for i in range(n):
        if not active[i]:
            continue
        nb = neighbours[i]
        hit = nb[kept[nb]] if nb.size else nb
        if hit.size:
            out[i] = int(hit[0])
        else:
            kept[i] = True
    return out


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+(?:['-][a-z0-9]+)*", text.lower())


def distinct_n(prompts: list[str], n: int) -> float:
    """Distinct-n: unique word n-grams / all word n-grams over the corpus (0 for an empty one)."""
    grams = [tuple(w[i:i + n]) for w in map(_words, prompts) for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def mean_pairwise_distance(emb: np.ndarray) -> float:
    """Mean cosine distance 1 - cos over all unordered pairs of unit-norm rows, exactly, in O(N d):
    sum_{i != j} cos(e_i, e_j) = |sum_i e_i|^2 - N."""
    n = emb.shape[0]
    if n < 2:
        return 0.0
    s = emb.astype(np.float64).sum(0)
    mean_cos = (float(s @ s) - n) / (n * (n - 1))
    return 1.0 - mean_cos
