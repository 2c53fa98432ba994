"""Foreign strings made exportable: a failed attempt's flat fields, shared by its span and its
log record. Every string from outside is redacted here, then cut (``redact``)."""

from __future__ import annotations

import re
from typing import Any

from .._classify import safe_message
from .records import AttemptRecord
from .redact import (
    ELLIPSIS,
    MAX_MESSAGE_CHARS,
    clean_message,
    clean_name,
    clean_repeated,
    drop_partial_word,
)

# What ``_classify`` hands over was sometimes cut already, before any redaction: a quota field
# at 256 characters, a root message whose large body was left out ("<message cut at 256> (a
# dict body too large to render)"). The word at such a cut may be part of a key: it is dropped.
_CLASSIFY_FIELD_CHARS = MAX_MESSAGE_CHARS
_BODY_NOTE = re.compile(r" \(a [\w.]+ body too large to render\)\Z")


def clean_field(value: str | None) -> str | None:
    """A quota field: redacted, then cut; a field at the classifier's limit may have been cut."""
    if not value:
        return value
    return clean_repeated(value, cut=len(value) >= _CLASSIFY_FIELD_CHARS)


def cleaned_name(value: str | None) -> str | None:
    """A class, provider, model or task name, redacted (names are few: cached)."""
    return clean_name(value) if value else value


def root_message(text: str) -> str:
    """The root cause's message (``safe_message``), redacted, then cut."""
    note = _BODY_NOTE.search(text)
    if note is not None and note.start() >= _CLASSIFY_FIELD_CHARS:
        return clean_message(drop_partial_word(text[: note.start()]) + ELLIPSIS + note.group())
    return clean_message(text)


def attempt_fields(rec: AttemptRecord, capture_messages: bool) -> dict[str, Any]:
    """A failed attempt as flat log fields (``None`` where a field does not apply). Every string
    from outside is cleaned here; without ``capture_messages``, no foreign text is kept but the
    class and provider names (the quota fields' closed sets are on the metrics)."""
    c = rec.classification
    q = c.quota if capture_messages else None
    return {
        "component": rec.component,
        "provider": cleaned_name(rec.provider),
        "attempt": rec.attempt,
        "final": rec.final,
        "error_type": cleaned_name(c.error_type),
        "status_code": c.status_code,
        "error_class": c.error_class,
        "root_cause_type": cleaned_name(c.root_cause_type),
        "root_cause_message": root_message(safe_message(c.root)) if capture_messages else None,
        "first_root_cause_type": cleaned_name(rec.first_root_cause_type),
        "masked": rec.masked,
        "terminal": c.terminal,
        # every field of a quota body is foreign text: a buggy or hostile upstream could put
        # anything there (metrics use closed label sets; spans and logs get it cleaned)
        "quota_type": clean_field(q.quota_type) if q else None,
        "quota_category": clean_field(q.category) if q else None,
        "quota_hint": clean_field(q.hint) if q else None,
        "quota_remaining_limit": clean_field(q.remaining_limit) if q else None,
    }
