"""A local fake LiveKit Inference gateway that serves scripted faults.

:class:`FakeGateway` is an aiohttp server on ``127.0.0.1`` (a free port by default) that speaks
the wire protocol of the LiveKit Inference gateway closely enough for the *real*
``livekit.agents.inference`` plugins to run against it:

* ``POST {url}/chat/completions``: OpenAI-compatible chat completions, streamed as SSE
  (``data: {chunk}`` lines ending in ``data: [DONE]``). Used by ``inference.LLM`` through the
  openai SDK. ``GET {url}/models`` answers the LLM prewarm.
* ``GET {url}/stt`` and ``GET {url}/tts`` (websockets): ``inference.STT`` and ``inference.TTS``
  (:mod:`otel_agents.demo.speech` has their protocol).

Every LLM completion response, success or error, carries the gateway's quota headers: a credit
balance that runs out (``gateway.credits``, :meth:`FakeGateway.set_credits`,
:meth:`FakeGateway.drain_credits`), and per-minute rate counts (``gateway.rates``); see
:mod:`otel_agents.demo.balance`.

Every route except the models list takes its behaviour from a :class:`FaultQueue`
(``gateway.llm``, ``gateway.stt``, ``gateway.tts``): faults are consumed in order, one per
request or connection, and an empty queue means healthy. Build faults with :func:`ok`,
:func:`empty`, :func:`http_error`, :func:`handshake_error`, :func:`ws_error`,
:func:`no_session_id` and :func:`disconnect`; build gateway-shaped quota bodies with
:func:`quota_body`. Those names are defined in :mod:`otel_agents.demo.faults` and re-exported
here; the messages sent are built by :mod:`otel_agents.demo.wire`.

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
import collections
import itertools
import json
import logging
import time
from types import TracebackType
from typing import Final, Self

from aiohttp import WSCloseCode, web

from . import speech, wire
from .balance import (
    DEFAULT_CREDIT_COST,
    DEFAULT_CREDITS_LIMIT,
    DEFAULT_RPM_LIMIT,
    DEFAULT_TPM_LIMIT,
    Credits,
    Rates,
)
from .faults import (
    DEFAULT_TEXT,
    QUOTA_CREDITS_BODY,
    Fault,
    FaultKind,
    FaultQueue,
    disconnect,
    empty,
    handshake_error,
    http_error,
    no_session_id,
    ok,
    openai_error_body,
    quota_body,
    ws_error,
)

__all__ = [
    "DEFAULT_CREDITS_LIMIT",
    "DEFAULT_CREDIT_COST",
    "DEFAULT_RPM_LIMIT",
    "DEFAULT_TEXT",
    "DEFAULT_TPM_LIMIT",
    "QUOTA_CREDITS_BODY",
    "Credits",
    "FakeGateway",
    "Fault",
    "FaultKind",
    "FaultQueue",
    "Rates",
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

logger = logging.getLogger(__name__)

_WS_CLOSE_TIMEOUT: Final = 1.0
_SHUTDOWN_TIMEOUT: Final = 1.0
#: TTS faults taken when a connection is opened, and when a synthesis starts on it
_TTS_CONNECT_KINDS: Final[frozenset[FaultKind]] = frozenset(
    {"http_error", "disconnect", "no_session_id"}
)
_TTS_REQUEST_KINDS: Final[frozenset[FaultKind]] = frozenset({"ok", "ws_error"})


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
        self.tts: Final = FaultQueue(
            "tts", ("ok", "http_error", "ws_error", "no_session_id", "disconnect")
        )
        self.requests: Final[collections.Counter[str]] = collections.Counter()
        #: the credit balance every LLM completion is charged to (see the module docstring)
        self.credits = Credits()
        #: the per-minute request and token counts reported next to it
        self.rates = Rates()
        self._host = host
        self._requested_port = port
        self._reply = reply
        self._transcript = transcript
        self._require_auth = require_auth
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._websockets: set[web.WebSocketResponse] = set()
        self._ids = itertools.count(1)

    # credits

    def set_credits(
        self, limit: int | None = None, used: int | None = None, cost: int | None = None
    ) -> Credits:
        """Set the credit balance (``None``: keep that part); returns it."""
        for name, value in (("limit", limit), ("used", used), ("cost", cost)):
            if value is not None and value < 0:
                raise ValueError(f"credits {name} must be >= 0, got {value}")
        credits = self.credits
        if limit is not None:
            credits.limit = limit
        if used is not None:
            credits.used = used
        if cost is not None:
            credits.cost = cost
        return credits

    def _quota_headers(self) -> dict[str, str]:
        """Every quota header of an LLM completion response: rates, then credits."""
        return {**self.rates.headers(), **self.credits.headers()}

    def drain_credits(self, amount: int | None = None) -> Credits:
        """Use ``amount`` credits (``None``: all of them) without a completion; returns the
        balance."""
        credits = self.credits
        spent = credits.limit if amount is None else credits.used + amount
        credits.used = min(credits.limit, spent)
        return credits

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
                await speech.stt_session(ws, fault, self._next_id("stt_session"), self._transcript)
            else:
                await speech.tts_session(
                    ws, fault, self._next_id("tts_session"), self._synthesis_fault
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
