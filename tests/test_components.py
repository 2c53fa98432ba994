"""Every failed attempt of every component, seen through livekit's real retry loops.

The providers are built on livekit's public base classes (``tests/scripted.py``) and fail with
the error chains the real plugins produce; livekit's own ``_main_task``/``recognize`` loops do the
retrying and emit the ``"error"`` events. Everything runs offline (the interruption test talks to
a local server on 127.0.0.1) and is bounded by ``asyncio.wait_for``.

Covered: TTS (ChunkedStream and SynthesizeStream), STT (``recognize()`` in the caller's task and
RecognizeStream in its own task), realtime sessions (per-task counting, reset on
``session_reconnected``, the realtime FallbackAdapter's re-emission recorded once), the adaptive
interruption detector, FallbackAdapter children whose errors never reach the session, and hooks
that never raise whatever the exception or the exporter does.

"""

from __future__ import annotations

import asyncio
import logging
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from livekit.agents import (
    Agent,
    AgentSession,
    APIConnectionError,
    APIError,
    APIStatusError,
    create_api_error_from_http,
    llm,
    tts,
)
from livekit.agents.inference import AdaptiveInterruptionDetector
from livekit.agents.inference.interruption import InterruptionDetectionError
from livekit.agents.types import APIConnectOptions
from livekit.agents.voice.agent_session import SessionConnectOptions
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

import otel_agents
from otel_agents import _runtime
from otel_agents import names as n
from otel_agents._capture import attempts as _hooks
from otel_agents._export import recorder as _record

from conftest import session_series
from scripted import (
    ScriptedLLM,
    ScriptedRealtimeModel,
    ScriptedRecognizeStream,
    ScriptedSTT,
    ScriptedTTS,
    audio_frame,
    gateway_status_error,
    raising,
    realtime_quota_error,
    ssl_connection_error,
    tts_quota_message_error,
)

TIMEOUT = 10.0
#: the most memory one failed-attempt hook may hold at once, on any error (a 10 MB body
#: included): it cuts and redacts a bounded prefix, never the whole text
HOOK_PEAK_BYTES = 1024 * 1024
CONN = APIConnectOptions(max_retry=2, retry_interval=0.01)

SSL_ROOT = "ssl.SSLCertVerificationError"
SSL_MESSAGE = "[SSL: CERTIFICATE_VERIFY_FAILED] failed"
CONNECTION_ERROR = "livekit.agents.APIConnectionError"
CREDITS_BODY = {
    "type": "inference_quota_exceeded",
    "error": "out of credits, category: MaxGatewayCredits",
    "quota_type": "tts",
    "category": "MaxGatewayCredits",
    "hint": "Add credits to your project.",
    "remaining_limit": "0",
}

ATTEMPT_FAILURES = n.ATTEMPT_FAILURES
QUOTA_ERRORS = n.QUOTA_ERRORS
TERMINAL_ERRORS = n.TERMINAL_ERRORS
MASKED_FAILURES = n.MASKED_FAILURES
REQUESTS = n.REQUESTS
INTERNAL_ERRORS = n.INTERNAL_ERRORS


# --- helpers -------------------------------------------------------------------------------------


#: ``gen_ai.operation.name`` by component (the convention's where it has one)
OPERATION = {"llm": "chat", "stt": "speech_to_text", "tts": "text_to_speech"}


def attrs(telemetry: Any) -> list[dict[str, Any]]:
    """The attributes of every ``otel_agents.attempt_failed`` span, in emit order."""
    return [dict(s.attributes or {}) for s in telemetry.attempt_spans()]


def series(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """A key of ``telemetry.series()``."""
    return (name, tuple(sorted(labels.items())))


def ssl_attempt(
    component: str, provider: str, attempt: int, *, final: bool = False
) -> dict[str, Any]:
    """The span attributes of an attempt that failed with the TLS chain of ``scripted``."""
    return {
        n.A_COMPONENT: component,
        n.A_PROVIDER: provider,
        n.A_OPERATION: OPERATION[component],
        n.A_GEN_AI_PROVIDER: provider,
        n.A_ATTEMPT: attempt,
        n.A_FINAL: final,
        n.A_ERROR_TYPE: CONNECTION_ERROR,
        n.A_ERROR_CLASS: "connection",
        n.A_ROOT_CAUSE_TYPE: SSL_ROOT,
        n.A_ROOT_CAUSE_MESSAGE: SSL_MESSAGE,
        n.A_FIRST_ROOT_CAUSE_TYPE: SSL_ROOT,
        n.A_MASKED: False,
        n.A_TERMINAL: False,
    }


def ssl_series(component: str, provider: str, final: bool, value: float) -> dict[Any, float]:
    return {
        series(
            ATTEMPT_FAILURES,
            component=component,
            provider=provider,
            error_class="connection",
            root_cause=SSL_ROOT,
            final="true" if final else "false",
        ): value
    }


def ws_handshake_429() -> None:
    """A websocket handshake answered 429, as the inference STT/TTS plugins map it
    (``create_api_error_from_http(e.message, status=e.status) from e``): status only, no body."""
    url = URL("wss://agent-gateway.livekit.cloud/v1/stt")
    headers = CIMultiDictProxy(CIMultiDict({"X-LiveKit-Inference-Credits-Limit": "100"}))
    try:
        raise aiohttp.WSServerHandshakeError(
            aiohttp.RequestInfo(url, "GET", CIMultiDictProxy(CIMultiDict()), url),
            (),
            status=429,
            message="Invalid response status",
            headers=headers,
        )
    except aiohttp.WSServerHandshakeError as e:
        raise create_api_error_from_http(e.message, status=e.status) from e


async def drain(stream: Any) -> None:
    async with stream:
        async for _ in stream:
            pass


async def eventually(predicate: Callable[[], bool], limit: float = 5.0) -> None:
    """Wait for something a background task (a FallbackAdapter probe) does."""
    async with asyncio.timeout(limit):
        while not predicate():  # noqa: ASYNC110 (livekit's tasks signal nothing we can await)
            await asyncio.sleep(0.01)


@pytest.fixture
def emitter_errors() -> Iterator[list[logging.LogRecord]]:
    """Records of ``livekit.rtc``'s EventEmitter: it logs every exception a handler raised
    ("failed to emit event ..."), except ``TypeError``, which it re-raises into the retry loop."""
    records: list[logging.LogRecord] = []

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("failed to emit event"):
                records.append(record)

    handler = Handler(logging.ERROR)
    log = logging.getLogger("livekit")
    log.addHandler(handler)
    try:
        yield records
    finally:
        log.removeHandler(handler)


# --- 1. TTS ChunkedStream ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_tts_chunked_stream_records_every_attempt(telemetry, emitter_errors) -> None:
    model = ScriptedTTS(
        [ssl_connection_error, tts_quota_message_error(), gateway_status_error(429, CREDITS_BODY)]
    )

    with pytest.raises(APIStatusError) as raised:
        await asyncio.wait_for(drain(model.synthesize("hi", conn_options=CONN)), TIMEOUT)

    # livekit re-raises the last error as is (no "after N attempts" wrapper for TTS), and by
    # then its __context__ has been overwritten: the quota body had to be read at emit time
    assert raised.value.status_code == 429
    assert isinstance(raised.value.__context__, StopAsyncIteration)
    assert model.calls == 3

    quota_message = (
        'LiveKit Inference TTS returned error: {"type":"inference_quota_exceeded",'
        '"quota_type":"tts","category":"MaxConcurrentGatewayTTS",'
        '"hint":"Reduce concurrent TTS requests or upgrade your plan.","remaining_limit":"0"}'
    )
    assert attrs(telemetry) == [
        ssl_attempt("tts", "scripted-tts", 0),
        {
            n.A_COMPONENT: "tts",
            n.A_PROVIDER: "scripted-tts",
            n.A_OPERATION: "text_to_speech",
            n.A_GEN_AI_PROVIDER: "scripted-tts",
            n.A_ATTEMPT: 1,
            n.A_FINAL: False,
            n.A_ERROR_TYPE: "livekit.agents.APIError",
            n.A_ERROR_CLASS: "rate_limited",
            n.A_ROOT_CAUSE_TYPE: "livekit.agents.APIError",
            n.A_ROOT_CAUSE_MESSAGE: quota_message,
            n.A_FIRST_ROOT_CAUSE_TYPE: SSL_ROOT,
            n.A_MASKED: False,
            n.A_TERMINAL: False,
            n.A_QUOTA_TYPE: "tts",
            n.A_QUOTA_CATEGORY: "MaxConcurrentGatewayTTS",
            n.A_QUOTA_HINT: "Reduce concurrent TTS requests or upgrade your plan.",
            n.A_QUOTA_REMAINING: "0",
        },
        {
            n.A_COMPONENT: "tts",
            n.A_PROVIDER: "scripted-tts",
            n.A_OPERATION: "text_to_speech",
            n.A_GEN_AI_PROVIDER: "scripted-tts",
            n.A_ATTEMPT: 2,
            n.A_FINAL: True,
            n.A_ERROR_TYPE: "livekit.agents.APIStatusError",
            n.A_ERROR_CLASS: "quota_exhausted",
            n.A_ROOT_CAUSE_TYPE: "openai.RateLimitError",
            n.A_ROOT_CAUSE_MESSAGE: "Error code: 429",
            n.A_FIRST_ROOT_CAUSE_TYPE: SSL_ROOT,
            n.A_MASKED: True,
            n.A_TERMINAL: True,
            n.A_QUOTA_TYPE: "tts",
            n.A_QUOTA_CATEGORY: "MaxGatewayCredits",
            n.A_QUOTA_HINT: "Add credits to your project.",
            n.A_QUOTA_REMAINING: "0",
            n.A_STATUS_CODE: 429,
        },
    ]

    # every record is a child of livekit's tts_request span, in its trace
    (request_span,) = telemetry.spans("tts_request")
    for span in telemetry.attempt_spans():
        assert span.parent is not None
        assert span.parent.span_id == request_span.context.span_id
        assert span.context.trace_id == request_span.context.trace_id

    assert telemetry.series() == {
        **ssl_series("tts", "scripted-tts", final=False, value=1),
        series(
            ATTEMPT_FAILURES,
            component="tts",
            provider="scripted-tts",
            error_class="rate_limited",
            root_cause="livekit.agents.APIError",
            final="false",
        ): 1,
        series(
            ATTEMPT_FAILURES,
            component="tts",
            provider="scripted-tts",
            error_class="quota_exhausted",
            root_cause="openai.RateLimitError",
            final="true",
        ): 1,
        series(
            QUOTA_ERRORS,
            component="tts",
            quota_type="tts",
            quota_category="MaxConcurrentGatewayTTS",
            terminal="false",
        ): 1,
        series(
            QUOTA_ERRORS,
            component="tts",
            quota_type="tts",
            quota_category="MaxGatewayCredits",
            terminal="true",
        ): 1,
        series(
            TERMINAL_ERRORS, component="tts", provider="scripted-tts", error_class="quota_exhausted"
        ): 1,
        series(
            MASKED_FAILURES,
            component="tts",
            first_root_cause=SSL_ROOT,
            root_cause="openai.RateLimitError",
        ): 1,
        series(REQUESTS, component="tts", provider="scripted-tts", outcome="failed"): 1,
    }

    # one structured log record per attempt, the final one at ERROR, tied to its span
    logs = telemetry.logs()
    assert [(r.levelno, r.attempt, r.final, r.masked) for r in logs] == [
        (logging.WARNING, 0, False, False),
        (logging.WARNING, 1, False, False),
        (logging.ERROR, 2, True, True),
    ]
    assert [r.span_id for r in logs] == [
        format(s.context.span_id, "016x") for s in telemetry.attempt_spans()
    ]
    assert emitter_errors == []


@pytest.mark.asyncio
async def test_tts_chunked_success_after_one_failure_counts_ok(telemetry) -> None:
    model = ScriptedTTS([ssl_connection_error, "audio"])

    await asyncio.wait_for(drain(model.synthesize("hi", conn_options=CONN)), TIMEOUT)

    assert model.calls == 2
    assert attrs(telemetry) == [ssl_attempt("tts", "scripted-tts", 0)]
    # the success is counted from livekit's metrics_collected; no final failure, no "failed"
    assert telemetry.series() == {
        **ssl_series("tts", "scripted-tts", final=False, value=1),
        series(REQUESTS, component="tts", provider="scripted-tts", outcome="ok"): 1,
    }


# --- 2. TTS SynthesizeStream ---------------------------------------------------------------------


async def synthesize_streamed(model: ScriptedTTS, conn_options: APIConnectOptions) -> None:
    stream = model.stream(conn_options=conn_options)
    stream.push_text("hello there")
    stream.end_input()
    await drain(stream)


@pytest.mark.asyncio
async def test_tts_synthesize_stream_records_every_attempt(telemetry) -> None:
    model = ScriptedTTS(
        [ssl_connection_error, tts_quota_message_error(), gateway_status_error(429, CREDITS_BODY)],
        streaming=True,
    )

    with pytest.raises(APIStatusError):
        await asyncio.wait_for(synthesize_streamed(model, CONN), TIMEOUT)

    got = attrs(telemetry)
    assert [a[n.A_ATTEMPT] for a in got] == [0, 1, 2]
    assert [a[n.A_FINAL] for a in got] == [False, False, True]
    assert [a[n.A_ROOT_CAUSE_TYPE] for a in got] == [
        SSL_ROOT,
        "livekit.agents.APIError",
        "openai.RateLimitError",
    ]
    assert [a.get(n.A_QUOTA_CATEGORY) for a in got] == [
        None,
        "MaxConcurrentGatewayTTS",
        "MaxGatewayCredits",
    ]
    assert [a[n.A_TERMINAL] for a in got] == [False, False, True]
    assert [a[n.A_MASKED] for a in got] == [False, False, True]
    assert {a[n.A_COMPONENT] for a in got} == {"tts"}
    (request_span,) = telemetry.spans("tts_request")
    assert dict(request_span.attributes or {})["lk.tts.streaming"] is True
    assert telemetry.value(REQUESTS, component="tts", provider="scripted-tts", outcome="failed")
    assert (
        telemetry.value(
            MASKED_FAILURES,
            component="tts",
            first_root_cause=SSL_ROOT,
            root_cause="openai.RateLimitError",
        )
        == 1
    )


@pytest.mark.asyncio
async def test_tts_synthesize_stream_success_after_one_failure(telemetry) -> None:
    model = ScriptedTTS([ssl_connection_error, "audio"], streaming=True)

    await asyncio.wait_for(synthesize_streamed(model, CONN), TIMEOUT)

    assert attrs(telemetry) == [ssl_attempt("tts", "scripted-tts", 0)]
    assert telemetry.series() == {
        **ssl_series("tts", "scripted-tts", final=False, value=1),
        series(REQUESTS, component="tts", provider="scripted-tts", outcome="ok"): 1,
    }


# --- 3. STT: recognize() in the caller's task, RecognizeStream in its own task --------------------


@pytest.mark.asyncio
async def test_stt_recognize_fails_twice_then_succeeds_and_next_call_restarts(telemetry) -> None:
    model = ScriptedSTT(
        [ssl_connection_error, ssl_connection_error, "hello", ws_handshake_429, "again"]
    )

    first = await asyncio.wait_for(model.recognize(audio_frame(), conn_options=CONN), TIMEOUT)
    # a second recognize() in the same task: livekit counts from 0 again, and so must we
    # (metrics_collected of the first call's success ends its request)
    second = await asyncio.wait_for(model.recognize(audio_frame(), conn_options=CONN), TIMEOUT)

    assert (first.alternatives[0].text, second.alternatives[0].text) == ("hello", "again")
    assert model.calls == 5
    assert attrs(telemetry) == [
        ssl_attempt("stt", "scripted-stt", 0),
        ssl_attempt("stt", "scripted-stt", 1),
        {
            n.A_COMPONENT: "stt",
            n.A_PROVIDER: "scripted-stt",
            n.A_OPERATION: "speech_to_text",
            n.A_GEN_AI_PROVIDER: "scripted-stt",
            n.A_ATTEMPT: 0,
            n.A_FINAL: False,
            n.A_ERROR_TYPE: "livekit.agents.APIStatusError",
            n.A_ERROR_CLASS: "rate_limited",
            n.A_ROOT_CAUSE_TYPE: "aiohttp.client_exceptions.WSServerHandshakeError",
            n.A_ROOT_CAUSE_MESSAGE: "429, message='Invalid response status', "
            "url='wss://agent-gateway.livekit.cloud/v1/stt'",
            n.A_FIRST_ROOT_CAUSE_TYPE: "aiohttp.client_exceptions.WSServerHandshakeError",
            n.A_MASKED: False,
            n.A_TERMINAL: False,
            n.A_STATUS_CODE: 429,
        },
    ]
    assert telemetry.series() == {
        **ssl_series("stt", "scripted-stt", final=False, value=2),
        series(
            ATTEMPT_FAILURES,
            component="stt",
            provider="scripted-stt",
            error_class="rate_limited",
            root_cause="aiohttp.client_exceptions.WSServerHandshakeError",
            final="false",
        ): 1,
        series(REQUESTS, component="stt", provider="scripted-stt", outcome="ok"): 2,
    }


@pytest.mark.asyncio
async def test_stt_recognize_all_attempts_fail(telemetry) -> None:
    model = ScriptedSTT([ssl_connection_error, ssl_connection_error, ws_handshake_429])

    with pytest.raises(APIConnectionError, match="failed to recognize speech after 3 attempts"):
        await asyncio.wait_for(model.recognize(audio_frame(), conn_options=CONN), TIMEOUT)
    # the same task again, after a final failure: a new request, attempt 0
    with pytest.raises(APIStatusError):
        await asyncio.wait_for(
            model.recognize(audio_frame(), conn_options=APIConnectOptions(max_retry=0)), TIMEOUT
        )

    got = attrs(telemetry)
    assert [(a[n.A_ATTEMPT], a[n.A_FINAL]) for a in got] == [
        (0, False),
        (1, False),
        (2, True),
        (0, True),
    ]
    handshake = "aiohttp.client_exceptions.WSServerHandshakeError"
    assert [a[n.A_ROOT_CAUSE_TYPE] for a in got] == [SSL_ROOT, SSL_ROOT, handshake, handshake]
    assert [a[n.A_FIRST_ROOT_CAUSE_TYPE] for a in got] == [SSL_ROOT, SSL_ROOT, SSL_ROOT, handshake]
    # the retry loop's "after 3 attempts" wrapper hid a TLS failure behind a 429
    assert [a[n.A_MASKED] for a in got] == [False, False, True, False]
    assert telemetry.series() == {
        **ssl_series("stt", "scripted-stt", final=False, value=2),
        series(
            ATTEMPT_FAILURES,
            component="stt",
            provider="scripted-stt",
            error_class="rate_limited",
            root_cause=handshake,
            final="true",
        ): 2,
        series(
            MASKED_FAILURES, component="stt", first_root_cause=SSL_ROOT, root_cause=handshake
        ): 1,
        series(REQUESTS, component="stt", provider="scripted-stt", outcome="failed"): 2,
    }


@pytest.mark.asyncio
async def test_stt_stream_records_every_attempt(telemetry) -> None:
    model = ScriptedSTT(
        [ssl_connection_error, ssl_connection_error, ws_handshake_429], streaming=True
    )

    async def consume() -> None:
        stream = model.stream(conn_options=CONN)
        stream.push_frame(audio_frame())
        await drain(stream)

    # livekit's message counts retries, not attempts: three attempts were made
    with pytest.raises(APIConnectionError, match="after 2 attempts"):
        await asyncio.wait_for(consume(), TIMEOUT)

    got = attrs(telemetry)
    assert [(a[n.A_ATTEMPT], a[n.A_FINAL], a[n.A_MASKED]) for a in got] == [
        (0, False, False),
        (1, False, False),
        (2, True, True),
    ]
    assert got[:2] == [ssl_attempt("stt", "scripted-stt", 0), ssl_attempt("stt", "scripted-stt", 1)]
    assert (
        telemetry.value(REQUESTS, component="stt", provider="scripted-stt", outcome="failed") == 1
    )
    assert telemetry.value(REQUESTS, component="stt", provider="scripted-stt", outcome="ok") == 0


@pytest.mark.asyncio
async def test_stt_concurrent_streams_are_counted_separately(telemetry) -> None:
    """Two streams of one STT instance retry in two tasks: two requests of 0, 1, 2 each."""
    model = ScriptedSTT([ssl_connection_error], streaming=True)

    async def consume() -> None:
        stream = model.stream(conn_options=CONN)
        await drain(stream)

    results = await asyncio.wait_for(
        asyncio.gather(consume(), consume(), return_exceptions=True), TIMEOUT
    )

    assert [type(r) for r in results] == [APIConnectionError, APIConnectionError]
    got = attrs(telemetry)
    assert sorted((a[n.A_ATTEMPT], a[n.A_FINAL]) for a in got) == [
        (0, False),
        (0, False),
        (1, False),
        (1, False),
        (2, True),
        (2, True),
    ]
    assert telemetry.series() == {
        **ssl_series("stt", "scripted-stt", final=False, value=4),
        **ssl_series("stt", "scripted-stt", final=True, value=2),
        series(REQUESTS, component="stt", provider="scripted-stt", outcome="failed"): 2,
    }


@pytest.mark.asyncio
async def test_stt_recognize_success_does_not_reset_a_concurrent_stream(telemetry) -> None:
    """A stream fails attempt 0 and is held before its retry; meanwhile a recognize() on the
    same instance succeeds in another task. The stream's next failure is still its attempt 1."""
    release = asyncio.Event()

    class GatedStream(ScriptedRecognizeStream):
        attempts = 0

        async def _run(self) -> None:
            self.attempts += 1
            if self.attempts > 1:
                await release.wait()
            await super()._run()

    class GatedSTT(ScriptedSTT):
        def stream(self, **kwargs: Any) -> GatedStream:
            return GatedStream(stt=self, conn_options=kwargs["conn_options"])

    # calls: stream attempt 0 (fails), recognize (ok), stream attempts 1 and 2 (fail)
    model = GatedSTT([ssl_connection_error, "ok", ws_handshake_429], streaming=True)
    consumer = asyncio.create_task(drain(model.stream(conn_options=CONN)))
    await eventually(lambda: len(telemetry.attempt_spans()) == 1)
    await asyncio.wait_for(model.recognize(audio_frame(), conn_options=CONN), TIMEOUT)
    release.set()
    with pytest.raises(APIConnectionError):
        await asyncio.wait_for(consumer, TIMEOUT)

    got = attrs(telemetry)
    assert [(a[n.A_ATTEMPT], a[n.A_FINAL]) for a in got] == [(0, False), (1, False), (2, True)]
    assert got[-1][n.A_FIRST_ROOT_CAUSE_TYPE] == SSL_ROOT
    assert got[-1][n.A_MASKED] is True


# --- 4. realtime sessions ------------------------------------------------------------------------


def realtime_quota_attempt(provider: str, attempt: int, *, final: bool) -> dict[str, Any]:
    return {
        n.A_COMPONENT: "realtime",
        n.A_PROVIDER: provider,
        n.A_OPERATION: "generate_content",
        n.A_GEN_AI_PROVIDER: provider,
        n.A_ATTEMPT: attempt,
        n.A_FINAL: final,
        n.A_ERROR_TYPE: "livekit.agents.APIError",
        n.A_ERROR_CLASS: "rate_limited",
        n.A_ROOT_CAUSE_TYPE: "livekit.agents.APIError",
        n.A_ROOT_CAUSE_MESSAGE: "LiveKit Inference returned an error",
        n.A_FIRST_ROOT_CAUSE_TYPE: "livekit.agents.APIError",
        n.A_MASKED: False,
        n.A_TERMINAL: False,
        n.A_QUOTA_TYPE: "llm",
        n.A_QUOTA_CATEGORY: "MaxConcurrentGatewayLLMRpm",
    }


@pytest.mark.asyncio
async def test_realtime_errors_counted_per_task_and_reset_on_reconnect(telemetry) -> None:
    model = ScriptedRealtimeModel()
    session = model.session()

    async def reconnect_loop() -> None:
        # what livekit's openai realtime session does: recoverable errors while it reconnects,
        # session_reconnected after a successful connect, recoverable=False when it gives up
        for _ in range(3):
            session.emit_error(realtime_quota_error(), recoverable=True)
        session.emit("session_reconnected", llm.RealtimeSessionReconnectedEvent())
        session.emit_error(realtime_quota_error(), recoverable=True)
        session.emit_error(realtime_quota_error(retryable=False), recoverable=False)
        session.emit_error(realtime_quota_error(), recoverable=True)  # a new request

    await asyncio.wait_for(asyncio.create_task(reconnect_loop()), TIMEOUT)

    assert attrs(telemetry) == [
        realtime_quota_attempt("scripted-realtime", 0, final=False),
        realtime_quota_attempt("scripted-realtime", 1, final=False),
        realtime_quota_attempt("scripted-realtime", 2, final=False),
        realtime_quota_attempt("scripted-realtime", 0, final=False),
        realtime_quota_attempt("scripted-realtime", 1, final=True),
        realtime_quota_attempt("scripted-realtime", 0, final=False),
    ]
    assert telemetry.series() == {
        series(
            ATTEMPT_FAILURES,
            component="realtime",
            provider="scripted-realtime",
            error_class="rate_limited",
            root_cause="livekit.agents.APIError",
            final="false",
        ): 5,
        series(
            ATTEMPT_FAILURES,
            component="realtime",
            provider="scripted-realtime",
            error_class="rate_limited",
            root_cause="livekit.agents.APIError",
            final="true",
        ): 1,
        series(
            QUOTA_ERRORS,
            component="realtime",
            quota_type="llm",
            quota_category="MaxConcurrentGatewayLLMRpm",
            terminal="false",
        ): 6,
        series(REQUESTS, component="realtime", provider="scripted-realtime", outcome="failed"): 1,
    }


@pytest.mark.asyncio
async def test_realtime_fallback_adapter_reemission_recorded_once(telemetry) -> None:
    """``_FallbackRealtimeSession`` re-emits its child's errors: the same event object when
    recoverable, a ``model_copy(recoverable=True)`` when a fallback remains. Both carry the
    child's exception; the failure is recorded once, on the child, with the child's provider."""
    primary = ScriptedRealtimeModel(provider="rt-primary")
    backup = ScriptedRealtimeModel(provider="rt-backup")
    adapter = llm.RealtimeModelFallbackAdapter([primary, backup], cooldown=60)
    wrapper = adapter.session()
    forwarded: list[llm.RealtimeModelError] = []
    wrapper.on("error", forwarded.append)
    reconnected = asyncio.Event()
    wrapper.on("session_reconnected", lambda _: reconnected.set())
    (child,) = primary.sessions

    try:
        recoverable = realtime_quota_error()
        child.emit_error(recoverable, recoverable=True)
        fatal = realtime_quota_error(retryable=False)
        child.emit_error(fatal, recoverable=False)

        # the adapter did re-emit both, the second rewritten to recoverable=True
        assert [(ev.error, ev.recoverable) for ev in forwarded] == [
            (recoverable, True),
            (fatal, True),
        ]
        # it swaps to the backup model and reports a reconnect
        await asyncio.wait_for(reconnected.wait(), TIMEOUT)
        (new_child,) = backup.sessions
        new_child.emit_error(realtime_quota_error(), recoverable=True)
    finally:
        await wrapper.aclose()

    assert attrs(telemetry) == [
        realtime_quota_attempt("rt-primary", 0, final=False),
        realtime_quota_attempt("rt-primary", 1, final=True),
        realtime_quota_attempt("rt-backup", 0, final=False),
    ]
    assert (
        telemetry.value(REQUESTS, component="realtime", provider="rt-primary", outcome="failed")
        == 1
    )
    # the wrapper session's own hook saw both re-emissions and recorded neither
    assert not [key for key in telemetry.series() if ("provider", "fallback_adapter") in key[1]]


# --- 5. adaptive interruption detector -----------------------------------------------------------

INTERRUPTION_429 = {
    n.A_COMPONENT: "interruption",
    n.A_PROVIDER: "livekit",
    n.A_OPERATION: "interruption_detection",
    n.A_GEN_AI_PROVIDER: "livekit",
    n.A_MODEL: "adaptive interruption",  # AdaptiveInterruptionDetector.model
    n.A_ATTEMPT: 0,
    n.A_FINAL: True,
    n.A_ERROR_TYPE: "livekit.agents.APIStatusError",
    n.A_ERROR_CLASS: "rate_limited",
    n.A_ROOT_CAUSE_TYPE: "aiohttp.client_exceptions.WSServerHandshakeError",
    n.A_FIRST_ROOT_CAUSE_TYPE: "aiohttp.client_exceptions.WSServerHandshakeError",
    n.A_MASKED: False,
    n.A_TERMINAL: False,
    n.A_STATUS_CODE: 429,
}
INTERRUPTION_429_SERIES = {
    series(
        ATTEMPT_FAILURES,
        component="interruption",
        provider="livekit",
        error_class="rate_limited",
        root_cause="aiohttp.client_exceptions.WSServerHandshakeError",
        final="true",
    ): 1,
    series(REQUESTS, component="interruption", provider="livekit", outcome="failed"): 1,
}


def detector(**kwargs: Any) -> AdaptiveInterruptionDetector:
    # construction does no I/O: the websocket is opened by stream()
    return AdaptiveInterruptionDetector(api_key="k", api_secret="s" * 32, **kwargs)


@pytest.mark.asyncio
async def test_interruption_detector_quota_429_emitted(telemetry) -> None:
    model = detector(base_url="http://127.0.0.1:9")
    try:
        ws_handshake_429()
    except APIStatusError as e:
        handshake = e.__cause__
    assert isinstance(handshake, aiohttp.WSServerHandshakeError)
    # what inference/interruption.py:1049-1054 raises, and its _emit_error emits
    try:
        raise APIStatusError(
            "LiveKit Adaptive Interruption quota exceeded", status_code=429, retryable=False
        ) from handshake
    except APIStatusError as e:
        error = e
    model.emit(
        "error", InterruptionDetectionError(label=model.label, error=error, recoverable=False)
    )

    (got,) = attrs(telemetry)
    assert got == {
        **INTERRUPTION_429,
        n.A_ROOT_CAUSE_MESSAGE: "429, message='Invalid response status', "
        "url='wss://agent-gateway.livekit.cloud/v1/stt'",
        n.A_SERVER_ADDRESS: "127.0.0.1",
        n.A_SERVER_PORT: 9,
    }
    assert telemetry.series() == INTERRUPTION_429_SERIES


@pytest.mark.asyncio
async def test_interruption_detector_real_handshake_429(telemetry) -> None:
    """The real stream against a local server that answers the /bargein handshake with 429."""

    async def bargein(request: web.Request) -> web.Response:
        return web.json_response(
            {"type": "inference_quota_exceeded", "category": "MaxBargeInRPM"}, status=429
        )

    app = web.Application()
    app.router.add_get("/bargein", bargein)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with aiohttp.ClientSession() as http:
            model = detector(base_url=f"http://127.0.0.1:{port}", http_session=http)
            stream = model.stream()
            try:
                with pytest.raises(APIStatusError, match="quota exceeded"):
                    await asyncio.wait_for(anext(stream), TIMEOUT)
            finally:
                await stream.aclose()
    finally:
        await runner.cleanup()

    (got,) = attrs(telemetry)
    # aiohttp never reads a rejected handshake's body: no quota category to report
    assert got == {
        **INTERRUPTION_429,
        n.A_ROOT_CAUSE_MESSAGE: "429, message='Invalid response status', "
        f"url='ws://127.0.0.1:{port}/bargein'",
        n.A_SERVER_ADDRESS: "127.0.0.1",
        n.A_SERVER_PORT: port,
    }
    assert telemetry.series() == INTERRUPTION_429_SERIES


# --- 6. FallbackAdapter children -----------------------------------------------------------------


@pytest.mark.asyncio
async def test_llm_fallback_adapter_child_failures_in_a_session(telemetry) -> None:
    primary = ScriptedLLM([ssl_connection_error], provider="primary")
    backup = ScriptedLLM(["hi, how can I help?"], provider="backup")
    adapter = llm.FallbackAdapter([primary, backup])
    session: AgentSession = AgentSession(llm=adapter, vad=None, aec_warmup_duration=None)
    session_errors: list[Any] = []
    session.on("error", session_errors.append)
    await session.start(agent=Agent(instructions="t"))
    try:
        result = await asyncio.wait_for(session.run(user_input="hello"), TIMEOUT)
        # the adapter probes the failed child in the background: let that fail too
        await eventually(lambda: primary.calls == 2)
        await eventually(lambda: len(telemetry.attempt_spans()) == 2)
    finally:
        await session.aclose()

    replies = [
        ev.item.text_content
        for ev in result.events
        if ev.type == "message" and ev.item.role == "assistant"
    ]
    assert replies == ["hi, how can I help?"]
    assert session_errors == []  # livekit never tells the session about a child's failure
    # the request and the recovery probe: two requests of one attempt each (max_retry_per_llm=0)
    assert attrs(telemetry) == [
        ssl_attempt("llm", "primary", 0, final=True),
        ssl_attempt("llm", "primary", 0, final=True),
    ]
    assert telemetry.series() == {
        **ssl_series("llm", "primary", final=True, value=2),
        series(REQUESTS, component="llm", provider="primary", outcome="failed"): 2,
        series(REQUESTS, component="llm", provider="backup", outcome="ok"): 1,
        # one switch: the probe fails a provider already marked down
        series(
            n.FALLBACK_SWITCHES, component="llm", from_provider="primary", to_provider="backup"
        ): 1,
        **session_series(),  # one answered turn
    }


@pytest.mark.asyncio
async def test_tts_fallback_adapter_child_failures(telemetry) -> None:
    primary = ScriptedTTS([ssl_connection_error], provider="tts-primary")
    backup = ScriptedTTS(["audio"], provider="tts-backup")
    adapter = tts.FallbackAdapter([primary, backup], max_retry_per_tts=1)
    adapter_errors: list[Any] = []
    adapter.on("error", adapter_errors.append)
    try:
        await asyncio.wait_for(drain(adapter.synthesize("hi", conn_options=CONN)), TIMEOUT)
        # the background recovery probe of the primary fails the same way
        await eventually(lambda: len(telemetry.attempt_spans()) == 4)
    finally:
        await adapter.aclose()

    assert adapter_errors == []
    assert primary.calls == 4
    assert backup.calls == 1
    # each child request retried once (max_retry_per_tts=1): attempts 0, then 1 final
    assert attrs(telemetry) == [
        ssl_attempt("tts", "tts-primary", 0),
        ssl_attempt("tts", "tts-primary", 1, final=True),
        ssl_attempt("tts", "tts-primary", 0),
        ssl_attempt("tts", "tts-primary", 1, final=True),
    ]
    assert telemetry.series() == {
        **ssl_series("tts", "tts-primary", final=False, value=2),
        **ssl_series("tts", "tts-primary", final=True, value=2),
        series(REQUESTS, component="tts", provider="tts-primary", outcome="failed"): 2,
        series(REQUESTS, component="tts", provider="tts-backup", outcome="ok"): 1,
        series(
            n.FALLBACK_SWITCHES,
            component="tts",
            from_provider="tts-primary",
            to_provider="tts-backup",
        ): 1,
    }


# --- 7. hooks never raise ------------------------------------------------------------------------


class Unprintable(APIError):
    """An error whose ``str()`` and ``repr()`` both raise (aiohttp's handshake error can)."""

    def __str__(self) -> str:
        raise RuntimeError("str() of this error raises")

    def __repr__(self) -> str:
        raise RuntimeError("repr() of this error raises")


UNPRINTABLE = f"{__name__}.Unprintable"


def unprintable() -> None:
    raise Unprintable("unprintable", retryable=False)


def unprintable_retryable() -> None:
    raise Unprintable("unprintable", retryable=True)


def cyclic_chain() -> None:
    outer = APIConnectionError("cycle", retryable=True)
    inner = ConnectionResetError("peer reset")
    outer.__cause__ = inner
    inner.__cause__ = outer
    raise outer


DEEP = 2000


def deep_chain() -> None:
    import ssl

    exc: BaseException = ssl.SSLError("deepest")
    for i in range(DEEP - 2):
        link = ConnectionError(f"link {i}")
        link.__cause__ = exc
        exc = link
    outer = APIConnectionError("deep", retryable=True)
    outer.__cause__ = exc
    raise outer


TEN_MB = 10 * 1024 * 1024
huge_body = gateway_status_error(500, {"error": "x" * TEN_MB})


async def chat_once(model: ScriptedLLM, max_retry: int) -> tuple[type[BaseException] | None, str]:
    """One LLM request through livekit's retry loop: the exception type the caller gets (or
    None) and the text it got."""
    text = ""
    try:
        async with model.chat(
            chat_ctx=llm.ChatContext.empty(),
            conn_options=APIConnectOptions(max_retry=max_retry, retry_interval=0.01),
        ) as stream:
            async for chunk in stream:
                if chunk.delta and chunk.delta.content:
                    text += chunk.delta.content
    except Exception as e:
        return type(e), text
    return None, text


async def without_otel_agents(telemetry: Any, scenario: Callable[[], Any]) -> Any:
    """Run ``scenario`` with otel-agents shut down (models built inside are not instrumented),
    livekit keeping the same recording tracer: only the hooks differ from the instrumented run."""
    from livekit.agents.telemetry import set_tracer_provider

    otel_agents.shutdown()
    set_tracer_provider(telemetry.provider)  # shutdown() gave livekit back the global provider
    try:
        return await asyncio.wait_for(scenario(), TIMEOUT)
    finally:
        otel_agents.init(tracer_provider=telemetry.provider)


@pytest.mark.parametrize(
    ("step", "max_retry", "raised", "emitted", "root_cause", "error_class"),
    [
        # with a recording tracer, livekit's attempt span formats the error as it exits
        # (OTel's record_exception/set_status call str()): the RuntimeError from __str__ replaces
        # it and is what livekit emits (context: the Unprintable) and raises, hooks on or off
        (unprintable, 2, RuntimeError, 1, UNPRINTABLE, "server_error"),
        (unprintable_retryable, 2, RuntimeError, 1, UNPRINTABLE, "server_error"),
        # a cycle ends the walk at the last exception not yet seen
        (cyclic_chain, 2, APIConnectionError, 3, "ConnectionResetError", "connection"),
        # the walk is bounded (MAX_CHAIN links): the recorded root is a link, not the SSLError
        (deep_chain, 2, APIConnectionError, 3, "ConnectionError", "connection"),
        # the SDK narrows the body to the 10 MB string; the message stays "Error code: 500"
        (huge_body, 1, APIConnectionError, 2, "openai.InternalServerError", "server_error"),
    ],
    ids=["unprintable", "unprintable-retryable", "cyclic", "deep-2000", "body-10MB"],
)
@pytest.mark.asyncio
async def test_hostile_errors_through_the_llm_retry_loop(
    telemetry,
    emitter_errors,
    monkeypatch,
    step,
    max_retry,
    raised,
    emitted,
    root_cause,
    error_class,
) -> None:
    async def run() -> tuple[Any, int]:
        model = ScriptedLLM([step])
        return await chat_once(model, max_retry), model.calls

    baseline = await without_otel_agents(telemetry, run)
    assert telemetry.attempt_spans() == []

    # what the hook itself holds: livekit's own logging renders a 10 MB error whole, the hook
    # never does (a copy of the body alone would be 10 MB); counted, not timed
    held: list[int] = []
    on_error = _hooks._on_error

    def measured_on_error(*args: Any) -> None:
        tracemalloc.start()
        try:
            on_error(*args)
        finally:
            held.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()

    monkeypatch.setattr(_hooks, "_on_error", measured_on_error)
    got = await asyncio.wait_for(run(), TIMEOUT)

    # the caller sees exactly what it sees without otel-agents
    assert got == baseline
    assert got[0][0] is raised
    # one record per emitted failure, and nothing escaped a hook or was contained inside one
    records = attrs(telemetry)
    assert [a[n.A_ATTEMPT] for a in records] == list(range(emitted))
    assert {a[n.A_ROOT_CAUSE_TYPE] for a in records} == {root_cause}
    assert {a[n.A_ERROR_CLASS] for a in records} == {error_class}
    assert all(len(a[n.A_ROOT_CAUSE_MESSAGE]) <= 256 for a in records)
    assert len(telemetry.logs()) == emitted
    assert emitter_errors == []
    assert not [key for key in telemetry.series() if key[0] == INTERNAL_ERRORS]
    assert len(held) == emitted
    assert max(held) < HOOK_PEAK_BYTES, held


@pytest.mark.asyncio
async def test_unprintable_error_record_and_livekits_tracer(telemetry) -> None:
    """What reaches the caller depends on livekit's tracer, not on the hooks: a recording one
    (``init(tracer_provider=...)`` or an OTLP endpoint hands livekit ours) formats the error on
    the attempt span and turns it into the RuntimeError its ``__str__`` raises."""
    from livekit.agents.telemetry.traces import tracer as livekit_tracer
    from opentelemetry.trace import NoOpTracerProvider

    livekit_tracer.set_provider(NoOpTracerProvider())
    try:
        quiet = await asyncio.wait_for(chat_once(ScriptedLLM([unprintable]), 2), TIMEOUT)
    finally:
        livekit_tracer.set_provider(telemetry.provider)
    traced = await asyncio.wait_for(chat_once(ScriptedLLM([unprintable]), 2), TIMEOUT)

    assert (quiet, traced) == ((Unprintable, ""), (RuntimeError, ""))
    record = {
        n.A_COMPONENT: "llm",
        n.A_PROVIDER: "scripted",
        n.A_OPERATION: "chat",
        n.A_GEN_AI_PROVIDER: "scripted",
        n.A_ATTEMPT: 0,
        n.A_FINAL: True,
        n.A_ERROR_TYPE: UNPRINTABLE,
        n.A_ERROR_CLASS: "server_error",
        n.A_ROOT_CAUSE_TYPE: UNPRINTABLE,
        n.A_ROOT_CAUSE_MESSAGE: f"<unprintable {UNPRINTABLE}>",
        n.A_FIRST_ROOT_CAUSE_TYPE: UNPRINTABLE,
        n.A_MASKED: False,
        n.A_TERMINAL: False,
    }
    assert attrs(telemetry) == [record, {**record, n.A_ERROR_TYPE: "RuntimeError"}]


async def run_session(model: llm.LLM) -> tuple[list[str], list[Any]]:
    """One text turn of a real AgentSession: the agent's replies and the session's errors."""
    session: AgentSession = AgentSession(
        llm=model,
        vad=None,
        aec_warmup_duration=None,
        conn_options=SessionConnectOptions(llm_conn_options=CONN),
    )
    errors: list[Any] = []
    session.on("error", errors.append)
    await session.start(agent=Agent(instructions="t"))
    try:
        result = await asyncio.wait_for(session.run(user_input="hello"), TIMEOUT)
    finally:
        await session.aclose()
    replies = [
        ev.item.text_content
        for ev in result.events
        if ev.type == "message" and ev.item.role == "assistant"
    ]
    return replies, errors


def break_tracer_start_span(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _runtime.current is not None
    recorder = _runtime.current.recorder
    assert recorder.tracer is not None

    def start_span(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("tracer down")

    monkeypatch.setattr(recorder.tracer, "start_span", start_span)


def break_recorder_span(monkeypatch: pytest.MonkeyPatch) -> None:
    def _span(*args: Any, **kwargs: Any) -> Any:
        raise TypeError("span export down")  # TypeError: livekit's emitter would re-raise it

    monkeypatch.setattr(_record.Recorder, "_span", _span)


@pytest.mark.parametrize("breaker", [break_tracer_start_span, break_recorder_span])
@pytest.mark.asyncio
async def test_failing_span_export_keeps_metrics_and_logs(
    telemetry, emitter_errors, monkeypatch, breaker
) -> None:
    breaker(monkeypatch)
    model = ScriptedLLM([ssl_connection_error, "still here"])

    replies, errors = await run_session(model)

    assert replies == ["still here"]  # the agent carried on
    assert [(type(ev.error.error), ev.error.recoverable) for ev in errors] == [
        (APIConnectionError, True)
    ]
    assert telemetry.attempt_spans() == []
    assert telemetry.series() == {
        **ssl_series("llm", "scripted", final=False, value=1),
        series(REQUESTS, component="llm", provider="scripted", outcome="ok"): 1,
        # a broken tracer also fails the otel_agents.session span; a broken _span only ours
        series(INTERNAL_ERRORS, where="export_span"): (
            2 if breaker is break_tracer_start_span else 1
        ),
        **session_series(),
    }
    # the log record still comes, tied to the span current at emit time (llm_request)
    (log,) = telemetry.logs()
    assert (log.attempt, log.root_cause_type) == (0, SSL_ROOT)
    (request_span,) = [s for s in telemetry.spans("llm_request") if s.status.is_ok]
    assert log.trace_id == format(request_span.context.trace_id, "032x")
    assert log.span_id == format(request_span.context.span_id, "016x")
    assert emitter_errors == []


@pytest.mark.asyncio
async def test_log_handler_that_raises_is_contained(telemetry, emitter_errors) -> None:
    class Raising(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            raise TypeError("log pipeline down")

    handler = Raising()
    logging.getLogger(n.LOGGER_NAME).addHandler(handler)
    try:
        replies, _ = await run_session(ScriptedLLM([ssl_connection_error, "still here"]))
    finally:
        logging.getLogger(n.LOGGER_NAME).removeHandler(handler)

    assert replies == ["still here"]
    assert attrs(telemetry) == [ssl_attempt("llm", "scripted", 0)]
    assert telemetry.series() == {
        **ssl_series("llm", "scripted", final=False, value=1),
        series(REQUESTS, component="llm", provider="scripted", outcome="ok"): 1,
        # the attempt_failed record and the session_closed record
        series(INTERNAL_ERRORS, where="export_log"): 2,
        **session_series(),
    }
    assert emitter_errors == []


@pytest.mark.asyncio
async def test_log_handler_failing_inside_emit_is_swallowed_by_logging(telemetry, capsys) -> None:
    """A conventional handler (a StreamHandler whose stream breaks) reports its own failure
    through ``Handler.handleError``: stdlib logging prints it to stderr and returns, so the
    record call succeeds and otel-agents has nothing to count."""

    class BrokenStream:
        def write(self, _: str) -> None:
            raise OSError("disk full")

        def flush(self) -> None:
            pass

    handler = logging.StreamHandler(BrokenStream())  # type: ignore[arg-type]
    logging.getLogger(n.LOGGER_NAME).addHandler(handler)
    try:
        replies, _ = await run_session(ScriptedLLM([ssl_connection_error, "still here"]))
    finally:
        logging.getLogger(n.LOGGER_NAME).removeHandler(handler)

    assert replies == ["still here"]
    assert attrs(telemetry) == [ssl_attempt("llm", "scripted", 0)]
    assert len(telemetry.logs()) == 1
    assert not [key for key in telemetry.series() if key[0] == INTERNAL_ERRORS]
    assert "--- Logging error ---" in capsys.readouterr().err


def raise_type_error(*args: Any, **kwargs: Any) -> Any:
    raise TypeError("a bug inside otel-agents")


@pytest.mark.parametrize(
    ("target", "where", "recorded", "ok_counted"),
    [
        ((_hooks, "classify"), "classify", False, True),
        ((_record.Recorder, "attempt_failed"), "attempt_hook", False, True),
        ((_record.Recorder, "request_ok"), "request_hook", True, False),
        ((_record.Recorder, "_metrics"), "export_metrics", True, True),
    ],
    ids=["classify", "attempt_failed", "request_ok", "metrics"],
)
@pytest.mark.asyncio
async def test_type_error_inside_a_hook_never_reaches_livekit(
    telemetry, emitter_errors, monkeypatch, target, where, recorded, ok_counted
) -> None:
    """livekit's EventEmitter re-raises a handler's TypeError into the retry loop: a bug in any
    part of the hooks must stay inside them, and the request must go on as without them."""
    monkeypatch.setattr(*target, raise_type_error)
    model = ScriptedLLM([ssl_connection_error, "still here"])

    assert await asyncio.wait_for(chat_once(model, 2), TIMEOUT) == (None, "still here")

    assert model.calls == 2
    assert len(telemetry.attempt_spans()) == (1 if recorded else 0)
    internal = {k: v for k, v in telemetry.series().items() if k[0] == INTERNAL_ERRORS}
    assert internal == {series(INTERNAL_ERRORS, where=where): 1}
    ok = telemetry.value(REQUESTS, component="llm", provider="scripted", outcome="ok")
    assert ok == (1 if ok_counted else 0)
    assert emitter_errors == []


@pytest.mark.asyncio
async def test_same_exception_object_on_every_attempt_is_recorded_per_attempt(telemetry) -> None:
    """A plugin that re-raises one stored exception object on every attempt (e.g. a cached
    connection failure): livekit emits three events, one per attempt."""
    events: list[Any] = []
    model = ScriptedLLM([raising(APIConnectionError("connection refused", retryable=True))])
    model.on("error", events.append)

    assert (await asyncio.wait_for(chat_once(model, 2), TIMEOUT))[0] is APIConnectionError

    assert [ev.recoverable for ev in events] == [True, True, False]
    assert [(a[n.A_ATTEMPT], a[n.A_FINAL]) for a in attrs(telemetry)] == [
        (0, False),
        (1, False),
        (2, True),
    ]


@pytest.mark.asyncio
async def test_tts_synthesize_through_a_stream_counts_the_outer_attempts(telemetry) -> None:
    class StreamBackedTTS(ScriptedTTS):
        """Implements synthesize() with livekit's helper, as inference.TTS does."""

        def synthesize(self, text: str, *, conn_options: APIConnectOptions) -> Any:
            return self._synthesize_with_stream(text, conn_options=conn_options)

    model = StreamBackedTTS(
        [ssl_connection_error, tts_quota_message_error(), gateway_status_error(429, CREDITS_BODY)],
        streaming=True,
    )
    events: list[Any] = []
    model.on("error", events.append)

    with pytest.raises(APIStatusError):
        await asyncio.wait_for(drain(model.synthesize("hi", conn_options=CONN)), TIMEOUT)

    # livekit: inner stream (final) then outer loop, for each of the three attempts
    assert [ev.recoverable for ev in events] == [False, True, False, True, False, False]
    got = attrs(telemetry)
    assert [(a[n.A_ATTEMPT], a[n.A_FINAL], a[n.A_MASKED]) for a in got] == [
        (0, False, False),
        (1, False, False),
        (2, True, True),
    ]
    assert (
        telemetry.value(REQUESTS, component="tts", provider="scripted-tts", outcome="failed") == 1
    )
