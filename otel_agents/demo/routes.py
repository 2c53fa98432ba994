"""The fake LiveKit Inference gateway's routes: what it answers to each request.

:class:`GatewayRoutes` holds the state the handlers read and count (the fault queues, the request
counts, the credit balance and rate counts) and builds the aiohttp application;
:class:`~otel_agents.demo.gateway.FakeGateway` adds the server around it (binding, the URL,
shutdown) and documents the wire protocol. Each handler takes its fault from its route's queue,
answers with :mod:`otel_agents.demo.wire`'s messages or hands a websocket to
:mod:`otel_agents.demo.speech`, and counts the request in ``requests``.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import logging
import time
from typing import Any, Final

from aiohttp import web

from . import speech, wire
from .balance import Credits, Rates
from .faults import QUOTA_CREDITS_BODY, Fault, FaultKind, FaultQueue, http_error, openai_error_body

# the gateway's logger, like speech's and wire's: one switch for everything the fake serves
logger = logging.getLogger("otel_agents.demo.gateway")

_WS_CLOSE_TIMEOUT: Final = 1.0
#: TTS faults taken when a connection is opened, and when a synthesis starts on it
_TTS_CONNECT_KINDS: Final[frozenset[FaultKind]] = frozenset(
    {"http_error", "disconnect", "no_session_id"}
)
_TTS_REQUEST_KINDS: Final[frozenset[FaultKind]] = frozenset({"ok", "ws_error"})


class GatewayRoutes:
    """The request handlers of :class:`~otel_agents.demo.gateway.FakeGateway` and the state
    they share; see its docstring for the attributes."""

    def __init__(self, *, reply: str, transcript: str, require_auth: bool) -> None:
        self.llm: Final = FaultQueue("llm", ("ok", "empty", "http_error", "disconnect"))
        self.stt: Final = FaultQueue("stt", ("ok", "http_error", "ws_error", "disconnect"))
        self.tts: Final = FaultQueue(
            "tts", ("ok", "http_error", "ws_error", "no_session_id", "disconnect")
        )
        self.requests: Final[collections.Counter[str]] = collections.Counter()
        #: the credit balance every LLM completion is charged to (see the gateway's docstring)
        self.credits = Credits()
        #: the per-minute request and token counts reported next to it
        self.rates = Rates()
        self._reply = reply
        self._transcript = transcript
        self._require_auth = require_auth
        self._websockets: set[web.WebSocketResponse] = set()
        self._ids = itertools.count(1)

    def _quota_headers(self) -> dict[str, str]:
        """Every quota header of an LLM completion response: rates, then credits."""
        return {**self.rates.headers(), **self.credits.headers()}

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
    def _error_response(
        fault: Fault, request_id: str | None = None, quota_headers: dict[str, str] | None = None
    ) -> web.Response:
        headers = {**(quota_headers or {}), **fault.headers}
        if request_id is not None:
            headers.setdefault("x-request-id", request_id)
        return web.json_response(dict(fault.body or {}), status=fault.status, headers=headers)

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

        rates = self.rates
        rates.request(time.monotonic())
        fault = self.llm._take()
        if fault is not None and fault.kind == "disconnect":
            return self._drop(request)
        credits = self.credits
        if fault is not None and fault.kind == "http_error":
            return self._error_response(fault, request_id, self._quota_headers())
        if fault is None and credits.exhausted:
            out_of_credits = http_error(429, QUOTA_CREDITS_BODY)
            return self._error_response(out_of_credits, request_id, self._quota_headers())

        text = "" if fault is not None and fault.kind == "empty" else self._reply
        if fault is not None and fault.kind == "ok":
            text = fault.text
        pieces = wire.stream_pieces(text)
        usage = wire.usage(payload["messages"], pieces)
        # charged when the answer starts: its headers show the balance and counts after it
        credits.used = min(credits.limit, credits.used + credits.cost)
        rates.tpm_used += usage["total_tokens"]
        quota_headers = self._quota_headers()
        if fault is not None and fault.kind == "ok" and fault.delay:
            await asyncio.sleep(fault.delay)
        model = payload.get("model")
        model = model if isinstance(model, str) else "fake"
        completion_id = self._next_id("chatcmpl")
        created = int(time.time())
        if not payload.get("stream"):
            return web.json_response(
                wire.completion(completion_id, created, model, text, usage),
                headers={"x-request-id": request_id, **quota_headers},
            )
        stream_options = payload.get("stream_options")
        with_usage = isinstance(stream_options, dict) and stream_options.get("include_usage")
        frames = wire.completion_frames(
            completion_id, created, model, pieces, usage if with_usage else None
        )

        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "x-request-id": request_id,
                **quota_headers,
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

    def _ws_error_message(self, fault: Fault, session_id: str | None) -> dict[str, Any]:
        return speech.error_message(fault, session_id)

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
                await speech.stt_session(
                    ws,
                    fault,
                    self._next_id("stt_session"),
                    self._transcript,
                    self._ws_error_message,
                )
            else:
                await speech.tts_session(
                    ws,
                    fault,
                    self._next_id("tts_session"),
                    self._synthesis_fault,
                    self._ws_error_message,
                )
        except Exception:
            logger.exception("fake gateway: %s websocket handler failed", kind)
        finally:
            self._websockets.discard(ws)
            if not ws.closed:
                await ws.close()
        return ws

    async def _stt(self, request: web.Request) -> web.StreamResponse:
        self.requests["stt"] += 1
        if (denied := self._unauthorized(request)) is not None:
            return denied
        return await self._accept_ws(request, "stt", self.stt._take())

    async def _tts(self, request: web.Request) -> web.StreamResponse:
        self.requests["tts"] += 1
        if (denied := self._unauthorized(request)) is not None:
            return denied
        return await self._accept_ws(request, "tts", self.tts._take(_TTS_CONNECT_KINDS))

    async def _synthesis_fault(self) -> Fault | None:
        """A synthesis starts on a TTS websocket: count it and take its fault."""
        self.requests["tts_synthesis"] += 1
        return self.tts._take(_TTS_REQUEST_KINDS)
