"""The fake gateway's fault vocabulary: what one request or connection meets.

A :class:`Fault` is one scripted behaviour (built with :func:`ok`, :func:`empty`,
:func:`http_error`, :func:`handshake_error`, :func:`ws_error`, :func:`no_session_id` or
:func:`disconnect`); a
:class:`FaultQueue` holds the faults scripted for one route, consumed in order; an empty queue
means healthy. :func:`quota_body`, :data:`QUOTA_CREDITS_BODY` and :func:`openai_error_body`
build the error bodies the real LiveKit Inference gateway and OpenAI-compatible APIs send.

The server that plays them is :class:`otel_agents.demo.gateway.FakeGateway`, which re-exports
every name here.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Final, Literal

__all__ = [
    "DEFAULT_TEXT",
    "QUOTA_CREDITS_BODY",
    "Fault",
    "FaultKind",
    "FaultQueue",
    "disconnect",
    "empty",
    "handshake_error",
    "http_error",
    "no_session_id",
    "ok",
    "openai_error_body",
    "quota_body",
    "ws_error",
]

FaultKind = Literal["ok", "empty", "http_error", "ws_error", "no_session_id", "disconnect"]
"""What a scripted :class:`Fault` does; see the constructor functions."""

DEFAULT_TEXT: Final = "Hello from the fake gateway."
"""The default LLM reply and STT transcript (of :func:`ok` and of an empty queue)."""

_CREDIT_CATEGORIES: Final = frozenset({"MaxGatewayCredits", "MaxBargeInRequests"})


# --- bodies ----------------------------------------------------------------------------------


def quota_body(
    quota_type: str,
    category: str,
    *,
    hint: str | None = None,
    remaining_limit: str | None = "0",
) -> dict[str, str]:
    """Build a gateway-shaped ``inference_quota_exceeded`` body.

    The shape is the one the gateway returns with a 429: ``type``, ``error`` (a human string
    that contains ``", category: <category>"``), ``quota_type`` (``llm``, ``stt``, ``tts`` or
    ``bargein``), ``category`` (e.g. ``MaxGatewayCredits``, ``MaxConcurrentGatewayLLMRpm``),
    and optionally ``hint`` and ``remaining_limit``; a field given as ``None`` is left out of
    the body. The exact wording of ``error`` is approximated:
    only its ``", category: <category>"`` fragment is known to match the real gateway.
    """
    label = quota_type.upper()
    if category in _CREDIT_CATEGORIES or "credit" in category.lower():
        what = "token credit quota" if quota_type == "llm" else "credit quota"
    else:
        what = "rate limit"
    error = f"{label} {what} exceeded, category: {category}"
    if remaining_limit is not None:
        error += f", remaining limit: {remaining_limit}"
    body = {
        "type": "inference_quota_exceeded",
        "error": error,
        "quota_type": quota_type,
        "category": category,
    }
    if hint is not None:
        body["hint"] = hint
    if remaining_limit is not None:
        body["remaining_limit"] = remaining_limit
    return body


QUOTA_CREDITS_BODY: Final[dict[str, str]] = quota_body(
    "llm",
    "MaxGatewayCredits",
    hint="Wait for the next billing cycle or upgrade your plan.",
    remaining_limit="0",
)
"""The 429 body of an exhausted LLM credit balance (a terminal quota error). Copy before editing."""


def openai_error_body(
    message: str,
    *,
    type: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
) -> dict[str, Any]:
    """Build an OpenAI-style error body: ``{"error": {"message", "type", "param", "code"}}``.

    E.g. ``http_error(401, openai_error_body("Incorrect API key", code="invalid_api_key"))``.
    """
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


# --- faults ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """One scripted behaviour of the gateway for one request or connection.

    Build it with :func:`ok`, :func:`empty`, :func:`http_error`, :func:`handshake_error`,
    :func:`ws_error`, :func:`no_session_id` or :func:`disconnect` rather than directly.
    """

    kind: FaultKind
    text: str = ""
    status: int = 200
    body: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0


def ok(text: str = DEFAULT_TEXT, *, delay: float = 0.0) -> Fault:
    """A healthy answer.

    LLM: ``text`` streamed word by word as SSE chunks, then a ``stop`` chunk, a usage chunk and
    ``[DONE]``; ``delay`` seconds pass before the response starts (a slow upstream model).
    STT: ``text`` is the final transcript of that connection. TTS: a normal synthesis (``text``
    and ``delay`` are ignored).
    """
    if not 0.0 <= delay <= 60.0:
        raise ValueError(f"ok delay must be 0-60 seconds, got {delay}")
    return Fault("ok", text=text, delay=delay)


def empty() -> Fault:
    """LLM only: a well-formed streamed completion that carries no content at all."""
    return Fault("empty")


def http_error(
    status: int,
    body: Mapping[str, Any] | None = None,
    *,
    headers: Mapping[str, str] | None = None,
) -> Fault:
    """A plain HTTP error response with a JSON ``body`` (LLM request or websocket upgrade).

    With no ``body`` an OpenAI-style body naming the status is sent. ``headers`` are added to the
    response, e.g. the gateway's ``X-LiveKit-Inference-Credits-Limit`` quota headers.
    """
    if not 300 <= status <= 599:
        raise ValueError(f"http_error status must be 3xx-5xx, got {status}")
    if body is None:
        body = openai_error_body(_reason(status), type="api_error")
    json.dumps(body)  # fail early, in the test, on a body that can't be sent
    return Fault("http_error", status=status, body=dict(body), headers=dict(headers or {}))


def handshake_error(
    status: int,
    body: Mapping[str, Any] | None = None,
    *,
    headers: Mapping[str, str] | None = None,
) -> Fault:
    """STT/TTS: reject the websocket upgrade with a non-101 ``status`` and a JSON ``body``.

    The same fault as :func:`http_error`, named for the websocket routes. Note that aiohttp's
    client raises ``WSServerHandshakeError`` without reading the body, so the plugins never see
    it; only the status survives.
    """
    return http_error(status, body, headers=headers)


def ws_error(payload: Mapping[str, Any]) -> Fault:
    """STT/TTS: accept the websocket, then send one ``{"type": "error", ...}`` message.

    The message is ``{"type": "error", "message": <str>, "session_id": <id>, **payload}`` with
    the payload's own ``type`` dropped (the plugins only recognise ``type == "error"``). The
    gateway's documented error events are ``{type, message, session_id}`` (TTS) and
    ``{type, message, code}`` (STT); extra fields such as the quota ones are an assumption.
    ``message`` defaults to the payload's ``error`` string. ``session_id`` is sent on TTS only.
    STT sends it right after ``session.created``; TTS on the first message of a synthesis.
    E.g. ``ws_error(quota_body("tts", "MaxConcurrentGatewayTTS"))``.
    """
    json.dumps(payload)
    return Fault("ws_error", body=dict(payload))


def no_session_id() -> Fault:
    """TTS: accept the websocket, then leave ``session_id`` out of every message it sends.

    A response the plugin does not expect (a gateway that stopped tagging its messages): the
    first ``output_audio`` arrives before any message named a session, so livekit's
    ``AudioEmitter`` (which ``inference.TTS`` starts a segment on at the first ``session_id``)
    raises ``RuntimeError("start_segment() must be called before pushing audio data")``. That is
    not an ``APIError``: it escapes livekit's retry loop, which neither retries it nor emits an
    ``error`` event, and every synthesis on that (pooled) connection fails the same way. Taken
    when a connection is opened.
    """
    return Fault("no_session_id")


def disconnect() -> Fault:
    """Read the request, then drop the TCP connection without sending any response.

    On the websocket routes, aiohttp's client transparently retries an idempotent ``GET`` once
    when the server drops the connection before answering (HTTP/1.1 allows it), so a single
    ``disconnect()`` is invisible to STT/TTS: queue two in a row to make a connection attempt
    fail.
    """
    return Fault("disconnect")


class FaultQueue:
    """The faults scripted for one kind of request, consumed first in, first out.

    One fault is taken per request (LLM), per connection (STT), or per connection attempt for
    :func:`handshake_error`/:func:`disconnect`/:func:`no_session_id` and per synthesis for
    :func:`ok`/:func:`ws_error` (TTS, whose plugin reuses a pooled connection). When the queue
    is empty, or its head is not for the current stage (a TTS connect fault waiting while a
    pooled connection synthesizes), the request is served healthily.
    """

    def __init__(self, name: str, allowed: Iterable[FaultKind]) -> None:
        self.name: Final = name
        self._allowed: frozenset[FaultKind] = frozenset(allowed)
        self._pending: collections.deque[Fault] = collections.deque()
        self._consumed: list[Fault] = []

    def push(self, *faults: Fault) -> None:
        """Append faults to the queue."""
        for fault in faults:
            if fault.kind not in self._allowed:
                raise ValueError(
                    f"{fault.kind!r} faults are not supported on {self.name!r} "
                    f"(allowed: {', '.join(sorted(self._allowed))})"
                )
        self._pending.extend(faults)

    def clear(self) -> None:
        """Drop the faults not consumed yet."""
        self._pending.clear()

    @property
    def pending(self) -> tuple[Fault, ...]:
        """The faults not consumed yet, next first."""
        return tuple(self._pending)

    @property
    def consumed(self) -> tuple[Fault, ...]:
        """The faults already served, in order."""
        return tuple(self._consumed)

    def __len__(self) -> int:
        return len(self._pending)

    def _take(self, kinds: frozenset[FaultKind] | None = None) -> Fault | None:
        """The gateway's side: the next fault if it is one of ``kinds`` (any when ``None``),
        now consumed; ``None`` means serve this one healthily."""
        if not self._pending or (kinds is not None and self._pending[0].kind not in kinds):
            return None
        fault = self._pending.popleft()
        self._consumed.append(fault)
        return fault


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"
