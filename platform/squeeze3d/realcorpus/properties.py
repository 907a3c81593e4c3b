"""Java ``.properties`` files (Sweet Home 3D's furniture catalogues), as ``java.util.Properties``
reads them: Latin-1 bytes, ``\\uXXXX`` escapes, lines continued by an odd number of trailing
backslashes, ``#``/``!`` comments, and ``=``, ``:`` or white space between key and value."""

from __future__ import annotations

_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def _unescape(s: str) -> str:
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c != "\\" or i + 1 == len(s):
            out.append(c)
            i += 1
            continue
        n = s[i + 1]
        if n == "u" and i + 6 <= len(s):
            try:
                out.append(chr(int(s[i + 2:i + 6], 16)))
                i += 6
                continue
            except ValueError:
                pass
        out.append(_ESCAPES.get(n, n))
        i += 2
    return "".join(out)


def _logical_lines(text: str):
    pending = None
    for raw in text.splitlines():
        line = raw.lstrip(" \t\f")
        if pending is None and (not line or line[0] in "#!"):
            continue
        trailing = len(line) - len(line.rstrip("\\"))
        if trailing % 2 == 1:  # continued: drop the backslash, the next line's indentation goes too
            pending = (pending or "") + line[:-1]
            continue
        yield (pending or "") + line
        pending = None
    if pending is not None:
        yield pending


def _split_key(line: str) -> tuple[str, str]:
    i = 0
    while i < len(line):
        c = line[i]
        if c == "\\":
            i += 2
            continue
        if c in "=: \t\f":
            break
        i += 1
    key, rest = line[:i], line[i:]
    rest = rest.lstrip(" \t\f")
    if rest[:1] in ("=", ":"):
        rest = rest[1:].lstrip(" \t\f")
    return _unescape(key), _unescape(rest)


def parse_properties(data: bytes | str) -> dict[str, str]:
    """Key → value of a ``.properties`` file (bytes are decoded as Latin-1, as Java does)."""
    text = data.decode("latin-1") if isinstance(data, bytes) else data
    out: dict[str, str] = {}
    for line in _logical_lines(text):
        k, v = _split_key(line)
        out[k] = v
    return out
