"""Truncate, then redact, any free text before it leaves the process (pure, no I/O).

Order matters: truncating first bounds the regex work, and the patterns are written so that
a secret cut in half by the truncation is still recognised and removed.
"""

from __future__ import annotations

import re
from typing import Final

MAX_MESSAGE_CHARS: Final = 256
REDACTED: Final = "[REDACTED]"

_PATTERNS: Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    # credentials in URLs: scheme://user:password@host, scheme://token@host, or cut before the "@"
    (re.compile(r"(?i)\b([a-z][a-z0-9+.\-]{1,15}://)[^\s/@]+@"), r"\1" + REDACTED + "@"),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.\-]{1,15}://)[^\s/@:]+:[^\s/@]*$"), r"\1" + REDACTED),
    # Authorization: Bearer/Basic/Token <credential>
    (re.compile(r"(?i)\b(bearer|basic|token)(\s+)[A-Za-z0-9\-._~+/=]+"), r"\1\2" + REDACTED),
    # JWTs (also when truncated after the header or payload)
    (re.compile(r"\beyJ[A-Za-z0-9_\-]{4,}(?:\.[A-Za-z0-9_\-]*){0,2}"), REDACTED),
    # provider API keys: sk-..., sk-proj-..., sk-ant-..., gsk_..., xai-..., AIza...
    (re.compile(r"\b(?:sk|pk|rk)-[A-Za-z0-9_\-]{4,}"), REDACTED),
    (re.compile(r"\b(?:gsk|xai|key|lk)[_\-][A-Za-z0-9]{16,}"), REDACTED),
    (re.compile(r"\bAIza[0-9A-Za-z_\-]{10,}"), REDACTED),
    # key=value / "key": "value" parameters whose name says secret
    (
        re.compile(
            r"(?i)([\"']?\b(?:api[_\-]?key|apikey|x-api-key|access[_\-]?token|refresh[_\-]?token|"
            r"id[_\-]?token|token|secret|client[_\-]?secret|api[_\-]?secret|password|passwd|pwd|"
            r"authorization|auth|signature|sig|credential|credentials)[\"']?\s*[=:]\s*[\"']?)"
            r"[^\s&\"',;}]+"
        ),
        r"\1" + REDACTED,
    ),
)


def redact(text: str) -> str:
    """Remove bearer tokens, API keys, JWTs, secret parameters and URL credentials."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def truncate(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """Cut ``text`` to ``limit`` characters, marking the cut with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def clean_message(text: str) -> str:
    """The form in which a foreign message may leave the process: truncated, then redacted."""
    return redact(truncate(text))
