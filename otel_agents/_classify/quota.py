"""Where a LiveKit Inference quota body can be found, and its fields.

The gateway answers a request over quota with HTTP 429 and a JSON body of type
``inference_quota_exceeded`` (fields ``quota_type``, ``category``, ``hint``,
``remaining_limit``). By the time livekit emits the error, that body may be in any of five
places, looked for in this order on every exception of the chain:

1. the exception's own attributes: livekit's ``APIQuotaExceededError`` carries the fields;
2. its ``body``: a dict (top level, or nested under ``"error"``), or an object with the same
   attributes (the realtime path builds ``APIError(body=<openai error object>)``);
3. the openai SDK's ``response``: the SDK narrows ``body`` to the inner ``"error"`` string, and
   only the HTTP response still holds the whole JSON document;
4. a JSON object inside a message (the inference TTS path raises
   ``APIError(f"LiveKit Inference TTS returned error: {payload}")``); a websocket ``error``
   message can only say it is a quota error with its ``quota_type`` field;
5. a ``category: X`` fragment in a text that speaks of a quota, as a last resort.

JSON is parsed with bounds: a response body over MAX_JSON_BYTES is not parsed (a 10 MB body
must not stall the event loop), a message is scanned up to MAX_SCAN_CHARS, and at most a few
candidate objects are tried per message. Each source is parsed at most once per
classification, and a small response body already parsed (the same quota body comes back on
every attempt of a retry storm) is not parsed again: its quota is remembered by its bytes.

:func:`~.classification.classify` runs the search only when some exception of the chain could
hold a quota (a cheap test, true of every exception on which some location could match and of
a few more), so most errors, which carry no quota, skip it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Final, NamedTuple

from .link import Link, read_links
from .values import MAX_FIELD_CHARS, as_str, attr, field, is_mapping

QUOTA_BODY_TYPE: Final = "inference_quota_exceeded"
#: gateway quota categories that mean "out of credits until the next billing cycle"
CREDIT_CATEGORIES: Final = frozenset({"MaxGatewayCredits", "MaxBargeInRequests"})
#: JSON documents larger than this are not parsed (a 10 MB body must not stall the event loop)
MAX_JSON_BYTES: Final = 64 * 1024

#: JSON objects tried per message before giving up (each is a raw_decode of up to 8 KiB)
_MAX_JSON_STARTS: Final = 8
_QUOTA_BODY_BYTES: Final = QUOTA_BODY_TYPE.encode()
_DECODER: Final = json.JSONDecoder()
#: response bodies (up to this size, up to this many) whose quota is remembered
_MEMO_MAX_BYTES: Final = 4096
_MEMO_MAX_ENTRIES: Final = 64
_memo: dict[bytes, Quota | None] = {}
_CATEGORY_FRAGMENT: Final = re.compile(
    r"""(?i:category)["']?\s*[:=]\s*["']?([A-Za-z][A-Za-z0-9_]{0,63})"""
)


class Quota(NamedTuple):
    """The LiveKit Inference quota fields of a 429 ``inference_quota_exceeded`` body."""

    quota_type: str | None
    category: str | None
    hint: str | None
    remaining_limit: str | None


#: builds a Quota from a tuple of its four fields, at a third of the cost of ``Quota(...)``
_new_quota: Final = tuple.__new__


def is_credit_category(category: str | None) -> bool:
    """Credit exhaustion: MaxGatewayCredits, MaxBargeInRequests, or any category naming credits."""
    return category is not None and (category in CREDIT_CATEGORIES or "credit" in category.lower())


def find_quota(chain: list[BaseException]) -> Quota | None:
    """The quota fields, looked for on every exception of the chain, location by location (the
    order of the module docstring)."""
    return find_quota_in(read_links(chain))


def find_quota_in(links: list[Link]) -> Quota | None:
    """:func:`find_quota` over links already read."""
    for location in _LOCATIONS:
        for link in links:
            try:
                quota = location(link)
            except Exception:
                quota = None
            if quota is not None:
                return quota
    return None


# --- the five locations -----------------------------------------------------------------------


def _from_attributes(link: Link) -> Quota | None:
    fields, _body, _texts = link
    category, quota_type = fields.get("category"), fields.get("quota_type")
    if category is None and quota_type is None:
        return None
    if field(category) is None and field(quota_type) is None:
        return None
    return Quota(
        quota_type=field(quota_type),
        category=field(category),
        hint=field(fields.get("hint")),
        remaining_limit=field(fields.get("remaining_limit")),
    )


def _from_body(link: Link) -> Quota | None:
    _fields, body, _texts = link
    if body is None or as_str(body) is not None or type(body) in (bytes, bytearray):
        return None
    if is_mapping(body):
        return _from_mapping(body)
    # an object body (an openai error object): read through its attributes
    if as_str(attr(body, "type")) == QUOTA_BODY_TYPE:
        return Quota(
            quota_type=field(attr(body, "quota_type")),
            category=field(attr(body, "category")),
            hint=field(attr(body, "hint")),
            remaining_limit=field(attr(body, "remaining_limit")),
        )
    return None


def _from_response(link: Link) -> Quota | None:
    fields, _body, _texts = link
    response = fields.get("response")
    if response is None:
        return None
    content = attr(response, "content")
    if type(content) not in (bytes, bytearray) or len(content) > MAX_JSON_BYTES:
        return None
    if _QUOTA_BODY_BYTES not in content:
        return None
    # Every attempt of a retry storm gets the same quota body: a small document already read
    # is not parsed again (what it yields depends on its bytes alone).
    memo = type(content) is bytes and len(content) <= _MEMO_MAX_BYTES
    if memo:
        try:
            return _memo[content]
        except KeyError:
            pass
    try:
        quota = _from_mapping(_loads(content))
    except Exception:  # not memoised: a RecursionError depends on the stack, not the bytes
        return None
    if memo:
        if len(_memo) >= _MEMO_MAX_ENTRIES:
            _memo.clear()
        _memo[content] = quota
    return quota


def _from_message(link: Link) -> Quota | None:
    _fields, _body, texts = link
    for text in texts:
        marker = text.find(QUOTA_BODY_TYPE)
        if marker < 0:
            marker = text.find('"quota_type"')
            if marker < 0:
                continue
        # the object holding the marker starts before it; try the first few candidates
        start = text.find("{", 0, marker)
        for _ in range(_MAX_JSON_STARTS):
            if start < 0:
                break
            try:
                value, _end = _DECODER.raw_decode(text, start)
            except (ValueError, RecursionError):
                value = None
            quota = _from_mapping(value)
            if quota is not None:
                return quota
            start = text.find("{", start + 1, marker)
    return None


def _from_fragment(link: Link) -> Quota | None:
    # "... quota exceeded, category: MaxGatewayCredits, ..." in a string body. Only in a text
    # that speaks of a quota: "invalid category: x" is not a quota error.
    _fields, _body, texts = link
    for text in texts:
        if "ategory" not in text:  # cheap first: this runs for every error without a quota
            continue
        lowered = text.lower()
        if "category" not in lowered or "quota" not in lowered:
            continue
        match = _CATEGORY_FRAGMENT.search(text)
        if match is not None:
            return Quota(quota_type=None, category=match.group(1), hint=None, remaining_limit=None)
    return None


_LOCATIONS: Final[tuple[Callable[[Link], Quota | None], ...]] = (
    _from_attributes,
    _from_body,
    _from_response,
    _from_message,
    _from_fragment,
)


# --- JSON -------------------------------------------------------------------------------------


def _is_quota_mapping(body: Mapping[Any, Any]) -> bool:
    # the HTTP body says type=inference_quota_exceeded; a websocket {"type": "error", ...}
    # message (STT/TTS) can only say so with its quota_type field
    return (
        as_str(body.get("type")) == QUOTA_BODY_TYPE
        or as_str(body.get("quota_type"), MAX_FIELD_CHARS) is not None
    )


def _from_mapping(body: object) -> Quota | None:
    """The quota of a JSON body, at its top level or nested under ``"error"``."""
    try:
        if not is_mapping(body):
            return None
        found: Mapping[Any, Any] = body
        if not _is_quota_mapping(body):
            inner = body.get("error")
            if not (is_mapping(inner) and _is_quota_mapping(inner)):
                return None
            found = inner
        return _new_quota(
            Quota,
            (
                field(found.get("quota_type")),
                field(found.get("category")),
                field(found.get("hint")),
                field(found.get("remaining_limit")),
            ),
        )
    except Exception:
        return None


def _loads(content: bytes | bytearray) -> object:
    """``json.loads(content)``, with the same result and the same errors.

    A document that starts with ``{`` and whose second byte is not NUL is UTF-8 (the encoding
    ``json.loads`` detects then): it is decoded and parsed directly, which skips the encoding
    detection and spares about half the cost. Anything else goes through ``json.loads``.
    """
    if content[:1] != b"{" or content[1:2] == b"\x00":
        return json.loads(content)
    text = content.decode("utf-8", "surrogatepass")
    value, end = _DECODER.raw_decode(text)
    if end != len(text) and text[end:].lstrip(" \t\n\r"):  # what json.loads calls extra data
        raise json.JSONDecodeError("Extra data", text, end)
    return value
