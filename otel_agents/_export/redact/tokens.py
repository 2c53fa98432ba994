"""Passes 6 to 8 of the redactor (pure, no I/O): credentials found by their own shape.

JWTs and the key formats with a colon (pass 6), then every word: one that starts with a
provider's key prefix, a key id (pass 7), or one of high entropy (pass 8). The formats are
:mod:`.formats`; the package docstring states each rule.
"""

from __future__ import annotations

import itertools
import re
from typing import Final

from .common import REDACTED
from .formats import (
    _AWS_KEY_ID,
    _DOTTED_ID,
    _FAL,
    _GENERIC_KEY,
    _ID_PREFIX,
    _JWT,
    _KEY_PREFIXES,
    _LIVEKIT_KEY,
    _NAME_TAIL,
    _TELEGRAM,
)

# --- 6. JWTs, and key formats with a colon ----------------------------------------------------


def _jwt(text: str, i: int) -> tuple[int, int, str] | None:
    match = _JWT.match(text, i)
    return None if match is None else (i, match.end(), REDACTED)


def _colon_key(text: str, i: int) -> tuple[int, int, str] | None:
    """At a colon (or its URL encoding ``%3A``)."""
    if i >= 36 and text[i - 13] == "-":
        match = _FAL.match(text, i - 36)
        if match is not None:
            return i - 36, match.end(), REDACTED
    if i >= 8 and text.startswith("AA", i + (1 if text[i] == ":" else 3)):
        match = _TELEGRAM.search(text, i - 10, i + 3 + 256)
        if match is not None and match.start() < i < match.end():
            return match.start(), match.end(), REDACTED
    return None


# --- 7. and 8. words: key prefixes, key ids, high entropy -------------------------------------

#: a run of letters, digits, ``-``, ``_``, ``+`` and ``/`` (words, and base64): where a key
#: may be
_TOKEN: Final = re.compile(r"[A-Za-z0-9_\-+/]{10,}")
#: a word within such a run (split at ``+`` and ``/``)
_SUBWORD: Final = re.compile(r"[A-Za-z0-9_\-]{10,}")
#: a base64 run JSON-escaped (``\/``) or URL-encoded (``%2F``, ``%2B``)
_B64_ENCODED: Final = re.compile(r"(?:[A-Za-z0-9+/_\-]|\\+/|%2[BbFf]){30,}")
_ESCAPED_SLASH: Final = re.compile(r"\\+/")
_PERCENT_SLASH: Final = re.compile(r"%2[BbFf]")
_SEGMENT: Final = re.compile(r"[A-Za-z0-9]+")
_HEX: Final = re.compile(r"[0-9a-fA-F]+")
_WORDLIKE: Final = re.compile(r"[A-Z]?[a-z]{3,}")
_CLASS: Final = str.maketrans(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
    "U" * 26 + "l" * 26 + "d" * 10,
)


def _change_ratio(core: str) -> float:
    """How often the character class (upper, lower, digit) changes from one character to the
    next: about 0.6 in random base62, 0.2-0.3 in CamelCase names."""
    classes = core.translate(_CLASS)
    changes = sum(1 for _ in itertools.groupby(classes)) - 1
    return changes / (len(core) - 1)


def _mixed(hex_digits: str) -> bool:
    """Letters and digits both (a run of one of them is not a key: ``aaaa...``, a number)."""
    return not (hex_digits.isdigit() or hex_digits.isalpha())


def _random_segment(seg: str) -> bool:
    """The high-entropy rule for one run of letters and digits (the package docstring, 8)."""
    n = len(seg)
    if n < 24:
        return False
    if _HEX.fullmatch(seg):
        return n >= 40 and _mixed(seg)
    upper = any(c.isupper() for c in seg)
    lower = any(c.islower() for c in seg)
    digits = sum(c.isdigit() for c in seg)
    if upper and lower and digits:
        return _change_ratio(seg) >= 0.25
    if (upper or lower) and digits:
        return digits >= 2 and n - digits >= 2
    if upper and lower:
        # letters only: a name is CamelCase words (70 % or more of it in parts of 3 letters or
        # more with a vowel: every class name of 24 letters or more in livekit's dependencies
        # is); random letters rarely are, and change case more often
        return _word_share(seg) < 0.7 or _change_ratio(seg) >= 0.45
    return False


_PART: Final = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])")
_VOWELS: Final = frozenset("aeiouyAEIOUY")


def _word_share(letters: str) -> float:
    """The share of ``letters`` in CamelCase parts of 3 letters or more that hold a vowel."""
    parts = _PART.findall(letters)
    return sum(len(p) for p in parts if len(p) >= 3 and not _VOWELS.isdisjoint(p)) / len(letters)


def _plain(body: str) -> bool:
    """A lower-case identifier (``sk-learn-extension``), not a key body."""
    return not any(c.isdigit() or c.isupper() for c in body)


def _secret_word(word: str) -> bool:
    """A word (letters, digits, - and _) that is a key: by prefix, by shape, by entropy."""
    if len(word) >= 14 and word.startswith(_KEY_PREFIXES) and not _plain(word[3:]):
        return True
    if _AWS_KEY_ID.fullmatch(word) or _GENERIC_KEY.fullmatch(word):
        return True
    livekit = _LIVEKIT_KEY.fullmatch(word)
    if livekit is not None and not _NAME_TAIL.fullmatch(livekit.group(1)):
        return True
    if len(word) < 24 or _ID_PREFIX.match(word):
        return False
    segments = _SEGMENT.findall(word)
    if any(_random_segment(seg) for seg in segments):
        return True
    return len(segments) > 1 and _random_joined(segments)


def _random_joined(segments: list[str]) -> bool:
    """A base64url or base64 secret split by its ``-``/``_``/``+``/``/``: random as a whole,
    and less than 30 % of it in parts that are words (a path, a model name: ``Llama``,
    ``Instruct``, ``speech``)."""
    core = "".join(segments)
    if len(core) < 30:
        return False
    if sum(len(seg) for seg in segments if len(seg) >= 4 and _WORDLIKE.fullmatch(seg)) * 10 >= (
        len(core) * 3
    ):
        return False
    if _HEX.fullmatch(core):
        return len(core) >= 40 and _mixed(core)
    upper = any(c.isupper() for c in core)
    lower = any(c.islower() for c in core)
    digits = any(c.isdigit() for c in core)
    return upper + lower + digits >= 2 and _change_ratio(core) >= 0.25


def _token(text: str, match: re.Match[str]) -> list[tuple[int, int]]:
    """The spans of ``match`` (a run of ``_TOKEN``) that are keys."""
    token = match.group()
    start = match.start()
    if "/" not in token and "+" not in token:
        if _secret_word(token):
            return [(start, match.end())]
        # a word URL-encoded in place (%20sk-...): its first two characters are the code's;
        # after an escaped line break (\nsk-...), its first is the escape's
        if start and text[start - 1] == "%" and _secret_word(token[2:]):
            return [(start + 2, match.end())]
        if start and text[start - 1] == "\\" and token[0] in "nrt" and _secret_word(token[1:]):
            return [(start + 1, match.end())]
        return []
    if len(token) >= 30 and _random_joined(_SEGMENT.findall(token)):
        return [(start, match.end())]
    return [
        (start + word.start(), start + word.end())
        for word in _SUBWORD.finditer(token)
        if _secret_word(word.group())
    ]


def _with_id(text: str, start: int) -> int:
    if start and text[start - 1] == ".":
        found = _DOTTED_ID.search(text, max(0, start - 18), start)
        # a key id has digits or both cases; a module name (``email.``) has not
        if found is not None and not _plain(found.group()):
            return found.start()
    return start


def _words(text: str) -> str:
    spans = [
        (_with_id(text, start), end)
        for match in _TOKEN.finditer(text)
        for start, end in _token(text, match)
    ]
    if ("\\/" in text or "%2" in text) and len(text) >= 30:
        for match in _B64_ENCODED.finditer(text):
            plain = _PERCENT_SLASH.sub("/", _ESCAPED_SLASH.sub("/", match.group()))
            if _random_joined(_SEGMENT.findall(plain)):
                spans.append(match.span())
    if not spans:
        return text
    spans.sort()
    out: list[str] = []
    last = 0
    for start, end in spans:
        if start < last:
            if end > last:  # overlapping spans: extend the one already out
                last = end
            continue
        out.append(text[last:start])
        out.append(REDACTED)
        last = end
    out.append(text[last:])
    return "".join(out)
