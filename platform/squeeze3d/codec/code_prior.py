"""A learned prior for the neural code: fixed-range levels range-coded instead of stored raw.

A fixed-range rung stores each of its ``prefix`` code numbers as a ``bits``-bit level
(``quantise.fixed_levels``). The levels are far from uniform (tanh codes saturate; dimensions carry
very different amounts of information), so a factorised prior fitted on training codes codes them in
fewer bits (measured on the real test split: 12-20 % fewer code bytes, docs/benchmarks.md).

Model: for every rung width ``bits`` and code dimension ``i``, the level is coded most significant
bit first down a binary tree; each tree node has its own P(bit = 1), stored as a 16-bit integer
(``table[bits][i, node - 1]``, nodes numbered 1.. in heap order). Integer tables divided by 2^16 are
exact in float64, so encoder and decoder feed ``constriction``'s range coder bit-identical
probabilities on any machine, thread count or batch.

The prior belongs to one mapping model: it is stored beside the weights as ``code_prior.safetensors``
(its metadata names the weights hash it was fitted for), fitted by ``jobs/fit_code_prior.py`` on
the train splits. A model without one writes raw fixed-range codes, as before.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from squeeze3d.codec.rangecoding import bernoulli, padded_words, shortest_prefix, to_bytes
from squeeze3d.errors import ContainerError, UserError

FILE_NAME = "code_prior.safetensors"
FORMAT = "squeeze3d-code-prior"
P_MIN, P_MAX = 64, 65536 - 64  # never certain: an unseen branch costs at most 10 bits
SMOOTHING = 0.5  # Krichevsky-Trofimov: half a count on each branch


class CodePrior:
    """Per-(bits, dimension) binary-tree probabilities of a model's fixed-range code levels."""

    def __init__(self, tables: dict[int, np.ndarray], weights_hash: str):
        self.tables = {int(b): np.ascontiguousarray(t, np.uint16) for b, t in tables.items()}
        self.weights_hash = str(weights_hash)
        for b, t in self.tables.items():
            if t.ndim != 2 or t.shape[1] != (1 << b) - 1 or t.min(initial=P_MIN) < 1:
                raise ValueError(f"code prior table for {b} bits has shape {t.shape}")

    def covers(self, prefix: int, bits: int) -> bool:
        return int(bits) in self.tables and 1 <= int(prefix) <= self.tables[int(bits)].shape[0]

    @property
    def digest(self) -> str:
        h = hashlib.sha256()
        for b in sorted(self.tables):
            h.update(str(b).encode() + self.tables[b].tobytes())
        return h.hexdigest()

    def level_costs(self, bits: int) -> np.ndarray:
        """``[d, 2^bits]``: the bits the prior spends on each level of each code dimension (the sum of
        −log2 P along the level's path down the tree); what test-time refinement prices a code by."""
        t = self.tables[int(bits)].astype(np.float64) / 65536.0
        d, levels = t.shape[0], 1 << int(bits)
        q = np.arange(levels)
        cost = np.zeros((d, levels))
        node = np.ones(levels, np.int64)
        for j in range(int(bits) - 1, -1, -1):
            bit = (q >> j) & 1
            p1 = t[:, node - 1]
            cost -= np.log2(np.where(bit == 1, p1, 1.0 - p1))
            node = 2 * node + bit
        return cost

    # ----------------------------------------------------------------- coding
    def _probs(self, bits: int, node: np.ndarray) -> np.ndarray:
        t = self.tables[int(bits)]
        return t[np.arange(len(node)), node - 1].astype(np.float64) / 65536.0  # exact: ints over 2^16

    def encode(self, levels: np.ndarray, bits: int, trimmed: bool = True) -> bytes:
        """Levels ``[k]`` in ``[0, 2^bits)`` (the first ``k`` code dimensions) → range-coded bytes."""
        import constriction

        q = np.asarray(levels, np.int64).reshape(-1)
        if not self.covers(len(q), bits) or q.min(initial=0) < 0 or q.max(initial=0) >= 1 << bits:
            raise ValueError(f"the code prior cannot code {len(q)} levels of {bits} bits")
        enc = constriction.stream.queue.RangeEncoder()
        model, node = bernoulli(), np.ones(len(q), np.int64)
        for j in range(int(bits) - 1, -1, -1):
            bit = (q >> j) & 1
            enc.encode(bit.astype(np.int32), model, self._probs(bits, node))
            node = 2 * node + bit
        blob = to_bytes(enc.get_compressed())
        if not trimmed:
            return blob
        return shortest_prefix(blob, lambda cut: np.array_equal(self.decode(cut, len(q), bits), q))

    def decode(self, payload: bytes, k: int, bits: int) -> np.ndarray:
        """Range-coded bytes → levels ``[k]`` (the encoder's trimmed tail restored as 0xFF bytes)."""
        import constriction

        if not self.covers(k, bits):
            raise ContainerError(f"the file's code ({k} numbers at {bits} bits) is beyond the model's code prior")
        dec = constriction.stream.queue.RangeDecoder(padded_words(payload))
        model, node = bernoulli(), np.ones(int(k), np.int64)
        for _ in range(int(bits)):
            try:
                bit = np.asarray(dec.decode(model, self._probs(bits, node)), np.int64)
            except (ValueError, RuntimeError, AssertionError) as e:  # constriction: invalid data
                raise ContainerError(f"entropy-coded code: corrupted ({e})") from None
            node = 2 * node + bit
        return node - (1 << int(bits))

    # ----------------------------------------------------------------- fit / save / load
    @classmethod
    def fit(cls, codes: np.ndarray, bits_list, weights_hash: str) -> CodePrior:
        """Training codes ``[N, d]`` in [-1, 1] → the prior (counts per tree node, KT-smoothed)."""
        from squeeze3d.codec.quantise import fixed_levels

        codes = np.asarray(codes, np.float64).reshape(len(codes), -1)
        d = codes.shape[1]
        tables = {}
        for b in sorted({int(x) for x in bits_list}):
            q = fixed_levels(codes, b)  # [N, d]
            n1 = np.zeros((d, (1 << b) - 1))
            n = np.zeros_like(n1)
            node = np.ones_like(q)
            cols = np.broadcast_to(np.arange(d), q.shape)
            for j in range(b - 1, -1, -1):
                bit = (q >> j) & 1
                np.add.at(n, (cols, node - 1), 1.0)
                np.add.at(n1, (cols, node - 1), bit)
                node = 2 * node + bit
            p = (n1 + SMOOTHING) / (n + 2 * SMOOTHING)
            tables[b] = np.clip(np.round(p * 65536), P_MIN, P_MAX).astype(np.uint16)
        return cls(tables, weights_hash)

    def save(self, model_dir: str | Path, meta: dict | None = None) -> Path:
        """Write ``code_prior.safetensors`` into a mapping checkpoint directory (atomically)."""
        import json

        from safetensors.numpy import save_file

        path = Path(model_dir) / FILE_NAME
        tmp = path.with_name(f".{FILE_NAME}.tmp")
        save_file({f"bits_{b}": t for b, t in self.tables.items()}, str(tmp),
                  metadata={"format": FORMAT, "weights_hash": self.weights_hash, "meta": json.dumps(meta or {})})
        tmp.chmod(0o644)  # read by whoever decodes: like the weights beside it
        tmp.replace(path)
        return path


def load_prior(model_dir: str | Path, weights_hash: str) -> CodePrior | None:
    """The code prior stored with the model at ``model_dir``; None when it has none. A prior fitted
    for other weights is refused: its probabilities would decode this model's files to garbage."""
    from safetensors import safe_open

    path = Path(model_dir) / FILE_NAME
    if not path.is_file():
        return None
    with safe_open(str(path), "np") as f:
        meta = f.metadata() or {}
        tables = {int(k.split("_", 1)[1]): f.get_tensor(k) for k in f.keys()}
    if meta.get("format") != FORMAT:
        raise UserError(f"{path} is not a squeeze3d code prior (format {meta.get('format')!r})")
    if meta.get("weights_hash") != weights_hash:
        raise UserError(f"{path} was fitted for mapping weights {str(meta.get('weights_hash'))[:8]}, not "
                        f"{weights_hash[:8]}: refit it (python jobs/fit_code_prior.py)")
    return CodePrior(tables, weights_hash)


def stored_codes(codec, clouds, effort: int):
    """The codes ``codec`` would store for ``clouds`` (raw point arrays): F_E's code refined by
    ``effort`` steps, as ``compress`` does. Yields one ``[d]`` float32 array per cloud."""
    h = codec.handler
    for pts in clouds:
        norm, _, _ = h.normalise(h.prepare(np.asarray(pts, np.float32), codec.pair))
        yield codec.refine(norm, codec.encode(norm), effort).reshape(-1)


def fit_for_codec(codec, clouds, effort: int, bits_list, meta: dict | None = None) -> Path:
    """Fit the code prior of ``codec``'s model on ``clouds`` and store it beside its weights."""
    codes = np.stack(list(stored_codes(codec, clouds, effort)))
    prior = CodePrior.fit(codes, bits_list, codec.resolved.weights_hash)
    return prior.save(codec.resolved.path, {**(meta or {}), "objects": len(codes), "effort": int(effort),
                                            "bits": sorted(int(b) for b in bits_list)})
