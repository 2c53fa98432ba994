"""Classification of a provider error, at the moment it is emitted (pure: no OTel, no I/O).

Given the exception livekit emits for one failed attempt, find:

* the root cause: the deepest exception, following ``__cause__`` and else ``__context__``
  (even when ``__suppress_context__`` is set: ``raise ... from None`` hides the openai error that
  still holds the gateway's 429 body), cycle-safe and bounded, and not counting the artefacts
  at the bottom of the chain (below);
* the HTTP status, the LiveKit Inference quota fields, the error class and the terminal flag
  (DESIGN.md section 4).

This must run inside the ``"error"`` handler: livekit later re-raises the same exception inside
``except StopAsyncIteration``, which overwrites its ``__context__`` and loses the quota body.

Artefacts are never causes. ``CancelledError`` (asyncio's, or any class of that name),
``StopAsyncIteration`` and ``StopIteration`` at the bottom of a chain are plumbing: the cancel
scope that httpx2/anyio used to enforce a deadline (a timed-out request ends ``TimeoutError <-
CancelledError``, as does ``asyncio.wait_for``), or the ``StopAsyncIteration`` livekit's stream
``__anext__`` leaves as the ``__context__`` of an error it re-raised (an exception object raised
again later still carries it). When a chain has a link above its trailing artefacts, the root
cause is the deepest such link and the error class is derived from the chain without those
artefacts, so the wrapper that states the failure (a timeout, a connection error) decides it.
A chain made only of artefacts (a bare ``CancelledError``) keeps its deepest link.

Every foreign object is treated as hostile: attribute access, ``str()``, ``json()`` and
iteration may raise or be huge. Nothing here formats a traceback.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final, NamedTuple, TypeGuard

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
    # Anthropic's error type for HTTP 402 (anthropic SDK ``types/shared/error_type.py``)
    "billing_error": "quota_exhausted",
}
#: HTTP statuses that will not recover without operator action (rule 3)
TERMINAL_STATUSES: Final = frozenset({401, 402, 403})
#: Anthropic's out-of-credits error is a plain HTTP 400 ``invalid_request_error`` whose message
#: says "Your credit balance is too low to access the Anthropic API. ..."
_ANTHROPIC_CREDIT_TEXT: Final = "credit balance is too low"

_CATEGORY_FRAGMENT: Final = re.compile(
    r"""(?i:category)["']?\s*[:=]\s*["']?([A-Za-z][A-Za-z0-9_]{0,63})"""
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
#: classes (by name, anywhere in the MRO) that end a chain as plumbing, never as its cause
_ARTEFACT_NAMES: Final = frozenset({"CancelledError", "StopAsyncIteration", "StopIteration"})
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

#: an HTTP client's "this response had an error status" exception (httpx, httpx2)
_TRANSPORT_STATUS_NAMES: Final = frozenset({"HTTPStatusError"})

_MAX_CACHED_TYPES: Final = 4096
_type_names: dict[type, str] = {}
_type_kinds: dict[type, str | None] = {}
_type_artefacts: dict[type, bool] = {}


class Quota(NamedTuple):
    """The LiveKit Inference quota fields of a 429 ``inference_quota_exceeded`` body."""

    quota_type: str | None
    category: str | None
    hint: str | None
    remaining_limit: str | None


class Classification(NamedTuple):
    """Everything otel-agents derives from one emitted exception."""

    error_type: str
    status_code: int | None
    #: the deepest link of the chain that is not an artefact (see :func:`root_index`)
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
    try:
        name = _type_names.get(cls)
    except Exception:  # a metaclass whose __hash__/__eq__ raises
        name = None
    if name is not None:
        return name
    try:
        module = cls.__module__
        qualname = cls.__qualname__
    except Exception:
        return "unknown"
    if type(module) is not str or type(qualname) is not str:
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
    try:
        if len(_type_names) < _MAX_CACHED_TYPES:
            _type_names[cls] = name
    except Exception:
        pass
    return name


def exception_chain(exc: BaseException, limit: int = MAX_CHAIN) -> list[BaseException]:
    """``exc`` and its causes, outermost first: ``__cause__``, else ``__context__``.

    ``__context__`` is followed even when ``__suppress_context__`` is set (``raise ... from
    None``), and also when ``__cause__`` is unreadable or not an exception. Cycle-safe (an
    exception already seen ends the walk) and bounded by ``limit``.
    """
    chain = [exc]
    seen = {id(exc)}
    current: BaseException = exc
    while len(chain) < limit:
        try:
            try:
                nxt = current.__cause__
            except Exception:
                nxt = None
            if not isinstance(nxt, BaseException):
                nxt = current.__context__
                # SDKs (openai, anthropic) raise their status error ``from None`` inside
                # ``except httpx.HTTPStatusError``: that hidden context is the transport's view
                # of the same HTTP response, not a deeper cause. Going past it would give every
                # HTTP error of every provider the same root cause.
                if type(nxt).__name__ in _TRANSPORT_STATUS_NAMES:
                    break
            if not isinstance(nxt, BaseException) or id(nxt) in seen:
                break
        except Exception:  # a hostile __context__, or a __class__ that raises in isinstance
            break
        seen.add(id(nxt))
        chain.append(nxt)
        current = nxt
    return chain


def root_index(chain: list[BaseException]) -> int:
    """The index of the root cause in ``chain`` (outermost first, as :func:`exception_chain`
    builds it): the deepest link that is not an artefact (``CancelledError``,
    ``StopAsyncIteration``, ``StopIteration``) when the chain has one above its trailing
    artefacts, else the deepest link. Reads only the trailing artefacts, once each.
    """
    last = len(chain) - 1
    index = last
    while index >= 0 and _is_artefact(type(chain[index])):
        index -= 1
    return index if index >= 0 else last


def safe_str(exc: BaseException) -> str:
    """``str(exc)``, falling back to ``repr`` and then to the class name; never raises.

    The result is always an exact ``str`` (a ``str`` subclass could override ``len`` or
    slicing and raise later, in the redaction).
    """
    for render in (str, repr):
        try:
            text = render(exc)
            if type(text) is str:
                return text
            if isinstance(text, str):
                return str.__str__(text)
        except Exception:
            pass
    return f"<unprintable {type_name(type(exc))}>"


#: units (characters, items) of an exception's ``body`` that may be rendered into its message
_BODY_BUDGET: Final = 4096


def safe_message(exc: BaseException) -> str:
    """:func:`safe_str`, without rendering a large ``body`` into the text.

    livekit's ``APIStatusError.__str__`` formats its whole body: a 10 MB body would cost tens
    of milliseconds on the event loop, only to be cut to 256 characters. A body over the budget
    leaves the exception's own ``message`` (or first argument) and a note instead.
    """
    body = _data_attr(exc, "body")
    try:
        small = body is None or _within_budget(body)
    except Exception:  # a hostile body (a raising __len__ or __class__): do not render it
        small = False
    if small:
        return safe_str(exc)
    message = _data_attr(exc, "message")
    if type(message) is not str:
        args = _data_attr(exc, "args")
        message = args[0] if type(args) is tuple and args and type(args[0]) is str else ""
    note = f"(a {type_name(type(body))} body too large to render)"
    return f"{message[:_MAX_FIELD_CHARS]} {note}" if message else note


def _within_budget(body: object) -> bool:
    """Whether ``body`` is small: a walk that stops as soon as it has seen too much."""
    seen = 0
    stack = [body]
    while stack:
        value = stack.pop()
        if isinstance(value, str | bytes | bytearray):
            seen += len(value)
        elif isinstance(value, dict):
            seen += len(value)
            if seen <= _BODY_BUDGET:
                stack.extend(value.keys())
                stack.extend(value.values())
        elif isinstance(value, list | tuple | set | frozenset):
            seen += len(value)
            if seen <= _BODY_BUDGET:
                stack.extend(value)
        else:
            seen += 16  # a number, None, or an object whose text is its own business
        if seen > _BODY_BUDGET:
            return False
    return True


def classify(exc: BaseException) -> Classification:
    """Classify one emitted exception. Raises only on a bug in this module.

    One pass over the chain reads each exception once (its status, own ``terminal`` flag,
    provider signal, and whether a quota could be there); the five quota locations are searched
    only when some exception could hold one, which most errors cannot.
    """
    chain = exception_chain(exc)
    status: int | None = None
    own_terminal: bool | None = None
    signal: str | None = None
    maybe_quota = False
    for link in chain:
        fields = _snapshot(link)
        if status is None:
            value = fields.get("status_code")
            if type(value) is int and 100 <= value <= 599:
                status = value
            else:
                value = fields.get("status")
                if type(value) is int and 100 <= value <= 599:
                    status = value
        if own_terminal is None:
            value = fields.get("terminal")
            if type(value) is bool:
                own_terminal = value
        texts = _texts(link, fields)
        if signal is None:
            signal = _signal(fields, texts)
        if not maybe_quota:
            maybe_quota = (
                fields.get("category") is not None
                or fields.get("quota_type") is not None
                or fields.get("response") is not None
                or _maybe_quota_body(fields.get("body"))
                or _has_quota_marker(texts)
            )
    quota = _find_quota([_Link(e) for e in chain]) if maybe_quota else None
    if own_terminal is not None:  # rule 1: the error says so itself
        terminal = own_terminal
    elif quota is not None:  # rule 2
        terminal = is_credit_category(quota.category)
    else:  # rule 3
        terminal = signal is not None or (status is not None and status in TERMINAL_STATUSES)
    index = root_index(chain)
    root = chain[index]
    return Classification(
        error_type=type_name(type(exc)),
        status_code=status,
        root=root,
        root_cause_type=type_name(type(root)),
        error_class=_error_class(chain, index, quota, terminal, signal, status),
        quota=quota,
        terminal=terminal,
    )


def is_credit_category(category: str | None) -> bool:
    """Credit exhaustion: MaxGatewayCredits, MaxBargeInRequests, or any category naming credits."""
    return category is not None and (category in CREDIT_CATEGORIES or "credit" in category.lower())


# --- pieces ---------------------------------------------------------------------------------

_MISSING: Final = object()
_DECODER: Final = json.JSONDecoder()
#: quota fields and provider codes are short; longer values are cut (they end up in labels)
_MAX_FIELD_CHARS: Final = 256
#: JSON objects tried per message before giving up (each is a raw_decode of up to 8 KiB)
_MAX_JSON_STARTS: Final = 8


def _attr(obj: object, name: str) -> Any:
    try:
        return getattr(obj, name, None)
    except Exception:
        return None


def _data_attr(obj: object, name: str) -> Any:
    """``obj.name`` only when it is plain data: never runs a property or another descriptor.

    Used for ``code`` and ``type``: aiohttp's ``ClientResponseError.code`` (and websockets'
    ``ConnectionClosed.code``) are deprecated properties that emit a ``DeprecationWarning``.
    """
    try:
        attrs = object.__getattribute__(obj, "__dict__")
        if type(attrs) is dict:
            value = attrs.get(name, _MISSING)
            if value is not _MISSING:
                return value
    except Exception:  # no __dict__ (slots), or a hostile one
        pass
    try:
        # through the class, a property (or any descriptor) comes back as itself, unrun
        value = getattr(type(obj), name, None)
        return None if value is None or hasattr(type(value), "__get__") else value
    except Exception:
        return None


def _as_str(value: object, limit: int = MAX_SCAN_CHARS) -> str | None:
    """``value`` cut to ``limit`` chars when it is a string, as an exact ``str``; else None.

    A ``str`` subclass is copied through ``str.__getitem__`` so that none of its own (possibly
    raising) methods ever run.
    """
    if type(value) is str:
        return value if len(value) <= limit else value[:limit]
    if value is None:
        return None
    try:
        if isinstance(value, str):
            return str.__getitem__(value, slice(0, limit))
    except Exception:
        pass
    return None


def _field(value: object) -> str | None:
    """A quota field: a string, or a number the gateway may send (``remaining_limit``)."""
    text = _as_str(value, _MAX_FIELD_CHARS)
    if text is not None:
        return text
    if type(value) in (int, float):
        try:
            return str(value)[:_MAX_FIELD_CHARS]
        except ValueError:  # an int above sys.get_int_max_str_digits()
            return None
    return None


def _is_mapping(value: object) -> TypeGuard[Mapping[Any, Any]]:
    if type(value) is dict:
        return True
    try:
        return isinstance(value, Mapping)
    except Exception:
        return False


#: the attributes classification reads from an exception of the chain
_RELEVANT: Final = (
    "body",
    "message",
    "status_code",
    "status",
    "response",
    "terminal",
    "category",
    "quota_type",
    "hint",
    "remaining_limit",
    "code",
    "type",
)
#: read as plain data only: aiohttp's ``ClientResponseError.code`` (and websockets'
#: ``ConnectionClosed.code``) are deprecated properties that emit a ``DeprecationWarning``
_DATA_ONLY: Final = frozenset({"code", "type"})
_class_attrs: dict[type, tuple[dict[str, Any], tuple[str, ...]]] = {}


def _class_attrs_of(cls: type) -> tuple[dict[str, Any], tuple[str, ...]]:
    """(plain class-level values, names that are descriptors) of the relevant attributes.

    Computed once per class: on the hot path an exception is then read through its instance
    ``__dict__`` alone, and only a descriptor (a property) costs a guarded ``getattr``.
    """
    try:
        return _class_attrs[cls]
    except Exception:  # KeyError, or a metaclass whose __hash__/__eq__ raises
        pass
    static: dict[str, Any] = {}
    props: list[str] = []
    try:
        mro = cls.__mro__
        for name in _RELEVANT:
            for klass in mro:
                namespace = klass.__dict__
                if name in namespace:
                    value = namespace[name]
                    if hasattr(type(value), "__get__"):
                        if name not in _DATA_ONLY:
                            props.append(name)
                    elif value is not None:
                        static[name] = value
                    break
        info = (static, tuple(props))
        if len(_class_attrs) < _MAX_CACHED_TYPES:
            _class_attrs[cls] = info
        return info
    except Exception:
        return ({}, tuple(n for n in _RELEVANT if n not in _DATA_ONLY))


def _snapshot(exc: BaseException) -> dict[str, Any]:
    """The relevant attributes of ``exc`` as a plain dict, read without running its code
    (except its properties, through a guarded ``getattr``)."""
    static, props = _class_attrs_of(type(exc))
    try:
        own = object.__getattribute__(exc, "__dict__")
    except Exception:  # no __dict__ (slots), or a hostile one
        own = None
    if type(own) is dict and not props and not static:
        return own  # the common case: read-only use of the instance dict, no copy
    snap = dict(static)
    if type(own) is dict:
        snap.update(own)
    for name in props:
        snap[name] = _attr(exc, name)
    return snap


def _texts(exc: BaseException, fields: dict[str, Any]) -> tuple[str, ...]:
    """The messages an exception carries (message, a string body, args[0]), read without
    calling ``str()`` on it, each cut to MAX_SCAN_CHARS."""
    message = fields.get("message")
    texts: list[str] = []
    try:
        for value in (message, fields.get("body")):
            if value is not None:
                text = value[:MAX_SCAN_CHARS] if type(value) is str else _as_str(value)
                if text:
                    texts.append(text)
        args = exc.args
        if type(args) is tuple and args and args[0] is not message:
            text = _as_str(args[0])
            if text:
                texts.append(text)
    except Exception:
        pass
    return tuple(texts)


def _has_quota_marker(texts: tuple[str, ...]) -> bool:
    """Text a quota location could match: the body type, a websocket payload's quota_type field
    or a category fragment (a cheap superset: the locations check precisely). Plain substring
    tests: a regex alternation costs three times as much on this hot path."""
    for t in texts:
        if QUOTA_BODY_TYPE in t or "quota_type" in t or "ategory" in t or "ATEGORY" in t:
            return True
    return False


def _maybe_quota_body(body: object) -> bool:
    return body is not None and type(body) is not str


class _Link:
    """What the quota search reads from one exception of the chain, read once."""

    __slots__ = ("body", "exc", "fields", "texts")

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
        self.fields = _snapshot(exc)
        self.body = self.fields.get("body")
        self.texts = _texts(exc, self.fields)


def _is_quota_mapping(body: Mapping[Any, Any]) -> bool:
    # the HTTP body says type=inference_quota_exceeded; a websocket {"type": "error", ...}
    # message (STT/TTS) can only say so with its quota_type field
    return (
        _as_str(body.get("type")) == QUOTA_BODY_TYPE
        or _as_str(body.get("quota_type"), _MAX_FIELD_CHARS) is not None
    )


def _quota_from_mapping(body: object) -> Quota | None:
    """The quota of a JSON body, at its top level or nested under ``"error"``."""
    try:
        if not _is_mapping(body):
            return None
        found: Mapping[Any, Any] = body
        if not _is_quota_mapping(body):
            inner = body.get("error")
            if not (_is_mapping(inner) and _is_quota_mapping(inner)):
                return None
            found = inner
        return Quota(
            quota_type=_field(found.get("quota_type")),
            category=_field(found.get("category")),
            hint=_field(found.get("hint")),
            remaining_limit=_field(found.get("remaining_limit")),
        )
    except Exception:
        return None


def _quota_fields(obj: object) -> Quota:
    return Quota(
        quota_type=_field(_attr(obj, "quota_type")),
        category=_field(_attr(obj, "category")),
        hint=_field(_attr(obj, "hint")),
        remaining_limit=_field(_attr(obj, "remaining_limit")),
    )


def _quota_from_attributes(link: _Link) -> Quota | None:
    # a livekit APIQuotaExceededError (PR #6012) carries the fields itself
    fields = link.fields
    category, quota_type = fields.get("category"), fields.get("quota_type")
    if category is None and quota_type is None:
        return None
    if _field(category) is None and _field(quota_type) is None:
        return None
    return Quota(
        quota_type=_field(quota_type),
        category=_field(category),
        hint=_field(fields.get("hint")),
        remaining_limit=_field(fields.get("remaining_limit")),
    )


def _quota_from_body(link: _Link) -> Quota | None:
    body = link.body
    if body is None or _as_str(body) is not None or type(body) in (bytes, bytearray):
        return None
    if _is_mapping(body):
        return _quota_from_mapping(body)
    # the realtime path builds APIError(body=<openai error object>): attribute access
    if _as_str(_attr(body, "type")) == QUOTA_BODY_TYPE:
        return _quota_fields(body)
    return None


def _quota_from_response(link: _Link) -> Quota | None:
    # the openai SDK narrows ``body`` to the inner "error" string; the response keeps it all
    response = link.fields.get("response")
    if response is None:
        return None
    content = _attr(response, "content")
    if type(content) not in (bytes, bytearray) or len(content) > MAX_JSON_BYTES:
        return None
    if QUOTA_BODY_TYPE.encode() not in content:
        return None
    try:
        return _quota_from_mapping(json.loads(content))
    except Exception:
        return None


def _quota_from_message(link: _Link) -> Quota | None:
    # the inference TTS path: APIError(f"LiveKit Inference TTS returned error: {payload}")
    for text in link.texts:
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
            quota = _quota_from_mapping(value)
            if quota is not None:
                return quota
            start = text.find("{", start + 1, marker)
    return None


def _quota_from_fragment(link: _Link) -> Quota | None:
    # last resort: "... quota exceeded, category: MaxGatewayCredits, ..." in a string body.
    # Only in a text that speaks of a quota: "invalid category: x" is not a quota error.
    for text in link.texts:
        if "ategory" not in text:  # cheap first: this runs for every error without a quota
            continue
        lowered = text.lower()
        if "category" not in lowered or "quota" not in lowered:
            continue
        match = _CATEGORY_FRAGMENT.search(text)
        if match is not None:
            return Quota(quota_type=None, category=match.group(1), hint=None, remaining_limit=None)
    return None


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
    return _find_quota([_Link(e) for e in chain])


def _find_quota(links: list[_Link]) -> Quota | None:
    for location in _QUOTA_LOCATIONS:
        for link in links:
            try:
                quota = location(link)
            except Exception:
                quota = None
            if quota is not None:
                return quota
    return None


def _body_codes(body: object) -> tuple[list[object], list[object]]:
    """The error codes/types and messages of a mapping or object ``body``."""
    codes: list[object] = []
    texts: list[object] = []
    try:
        if _is_mapping(body):
            codes += [body.get("code"), body.get("type")]
            texts.append(body.get("message"))
            inner = body.get("error")
            if _is_mapping(inner):
                codes += [inner.get("code"), inner.get("type")]
                texts.append(inner.get("message"))
        else:
            codes += [_data_attr(body, "code"), _data_attr(body, "type")]
            texts.append(_attr(body, "message"))
    except Exception:
        pass
    return codes, texts


def _signal_of_code(value: object) -> str | None:
    code = value if type(value) is str else _as_str(value, _MAX_FIELD_CHARS)
    return None if code is None else PROVIDER_TERMINAL_CODES.get(code)


def _signal(fields: dict[str, Any], texts: tuple[str, ...]) -> str | None:
    """The error class a provider's billing/credential signal implies, if any (rule 3)."""
    for value in (fields.get("code"), fields.get("type")):
        if value is not None and (signal := _signal_of_code(value)) is not None:
            return signal
    for text in texts:
        if _ANTHROPIC_CREDIT_TEXT in text:
            return "quota_exhausted"
    body = fields.get("body")
    if body is not None and type(body) is not str and _as_str(body) is None:
        codes, body_texts = _body_codes(body)
        for value in codes:
            if value is not None and (signal := _signal_of_code(value)) is not None:
                return signal
        for value in body_texts:
            body_text = _as_str(value) if value is not None else None
            if body_text is not None and _ANTHROPIC_CREDIT_TEXT in body_text:
                return "quota_exhausted"
    return None


def _kind(cls: type) -> str | None:
    try:
        return _type_kinds[cls]
    except Exception:  # KeyError, or a metaclass whose __hash__/__eq__ raises
        pass
    kind = None
    try:
        names = {c.__name__ for c in cls.__mro__}
        for candidate, known in _KIND_ORDER:
            if not names.isdisjoint(known):
                kind = candidate
                break
        if len(_type_kinds) < _MAX_CACHED_TYPES:
            _type_kinds[cls] = kind
    except Exception:
        pass
    return kind


def _is_artefact(cls: type) -> bool:
    """Whether ``cls`` is plumbing that never causes a failure (:data:`_ARTEFACT_NAMES`)."""
    try:
        return _type_artefacts[cls]
    except Exception:  # KeyError, or a metaclass whose __hash__/__eq__ raises
        pass
    artefact = False
    try:
        artefact = not _ARTEFACT_NAMES.isdisjoint({c.__name__ for c in cls.__mro__})
        if len(_type_artefacts) < _MAX_CACHED_TYPES:
            _type_artefacts[cls] = artefact
    except Exception:
        pass
    return artefact


def _error_class(
    chain: list[BaseException],
    root: int,
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
    # No status: the root cause says what went wrong; walk outwards if it says nothing (the
    # artefacts below the root are not read: a timeout's cancel scope must not say "cancelled").
    for i in range(root, -1, -1):
        kind = _kind(type(chain[i]))
        if kind is not None:
            return kind
    return "unknown"
