"""Turn a raw LLM reply into one clean prompt, or a reason why not.

The request asks for exactly one line, but models add preambles ("Sure! Here is..."), numbering,
labels, quotes or markdown; random-weight test models return noise. ``parse_reply`` never raises:
it returns the prompt or one of ``DROP_REASONS`` so the run can count what it dropped.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

MIN_WORDS = 3
MAX_WORDS = 40
MAX_CHARS = 300
MIN_LETTER_SHARE = 0.85

# Reasons a reply yields no prompt (parse) plus the later stages' reasons (dedup, engine).
PARSE_REASONS = ("empty", "refusal", "no_candidate", "too_short", "too_long", "garbled")
DROP_REASONS = PARSE_REASONS + ("inference_error", "duplicate_exact", "duplicate_near", "engine_error")

_SPECIAL_TOKEN = re.compile(r"<\|[^|>]{1,40}\|>|</?s>|\[/?INST\]")
_BULLET = re.compile(r"^\s*(?:\(?\d{1,3}[.):]|[-*•#>]+)\s*")
_LABEL = re.compile(r"^\s*(?:\*\*)?(?:prompt|description|object|answer|output|text)(?:\s*\d+)?\s*(?:\*\*)?\s*[:\-–]\s*",
                    re.IGNORECASE)
_PREAMBLE = re.compile(r"^(?:sure|certainly|of course|okay|ok|here(?:'s| is| are)|below is|i hope|"
                       r"let me know|this (?:prompt|description))\b", re.IGNORECASE)
_REFUSAL = re.compile(r"\b(?:i can(?:'|no)t|i cannot|i'm sorry|i am sorry|as an ai|i won't|unable to)\b",
                      re.IGNORECASE)
_QUOTES = "\"'`“”‘’«»*_"


@dataclass(frozen=True)
class ParseResult:
    prompt: str | None
    reason: str | None
    """``None`` when ``prompt`` is set, else one of ``PARSE_REASONS``."""


def _clean_line(line: str) -> str:
    line = _BULLET.sub("", line, count=1)
    line = _LABEL.sub("", line, count=1)
    line = line.strip().strip(_QUOTES).strip()
    line = re.sub(r"\s+", " ", line)
    return line.rstrip(" .!;,:").strip(_QUOTES).strip()


def _check(text: str) -> str | None:
    words = text.split()
    if len(words) < MIN_WORDS:
        return "too_short"
    if len(words) > MAX_WORDS or len(text) > MAX_CHARS:
        return "too_long"
    letters = sum(ch.isascii() and (ch.isalpha() or ch in " -,'") for ch in text)
    if letters / len(text) < MIN_LETTER_SHARE or not any(len(w) >= 3 and w.isalpha() for w in words):
        return "garbled"
    return None


def parse_reply(reply: str | None) -> ParseResult:
    """The first line of ``reply`` that reads as an object prompt, cleaned; else a drop reason.
    When several lines are rejected, the reason of the first real candidate is reported."""
    if reply is None:
        return ParseResult(None, "empty")
    text = unicodedata.normalize("NFKC", _SPECIAL_TOKEN.sub(" ", str(reply))).strip()
    if not text:
        return ParseResult(None, "empty")
    first_reason = None
    refused = False
    for raw in text.splitlines():
        line = _clean_line(raw)
        if not line:
            continue
        if any(ch == "\ufffd" or (unicodedata.category(ch) == "Cc" and ch != "\t") for ch in raw):
            first_reason = first_reason or "garbled"  # broken bytes / control characters: never a prompt
            continue
        if _REFUSAL.search(line):
            refused = True
            continue
        if _PREAMBLE.match(line) or raw.rstrip().endswith(":"):
            continue
        reason = _check(line)
        if reason is None:
            return ParseResult(line[0].upper() + line[1:] + ".", None)
        first_reason = first_reason or reason
    if first_reason:
        return ParseResult(None, first_reason)
    return ParseResult(None, "refusal" if refused else "no_candidate")


def normalize(prompt: str) -> str:
    """The key for exact de-duplication: case, punctuation, spacing and a leading article ignored."""
    t = unicodedata.normalize("NFKC", prompt).lower()
    t = re.sub(r"[^a-z0-9]+", " ", t).strip()
    return re.sub(r"^(?:a|an|the) ", "", t)


def mentions(prompt: str, word: str) -> bool:
    """Whether ``prompt`` names ``word`` (a category), allowing a plural ``s``/``es``."""
    return re.search(rf"\b{re.escape(word.lower())}(?:e?s)?\b", prompt.lower()) is not None
