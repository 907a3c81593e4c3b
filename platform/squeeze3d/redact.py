"""The one place credentials are taken out of text before it is shown or stored.

A tracking URI, a dataset URI or a presigned S3 link can carry a secret: a password or token in its
userinfo (``http://u:secret@host``, ``https://TOKEN@host``) or in its query (``?token=…``,
``X-Amz-Signature=…``, ``X-Amz-Credential=…``). Every user-facing message (``UserError`` masks its own
text), log line, cache file, MLflow tag and exception passes through ``mask_credentials``; caches that
must tell URIs apart store ``uri_digest`` instead of the URI. Leaf module: imports nothing of ours.
"""

from __future__ import annotations

import hashlib
import re

MASK = "***"

# scheme://userinfo@ -- userinfo stops at the first "/", whitespace or quote; it may hold ":".
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<info>[^/\s@'\"<>]+)@")
# a query or fragment parameter whose name says it is a secret (case-insensitive); the value runs to
# the next separator. Names are matched as substrings so vendor spellings (X-Amz-Security-Token,
# sig, access_key, client_secret, apikey, password) are all caught.
_SECRET_PARAM = re.compile(
    r"(?P<name>[?&;#](?:[A-Za-z0-9_.\-]*?)(?:token|signature|sig|secret|passw(?:or)?d|pwd|credential|"
    r"api[_-]?key|access[_-]?key|auth)[A-Za-z0-9_.\-]*=)(?P<value>[^&;#\s'\"<>]*)", re.IGNORECASE)


def _userinfo(m: re.Match) -> str:
    info = m.group("info")
    if ":" in info:  # user:password -> keep the user name, which says whose account it is
        return f"{m.group('scheme')}{info.split(':', 1)[0]}:{MASK}@"
    return f"{m.group('scheme')}{MASK}@"  # a lone userinfo is usually a token (https://TOKEN@host)


def mask_credentials(text: str) -> str:
    """``text`` with every credential in every URI it contains replaced by ``***``; the rest unchanged."""
    if not text:
        return text
    text = str(text)
    if "@" in text:
        text = _USERINFO.sub(_userinfo, text)
    if "=" in text:
        text = _SECRET_PARAM.sub(lambda m: f"{m.group('name')}{MASK}" if m.group("value") else m.group(0), text)
    return text


def uri_digest(uri: str) -> str:
    """What a cache stores to recognise a URI without storing it (it may hold a secret)."""
    return hashlib.sha256(str(uri).encode()).hexdigest()
