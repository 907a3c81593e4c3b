"""What the codec's two range-coded streams share (the octree's occupancy and the code prior's
levels): the binary model, the decoder's view of a trimmed stream, and the tail cut.

Both write ``constriction``'s 32-bit words big-endian and cut the tail the decoder can restore:
the decoder pads a payload with 0xFF bytes to whole words, plus two words the range decoder reads
ahead, so the encoder keeps only the shortest prefix that still decodes to the same symbols.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from squeeze3d.errors import ContainerError


def bernoulli():
    import constriction

    return constriction.stream.model.Bernoulli(perfect=False)


def to_bytes(words) -> bytes:
    return np.asarray(words, ">u4").tobytes()


def padded_words(payload: bytes) -> np.ndarray:
    """A (possibly trimmed) payload → the words the decoder reads (the cut tail restored as 0xFF)."""
    body = bytes(payload) + b"\xff" * ((-len(payload)) % 4 + 8)
    return np.frombuffer(body, ">u4").astype(np.uint32)


def shortest_prefix(blob: bytes, decodes_same: Callable[[bytes], bool], keep: int = 0) -> bytes:
    """The shortest prefix of ``blob`` (at least ``keep`` bytes: a header) for which every longer cut
    also ``decodes_same``; a cut that is not even a valid stream (``ContainerError``) ends the search."""
    best = blob
    for n in range(len(blob) - 1, keep - 1, -1):
        try:
            if not decodes_same(blob[:n]):
                break
        except ContainerError:
            break
        best = blob[:n]
    return best
