"""otel-agents on the REAL ``livekit.agents.inference`` plugins, talking to the fake gateway.

The LLM, TTS and STT models are livekit's own inference plugins; only the gateway is fake
(``otel_agents.demo.gateway`` on 127.0.0.1, scripted faults). otel-agents is initialised by the
``telemetry`` fixture *before* each model is built, so the constructor hooks attach to it. Every
scenario is bounded by ``asyncio.wait_for``; retries use 10 ms intervals.

What the real chains look like is pinned in ``tests/test_gateway.py``; here we pin what
otel-agents records for them: span attributes, Prometheus series and log records, exactly.

Two real-chain details these tests pin: the openai SDK raises its status error ``from None``
inside ``except httpx2.HTTPStatusError`` (the root cause is the SDK error, not that transport
view of the same response), and ``inference.TTS.synthesize()`` runs an inner ``stream()`` whose
failure livekit emits twice, the second time with a clobbered ``__context__``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from livekit import rtc
from livekit.agents import (
    Agent,
    AgentSession,
    APIConnectionError,
    APIConnectOptions,
    APIError,
    APIStatusError,
    inference,
    llm,
)
from livekit.agents.voice.agent_session import SessionConnectOptions
from opentelemetry import trace

from otel_agents import names as n
from otel_agents.demo.gateway import (
    QUOTA_CREDITS_BODY,
    FakeGateway,
    disconnect,
    handshake_error,
    http_error,
    ok,
    quota_body,
    ws_error,
)

TIMEOUT = 10.0
CREDS: dict[str, Any] = {"api_key": "devkey", "api_secret": "devsecret-devsecret-devsecret-0123"}
LLM_MODEL = "openai/gpt-4.1-mini"
TTS_MODEL = "cartesia/sonic-3"
STT_MODEL = "deepgram/nova-3"
PROVIDER = "livekit"  # inference.LLM/TTS/STT.provider
#: the semantic conventions of each component's spans: gen_ai.operation.name, the model asked for
OPERATION = {"llm": "chat", "tts": "text_to_speech", "stt": "speech_to_text"}
MODEL = {"llm": LLM_MODEL, "tts": TTS_MODEL, "stt": STT_MODEL}

NO_RETRY = APIConnectOptions(max_retry=0, retry_interval=0.01, timeout=5.0)
ONE_RETRY = APIConnectOptions(max_retry=1, retry_interval=0.01, timeout=5.0)
TWO_RETRIES = APIConnectOptions(max_retry=2, retry_interval=0.01, timeout=5.0)

RPM_BODY = quota_body(
    "llm", "MaxConcurrentGatewayLLMRpm", hint="Reduce request rate or upgrade your plan."
)
TTS_RATE_BODY = quota_body(
    "tts", "MaxConcurrentGatewayTTS", hint="Reduce concurrent TTS requests or upgrade your plan."
)
TTS_CREDITS_BODY = quota_body("tts", "MaxGatewayCredits", hint="Add credits to your project.")

# --- root causes as observed (livekit-agents 1.8.9, openai 3.54.0 on httpx2, aiohttp) ----------
#: a gateway 429 of inference.LLM: the openai SDK's error (its hidden httpx2.HTTPStatusError
#: context is the same response, not a deeper cause)
LLM_STATUS_ROOT = "openai.RateLimitError"
#: the disconnect chain: livekit APIConnectionError <- openai <- httpx2 <- httpcore2
LLM_DISCONNECT_ROOT = "httpcore2.RemoteProtocolError"
#: STT/TTS websocket upgrade rejected (the module is aiohttp.client_exceptions, kept as is)
HANDSHAKE_ROOT = "aiohttp.client_exceptions.WSServerHandshakeError"
#: TTS ws error through synthesize(), classified at the inner stream's emit
SYNTHESIZE_ROOT = "livekit.agents.APIError"

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


# --- helpers -------------------------------------------------------------------------------------


async def bounded(scenario: Callable[[], Awaitable[None]]) -> None:
    await asyncio.wait_for(scenario(), TIMEOUT)


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def series(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """A key of ``telemetry.series()``."""
    return (name, tuple(sorted(labels.items())))


def attrs(telemetry: Any) -> list[dict[str, Any]]:
    """The attributes of every ``otel_agents.attempt_failed`` span, in emit order."""
    return [dict(s.attributes or {}) for s in telemetry.attempt_spans()]


def record(
    gateway: FakeGateway,
    component: str,
    attempt: int,
    final: bool,
    *,
    error_type: str,
    error_class: str,
    root_type: str,
    root_message: str,
    first_root_type: str | None = None,
    terminal: bool = False,
    masked: bool = False,
    quota: dict[str, str] | None = None,
    status: int | None = None,
) -> dict[str, Any]:
    """The exact attributes of one ``otel_agents.attempt_failed`` span (docs/reference.md):
    the GenAI and server conventions from the real plugin (its model, the gateway's address)."""
    out: dict[str, Any] = {
        n.A_COMPONENT: component,
        n.A_PROVIDER: PROVIDER,
        n.A_OPERATION: OPERATION[component],
        n.A_GEN_AI_PROVIDER: "livekit",  # not in the GenAI registry: its own name
        n.A_MODEL: MODEL[component],
        n.A_SERVER_ADDRESS: "127.0.0.1",
        n.A_SERVER_PORT: gateway.port,
        n.A_ATTEMPT: attempt,
        n.A_FINAL: final,
        n.A_ERROR_TYPE: error_type,
        n.A_ERROR_CLASS: error_class,
        n.A_ROOT_CAUSE_TYPE: root_type,
        n.A_ROOT_CAUSE_MESSAGE: root_message,
        n.A_FIRST_ROOT_CAUSE_TYPE: first_root_type or root_type,
        n.A_MASKED: masked,
        n.A_TERMINAL: terminal,
    }
    if quota is not None:
        out[n.A_QUOTA_TYPE] = quota["quota_type"]
        out[n.A_QUOTA_CATEGORY] = quota["category"]
        out[n.A_QUOTA_HINT] = quota["hint"]
        out[n.A_QUOTA_REMAINING] = quota["remaining_limit"]
    if status is not None:
        out[n.A_STATUS_CODE] = status
    return out


def cut(text: str) -> str:
    """A message as otel-agents exports it: at most 256 characters, the cut marked by '…'."""
    return text if len(text) <= 256 else text[:255] + "\u2026"


def capture_errors(model: Any) -> list[Any]:
    """The error events livekit emits (registered after otel-agents' own hook)."""
    events: list[Any] = []
    model.on("error", events.append)
    return events


def log_fields(telemetry: Any) -> list[dict[str, Any]]:
    keys = (
        "levelno",
        "component",
        "provider",
        "attempt",
        "final",
        "error_class",
        "terminal",
        "status_code",
        "quota_type",
        "quota_category",
        "quota_hint",
        "quota_remaining_limit",
    )
    return [{k: getattr(r, k) for k in keys} for r in telemetry.logs()]


# LLM


def chat_ctx() -> llm.ChatContext:
    ctx = llm.ChatContext.empty()
    ctx.add_message(role="user", content="Say something.")
    return ctx


async def chat(model: inference.LLM, conn_options: APIConnectOptions) -> str:
    text = ""
    async with model.chat(chat_ctx=chat_ctx(), conn_options=conn_options) as stream:
        async for chunk in stream:
            if chunk.delta and chunk.delta.content:
                text += chunk.delta.content
    return text


def llm_model(gateway: FakeGateway) -> inference.LLM:
    return inference.LLM(LLM_MODEL, base_url=gateway.url, **CREDS)


def llm_status_message(status: int) -> str:
    """``str()`` of the openai SDK's status error: the gateway's ``error`` is a string, so the
    SDK's message is just the status."""
    return f"Error code: {status}"


def llm_quota_attempt(
    gateway: FakeGateway, attempt: int, final: bool, body: dict[str, str], **kw: Any
) -> dict[str, Any]:
    terminal = body["category"] == "MaxGatewayCredits"
    return record(
        gateway,
        "llm",
        attempt,
        final,
        error_type="livekit.agents.APIStatusError",
        error_class="quota_exhausted" if terminal else "rate_limited",
        root_type=LLM_STATUS_ROOT,
        root_message=llm_status_message(429),
        terminal=terminal,
        quota=body,
        status=429,
        **kw,
    )


# TTS


async def tts_stream(model: inference.TTS, conn_options: APIConnectOptions) -> None:
    async with model.stream(conn_options=conn_options) as stream:
        stream.push_text("Hello there.")
        stream.end_input()
        async for _ in stream:
            pass


async def tts_synthesize(model: inference.TTS, conn_options: APIConnectOptions) -> None:
    async with model.synthesize("Hello there.", conn_options=conn_options) as chunked:
        async for _ in chunked:
            pass


TTS_MODES = {"stream": tts_stream, "synthesize": tts_synthesize}


def tts_model(gateway: FakeGateway, http: aiohttp.ClientSession) -> inference.TTS:
    return inference.TTS(TTS_MODEL, base_url=gateway.url, http_session=http, **CREDS)


# STT


def silence(count: int = 3) -> list[rtc.AudioFrame]:
    return [rtc.AudioFrame.create(16000, 1, 1600) for _ in range(count)]


def stt_model(gateway: FakeGateway, http: aiohttp.ClientSession) -> inference.STT:
    return inference.STT(STT_MODEL, base_url=gateway.url, http_session=http, **CREDS)


async def stt_open_input(model: inference.STT, conn_options: APIConnectOptions) -> None:
    """Stream audio and keep the input open (a ws error is then retryable), until it fails."""
    stream = model.stream(conn_options=conn_options)
    try:
        for frame in silence():
            stream.push_frame(frame)
        async for _ in stream:
            pass
    finally:
        await stream.aclose()


# --- 1. LLM: gateway credits 429 -----------------------------------------------------------------


@pytest.mark.asyncio
async def test_llm_credits_429_every_attempt_is_terminal_quota(telemetry) -> None:
    async def scenario() -> None:
        async with FakeGateway() as gateway:
            model = llm_model(gateway)
            gateway.llm.push(
                http_error(429, QUOTA_CREDITS_BODY), http_error(429, QUOTA_CREDITS_BODY)
            )
            try:
                with pytest.raises(APIConnectionError, match="after 2 attempts"):
                    await chat(model, ONE_RETRY)
            finally:
                await model.aclose()
            assert gateway.requests["llm"] == 2

            # the quota body is only on the openai error's response at emit time; all of it
            # must be recovered, on every attempt
            assert attrs(telemetry) == [
                llm_quota_attempt(gateway, 0, False, QUOTA_CREDITS_BODY),
                llm_quota_attempt(gateway, 1, True, QUOTA_CREDITS_BODY),
            ]

    await bounded(scenario)

    # children of livekit's llm_request span, in its trace
    (request,) = telemetry.spans("llm_request")
    for span in telemetry.attempt_spans():
        assert span.parent is not None
        assert span.parent.span_id == request.context.span_id
        assert span.context.trace_id == request.context.trace_id
        assert span.status.status_code is trace.StatusCode.ERROR

    assert telemetry.series() == {
        series(
            n.ATTEMPT_FAILURES,
            component="llm",
            provider=PROVIDER,
            error_class="quota_exhausted",
            root_cause=LLM_STATUS_ROOT,
            final="false",
        ): 1,
        series(
            n.ATTEMPT_FAILURES,
            component="llm",
            provider=PROVIDER,
            error_class="quota_exhausted",
            root_cause=LLM_STATUS_ROOT,
            final="true",
        ): 1,
        series(
            n.QUOTA_ERRORS,
            component="llm",
            quota_type="llm",
            quota_category="MaxGatewayCredits",
            terminal="true",
        ): 2,
        series(
            n.TERMINAL_ERRORS, component="llm", provider=PROVIDER, error_class="quota_exhausted"
        ): 2,
        series(n.REQUESTS, component="llm", provider=PROVIDER, outcome="failed"): 1,
    }

    quota_fields = {
        "component": "llm",
        "provider": PROVIDER,
        "error_class": "quota_exhausted",
        "terminal": True,
        "status_code": 429,
        "quota_type": "llm",
        "quota_category": "MaxGatewayCredits",
        "quota_hint": QUOTA_CREDITS_BODY["hint"],
        "quota_remaining_limit": "0",
    }
    assert log_fields(telemetry) == [
        {"levelno": logging.WARNING, "attempt": 0, "final": False, **quota_fields},
        {"levelno": logging.ERROR, "attempt": 1, "final": True, **quota_fields},
    ]
    assert [r.span_id for r in telemetry.logs()] == [
        format(s.context.span_id, "016x") for s in telemetry.attempt_spans()
    ]


# --- 2. LLM: gateway rate limit 429, and a recovering request ------------------------------------


@pytest.mark.asyncio
async def test_llm_rpm_429_is_rate_limited_not_terminal(telemetry) -> None:
    async def scenario() -> None:
        async with FakeGateway() as gateway:
            model = llm_model(gateway)
            gateway.llm.push(http_error(429, RPM_BODY), http_error(429, RPM_BODY))
            try:
                with pytest.raises(APIConnectionError, match="after 2 attempts"):
                    await chat(model, ONE_RETRY)
            finally:
                await model.aclose()
            assert attrs(telemetry) == [
                llm_quota_attempt(gateway, 0, False, RPM_BODY),
                llm_quota_attempt(gateway, 1, True, RPM_BODY),
            ]

    await bounded(scenario)

    rate_limited = {
        "component": "llm",
        "provider": PROVIDER,
        "error_class": "rate_limited",
        "root_cause": LLM_STATUS_ROOT,
    }
    # no otel_agents_terminal_errors_total series at all
    assert telemetry.series() == {
        series(n.ATTEMPT_FAILURES, **rate_limited, final="false"): 1,
        series(n.ATTEMPT_FAILURES, **rate_limited, final="true"): 1,
        series(
            n.QUOTA_ERRORS,
            component="llm",
            quota_type="llm",
            quota_category="MaxConcurrentGatewayLLMRpm",
            terminal="false",
        ): 2,
        series(n.REQUESTS, component="llm", provider=PROVIDER, outcome="failed"): 1,
    }
    assert [(r.levelno, r.quota_category, r.terminal) for r in telemetry.logs()] == [
        (logging.WARNING, "MaxConcurrentGatewayLLMRpm", False),
        (logging.ERROR, "MaxConcurrentGatewayLLMRpm", False),
    ]


@pytest.mark.asyncio
async def test_llm_recovers_after_disconnect_and_rpm_429(telemetry) -> None:
    async def scenario() -> None:
        async with FakeGateway() as gateway:
            model = llm_model(gateway)
            gateway.llm.push(disconnect(), http_error(429, RPM_BODY), ok("Recovered."))
            try:
                assert await chat(model, TWO_RETRIES) == "Recovered."
            finally:
                await model.aclose()
            assert gateway.requests["llm"] == 3

            assert attrs(telemetry) == [
                record(
                    gateway,
                    "llm",
                    0,
                    False,
                    error_type="livekit.agents.APIConnectionError",
                    error_class="connection",
                    root_type=LLM_DISCONNECT_ROOT,
                    root_message="Server disconnected without sending a response.",
                ),
                llm_quota_attempt(gateway, 1, False, RPM_BODY, first_root_type=LLM_DISCONNECT_ROOT),
            ]

    await bounded(scenario)

    assert telemetry.series() == {
        series(
            n.ATTEMPT_FAILURES,
            component="llm",
            provider=PROVIDER,
            error_class="connection",
            root_cause=LLM_DISCONNECT_ROOT,
            final="false",
        ): 1,
        series(
            n.ATTEMPT_FAILURES,
            component="llm",
            provider=PROVIDER,
            error_class="rate_limited",
            root_cause=LLM_STATUS_ROOT,
            final="false",
        ): 1,
        series(
            n.QUOTA_ERRORS,
            component="llm",
            quota_type="llm",
            quota_category="MaxConcurrentGatewayLLMRpm",
            terminal="false",
        ): 1,
        # no final failure: the request is counted once, as ok
        series(n.REQUESTS, component="llm", provider=PROVIDER, outcome="ok"): 1,
    }
    assert [(r.levelno, r.attempt, r.final) for r in telemetry.logs()] == [
        (logging.WARNING, 0, False),
        (logging.WARNING, 1, False),
    ]


# --- 3. a real AgentSession (text mode, no room) -------------------------------------------------


@pytest.mark.asyncio
async def test_session_credits_429_spans_are_children_of_llm_request(telemetry) -> None:
    raised: list[BaseException] = []

    async def scenario() -> None:
        async with FakeGateway() as gateway:
            gateway.llm.push(
                http_error(429, QUOTA_CREDITS_BODY), http_error(429, QUOTA_CREDITS_BODY)
            )
            session: AgentSession = AgentSession(
                llm=inference.LLM(LLM_MODEL, base_url=gateway.url, **CREDS),
                vad=None,
                aec_warmup_duration=None,
                conn_options=SessionConnectOptions(
                    llm_conn_options=APIConnectOptions(max_retry=1, retry_interval=0.01),
                    max_unrecoverable_errors=0,
                ),
            )
            try:
                await session.start(agent=Agent(instructions="t"))
                try:
                    await session.run(user_input="hello")
                except Exception as e:
                    raised.append(e)
            finally:
                await session.aclose()
            assert gateway.requests["llm"] == 2
            assert attrs(telemetry) == [
                llm_quota_attempt(gateway, 0, False, QUOTA_CREDITS_BODY),
                llm_quota_attempt(gateway, 1, True, QUOTA_CREDITS_BODY),
            ]

    await bounded(scenario)

    # the host still sees livekit's own wrapper
    assert len(raised) == 1
    assert isinstance(raised[0], APIConnectionError)
    assert "after 2 attempts" in str(raised[0])

    (root,) = telemetry.spans("agent_session")
    (request,) = telemetry.spans("llm_request")
    assert root.parent is None
    assert request.context.trace_id == root.context.trace_id
    attempts = telemetry.attempt_spans()
    assert len(attempts) == 2
    for span in attempts:
        assert span.context.trace_id == root.context.trace_id
        assert span.parent is not None
        assert span.parent.span_id == request.context.span_id
    # livekit's per-attempt spans are siblings of ours, under the same llm_request
    runs = telemetry.spans("llm_request_run")
    assert len(runs) == 2
    assert {s.parent.span_id for s in runs if s.parent} == {request.context.span_id}
    assert telemetry.value(n.REQUESTS, component="llm", provider=PROVIDER, outcome="failed") == 1
    assert (
        telemetry.value(
            n.TERMINAL_ERRORS, component="llm", provider=PROVIDER, error_class="quota_exhausted"
        )
        == 2
    )


# --- 4. TTS: ws error carrying quota fields, and the handshake 429 -------------------------------


def tts_quota_series(body: dict[str, str], root: str, attempts: int) -> Series:
    terminal = body["category"] == "MaxGatewayCredits"
    error_class = "quota_exhausted" if terminal else "rate_limited"
    out: Series = {
        series(
            n.ATTEMPT_FAILURES,
            component="tts",
            provider=PROVIDER,
            error_class=error_class,
            root_cause=root,
            final="false",
        ): attempts - 1,
        series(
            n.ATTEMPT_FAILURES,
            component="tts",
            provider=PROVIDER,
            error_class=error_class,
            root_cause=root,
            final="true",
        ): 1,
        series(
            n.QUOTA_ERRORS,
            component="tts",
            quota_type="tts",
            quota_category=body["category"],
            terminal="true" if terminal else "false",
        ): attempts,
        series(n.REQUESTS, component="tts", provider=PROVIDER, outcome="failed"): 1,
    }
    if terminal:
        out[
            series(n.TERMINAL_ERRORS, component="tts", provider=PROVIDER, error_class=error_class)
        ] = attempts
    return out


@pytest.mark.asyncio
@pytest.mark.parametrize("body", [TTS_RATE_BODY, TTS_CREDITS_BODY], ids=["rate", "credits"])
async def test_tts_stream_ws_quota_error(telemetry, http, body: dict[str, str]) -> None:
    terminal = body["category"] == "MaxGatewayCredits"

    async def scenario() -> None:
        async with FakeGateway() as gateway:
            model = tts_model(gateway, http)
            events = capture_errors(model)
            gateway.tts.push(ws_error(body), ws_error(body))
            try:
                with pytest.raises(APIError) as info:
                    await tts_stream(model, ONE_RETRY)
            finally:
                await model.aclose()
            assert type(info.value) is APIError
            assert gateway.requests["tts_synthesis"] == 2

            # stream(): one event per attempt
            assert [e.recoverable for e in events] == [True, False]
            assert attrs(telemetry) == [
                record(
                    gateway,
                    "tts",
                    attempt,
                    attempt == 1,
                    error_type="livekit.agents.APIError",
                    error_class="quota_exhausted" if terminal else "rate_limited",
                    # no cause, no context: the error is its own root, the raw ws message
                    # (with its varying session id) inside its text
                    root_type="livekit.agents.APIError",
                    root_message=cut(events[attempt].error.message),
                    terminal=terminal,
                    quota=body,
                )
                for attempt in (0, 1)
            ]
            assert events[0].error.message.startswith("LiveKit Inference TTS returned error: {")

    await bounded(scenario)

    assert telemetry.series() == tts_quota_series(body, "livekit.agents.APIError", attempts=2)
    assert [(r.levelno, r.attempt, r.quota_type, r.quota_category) for r in telemetry.logs()] == [
        (logging.WARNING, 0, "tts", body["category"]),
        (logging.ERROR, 1, "tts", body["category"]),
    ]


@pytest.mark.asyncio
@pytest.mark.parametrize("body", [TTS_RATE_BODY, TTS_CREDITS_BODY], ids=["rate", "credits"])
async def test_tts_synthesize_ws_quota_error_recorded_once_per_attempt(
    telemetry, http, body: dict[str, str]
) -> None:
    terminal = body["category"] == "MaxGatewayCredits"

    async def scenario() -> None:
        async with FakeGateway() as gateway:
            model = tts_model(gateway, http)
            events = capture_errors(model)
            gateway.tts.push(ws_error(body), ws_error(body))
            try:
                with pytest.raises(APIError):
                    await tts_synthesize(model, ONE_RETRY)
            finally:
                await model.aclose()
            assert gateway.requests["tts_synthesis"] == 2

            # livekit emits every failure twice: the inner max_retry=0 stream (always final),
            # then the outer chunked loop with the same exception object
            assert [e.recoverable for e in events] == [False, True, False, False]
            assert events[0].error is events[1].error
            assert events[2].error is events[3].error
            # otel-agents records the outer loop's attempts only
            assert attrs(telemetry) == [
                record(
                    gateway,
                    "tts",
                    attempt,
                    attempt == 1,
                    error_type="livekit.agents.APIError",
                    error_class="quota_exhausted" if terminal else "rate_limited",
                    root_type=SYNTHESIZE_ROOT,
                    # classified at the inner stream's emit, before livekit clobbered the chain
                    root_message=cut(events[2 * attempt].error.message),
                    terminal=terminal,
                    quota=body,
                )
                for attempt in (0, 1)
            ]

    await bounded(scenario)

    assert telemetry.series() == tts_quota_series(body, SYNTHESIZE_ROOT, attempts=2)
    assert [(r.levelno, r.attempt, r.final) for r in telemetry.logs()] == [
        (logging.WARNING, 0, False),
        (logging.ERROR, 1, True),
    ]


@pytest.mark.asyncio
async def test_tts_synthesize_recovers_after_ws_quota_errors(telemetry, http) -> None:
    async def scenario() -> None:
        async with FakeGateway() as gateway:
            model = tts_model(gateway, http)
            gateway.tts.push(ws_error(TTS_RATE_BODY), ws_error(TTS_RATE_BODY), ok())
            try:
                await tts_synthesize(model, TWO_RETRIES)
            finally:
                await model.aclose()

    await bounded(scenario)

    assert [(a[n.A_ATTEMPT], a[n.A_FINAL]) for a in attrs(telemetry)] == [(0, False), (1, False)]
    assert telemetry.value(n.REQUESTS, component="tts", provider=PROVIDER, outcome="failed") == 0
    # one request: the inner stream's metrics are not counted again
    assert telemetry.value(n.REQUESTS, component="tts", provider=PROVIDER, outcome="ok") == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("mode", list(TTS_MODES))
async def test_tts_handshake_429_is_rate_limited_without_quota(telemetry, http, mode: str) -> None:
    async def scenario() -> None:
        async with FakeGateway() as gateway:
            model = tts_model(gateway, http)
            events = capture_errors(model)
            # the body is dropped by aiohttp: only the status survives
            gateway.tts.push(handshake_error(429, TTS_CREDITS_BODY))
            try:
                with pytest.raises(APIStatusError):
                    await TTS_MODES[mode](model, NO_RETRY)
            finally:
                await model.aclose()
            ws_url = gateway.url.replace("http", "ws", 1)
            assert len(events) == (2 if mode == "synthesize" else 1)
            assert attrs(telemetry) == [
                record(
                    gateway,
                    "tts",
                    0,
                    True,
                    error_type="livekit.agents.APIStatusError",
                    error_class="rate_limited",
                    # raised `from e`: the cause survives livekit's re-raise
                    root_type=HANDSHAKE_ROOT,
                    root_message=(
                        "429, message='Invalid response status', "
                        f"url='{ws_url}/tts?model={TTS_MODEL}'"
                    ),
                    status=429,
                )
            ]

    await bounded(scenario)

    assert telemetry.series() == {
        series(
            n.ATTEMPT_FAILURES,
            component="tts",
            provider=PROVIDER,
            error_class="rate_limited",
            root_cause=HANDSHAKE_ROOT,
            final="true",
        ): 1,
        series(n.REQUESTS, component="tts", provider=PROVIDER, outcome="failed"): 1,
    }
    (log,) = telemetry.logs()
    assert (log.status_code, log.quota_category, log.terminal) == (429, None, False)


# --- 5. STT: ws error (livekit drops the payload) and the handshake 429 --------------------------


@pytest.mark.asyncio
async def test_stt_ws_quota_error_loses_the_quota(telemetry, http) -> None:
    stt_body = quota_body("stt", "MaxConcurrentGatewaySTT", hint="Reduce concurrent STT.")
    gateway = FakeGateway()  # its port stays known after it stops

    async def scenario() -> None:
        async with gateway:
            model = stt_model(gateway, http)
            events = capture_errors(model)
            gateway.stt.push(ws_error(stt_body), ws_error(stt_body))
            try:
                with pytest.raises(APIConnectionError, match="after 1 attempts"):
                    await stt_open_input(model, ONE_RETRY)
            finally:
                await model.aclose()
            assert gateway.requests["stt"] == 2
            # livekit keeps only body={"code": -1} and a fixed message: no quota field, no
            # "category: X" fragment, no status reaches the exception
            assert [(e.error.body, e.error.message) for e in events] == [
                ({"code": -1}, "LiveKit Inference STT returned an error")
            ] * 2

    await bounded(scenario)

    # so otel-agents records a provider-reported error without status, and NO quota: this is
    # all that can be recovered until livekit keeps the payload
    assert attrs(telemetry) == [
        record(
            gateway,
            "stt",
            attempt,
            attempt == 1,
            error_type="livekit.agents.APIError",
            error_class="server_error",
            root_type="livekit.agents.APIError",
            root_message="LiveKit Inference STT returned an error",
        )
        for attempt in (0, 1)
    ]
    assert telemetry.series() == {
        series(
            n.ATTEMPT_FAILURES,
            component="stt",
            provider=PROVIDER,
            error_class="server_error",
            root_cause="livekit.agents.APIError",
            final="false",
        ): 1,
        series(
            n.ATTEMPT_FAILURES,
            component="stt",
            provider=PROVIDER,
            error_class="server_error",
            root_cause="livekit.agents.APIError",
            final="true",
        ): 1,
        series(n.REQUESTS, component="stt", provider=PROVIDER, outcome="failed"): 1,
    }
    assert [(r.attempt, r.quota_type, r.quota_category) for r in telemetry.logs()] == [
        (0, None, None),
        (1, None, None),
    ]


@pytest.mark.asyncio
async def test_stt_handshake_429_is_rate_limited_without_quota(telemetry, http) -> None:
    async def scenario() -> None:
        async with FakeGateway() as gateway:
            model = stt_model(gateway, http)
            gateway.stt.push(handshake_error(429, quota_body("stt", "MaxGatewayCredits")))
            try:
                with pytest.raises(APIStatusError):
                    await stt_open_input(model, NO_RETRY)
            finally:
                await model.aclose()
            ws_url = gateway.url.replace("http", "ws", 1)
            assert attrs(telemetry) == [
                record(
                    gateway,
                    "stt",
                    0,
                    True,
                    error_type="livekit.agents.APIStatusError",
                    error_class="rate_limited",
                    root_type=HANDSHAKE_ROOT,
                    root_message=(
                        "429, message='Invalid response status', "
                        f"url='{ws_url}/stt?model={STT_MODEL}'"
                    ),
                    status=429,
                )
            ]

    await bounded(scenario)

    # a credits body on the rejected upgrade is invisible: not terminal, no quota series
    assert telemetry.series() == {
        series(
            n.ATTEMPT_FAILURES,
            component="stt",
            provider=PROVIDER,
            error_class="rate_limited",
            root_cause=HANDSHAKE_ROOT,
            final="true",
        ): 1,
        series(n.REQUESTS, component="stt", provider=PROVIDER, outcome="failed"): 1,
    }


# --- once known gaps, fixed: root causes of SDK status errors, synthesize() via a stream -------


@pytest.mark.asyncio
async def test_llm_root_cause_should_be_the_openai_status_error(telemetry) -> None:
    async def scenario() -> None:
        async with FakeGateway() as gateway:
            model = llm_model(gateway)
            gateway.llm.push(http_error(500), http_error(429, QUOTA_CREDITS_BODY))
            try:
                with pytest.raises(APIConnectionError):
                    await chat(model, ONE_RETRY)
            finally:
                await model.aclose()

    await bounded(scenario)

    got = [(a[n.A_ROOT_CAUSE_TYPE], a[n.A_MASKED]) for a in attrs(telemetry)]
    assert got == [("openai.InternalServerError", False), ("openai.RateLimitError", True)]


@pytest.mark.asyncio
async def test_tts_synthesize_root_cause_is_the_api_error(telemetry, http) -> None:
    async def scenario() -> None:
        async with FakeGateway() as gateway:
            model = tts_model(gateway, http)
            gateway.tts.push(ws_error(TTS_RATE_BODY))
            try:
                with pytest.raises(APIError):
                    await tts_synthesize(model, NO_RETRY)
            finally:
                await model.aclose()

    await bounded(scenario)

    (got,) = attrs(telemetry)
    assert got[n.A_ROOT_CAUSE_TYPE] == "livekit.agents.APIError"
    assert got[n.A_ROOT_CAUSE_MESSAGE].startswith("LiveKit Inference TTS returned error: {")


@pytest.mark.asyncio
async def test_tts_synthesize_success_counts_one_request(telemetry, http) -> None:
    async def scenario() -> None:
        async with FakeGateway() as gateway:
            model = tts_model(gateway, http)
            try:
                await tts_synthesize(model, NO_RETRY)
            finally:
                await model.aclose()

    await bounded(scenario)

    assert telemetry.series() == {
        series(n.REQUESTS, component="tts", provider=PROVIDER, outcome="ok"): 1,
    }
