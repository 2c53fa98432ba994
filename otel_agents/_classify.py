"""Classification of a provider error, at the moment it is emitted (pure: no OTel, no I/O).

Given the exception livekit emits for one failed attempt, find:

* the root cause: the deepest exception, following ``__cause__`` and else ``__context__``
  (even when ``__suppress_context__`` is set: ``raise ... from None`` hides the openai error that
  still holds the gateway's 429 body), cycle-safe and bounded;
* the HTTP status, the LiveKit Inference quota fields, the error class and the terminal flag
  (DESIGN.md section 4).

This must run inside the ``"error"`` handler: livekit later re-raises the same exception inside
``except StopAsyncIteration``, which overwrites its ``__context__`` and loses the quota body.

Every foreign object is treated as hostile: attribute access, ``str()``, ``json()`` and
iteration may raise or be huge. Nothing here formats a traceback.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

#: how many links of a chain are followed before giving up (cycles end earlier)
MAX_CHAIN: Final = 64
#: JSON documents larger than this are not parsed (a 10 MB body must not stall the event loop)
MAX_JSON_BYTES: Final = 64 * 1024
#: text scanned for quota markers and provider signals
MAX_SCAN_CHARS: Final = 8 * 1024

QUOTA_BODY_TYPE: Final = "inference_quota_exceeded"
#: gateway quota categories that mean "out of credits until the next billing cycle"
CREDIT_CATEGORIES: Final = frozenset({"MaxGatewayCredits", "MaxBargeInRequests"})
#: provider error codes meaning exhausted billing or bad credentials (rule 3), by error class
PROVIDER_TERMINAL_CODES: Final[Mapping[str, str]] = {
    # OpenAI (also the realtime API's fatal codes)
    "insufficient_quota": "quota_exhausted",
    "billing_hard_limit_reached": "quota_exhausted",
    "credit_balance_exhausted": "quota_exhausted",
    "invalid_api_key": "auth",
    "account_deactivated": "auth",
}
#: HTTP statuses that will not recover without operator action (rule 3)
TERMINAL_STATUSES: Final = frozenset({401, 402, 403})
_ANTHROPIC_CREDIT_TEXT: Final = "credit balance is too low"

_CATEGORY_FRAGMENT: Final = re.compile(
    r"""category["']?\s*[:=]\s*["']?([A-Za-z][A-Za-z0-9_]{0,63})"""
)

# Names that classify a class by its MRO. Matching by name keeps this module free of SDK
# imports (openai, httpx, aiohttp, anthropic, google...) while recognising all of them.
_TIMEOUT_NAMES: Final = frozenset(
    {
        "TimeoutError",
        "APITimeoutError",
        "TimeoutException",
        "ReadTimeout",
        "ConnectTimeout",
        "WriteTimeout",
        "PoolTimeout",
        "ServerTimeoutError",
        "DeadlineExceeded",
    }
)
_CANCELLED_NAMES: Final = frozenset({"CancelledError"})
_CONNECTION_NAMES: Final = frozenset(
    {
        "ConnectionError",
        "APIConnectionError",
        "ConnectError",
        "NetworkError",
        "TransportError",
        "RemoteProtocolError",
        "ReadError",
        "WriteError",
        "ClientConnectionError",
        "ClientConnectorError",
        "ClientOSError",
        "ServerDisconnectedError",
        "ClientPayloadError",
        "WSServerHandshakeError",
        "SSLError",
        "CertificateError",
        "gaierror",
        "herror",
        "OSError",
        "ServiceUnavailable",
    }
)
# Programming errors: a bug in a plugin or in the agent, not in the provider (seed 003).
_INTERNAL_NAMES: Final = frozenset(
    {
        "RuntimeError",
        "AttributeError",
        "TypeError",
        "ValueError",
        "KeyError",
        "IndexError",
        "AssertionError",
        "NotImplementedError",
        "NameError",
        "UnboundLocalError",
        "RecursionError",
        "StopAsyncIteration",
        "StopIteration",
        "ZeroDivisionError",
        "UnicodeError",
        "ImportError",
    }
)
# An error the provider reported without an HTTP status (e.g. a websocket "error" message).
_PROVIDER_ERROR_NAMES: Final = frozenset({"APIError", "APIStatusError", "OpenAIError"})
# Order matters: APITimeoutError is an APIConnectionError, SSLError is an OSError, and every
# livekit error is an APIError.
_KIND_ORDER: Final = (
    ("cancelled", _CANCELLED_NAMES),
    ("timeout", _TIMEOUT_NAMES),
    ("connection", _CONNECTION_NAMES),
    ("internal", _INTERNAL_NAMES),
    ("server_error", _PROVIDER_ERROR_NAMES),
)

_MAX_CACHED_TYPES: Final = 4096
_type_names: dict[type, str] = {}
_type_kinds: dict[type, str | None] = {}


@dataclass(frozen=True, slots=True)
class Quota:
    """The LiveKit Inference quota fields of a 429 ``inference_quota_exceeded`` body."""

    quota_type: str | None
    category: str | None
    hint: str | None
    remaining_limit: str | None


@dataclass(frozen=True, slots=True)
class Classification:
    """Everything otel-agents derives from one emitted exception."""

    error_type: str
    status_code: int | None
    root: BaseException
    root_cause_type: str
    error_class: str
    quota: Quota | None
    terminal: bool


def type_name(cls: type) -> str:
    """A stable, readable name for an exception class: ``ssl.SSLError``, ``openai.RateLimitError``.

    Private module segments are dropped (``openai._exceptions`` -> ``openai``) and builtins
    stay bare (``TimeoutError``).
    """
    name = _type_names.get(cls)
    if name is not None:
        return name
    try:
        module = cls.__module__
        qualname = cls.__qualname__
        if not isinstance(module, str) or not isinstance(qualname, str):
            raise TypeError
    except Exception:
        return "unknown"
    if module == "builtins":
        name = qualname
    else:
        public = []
        for part in module.split("."):
            if part.startswith("_"):
                break
            public.append(part)
        name = ".".join([*public, qualname]) if public else qualname
    if len(_type_names) < _MAX_CACHED_TYPES:
        _type_names[cls] = name
    return name


def exception_chain(exc: BaseException, limit: int = MAX_CHAIN) -> list[BaseException]:
    """``exc`` and its causes, outermost first: ``__cause__``, else ``__context__``.

    Cycle-safe (an exception already seen ends the walk) and bounded by ``limit``.
    """
    chain = [exc]
    seen = {id(exc)}
    current: BaseException = exc
    while len(chain) < limit:
        try:
            nxt = current.__cause__
            if nxt is None:
                nxt = current.__context__
        except Exception:
            break
        if not isinstance(nxt, BaseException) or id(nxt) in seen:
            break
        seen.add(id(nxt))
        chain.append(nxt)
        current = nxt
    return chain


def safe_str(exc: BaseException) -> str:
    """``str(exc)``, falling back to ``repr`` and then to the class name; never raises."""
    try:
        text = str(exc)
        if isinstance(text, str):
            return text
    except Exception:
        pass
    try:
        text = repr(exc)
        if isinstance(text, str):
            return text
    except Exception:
        pass
    return f"<unprintable {type_name(type(exc))}>"


def classify(exc: BaseException) -> Classification:
    """Classify one emitted exception. Raises only on a bug in this module."""
    chain = exception_chain(exc)
    root = chain[-1]
    status = _status_code(chain)
    quota = find_quota(chain)
    signal = _provider_signal(chain)
    terminal = _terminal(chain, quota, signal, status)
    return Classification(
        error_type=type_name(type(exc)),
        status_code=status,
        root=root,
        root_cause_type=type_name(type(root)),
        error_class=_error_class(chain, quota, terminal, signal, status),
        quota=quota,
        terminal=terminal,
    )


def is_credit_category(category: str | None) -> bool:
    """Credit exhaustion: MaxGatewayCredits, MaxBargeInRequests, or any category naming credits."""
    return category is not None and (category in CREDIT_CATEGORIES or "credit" in category.lower())


# --- pieces ---------------------------------------------------------------------------------


def _attr(obj: object, name: str) -> Any:
    try:
        return getattr(obj, name, None)
    except Exception:
        return None


def _status_code(chain: list[BaseException]) -> int | None:
    for exc in chain:
        for name in ("status_code", "status"):
            value = _attr(exc, name)
            if type(value) is int and 100 <= value <= 599:
                return value
    return None


def _text_of(exc: BaseException) -> str | None:
    """The message an exception carries, without calling ``str()`` on it."""
    for value in (_attr(exc, "message"), _attr(exc, "body")):
        if isinstance(value, str):
            return value[:MAX_SCAN_CHARS]
    try:
        args = exc.args
        if isinstance(args, tuple) and args and isinstance(args[0], str):
            return args[0][:MAX_SCAN_CHARS]
    except Exception:
        pass
    return None


def _str_field(mapping: Mapping[str, Any], key: str) -> str | None:
    value = mapping.get(key)
    if isinstance(value, str):
        return value
    if type(value) in (int, float):
        return str(value)
    return None


def _quota_from_mapping(body: object) -> Quota | None:
    if not isinstance(body, Mapping):
        return None
    try:
        if body.get("type") != QUOTA_BODY_TYPE:
            inner = body.get("error")
            if isinstance(inner, Mapping) and inner.get("type") == QUOTA_BODY_TYPE:
                body = inner
            else:
                return None
        return Quota(
            quota_type=_str_field(body, "quota_type"),
            category=_str_field(body, "category"),
            hint=_str_field(body, "hint"),
            remaining_limit=_str_field(body, "remaining_limit"),
        )
    except Exception:
        return None


def _quota_from_attributes(exc: object) -> Quota | None:
    # a livekit APIQuotaExceededError (PR #6012) carries the fields itself
    category = _attr(exc, "category")
    quota_type = _attr(exc, "quota_type")
    if not isinstance(category, str) and not isinstance(quota_type, str):
        return None
    hint = _attr(exc, "hint")
    remaining = _attr(exc, "remaining_limit")
    return Quota(
        quota_type=quota_type if isinstance(quota_type, str) else None,
        category=category if isinstance(category, str) else None,
        hint=hint if isinstance(hint, str) else None,
        remaining_limit=remaining if isinstance(remaining, str) else None,
    )


def _quota_from_body(exc: BaseException) -> Quota | None:
    body = _attr(exc, "body")
    if isinstance(body, Mapping):
        return _quota_from_mapping(body)
    # the realtime path builds APIError(body=<openai error object>): attribute access
    if (
        body is not None
        and not isinstance(body, str | bytes)
        and _attr(body, "type") == QUOTA_BODY_TYPE
    ):
        return _quota_from_attributes(body)
    return None


def _quota_from_response(exc: BaseException) -> Quota | None:
    # the openai SDK narrows ``body`` to the inner "error" string; the response keeps it all
    response = _attr(exc, "response")
    if response is None:
        return None
    content = _attr(response, "content")
    if not isinstance(content, bytes | bytearray) or len(content) > MAX_JSON_BYTES:
        return None
    if QUOTA_BODY_TYPE.encode() not in content:
        return None
    try:
        return _quota_from_mapping(json.loads(content))
    except Exception:
        return None


def _quota_from_message(exc: BaseException) -> Quota | None:
    # the inference TTS path: APIError(f"LiveKit Inference TTS returned error: {payload}")
    text = _text_of(exc)
    if text is None or QUOTA_BODY_TYPE not in text:
        return None
    start = text.find("{")
    while 0 <= start < len(text):
        try:
            value, _ = json.JSONDecoder().raw_decode(text, start)
        except ValueError:
            value = None
        quota = _quota_from_mapping(value)
        if quota is not None:
            return quota
        start = text.find("{", start + 1)
    return None


def _quota_from_fragment(exc: BaseException) -> Quota | None:
    text = _text_of(exc)
    if text is None or "category" not in text:
        return None
    match = _CATEGORY_FRAGMENT.search(text)
    if match is None:
        return None
    return Quota(quota_type=None, category=match.group(1), hint=None, remaining_limit=None)


_QUOTA_LOCATIONS: Final = (
    _quota_from_attributes,
    _quota_from_body,
    _quota_from_response,
    _quota_from_message,
    _quota_from_fragment,
)


def find_quota(chain: list[BaseException]) -> Quota | None:
    """The quota fields, looked for on every exception of the chain, location by location.

    Locations, in order: the error's own attributes, a dict (or object) ``body``, the openai
    SDK's ``response`` JSON, a JSON object inside the message, a ``category: X`` fragment.
    """
    for location in _QUOTA_LOCATIONS:
        for exc in chain:
            try:
                quota = location(exc)
            except Exception:
                quota = None
            if quota is not None:
                return quota
    return None


def _provider_signal(chain: list[BaseException]) -> str | None:
    """The error class a provider's own billing/credential signal implies, if any (rule 3)."""
    for exc in chain:
        candidates: list[object] = [_attr(exc, "code"), _attr(exc, "type")]
        body = _attr(exc, "body")
        if isinstance(body, Mapping):
            try:
                candidates += [body.get("code"), body.get("type")]
                inner = body.get("error")
                if isinstance(inner, Mapping):
                    candidates += [inner.get("code"), inner.get("type")]
            except Exception:
                pass
        elif body is not None and not isinstance(body, str | bytes):
            candidates += [_attr(body, "code"), _attr(body, "type")]
        for code in candidates:
            if isinstance(code, str):
                error_class = PROVIDER_TERMINAL_CODES.get(code)
                if error_class is not None:
                    return error_class
        text = _text_of(exc)
        if text is not None and _ANTHROPIC_CREDIT_TEXT in text.lower():
            return "quota_exhausted"
    return None


def _terminal(
    chain: list[BaseException], quota: Quota | None, signal: str | None, status: int | None
) -> bool:
    for exc in chain:  # rule 1: the error says so itself
        value = _attr(exc, "terminal")
        if type(value) is bool:
            return value
    if quota is not None:  # rule 2
        return is_credit_category(quota.category)
    # rule 3
    return signal is not None or (status is not None and status in TERMINAL_STATUSES)


def _kind(cls: type) -> str | None:
    try:
        return _type_kinds[cls]
    except KeyError:
        pass
    kind = None
    try:
        names = {c.__name__ for c in cls.__mro__}
        for candidate, known in _KIND_ORDER:
            if not names.isdisjoint(known):
                kind = candidate
                break
    except Exception:
        return None
    if len(_type_kinds) < _MAX_CACHED_TYPES:
        _type_kinds[cls] = kind
    return kind


def _error_class(
    chain: list[BaseException],
    quota: Quota | None,
    terminal: bool,
    signal: str | None,
    status: int | None,
) -> str:
    if quota is not None:
        return "quota_exhausted" if terminal else "rate_limited"
    if signal is not None:
        return signal
    if status is not None:
        if status in (401, 403):
            return "auth"
        if status == 402:
            return "quota_exhausted"
        if status == 429:
            return "rate_limited"
        if status in (408, 504):
            return "timeout"
        if status == 499:
            return "cancelled"
        if status >= 500:
            return "server_error"
        if status >= 400:
            return "bad_request"
    # No status: the root cause says what went wrong; walk outwards if it says nothing.
    for exc in reversed(chain):
        kind = _kind(type(exc))
        if kind is not None:
            return kind
    return "unknown"
