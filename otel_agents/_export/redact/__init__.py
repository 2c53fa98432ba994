"""Redact, then truncate, any foreign text before it leaves the process (pure, no I/O).

Order matters: a secret is recognised whole before anything is cut. Only the first
``WINDOW_CHARS`` of a text are read (that bounds the work on the event loop); when the window or
an upstream cut (``cut=True``) ends inside a word, that partial word is dropped rather than
judged, and the cut is marked with ``ELLIPSIS``. The redacted text is then cut to
``MAX_MESSAGE_CHARS``, never inside a ``[REDACTED]`` marker.

What is a credential, pass by pass (each pass is skipped when a substring test shows it cannot
apply, so ordinary text pays for a few ``in`` tests and one word scan):

1. PEM blocks, ``-----BEGIN ...-----`` to ``-----END ...-----`` (or to the end of the text),
   with their line breaks real, JSON-escaped or URL-encoded.
2. URL userinfo, ``scheme://user:password@host``, up to the last ``@`` before the host (a
   password may hold one), also URL-encoded (``%3A%2F%2F...%40``).
3. XML elements whose name says credential (``<SecretAccessKey>``, ``<SessionToken>``,
   ``<SignatureProvided>``...), also HTML-escaped or URL-encoded.
4. The value of every name that says credential: a header, a query or form parameter, a JSON,
   Python or environment key whose last word (``_NAME_WORDS``, optionally followed by ``id``,
   ``header``, ``value``) is ``key``, ``token``, ``secret``, ``password``, ``auth``,
   ``authorization``, ``credential``, ``signature``, ``cookie``... in any case, the words
   joined by ``_``, ``-``, ``.``, a space, camelCase or their URL encodings; quoted plainly,
   with backslash-escaped quotes (a JSON string inside a JSON string), HTML or URL-encoded
   quotes; assigned by ``=``, ``:``, ``=>``, their URL encodings, or as a ``('name', 'value')``
   pair. A quoted value goes whole; an ``Authorization``/``Cookie``/``Set-Cookie`` value goes
   to the end of its line; a scheme word stays readable (``Authorization: Key [REDACTED]``);
   ``null``, ``None``, ``true``... stay.
5. The credential after a scheme word anywhere (and curl's ``-u user:password``): ``Bearer`` +
   anything but a short word
   ("Bearer token required"); ``Basic``, ``Token``, ``Digest``, ``Key``, ``Api-Key`` + a word
   that looks like a credential (8 characters or more, not all letters of one case: not "token
   expired").
6. The key formats with a dot, a colon or a path in them (``_DOTTED``: SendGrid, Google
   OAuth, Slack and Discord webhook URLs, Doppler; fal ``<uuid>:<hex>``, Telegram bot tokens),
   then JWTs (``eyJ...``, also cut after their header).
7. Words (runs of letters, digits, ``-``, ``_``, split at ``/`` and ``+``) that start with a
   provider's key prefix (``_KEY_PREFIXES``: the LLM, speech and avatar providers livekit has
   plugins for, and the platforms agents call) and are not a plain lower-case identifier, AWS
   access key ids, Twilio API key SIDs, LiveKit API keys (``API`` + letters and digits that
   are not CamelCase words: ``APITimeoutError`` stays); with the key id a dot joins to its
   front (``<id>.<secret>``).
8. High-entropy words (:func:`_random_segment`, :func:`_random_joined`). A run of 24 or more
   letters and digits is a credential when it is all hex from 40 characters with letters and
   digits both (key ids, hex secrets: trace ids, span ids and UUIDs stay readable), or mixes
   classes the way random text does: upper, lower and digits, with the class changing at 25 %
   or more of its positions (random base62: 60 %; CamelCase names: 20-30 %, and they rarely
   hold digits); one case and at least 2 digits and 2 letters; upper and lower case only, when
   less than 70 % of it is in CamelCase parts of 3 letters or more with a vowel (class names
   are words) or its case changes at 45 % of its positions or more. A run of 30 or more
   letters and digits joined by ``-``, ``_``, ``+`` or ``/`` (base64, base64url) goes whole
   when less than 30 % of it is in parts that are words (``Llama``, ``Instruct``, ``speech``:
   model names and paths) and its letters and digits change class at 25 % of their positions.
   Words that begin with a request or object id prefix (``req_``, ``msg_``, ``chatcmpl-``,
   livekit's ``RM_``...) stay readable. What this rule misses in real keys, and what it
   changes in ordinary messages and class names, is measured in ``tests/test_redact_corpus.py``.

Where each piece is: :mod:`.common` (the marker, and how a pass is tried only where its hint
occurs), :mod:`.structure` (passes 1 to 5, with ``_NAME_WORDS``), :mod:`.formats` (the formats
passes 6 and 7 know: ``_DOTTED``, ``_KEY_PREFIXES``, key ids), :mod:`.tokens` (passes 6 to 8,
with :func:`_random_segment` and :func:`_random_joined`). This module runs them in order
(:func:`redact`), then bounds the text (:func:`clean_message`).
"""

from __future__ import annotations

import functools
import re
from typing import Final

from .common import ELLIPSIS, REDACTED, _lower, _positions, _replace_at
from .formats import _DOTTED
from .structure import (
    _NAME_HINTS,
    _PEM,
    _SCHEME_HINTS,
    _USERINFO_ENCODED,
    _XML_WORDS,
    _curl_user,
    _named_value,
    _pem,
    _scheme_credential,
    _userinfo,
    _xml,
)
from .tokens import _colon_key, _jwt, _words

__all__ = [
    "ELLIPSIS",
    "MAX_MESSAGE_CHARS",
    "REDACTED",
    "WINDOW_CHARS",
    "clean_message",
    "clean_name",
    "clean_repeated",
    "drop_partial_word",
    "redact",
    "truncate",
    "utf8",
]

MAX_MESSAGE_CHARS: Final = 256
#: how much of a text is read and redacted before it is cut to ``MAX_MESSAGE_CHARS``
WINDOW_CHARS: Final = 1024


# --- the redactor -----------------------------------------------------------------------------


def redact(text: str) -> str:
    """Replace every credential in ``text`` with ``[REDACTED]`` (the passes of the module
    docstring, in order). Idempotent; reads all of ``text``: callers bound it."""
    if not text:
        return text
    low = _lower(text)
    if "-----begin" in low:
        text = _PEM.sub(_pem, text)
    if "@" in text and ("://" in text or ":\\" in text):
        text = _replace_at(text, _positions(text, ("://", ":\\")), _userinfo)
    if "%40" in text and "%3a%2f%2f" in low:
        text = _USERINFO_ENCODED.sub(lambda m: m.group(1) + REDACTED + "%40", text)
    if ("<" in text or "&lt;" in low or "%3c" in low) and any(w in low for w in _XML_WORDS):
        low = _lower(text)
        text = _replace_at(text, _positions(low, ("<", "&lt;", "%3c")), _xml)
    low = _lower(text)
    text = _replace_at(text, _positions(low, _NAME_HINTS), _named_value)
    low = _lower(text)
    text = _replace_at(text, _positions(low, _SCHEME_HINTS), _scheme_credential)
    if "-u" in text:
        text = _replace_at(text, _positions(text, ("-u ", "-u\t", "--user")), _curl_user)
    for hint, pattern in _DOTTED:
        if hint in text:
            text = pattern.sub(REDACTED, text)
    if "eyJ" in text:
        text = _replace_at(text, _positions(text, ("eyJ",)), _jwt)
    if ":" in text or "%3" in text:
        text = _replace_at(text, _positions(text, (":", "%3A", "%3a")), _colon_key)
    return _words(text)


def truncate(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """Cut ``text`` to ``limit`` characters, marking the cut with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


#: the last character no credential contains (a word cut at the end of a text is dropped back
#: to it): whitespace and , ; & quotes brackets | `
_LAST_SEPARATOR: Final = re.compile(r"[\s,;&\"'<>()\[\]{}|`](?=[^\s,;&\"'<>()\[\]{}|`]*\Z)")


#: a URL authority the cut ended in: ``user:password`` whose ``@`` was cut off, maybe
_CUT_AUTHORITY: Final = re.compile(r":(?:\\*/){2}[^\s/?#\"'<>\\]*\Z")


def drop_partial_word(text: str) -> str:
    """``text`` without its last word, which a cut may have left incomplete (a key cut too short
    to be recognised, or part of a longer credential): up to its last separator, kept; and
    without a URL authority the cut ended in (its ``@`` may have been cut off)."""
    authority = _CUT_AUTHORITY.search(text)
    if authority is None:
        match = _LAST_SEPARATOR.search(text)
        text = "" if match is None else text[: match.end()]
        # ";", "&" and "," may be inside a password: what is left may end in an authority
        authority = _CUT_AUTHORITY.search(text)
    return text if authority is None else text[: authority.start()] + "://"


def _cut(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """:func:`truncate`, never inside a ``[REDACTED]`` marker."""
    if len(text) <= limit:
        return text
    at = limit - 1
    marker = text.rfind(REDACTED, max(0, at - len(REDACTED) + 1), at + len(REDACTED) - 1)
    if 0 <= marker < at < marker + len(REDACTED):
        at = marker
    return text[:at] + ELLIPSIS


def clean_message(text: str, cut: bool = False) -> str:
    """The form in which a foreign text may leave the process: its first ``WINDOW_CHARS``
    redacted, then cut to ``MAX_MESSAGE_CHARS``. ``cut``: the text was already cut upstream (at
    its end), so its last word may be part of a longer one."""
    if len(text) > WINDOW_CHARS:
        text = text[:WINDOW_CHARS]
        cut = True
    if cut:
        return _cut(redact(drop_partial_word(text)) + ELLIPSIS)
    return _cut(redact(text))


def clean_repeated(text: str, cut: bool = False) -> str:
    """:func:`clean_message` for text that repeats (quota fields, the message of one exception
    recorded on several spans): each distinct text is cleaned once."""
    if len(text) > WINDOW_CHARS:
        return _clean_cached(text[:WINDOW_CHARS], True)
    return _clean_cached(text, cut)


@functools.lru_cache(maxsize=256)
def _clean_cached(text: str, cut: bool) -> str:
    return clean_message(text, cut)  # keys are windows: at most 256 entries of 1 KiB


def clean_name(name: str) -> str:
    """A class, provider or task name as it may leave the process: redacted, cut, cached (few
    distinct names, seen again and again)."""
    return clean_message(name) if len(name) > WINDOW_CHARS else _name_cached(name)


@functools.lru_cache(maxsize=1024)
def _name_cached(name: str) -> str:
    return clean_message(name)


def utf8(text: str) -> str:
    """``text`` as it can be exported: a lone surrogate (from a hostile class name or message)
    cannot be encoded, and the OTLP encoder would drop the whole attribute."""
    if text.isascii():
        return text
    return text.encode("utf-8", "replace").decode("utf-8")
