"""The redactor as it was before it knew the field (kept verbatim as ``bench/redact_cost.py``'s
baseline): truncate to 256 characters, then 13 patterns; stack traces kept their unindented
lines up to the first colon. Not imported by otel-agents."""

# ruff: noqa

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Final

MAX_MESSAGE_CHARS: Final = 256
REDACTED: Final = "[REDACTED]"
#: what ``truncate`` puts where it cut
ELLIPSIS: Final = "\u2026"

_SCHEME: Final = r"\b([a-z][a-z0-9+.\-]{1,15}://)"
#: characters of a URL's authority (user:password@host:port)
_AUTHORITY: Final = r"[^\s/?#@]"
_CREDENTIAL: Final = r"[A-Za-z0-9\-._~+/=]+"
_SECRET_NAMES: Final = (
    r"api[_\-]?key|apikey|x-api-key|access[_\-]?token|refresh[_\-]?token|id[_\-]?token|token|"
    r"secret|client[_\-]?secret|api[_\-]?secret|password|passwd|pwd|authorization|auth|"
    r"signature|sig|credential|credentials|access[_\-]?key|private[_\-]?key"
)
#: where a secret's name may start: a word boundary, or inside a longer name after "_"/"-" or
#: a camelCase hump (LIVEKIT_API_SECRET, DEEPGRAM_API_KEY, sessionToken); cheap to test, so the
#: name's alternation runs at few positions
_NAME_START: Final = r"(?:\b|(?<=[_\-])|(?-i:(?<=[a-z0-9])(?=[A-Z])))"


def _looks_like_a_credential(word: str) -> bool:
    """After ``Basic``/``Token``/``Digest``: a credential, not an English word ("token credit")."""
    if len(word) < 8:
        return False
    if any(not c.isalpha() for c in word):  # digits, or - . _ ~ + / =
        return True
    return not (word.islower() or word.isupper() or word.istitle())  # rAnDoM case


def _scheme_credential(match: re.Match[str]) -> str:
    scheme, space, credential = match.group(1, 2, 3)
    if scheme.lower() == "bearer" or _looks_like_a_credential(credential):
        return scheme + space + REDACTED
    return match.group(0)


def _parameter(match: re.Match[str]) -> str:
    key, scheme, value = match.group("key", "scheme", "value")
    quote = value[0] if value[0] in "\"'" else ""
    closed = quote if len(value) > 1 and value.endswith(quote) else ""
    return key + (scheme or "") + quote + REDACTED + closed


_PATTERNS: Final[tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...]] = (
    # credentials in URLs: scheme://user:password@host, scheme://token@host
    (re.compile(r"(?i)" + _SCHEME + _AUTHORITY + r"+@"), r"\1" + REDACTED + "@"),
    # ... cut by the truncation inside the authority (before the "@", if there was one)
    (
        re.compile(r"(?i)" + _SCHEME + _AUTHORITY + r"*" + ELLIPSIS + "$"),
        r"\1" + REDACTED + ELLIPSIS,
    ),
    # ... or cut elsewhere: user:password at the very end (but host:port is innocent)
    (
        re.compile(r"(?i)" + _SCHEME + r"[^\s/?#@:]+:(?!\d+$)" + _AUTHORITY + r"+$"),
        r"\1" + REDACTED,
    ),
    # Authorization: Bearer/Basic/Token/Digest <credential>
    (
        re.compile(r"(?i)\b(bearer|basic|token|digest)(\s+)(" + _CREDENTIAL + ")"),
        _scheme_credential,
    ),
    # JWTs (also when truncated after the header or payload)
    (re.compile(r"\beyJ[A-Za-z0-9_\-]{4,}(?:\.[A-Za-z0-9_\-]*){0,2}"), REDACTED),
    # provider API keys: sk-..., sk-proj-..., sk-ant-..., gsk_..., xai-..., AIza...
    (re.compile(r"\b(?:sk|pk|rk)-[A-Za-z0-9_\-]{4,}"), REDACTED),
    (re.compile(r"\b(?:gsk|xai|key|lk)[_\-][A-Za-z0-9]{16,}"), REDACTED),
    (re.compile(r"\bAIza[0-9A-Za-z_\-]{10,}"), REDACTED),
    # key ids: AWS access key ids, LiveKit API keys ("API" and letters with a digit among
    # them: APIConnectionError is not one), also when the truncation cut them
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), REDACTED),
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{1,15}" + ELLIPSIS + "$"), REDACTED + ELLIPSIS),
    (re.compile(r"\bAPI(?=[A-Za-z0-9]*[0-9])[A-Za-z0-9]{10,20}\b"), REDACTED),
    (
        re.compile(r"\bAPI(?=[A-Za-z0-9]*[0-9])[A-Za-z0-9]{1,19}" + ELLIPSIS + "$"),
        REDACTED + ELLIPSIS,
    ),
    # key=value / "key": "value" parameters whose name says secret (a quoted value whole)
    (
        re.compile(
            r"(?i)(?P<key>[\"']?" + _NAME_START + r"(?:" + _SECRET_NAMES + r")[\"']?\s*[=:]\s*)"
            r"(?P<scheme>(?:bearer|basic|token|digest)\s+)?"
            r"(?P<value>\"[^\"\n]*\"?|'[^'\n]*'?|[^\s&\"',;}]+)"
        ),
        _parameter,
    ),
)


def redact(text: str) -> str:
    """Remove bearer tokens, API keys, JWTs, secret parameters and URL credentials."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def truncate(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """Cut ``text`` to ``limit`` characters, marking the cut with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


def clean_message(text: str) -> str:
    """The form in which a foreign message may leave the process: truncated, then redacted."""
    return redact(truncate(text))


def clean_repeated(text: str) -> str:
    """:func:`clean_message` for text that repeats (quota categories, hints, the message of one
    exception recorded on several spans): each distinct text is cleaned once."""
    return _redact_cached(truncate(text))


@functools.lru_cache(maxsize=256)
def _redact_cached(text: str) -> str:
    return redact(text)  # keys are truncated: at most 256 entries of 256 characters


def utf8(text: str) -> str:
    """``text`` as it can be exported: a lone surrogate (from a hostile class name or message)
    cannot be encoded, and the OTLP encoder would drop the whole attribute."""
    if text.isascii():
        return text
    return text.encode("utf-8", "replace").decode("utf-8")


STACKTRACE_CHARS: Final = 8192


def clean_stacktrace(text: str) -> str:
    kept = []
    for line in text[-STACKTRACE_CHARS:].splitlines():
        if line.startswith('  File "'):
            kept.append(line)
        elif line and not line[0].isspace():
            kept.append(line.split(":", 1)[0][:MAX_MESSAGE_CHARS])
    return "\n".join(kept)
