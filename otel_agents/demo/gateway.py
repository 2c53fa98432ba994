"""A local fake LiveKit Inference gateway that serves scripted faults.

:class:`FakeGateway` is an aiohttp server on ``127.0.0.1`` (a free port by default) that speaks
the wire protocol of the LiveKit Inference gateway closely enough for the *real*
``livekit.agents.inference`` plugins to run against it:

* ``POST {url}/chat/completions``: OpenAI-compatible chat completions, streamed as SSE
  (``data: {chunk}`` lines ending in ``data: [DONE]``). Used by ``inference.LLM`` through the
  openai SDK. ``GET {url}/models`` answers the LLM prewarm.
* ``GET {url}/stt`` (websocket): ``inference.STT``. JSON messages both ways; the client sends
  ``session.create``, ``input_audio`` (base64 PCM), ``session.finalize`` and ``session.close``;
  the gateway answers ``session.created``, ``final_transcript``, ``session.finalized`` and
  ``session.closed``.
* ``GET {url}/tts`` (websocket): ``inference.TTS``. The client sends ``session.create``, then per
  synthesis ``input_transcript`` messages and a ``session.flush``; the gateway answers
  ``session.created``, ``output_audio`` (base64 PCM silence) and ``done``. The plugin pools this
  connection and reuses it across syntheses.

Every route except the models list takes its behaviour from a :class:`FaultQueue`
(``gateway.llm``, ``gateway.stt``, ``gateway.tts``): faults are consumed in order, one per
request or connection, and an empty queue means healthy. Build faults with :func:`ok`,
:func:`empty`, :func:`http_error`, :func:`handshake_error`, :func:`ws_error` and
:func:`disconnect`; build gateway-shaped quota bodies with :func:`quota_body`.

Example::

    async with FakeGateway() as gateway:
        gateway.llm.push(disconnect(), http_error(429, QUOTA_CREDITS_BODY), ok("hi"))
        llm = inference.LLM("openai/gpt-4.1-mini", base_url=gateway.url,
                            api_key="devkey", api_secret="devsecret")
        ...
        assert gateway.requests["llm"] == 3

The gateway needs nothing from livekit: the plugins only need a bearer token on every request
(any ``api_key``/``api_secret`` pair works, the JWT is not verified).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import itertools
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType
from typing import Any, Final, Literal, Self

from aiohttp import WSCloseCode, WSMsgType, web

__all__ = [
    "DEFAULT_TEXT",
    "QUOTA_CREDITS_BODY",
    "FakeGateway",
    "Fault",
    "FaultKind",
    "FaultQueue",
    "disconnect",
    "empty",
    "handshake_error",
    "http_error",
    "ok",
    "openai_error_body",
    "quota_body",
    "ws_error",
]

logger = logging.getLogger(__name__)

FaultKind = Literal["ok", "empty", "http_error", "ws_error", "disconnect"]
"""What a scripted :class:`Fault` does; see the constructor functions."""

DEFAULT_TEXT: Final = "Hello from the fake gateway."
"""The default LLM reply and STT transcript (of :func:`ok` and of an empty queue)."""

_CREDIT_CATEGORIES: Final = frozenset({"MaxGatewayCredits", "MaxBargeInRequests"})
_TTS_SECONDS_PER_WORD: Final = 0.06
_TTS_MIN_SECONDS: Final = 0.1
_WS_CLOSE_TIMEOUT: Final = 1.0
_SHUTDOWN_TIMEOUT: Final = 1.0


# ---------------------------------------------------------------------------------------------
# bodies


def quota_body(
    quota_type: str,
    category: str,
    *,
    hint: str | None = None,
    remaining_limit: str | None = "0",
) -> dict[str, str]:
    """Build a gateway-shaped ``inference_quota_exceeded`` body.

    The shape is the one the gateway returns with a 429 (livekit/agents PR #6012): ``type``,
    ``error`` (a human string that contains ``", category: <category>"``), ``quota_type``
    (``llm``, ``stt``, ``tts`` or ``bargein``), ``category`` (e.g. ``MaxGatewayCredits``,
    ``MaxConcurrentGatewayLLMRpm``), and optionally ``hint`` and ``remaining_limit``; a field
    given as ``None`` is left out of the body. The exact wording of ``error`` is approximated:
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


# ---------------------------------------------------------------------------------------------
# faults


@dataclass(frozen=True)
class Fault:
    """One scripted behaviour of the gateway for one request or connection.

    Build it with :func:`ok`, :func:`empty`, :func:`http_error`, :func:`handshake_error`,
    :func:`ws_error` or :func:`disconnect` rather than directly.
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


def disconnect() -> Fault:
    """Read the request, then drop the TCP connection without sending any response.

    On the websocket routes, aiohttp's client transparently retries an idempotent ``GET`` once
    when the server drops the connection (RFC 9112 section 9.3.1), so a single ``disconnect()``
    is invisible to STT/TTS: queue two in a row to make a connection attempt fail.
    """
    return Fault("disconnect")


class FaultQueue:
    """The faults scripted for one kind of request, consumed first in, first out.

    One fault is taken per request (LLM), per connection (STT), or per connection attempt for
    :func:`handshake_error`/:func:`disconnect` and per synthesis for :func:`ok`/:func:`ws_error`
    (TTS, whose plugin reuses a pooled connection). When the queue is empty, or its head is
    not for the current stage (a TTS connect fault waiting while a pooled connection
    synthesizes), the request is served healthily.
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
        if not self._pending or (kinds is not None and self._pending[0].kind not in kinds):
            return None
        fault = self._pending.popleft()
        self._consumed.append(fault)
        return fault


_TTS_CONNECT_KINDS: Final[frozenset[FaultKind]] = frozenset({"http_error", "disconnect"})
_TTS_REQUEST_KINDS: Final[frozenset[FaultKind]] = frozenset({"ok", "ws_error"})


# ---------------------------------------------------------------------------------------------
# the server


class FakeGateway:
    """A local fake LiveKit Inference gateway; see the module docstring for the protocol.

    Attributes:
        llm, stt, tts: the :class:`FaultQueue` of each route.
        requests: how many requests were seen, by kind: ``llm`` (chat completion POSTs),
            ``models`` (the LLM prewarm), ``stt`` and ``tts`` (websocket upgrade attempts),
            ``tts_synthesis`` (syntheses started on a TTS websocket), ``not_found``. Requests
            rejected for a missing bearer token are counted too.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        reply: str = DEFAULT_TEXT,
        transcript: str = DEFAULT_TEXT,
        require_auth: bool = True,
    ) -> None:
        """Configure the gateway; nothing listens until :meth:`start`.

        Args:
            host: the address to bind; keep the loopback default.
            port: the port to bind, ``0`` for a free one.
            reply: the LLM reply when no :func:`ok` fault says otherwise.
            transcript: the STT final transcript when no :func:`ok` fault says otherwise.
            require_auth: answer 401 to requests without an ``Authorization: Bearer`` header.
        """
        self.llm: Final = FaultQueue("llm", ("ok", "empty", "http_error", "disconnect"))
        self.stt: Final = FaultQueue("stt", ("ok", "http_error", "ws_error", "disconnect"))
        self.tts: Final = FaultQueue("tts", ("ok", "http_error", "ws_error", "disconnect"))
        self.requests: Final[collections.Counter[str]] = collections.Counter()
        self._host = host
        self._requested_port = port
        self._reply = reply
        self._transcript = transcript
        self._require_auth = require_auth
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._websockets: set[web.WebSocketResponse] = set()
        self._ids = itertools.count(1)

    # lifecycle

    @property
    def port(self) -> int:
        """The bound TCP port (after :meth:`start`)."""
        if self._port is None:
            raise RuntimeError("FakeGateway is not started")
        return self._port

    @property
    def url(self) -> str:
        """The ``base_url`` to give ``inference.LLM/STT/TTS`` (or ``LIVEKIT_INFERENCE_URL``).

        ``http://127.0.0.1:<port>/v1``: the openai SDK appends ``/chat/completions`` and
        ``/models``; the STT/TTS plugins swap ``http`` for ``ws`` and append ``/stt`` / ``/tts``.
        """
        return f"http://{self._host}:{self.port}/v1"

    @property
    def open_websockets(self) -> int:
        """How many STT/TTS websockets are open right now."""
        return len(self._websockets)

    async def start(self) -> None:
        """Bind and start serving."""
        if self._runner is not None:
            raise RuntimeError("FakeGateway is already started")
        runner = web.AppRunner(
            self._build_app(),
            handle_signals=False,
            access_log=None,
            shutdown_timeout=_SHUTDOWN_TIMEOUT,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._requested_port)
            await site.start()
            self._port = int(runner.addresses[0][1])
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner

    async def aclose(self) -> None:
        """Close every open websocket, stop serving and release the port. Idempotent."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        await asyncio.gather(
            *(
                ws.close(code=WSCloseCode.GOING_AWAY, message=b"gateway shutting down")
                for ws in list(self._websockets)
            ),
            return_exceptions=True,
        )
        await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/v1/stt", self._stt)
        app.router.add_get("/v1/tts", self._tts)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        return app

    # helpers

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}_fake_{next(self._ids)}"

    def _unauthorized(self, request: web.Request) -> web.Response | None:
        if not self._require_auth:
            return None
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return None
        return web.json_response(
            openai_error_body(
                "missing or malformed Authorization bearer token", code="unauthorized"
            ),
            status=401,
        )

    @staticmethod
    def _drop(request: web.Request) -> web.Response:
        transport = request.transport
        if transport is not None:
            transport.close()
        # aiohttp discards this response: the connection is already gone
        return web.Response(status=204)

    @staticmethod
    def _error_response(fault: Fault, request_id: str | None = None) -> web.Response:
        headers = dict(fault.headers)
        if request_id is not None:
            headers.setdefault("x-request-id", request_id)
        return web.json_response(dict(fault.body or {}), status=fault.status, headers=headers)

    @staticmethod
    def _ws_error_message(fault: Fault, session_id: str | None) -> dict[str, Any]:
        payload = dict(fault.body or {})
        message = payload.get("message", payload.get("error"))
        msg: dict[str, Any] = {
            "type": "error",
            "message": message if isinstance(message, str) else "error",
        }
        if session_id is not None:
            msg["session_id"] = session_id
        msg.update((k, v) for k, v in payload.items() if k != "type")
        return msg

    async def _not_found(self, request: web.Request) -> web.Response:
        self.requests["not_found"] += 1
        return web.json_response(
            openai_error_body(f"no route for {request.method} {request.path}", type="not_found"),
            status=404,
        )

    # LLM

    async def _models(self, request: web.Request) -> web.Response:
        self.requests["models"] += 1
        if (denied := self._unauthorized(request)) is not None:
            return denied
        return web.json_response(
            {
                "object": "list",
                "data": [
                    {"id": "openai/gpt-4.1-mini", "object": "model", "created": 0, "owned_by": "x"}
                ],
            }
        )

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        self.requests["llm"] += 1
        request_id = self._next_id("req")
        raw = await request.read()
        if (denied := self._unauthorized(request)) is not None:
            return denied
        try:
            payload = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            payload = None
        if not isinstance(payload, dict) or not isinstance(payload.get("messages"), list):
            return web.json_response(
                openai_error_body("request body must be a JSON object with 'messages'"),
                status=400,
                headers={"x-request-id": request_id},
            )

        fault = self.llm._take()
        if fault is not None and fault.kind == "disconnect":
            return self._drop(request)
        if fault is not None and fault.kind == "http_error":
            return self._error_response(fault, request_id)

        text = "" if fault is not None and fault.kind == "empty" else self._reply
        if fault is not None and fault.kind == "ok":
            text = fault.text
            if fault.delay:
                await asyncio.sleep(fault.delay)
        model = payload.get("model")
        model = model if isinstance(model, str) else "fake"
        completion_id = self._next_id("chatcmpl")
        created = int(time.time())
        pieces = re.findall(r"\s*\S+\s*", text) or ([text] if text else [])
        prompt_tokens = max(1, len(json.dumps(payload["messages"])) // 4)  # a rough estimate
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(pieces),
            "total_tokens": prompt_tokens + len(pieces),
        }

        if not payload.get("stream"):
            return web.json_response(
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text or None},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": usage,
                },
                headers={"x-request-id": request_id},
            )

        def chunk(choices: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> bytes:
            data: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": choices,
            }
            data.update(extra or {})
            return f"data: {json.dumps(data)}\n\n".encode()

        def delta(content: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
            return [{"index": 0, "delta": content, "finish_reason": finish}]

        frames = [chunk(delta({"role": "assistant", "content": ""}))]
        frames += [chunk(delta({"content": piece})) for piece in pieces]
        frames.append(chunk(delta({}, "stop")))
        stream_options = payload.get("stream_options")
        if isinstance(stream_options, dict) and stream_options.get("include_usage"):
            frames.append(chunk([], {"usage": usage}))
        frames.append(b"data: [DONE]\n\n")

        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "x-request-id": request_id,
            }
        )
        try:
            await response.prepare(request)
            for frame in frames:
                await response.write(frame)
            await response.write_eof()
        except (ConnectionError, RuntimeError) as e:  # the client went away mid-stream
            logger.debug("fake gateway: LLM client went away: %r", e)
        return response

    # websockets

    async def _accept_ws(
        self, request: web.Request, kind: str, fault: Fault | None
    ) -> web.StreamResponse | web.WebSocketResponse:
        if fault is not None and fault.kind == "disconnect":
            return self._drop(request)
        if fault is not None and fault.kind == "http_error":
            return self._error_response(fault)
        ws = web.WebSocketResponse(timeout=_WS_CLOSE_TIMEOUT, autoping=True)
        await ws.prepare(request)
        self._websockets.add(ws)
        try:
            if kind == "stt":
                await self._stt_session(ws, fault)
            else:
                await self._tts_session(ws)
        except Exception:
            logger.exception("fake gateway: %s websocket handler failed", kind)
        finally:
            self._websockets.discard(ws)
            if not ws.closed:
                await ws.close()
        return ws

    @staticmethod
    async def _messages(ws: web.WebSocketResponse) -> AsyncIterator[dict[str, Any]]:
        """Yield the JSON object of each text message; skip anything malformed."""
        async for msg in ws:
            if msg.type == WSMsgType.ERROR:
                return
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                data = json.loads(msg.data)
            except ValueError:
                logger.debug("fake gateway: ignoring non-JSON websocket message")
                continue
            if isinstance(data, dict):
                yield data

    async def _stt(self, request: web.Request) -> web.StreamResponse:
        self.requests["stt"] += 1
        if (denied := self._unauthorized(request)) is not None:
            return denied
        return await self._accept_ws(request, "stt", self.stt._take())

    async def _stt_session(self, ws: web.WebSocketResponse, fault: Fault | None) -> None:
        session_id = self._next_id("stt_session")
        text = fault.text if fault is not None and fault.kind == "ok" else self._transcript
        sample_rate, language = 16000, "en"
        pending_bytes, offset = 0, 0.0
        failed = False
        async for data in self._messages(ws):
            msg_type = data.get("type")
            if msg_type == "session.create":
                settings = data.get("settings")
                if isinstance(settings, dict):
                    sample_rate = _positive_int(settings.get("sample_rate"), sample_rate)
                    if isinstance(lang := settings.get("language"), str) and lang:
                        language = lang
                await ws.send_json({"type": "session.created", "session_id": session_id})
                if fault is not None and fault.kind == "ws_error" and not failed:
                    failed = True
                    await ws.send_json(self._ws_error_message(fault, None))
            elif msg_type == "input_audio":
                if isinstance(audio := data.get("audio"), str):
                    try:
                        pending_bytes += len(base64.b64decode(audio))
                    except (binascii.Error, ValueError):
                        logger.debug("fake gateway: ignoring undecodable STT audio")
            elif msg_type == "session.finalize" and not failed:
                if pending_bytes > 0:
                    duration = pending_bytes / (2 * sample_rate)
                    await ws.send_json(
                        _final_transcript(session_id, text, language, offset, duration)
                    )
                    offset += duration
                    pending_bytes = 0
                await ws.send_json({"type": "session.finalized", "session_id": session_id})
                # ends the client's stream now instead of after its 3 s inactivity timeout
                await ws.send_json({"type": "session.closed", "session_id": session_id})
            elif msg_type == "session.close":
                await ws.send_json({"type": "session.closed", "session_id": session_id})
                return

    async def _tts(self, request: web.Request) -> web.StreamResponse:
        self.requests["tts"] += 1
        if (denied := self._unauthorized(request)) is not None:
            return denied
        return await self._accept_ws(request, "tts", self.tts._take(_TTS_CONNECT_KINDS))

    async def _tts_session(self, ws: web.WebSocketResponse) -> None:
        session_id = self._next_id("tts_session")
        sample_rate = 24000
        active = failed = False

        async def begin_synthesis() -> bool:
            self.requests["tts_synthesis"] += 1
            fault = self.tts._take(_TTS_REQUEST_KINDS)
            if fault is not None and fault.kind == "ws_error":
                await ws.send_json(self._ws_error_message(fault, session_id))
                return True
            return False

        async for data in self._messages(ws):
            msg_type = data.get("type")
            if msg_type == "session.create":
                sample_rate = _positive_int(data.get("sample_rate"), sample_rate)
                await ws.send_json({"type": "session.created", "session_id": session_id})
            elif msg_type == "input_transcript":
                if not active:
                    active, failed = True, await begin_synthesis()
                transcript = data.get("transcript")
                if not failed and isinstance(transcript, str) and transcript.strip():
                    seconds = max(_TTS_MIN_SECONDS, _TTS_SECONDS_PER_WORD * len(transcript.split()))
                    silence = bytes(2 * int(sample_rate * seconds))
                    await ws.send_json(
                        {
                            "type": "output_audio",
                            "audio": base64.b64encode(silence).decode(),
                            "session_id": session_id,
                        }
                    )
            elif msg_type == "session.flush":
                if not active:
                    failed = await begin_synthesis()
                if not failed:
                    await ws.send_json({"type": "done", "session_id": session_id})
                active = failed = False
            elif msg_type == "session.close":
                await ws.send_json({"type": "session.closed", "session_id": session_id})
                return


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def _positive_int(value: object, default: int) -> int:
    try:
        number = int(str(value))
    except ValueError:
        return default
    return number if number > 0 else default


def _final_transcript(
    session_id: str, text: str, language: str, start: float, duration: float
) -> dict[str, Any]:
    words = text.split()
    step = duration / len(words) if words else 0.0
    return {
        "type": "final_transcript",
        "session_id": session_id,
        "transcript": text,
        "language": language,
        "start": start,
        "duration": duration,
        "confidence": 1.0,
        "words": [
            {
                "word": word,
                "start": start + i * step,
                "end": start + (i + 1) * step,
                "confidence": 1.0,
            }
            for i, word in enumerate(words)
        ],
    }
