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
here; the messages sent are built by :mod:`otel_agents.demo.wire`, and what each route answers is
:class:`~otel_agents.demo.routes.GatewayRoutes`'s (this module runs the server).

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
from types import TracebackType
from typing import Final, Self

from aiohttp import WSCloseCode, web

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
from .routes import GatewayRoutes

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

_SHUTDOWN_TIMEOUT: Final = 1.0


class FakeGateway(GatewayRoutes):
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
        super().__init__(reply=reply, transcript=transcript, require_auth=require_auth)
        self._host = host
        self._requested_port = port
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

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
