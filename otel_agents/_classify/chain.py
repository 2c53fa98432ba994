"""The exception chain, its root cause, and what each class of exception means by its name.

The chain of an emitted exception is the exception and its causes, outermost first: each link's
``__cause__``, else its ``__context__``. The context is followed even when
``__suppress_context__`` is set: ``raise ... from None`` hides the openai error that still holds
the gateway's 429 body. The walk is cycle-safe and bounded by :data:`MAX_CHAIN`.

Artefacts are never causes. ``CancelledError`` (asyncio's, or any class of that name),
``StopAsyncIteration`` and ``StopIteration`` at the bottom of a chain are plumbing: the cancel
scope that httpx2/anyio used to enforce a deadline (a timed-out request ends ``TimeoutError <-
CancelledError``, as does ``asyncio.wait_for``), or the ``StopAsyncIteration`` livekit's stream
``__anext__`` leaves as the ``__context__`` of an error it re-raised (an exception object raised
again later still carries it). When a chain has a link above its trailing artefacts, the root
cause is the deepest such link; a chain made only of artefacts (a bare ``CancelledError``) keeps
its deepest link.

Classes are recognised by the names in their MRO, never by importing them: this keeps the
package free of SDK imports (openai, httpx, aiohttp, anthropic, google...) while recognising all
of them. What a class means is computed once per class and cached.
"""

from __future__ import annotations

from typing import Final

from .values import MAX_CACHED_TYPES

#: how many links of a chain are followed before giving up (cycles end earlier)
MAX_CHAIN: Final = 64

TIMEOUT_NAMES: Final = frozenset(
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
CANCELLED_NAMES: Final = frozenset({"CancelledError"})
#: classes (by name, anywhere in the MRO) that end a chain as plumbing, never as its cause
ARTEFACT_NAMES: Final = frozenset({"CancelledError", "StopAsyncIteration", "StopIteration"})
CONNECTION_NAMES: Final = frozenset(
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
#: programming errors: a bug in a plugin or in the agent, not in the provider (a plugin that
#: breaks on an unexpected response raises these, and so does an agent's own tool code)
INTERNAL_NAMES: Final = frozenset(
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
#: an error the provider reported without an HTTP status (e.g. a websocket "error" message)
PROVIDER_ERROR_NAMES: Final = frozenset({"APIError", "APIStatusError", "OpenAIError"})
#: the error class each group of names implies. Order matters: APITimeoutError is an
#: APIConnectionError, SSLError is an OSError, and every livekit error is an APIError.
KIND_ORDER: Final = (
    ("cancelled", CANCELLED_NAMES),
    ("timeout", TIMEOUT_NAMES),
    ("connection", CONNECTION_NAMES),
    ("internal", INTERNAL_NAMES),
    ("server_error", PROVIDER_ERROR_NAMES),
)

#: an HTTP client's "this response had an error status" exception (httpx, httpx2)
TRANSPORT_STATUS_NAMES: Final = frozenset({"HTTPStatusError"})

_type_kinds: dict[type, str | None] = {}
_type_artefacts: dict[type, bool] = {}


def exception_chain(exc: BaseException, limit: int = MAX_CHAIN) -> list[BaseException]:
    """``exc`` and its causes, outermost first: ``__cause__``, else ``__context__``.

    ``__context__`` is followed even when ``__suppress_context__`` is set (``raise ... from
    None``), and also when ``__cause__`` is unreadable or not an exception. Cycle-safe (an
    exception already seen ends the walk) and bounded by ``limit``.
    """
    chain = [exc]
    seen = {id(exc)}
    current: BaseException = exc
    for _ in range(limit - 1):
        try:
            try:
                nxt = current.__cause__
            except Exception:
                nxt = None
            if nxt is None or not isinstance(nxt, BaseException):
                nxt = current.__context__
                # SDKs (openai, anthropic) raise their status error ``from None`` inside
                # ``except httpx.HTTPStatusError``: that hidden context is the transport's view
                # of the same HTTP response, not a deeper cause. Going past it would give every
                # HTTP error of every provider the same root cause.
                if (
                    nxt is None
                    or type(nxt).__name__ in TRANSPORT_STATUS_NAMES
                    or not isinstance(nxt, BaseException)
                ):
                    break
            key = id(nxt)
            if key in seen:
                break
        except Exception:  # a hostile __context__, or a __class__ that raises in isinstance
            break
        seen.add(key)
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
    while index >= 0 and is_artefact(type(chain[index])):
        index -= 1
    return index if index >= 0 else last


def kind(cls: type) -> str | None:
    """The error class the names in ``cls``'s MRO imply (:data:`KIND_ORDER`), if any."""
    try:
        return _type_kinds[cls]
    except Exception:  # KeyError, or a metaclass whose __hash__/__eq__ raises
        pass
    found = None
    try:
        names = {c.__name__ for c in cls.__mro__}
        for candidate, known in KIND_ORDER:
            if not names.isdisjoint(known):
                found = candidate
                break
        if len(_type_kinds) < MAX_CACHED_TYPES:
            _type_kinds[cls] = found
    except Exception:
        pass
    return found


def is_artefact(cls: type) -> bool:
    """Whether ``cls`` is plumbing that never causes a failure (:data:`ARTEFACT_NAMES`)."""
    try:
        return _type_artefacts[cls]
    except Exception:  # KeyError, or a metaclass whose __hash__/__eq__ raises
        pass
    artefact = False
    try:
        artefact = not ARTEFACT_NAMES.isdisjoint({c.__name__ for c in cls.__mro__})
        if len(_type_artefacts) < MAX_CACHED_TYPES:
            _type_artefacts[cls] = artefact
    except Exception:
        pass
    return artefact
