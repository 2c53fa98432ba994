"""The fake LiveKit Inference gateway, driven by the REAL livekit.agents.inference plugins.

No otel_agents code is involved: these tests pin both the gateway and the exception shapes the
real plugins produce for each fault, so classification tests can be built on them.

Exception shapes observed (livekit-agents 1.8.9, openai 3.54.0 on httpx2, aiohttp 3.14.5).
"emitted" is the error as seen inside an ``.on("error")`` callback, at emit time; "caller" is
the same object after the stream re-raised it from ``__anext__``: livekit re-raises inside
``except StopAsyncIteration``, so by then ``__context__`` has been overwritten with
``StopAsyncIteration()`` (``__cause__`` survives). Classify at emit time.

LLM (``inference.LLM.chat``; one ``LLMError`` per failed attempt, ``recoverable=False`` on
the last one, ``label="livekit.agents.inference.llm.LLM"``):
  * ``http_error(429, QUOTA_CREDITS_BODY)`` -> ``APIStatusError``, ``str()``/``message``
    ``"Error code: 429"``, ``status_code=429``, ``request_id="req_fake_<n>"`` (from
    ``x-request-id``), ``retryable=True`` (429 is always retryable), ``body`` = the inner
    ``error`` STRING only (the openai SDK narrows it): ``"LLM token credit quota exceeded,
    category: MaxGatewayCredits, remaining limit: 0"``. ``__cause__=None``,
    ``__suppress_context__=True``; emitted ``__context__`` = ``openai.RateLimitError`` whose
    ``.response.json()`` is the full body (``type``, ``quota_type``, ``category``, ``hint``,
    ``remaining_limit``); caller ``__context__`` = ``StopAsyncIteration``.
  * ``http_error(401, openai_error_body("Incorrect API key", code="invalid_api_key"))`` ->
    ``APIStatusError``, message ``"Error code: 401 - Incorrect API key"``, ``status_code=401``,
    ``retryable=False``, ``body`` = the inner dict ``{"message", "type", "param", "code"}``;
    emitted ``__context__`` = ``openai.AuthenticationError``.
  * ``disconnect()`` -> ``APIConnectionError("Connection error.")``, ``body=None``,
    ``retryable=True``; ``__cause__`` = ``openai.APIConnectionError`` <- ``__cause__``
    ``httpx2.RemoteProtocolError("Server disconnected without sending a response.")`` <-
    ``httpcore2.RemoteProtocolError``. Emitted ``__context__`` is the same openai error.
  * ``empty()`` -> no exception, no event, no content chunk (a silent turn).

TTS (``inference.TTS``; events are ``TTSError``, ``label="livekit.agents.inference.tts.TTS"``):
  * ``ws_error(quota_body("tts", ...))`` -> plain ``APIError`` (not a status error),
    ``message = "LiveKit Inference TTS returned error: " + <the raw JSON message>``, i.e.
    ``{"type": "error", "message": ..., "session_id": ..., "error": ..., "quota_type": ...,
    "category": ..., "remaining_limit": ...}`` (parse from the first ``{``; its ``type`` is
    ``"error"``, not ``"inference_quota_exceeded"``). ``body=None``, ``retryable=True``, no
    ``__cause__``, emitted ``__context__=None`` (but see the chunked note below).
  * ``handshake_error(429, <any body>)`` -> ``APIStatusError``, message ``"Invalid response
    status (429 Too Many Requests)"``, ``status_code=429``, ``body=None`` (aiohttp never
    reads the body), ``retryable=True``, ``__cause__`` = ``aiohttp.WSServerHandshakeError``
    (``status=429``, ``message="Invalid response status"``, ``.headers`` = the response
    headers, so ``X-LiveKit-Inference-*`` quota headers survive there); emitted
    ``__context__`` = that same ``WSServerHandshakeError``.
  * ``synthesize()`` (chunked) wraps an inner ``stream()`` that always runs with
    ``max_retry=0``: ONE failure emits TWO ``TTSError`` events (inner stream, then the outer
    chunked stream), both ``recoverable=False`` and carrying the SAME exception object; by the
    second event its ``__context__`` is already ``StopAsyncIteration``. ``stream()`` emits one.
    After a failure the pooled websocket is dropped; the next synthesis opens a new one.

STT (``inference.STT.stream``; events are ``STTError``,
``label="livekit.agents.inference.stt.STT"``):
  * ``ws_error(quota_body("stt", ...))`` -> ``APIError("LiveKit Inference STT returned an
    error")``, ``body={"code": <payload "code" or -1>}``: every quota field is dropped (they
    only reach the plugin's log record). ``retryable = not input_ended``: True while audio is
    still being pushed, False once ``end_input()`` ran. No ``__cause__``, emitted
    ``__context__=None``.
  * ``handshake_error(429, <any body>)`` -> same shape as TTS: ``APIStatusError("Invalid
    response status (429 Too Many Requests)")``, ``status_code=429``, ``body=None``,
    ``retryable=True``, ``__cause__`` = emitted ``__context__`` =
    ``aiohttp.WSServerHandshakeError``.

Retries: with ``max_retry=0`` (or a non-retryable error) the caller gets the error itself.
When retries run out, LLM raises ``APIConnectionError("failed to generate LLM completion after
<max_retry + 1> attempts")`` and STT ``APIConnectionError("failed to recognize speech after
<max_retry> attempts")``, each with ``__cause__`` = the last error; TTS re-raises the last
error unwrapped. Every attempt emits one event with the real error (``recoverable=True``
except the last).

Websocket ``disconnect()`` (STT/TTS): aiohttp retries the upgrade ``GET`` once by itself, so
one dropped connection is invisible (two upgrade requests, success); two in a row surface:
  * TTS -> ``APIConnectionError("Connection error.")``, ``retryable=True``, ``__cause__`` =
    ``aiohttp.ServerDisconnectedError("Server disconnected")``.
  * STT -> the RAW ``aiohttp.ServerDisconnectedError`` escapes the plugin (not an
    ``APIError``): the ``STTError`` event carries it, ``recoverable=False``, and the stream is
    NOT retried whatever ``max_retry`` says.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx2
import openai
import pytest
import pytest_asyncio
from livekit import rtc
from livekit.agents import (
    APIConnectionError,
    APIConnectOptions,
    APIError,
    APIStatusError,
    inference,
    llm,
    stt,
    tts,
)

from otel_agents.demo.gateway import (
    DEFAULT_RPM_LIMIT,
    DEFAULT_TEXT,
    DEFAULT_TPM_LIMIT,
    QUOTA_CREDITS_BODY,
    FakeGateway,
    disconnect,
    empty,
    handshake_error,
    http_error,
    ok,
    openai_error_body,
    quota_body,
    ws_error,
)

TIMEOUT = 20.0
CREDS: dict[str, Any] = {"api_key": "devkey", "api_secret": "devsecret-devsecret-devsecret-0123"}
NO_RETRY = APIConnectOptions(max_retry=0, retry_interval=0.01, timeout=5.0)
LLM_MODEL = "openai/gpt-4.1-mini"
TTS_MODEL = "cartesia/sonic-3"
STT_MODEL = "deepgram/nova-3"  # no client-side VAD: finalize only at end of input


async def bounded(scenario: Callable[[], Awaitable[None]]) -> None:
    await asyncio.wait_for(scenario(), TIMEOUT)


@pytest_asyncio.fixture
async def gateway() -> AsyncIterator[FakeGateway]:
    gw = FakeGateway()
    await asyncio.wait_for(gw.start(), TIMEOUT)
    try:
        yield gw
    finally:
        await asyncio.wait_for(gw.aclose(), TIMEOUT)


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@dataclass
class Emitted:
    """An error event, with the exception chain as it was at emit time."""

    event: llm.LLMError | stt.STTError | tts.TTSError
    context: BaseException | None
    cause: BaseException | None
    context_json: Any = None

    @property
    def error(self) -> Exception:
        return self.event.error


def capture_errors(plugin: inference.LLM | inference.STT | inference.TTS) -> list[Emitted]:
    """Register an ``error`` listener; the openai body is read now, before it is clobbered."""
    seen: list[Emitted] = []

    def on_error(event: llm.LLMError | stt.STTError | tts.TTSError) -> None:
        ctx = event.error.__context__
        body = ctx.response.json() if isinstance(ctx, openai.APIStatusError) else None
        seen.append(Emitted(event, ctx, event.error.__cause__, body))

    plugin.on("error", on_error)
    return seen


def chat_ctx() -> llm.ChatContext:
    ctx = llm.ChatContext.empty()
    ctx.add_message(role="user", content="Say something.")
    return ctx


async def collect_text(stream: llm.LLMStream) -> tuple[str, list[llm.ChatChunk]]:
    chunks: list[llm.ChatChunk] = []
    async with stream:
        async for chunk in stream:
            chunks.append(chunk)
    text = "".join(c.delta.content for c in chunks if c.delta and c.delta.content)
    return text, chunks


def json_in(message: str) -> dict[str, Any]:
    payload = json.loads(message[message.index("{") :])
    assert isinstance(payload, dict)
    return payload


def silence(n: int = 10, sample_rate: int = 16000) -> list[rtc.AudioFrame]:
    return [rtc.AudioFrame.create(sample_rate, 1, sample_rate // 10) for _ in range(n)]


# ---------------------------------------------------------------------------------------------
# LLM


@pytest.mark.asyncio
async def test_llm_streams_ok_text(gateway: FakeGateway) -> None:
    async def scenario() -> None:
        model = inference.LLM(LLM_MODEL, base_url=gateway.url, **CREDS)
        errors = capture_errors(model)
        gateway.llm.push(ok("The quick brown fox jumps."))
        try:
            text, chunks = await collect_text(
                model.chat(chat_ctx=chat_ctx(), conn_options=NO_RETRY)
            )
        finally:
            await model.aclose()
        assert text == "The quick brown fox jumps."
        assert len([c for c in chunks if c.delta and c.delta.content]) == 5  # streamed per word
        assert any(c.usage is not None and c.usage.completion_tokens == 5 for c in chunks)
        assert errors == []
        assert gateway.requests["llm"] == 1
        assert len(gateway.llm) == 0
        assert len(gateway.llm.consumed) == 1

    await bounded(scenario)


@pytest.mark.asyncio
async def test_llm_healthy_default_and_empty(gateway: FakeGateway) -> None:
    async def scenario() -> None:
        model = inference.LLM(LLM_MODEL, base_url=gateway.url, **CREDS)
        errors = capture_errors(model)
        gateway.llm.push(empty())
        try:
            empty_text, empty_chunks = await collect_text(
                model.chat(chat_ctx=chat_ctx(), conn_options=NO_RETRY)
            )
            default_text, _ = await collect_text(
                model.chat(chat_ctx=chat_ctx(), conn_options=NO_RETRY)
            )
        finally:
            await model.aclose()
        assert empty_text == ""
        assert all(c.delta is None for c in empty_chunks)  # only the usage chunk
        assert default_text == DEFAULT_TEXT
        assert errors == []
        assert gateway.requests["llm"] == 2

    await bounded(scenario)


@pytest.mark.asyncio
async def test_llm_quota_429_keeps_body_on_openai_context(gateway: FakeGateway) -> None:
    async def scenario() -> None:
        model = inference.LLM(LLM_MODEL, base_url=gateway.url, **CREDS)
        errors = capture_errors(model)
        gateway.llm.push(http_error(429, QUOTA_CREDITS_BODY))
        try:
            with pytest.raises(APIStatusError) as info:
                await collect_text(model.chat(chat_ctx=chat_ctx(), conn_options=NO_RETRY))
        finally:
            await model.aclose()

        err = info.value
        assert err.status_code == 429
        assert err.retryable is True
        assert err.message == "Error code: 429"
        assert err.body == QUOTA_CREDITS_BODY["error"]  # narrowed to the inner string
        assert isinstance(err.body, str)
        assert ", category: MaxGatewayCredits" in err.body
        assert err.request_id is not None
        assert err.request_id.startswith("req_fake_")
        assert err.__cause__ is None
        assert err.__suppress_context__

        assert len(errors) == 1
        (emitted,) = errors
        assert isinstance(emitted.event, llm.LLMError)
        assert emitted.event.type == "llm_error"
        assert emitted.event.recoverable is False
        assert emitted.event.label == "livekit.agents.inference.llm.LLM"
        assert emitted.error is err
        assert isinstance(emitted.context, openai.RateLimitError)
        assert emitted.context.status_code == 429
        assert emitted.context_json == QUOTA_CREDITS_BODY
        assert emitted.context_json["category"] == "MaxGatewayCredits"
        # after the re-raise from __anext__, __context__ is clobbered
        assert isinstance(err.__context__, StopAsyncIteration)

    await bounded(scenario)


@pytest.mark.asyncio
async def test_llm_401_openai_body(gateway: FakeGateway) -> None:
    async def scenario() -> None:
        model = inference.LLM(LLM_MODEL, base_url=gateway.url, **CREDS)
        errors = capture_errors(model)
        body = openai_error_body("Incorrect API key", code="invalid_api_key")
        gateway.llm.push(http_error(401, body))
        try:
            with pytest.raises(APIStatusError) as info:
                await collect_text(model.chat(chat_ctx=chat_ctx(), conn_options=NO_RETRY))
        finally:
            await model.aclose()

        err = info.value
        assert err.status_code == 401
        assert err.retryable is False
        assert err.message == "Error code: 401 - Incorrect API key"
        assert err.body == body["error"]
        assert [e.event.recoverable for e in errors] == [False]
        assert isinstance(errors[0].context, openai.AuthenticationError)
        assert errors[0].context_json == body

    await bounded(scenario)


@pytest.mark.asyncio
async def test_llm_disconnect_is_connection_error(gateway: FakeGateway) -> None:
    async def scenario() -> None:
        model = inference.LLM(LLM_MODEL, base_url=gateway.url, **CREDS)
        errors = capture_errors(model)
        gateway.llm.push(disconnect())
        try:
            with pytest.raises(APIConnectionError) as info:
                await collect_text(model.chat(chat_ctx=chat_ctx(), conn_options=NO_RETRY))
        finally:
            await model.aclose()

        err = info.value
        assert err.message == "Connection error."
        assert err.body is None
        assert err.retryable is True
        assert isinstance(err.__cause__, openai.APIConnectionError)
        assert isinstance(err.__cause__.__cause__, httpx2.RemoteProtocolError)
        assert "without sending a response" in str(err.__cause__.__cause__)

        assert len(errors) == 1
        assert errors[0].error is err
        assert errors[0].event.recoverable is False
        assert isinstance(errors[0].cause, openai.APIConnectionError)
        assert gateway.requests["llm"] == 1

    await bounded(scenario)


@pytest.mark.asyncio
async def test_llm_retries_through_disconnect_and_rate_limit(gateway: FakeGateway) -> None:
    async def scenario() -> None:
        model = inference.LLM(LLM_MODEL, base_url=gateway.url, **CREDS)
        errors = capture_errors(model)
        rpm_body = quota_body(
            "llm", "MaxConcurrentGatewayLLMRpm", hint="Reduce request rate or upgrade."
        )
        gateway.llm.push(disconnect(), http_error(429, rpm_body), ok("Recovered."))
        try:
            text, _ = await collect_text(
                model.chat(
                    chat_ctx=chat_ctx(),
                    conn_options=APIConnectOptions(max_retry=2, retry_interval=0.01, timeout=5.0),
                )
            )
        finally:
            await model.aclose()

        assert text == "Recovered."
        assert gateway.requests["llm"] == 3
        assert len(gateway.llm) == 0
        assert [type(e.error) for e in errors] == [APIConnectionError, APIStatusError]
        assert [e.event.recoverable for e in errors] == [True, True]
        assert isinstance(errors[1].context, openai.RateLimitError)
        assert errors[1].context_json["category"] == "MaxConcurrentGatewayLLMRpm"

    await bounded(scenario)


@pytest.mark.asyncio
async def test_llm_via_env_and_prewarm(
    gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        monkeypatch.setenv("LIVEKIT_INFERENCE_URL", gateway.url)
        monkeypatch.setenv("LIVEKIT_API_KEY", CREDS["api_key"])
        monkeypatch.setenv("LIVEKIT_API_SECRET", CREDS["api_secret"])
        model = inference.LLM(LLM_MODEL)
        try:
            model.prewarm()  # fire-and-forget GET /models
            for _ in range(500):
                if gateway.requests["models"]:
                    break
                await asyncio.sleep(0.01)
            text, _ = await collect_text(model.chat(chat_ctx=chat_ctx(), conn_options=NO_RETRY))
        finally:
            await model.aclose()
        assert text == DEFAULT_TEXT
        assert gateway.requests["models"] == 1
        assert gateway.requests["llm"] == 1

    await bounded(scenario)


@pytest.mark.asyncio
async def test_llm_retries_exhausted_wraps_last_error(gateway: FakeGateway) -> None:
    async def scenario() -> None:
        model = inference.LLM(LLM_MODEL, base_url=gateway.url, **CREDS)
        errors = capture_errors(model)
        gateway.llm.push(disconnect(), http_error(429, QUOTA_CREDITS_BODY))
        try:
            with pytest.raises(APIConnectionError) as info:
                await collect_text(
                    model.chat(
                        chat_ctx=chat_ctx(),
                        conn_options=APIConnectOptions(
                            max_retry=1, retry_interval=0.01, timeout=5.0
                        ),
                    )
                )
        finally:
            await model.aclose()

        err = info.value
        assert err.message == "failed to generate LLM completion after 2 attempts"
        assert isinstance(err.__cause__, APIStatusError)
        assert err.__cause__.status_code == 429
        # the events carry the real errors; only the last one is final
        assert [(type(e.error), e.event.recoverable) for e in errors] == [
            (APIConnectionError, True),
            (APIStatusError, False),
        ]
        assert errors[1].error is err.__cause__
        assert errors[1].context_json == QUOTA_CREDITS_BODY

    await bounded(scenario)


# ---------------------------------------------------------------------------------------------
# TTS


async def synthesize(model: inference.TTS, mode: str, text: str) -> list[tts.SynthesizedAudio]:
    if mode == "chunked":
        async with model.synthesize(text, conn_options=NO_RETRY) as chunked:
            return [audio async for audio in chunked]
    async with model.stream(conn_options=NO_RETRY) as stream:
        for sentence in text.split(". "):
            stream.push_text(sentence + ". ")
        stream.end_input()
        return [audio async for audio in stream]


@pytest.mark.asyncio
@pytest.mark.parametrize("mode", ["chunked", "stream"])
async def test_tts_healthy_audio(
    gateway: FakeGateway, http: aiohttp.ClientSession, mode: str
) -> None:
    async def scenario() -> None:
        model = inference.TTS(TTS_MODEL, base_url=gateway.url, http_session=http, **CREDS)
        errors = capture_errors(model)
        try:
            first = await synthesize(model, mode, "Hello there. How are you today?")
            second = await synthesize(model, mode, "Fine, thanks.")
        finally:
            await model.aclose()
        for frames in (first, second):
            assert frames
            assert sum(a.frame.duration for a in frames) >= 0.1
            assert {a.frame.sample_rate for a in frames} == {24000}
            assert frames[-1].is_final
        assert errors == []
        # the plugin pools its websocket: two syntheses, one connection
        assert gateway.requests["tts"] == 1
        assert gateway.requests["tts_synthesis"] == 2

    await bounded(scenario)


@pytest.mark.asyncio
@pytest.mark.parametrize(("mode", "events"), [("chunked", 2), ("stream", 1)])
async def test_tts_ws_error_puts_json_in_message(
    gateway: FakeGateway, http: aiohttp.ClientSession, mode: str, events: int
) -> None:
    async def scenario() -> None:
        model = inference.TTS(TTS_MODEL, base_url=gateway.url, http_session=http, **CREDS)
        errors = capture_errors(model)
        gateway.tts.push(ws_error(quota_body("tts", "MaxConcurrentGatewayTTS")))
        try:
            with pytest.raises(APIError) as info:
                await synthesize(model, mode, "Hello there.")
            # the failed connection is dropped; the next synthesis is healthy again
            assert await synthesize(model, mode, "Again.")
        finally:
            await model.aclose()

        err = info.value
        assert type(err) is APIError
        assert err.message.startswith("LiveKit Inference TTS returned error: {")
        assert '"category"' in err.message
        payload = json_in(err.message)
        assert payload["type"] == "error"
        assert payload["category"] == "MaxConcurrentGatewayTTS"
        assert payload["quota_type"] == "tts"
        assert ", category: MaxConcurrentGatewayTTS" in payload["message"]
        assert payload["session_id"].startswith("tts_session_")
        assert err.body is None
        assert err.retryable is True
        assert err.__cause__ is None

        assert len(errors) == events
        assert all(e.error is err for e in errors)
        assert all(e.event.recoverable is False for e in errors)
        assert all(e.event.type == "tts_error" for e in errors)
        assert errors[0].context is None
        assert gateway.requests["tts"] == 2

    await bounded(scenario)


@pytest.mark.asyncio
@pytest.mark.parametrize(("mode", "events"), [("chunked", 2), ("stream", 1)])
async def test_tts_handshake_429_drops_body(
    gateway: FakeGateway, http: aiohttp.ClientSession, mode: str, events: int
) -> None:
    async def scenario() -> None:
        model = inference.TTS(TTS_MODEL, base_url=gateway.url, http_session=http, **CREDS)
        errors = capture_errors(model)
        gateway.tts.push(
            handshake_error(
                429,
                quota_body("tts", "MaxGatewayCredits"),
                headers={"X-LiveKit-Inference-Credits-Limit": "100"},
            )
        )
        try:
            with pytest.raises(APIStatusError) as info:
                await synthesize(model, mode, "Hello there.")
        finally:
            await model.aclose()

        err = info.value
        assert err.status_code == 429
        assert err.body is None  # aiohttp never reads a rejected upgrade's body
        assert err.message == "Invalid response status (429 Too Many Requests)"
        assert err.retryable is True
        cause = err.__cause__
        assert isinstance(cause, aiohttp.WSServerHandshakeError)
        assert cause.status == 429
        assert cause.headers is not None
        assert cause.headers["X-LiveKit-Inference-Credits-Limit"] == "100"
        assert len(errors) == events
        assert all(e.error is err and not e.event.recoverable for e in errors)
        assert gateway.requests["tts"] == 1
        assert gateway.requests["tts_synthesis"] == 0

    await bounded(scenario)


@pytest.mark.asyncio
async def test_tts_connect_fault_waits_for_a_new_connection(
    gateway: FakeGateway, http: aiohttp.ClientSession
) -> None:
    async def scenario() -> None:
        model = inference.TTS(TTS_MODEL, base_url=gateway.url, http_session=http, **CREDS)
        try:
            await synthesize(model, "stream", "Warm up.")
            gateway.tts.push(handshake_error(429))
            # the pooled websocket is reused: no handshake, so the fault stays queued
            assert await synthesize(model, "stream", "Still fine.")
            assert len(gateway.tts) == 1
        finally:
            await model.aclose()
        assert gateway.requests["tts"] == 1

    await bounded(scenario)


# ---------------------------------------------------------------------------------------------
# STT


async def transcribe(
    model: inference.STT,
    frames: list[rtc.AudioFrame],
    conn_options: APIConnectOptions = NO_RETRY,
) -> list[stt.SpeechEvent]:
    async with model.stream(conn_options=conn_options) as stream:
        for frame in frames:
            stream.push_frame(frame)
        stream.end_input()
        return [event async for event in stream]


@pytest.mark.asyncio
async def test_stt_stream_transcript(gateway: FakeGateway, http: aiohttp.ClientSession) -> None:
    async def scenario() -> None:
        model = inference.STT(STT_MODEL, base_url=gateway.url, http_session=http, **CREDS)
        errors = capture_errors(model)
        gateway.stt.push(ok("turn the lights on"))
        try:
            scripted = await transcribe(model, silence(10))
            default = await transcribe(model, silence(5))
        finally:
            await model.aclose()

        finals = [e for e in scripted if e.type == stt.SpeechEventType.FINAL_TRANSCRIPT]
        assert [e.alternatives[0].text for e in finals] == ["turn the lights on"]
        usage = [e for e in scripted if e.type == stt.SpeechEventType.RECOGNITION_USAGE]
        assert usage
        assert usage[0].recognition_usage is not None
        assert usage[0].recognition_usage.audio_duration == pytest.approx(1.0)
        assert [e.type for e in scripted] == [
            stt.SpeechEventType.START_OF_SPEECH,
            stt.SpeechEventType.RECOGNITION_USAGE,
            stt.SpeechEventType.FINAL_TRANSCRIPT,
            stt.SpeechEventType.END_OF_SPEECH,
        ]
        default_finals = [e for e in default if e.type == stt.SpeechEventType.FINAL_TRANSCRIPT]
        assert [e.alternatives[0].text for e in default_finals] == [DEFAULT_TEXT]
        assert errors == []
        assert gateway.requests["stt"] == 2

    await bounded(scenario)


@pytest.mark.asyncio
async def test_stt_ws_error_drops_quota_fields(
    gateway: FakeGateway, http: aiohttp.ClientSession
) -> None:
    async def scenario() -> None:
        model = inference.STT(STT_MODEL, base_url=gateway.url, http_session=http, **CREDS)
        errors = capture_errors(model)
        gateway.stt.push(ws_error(quota_body("stt", "MaxConcurrentGatewaySTT")))
        stream = model.stream(conn_options=NO_RETRY)
        try:
            for frame in silence(3):
                stream.push_frame(frame)  # input stays open: the error is retryable
            with pytest.raises(APIError) as info:
                async for _ in stream:
                    pass
        finally:
            await stream.aclose()
            await model.aclose()

        err = info.value
        assert type(err) is APIError
        assert err.message == "LiveKit Inference STT returned an error"
        assert err.body == {"code": -1}  # the quota fields never reach the exception
        assert err.retryable is True
        assert err.__cause__ is None
        assert len(errors) == 1
        assert errors[0].error is err
        assert errors[0].event.type == "stt_error"
        assert errors[0].event.recoverable is False
        assert errors[0].event.label == "livekit.agents.inference.stt.STT"
        assert errors[0].context is None

    await bounded(scenario)


@pytest.mark.asyncio
async def test_stt_ws_error_after_end_of_input_is_not_retryable(
    gateway: FakeGateway, http: aiohttp.ClientSession
) -> None:
    async def scenario() -> None:
        model = inference.STT(STT_MODEL, base_url=gateway.url, http_session=http, **CREDS)
        errors = capture_errors(model)
        gateway.stt.push(ws_error({"message": "upstream failed", "code": "upstream_error"}))
        try:
            with pytest.raises(APIError) as info:
                await transcribe(model, silence(3))  # all audio and end_input() up front
        finally:
            await model.aclose()
        assert info.value.body == {"code": "upstream_error"}
        assert info.value.retryable is False
        assert [e.event.recoverable for e in errors] == [False]

    await bounded(scenario)


@pytest.mark.asyncio
async def test_stt_handshake_429(gateway: FakeGateway, http: aiohttp.ClientSession) -> None:
    async def scenario() -> None:
        model = inference.STT(STT_MODEL, base_url=gateway.url, http_session=http, **CREDS)
        errors = capture_errors(model)
        gateway.stt.push(handshake_error(429, quota_body("stt", "MaxGatewayCredits")))
        try:
            with pytest.raises(APIStatusError) as info:
                await transcribe(model, silence(3))
        finally:
            await model.aclose()

        err = info.value
        assert err.status_code == 429
        assert err.body is None
        assert err.message == "Invalid response status (429 Too Many Requests)"
        assert err.retryable is True
        assert isinstance(err.__cause__, aiohttp.WSServerHandshakeError)
        assert err.__cause__.status == 429
        assert len(errors) == 1
        assert errors[0].error is err
        assert errors[0].event.recoverable is False
        assert isinstance(errors[0].context, aiohttp.WSServerHandshakeError)

    await bounded(scenario)


@pytest.mark.asyncio
async def test_stt_retries_after_handshake_429(
    gateway: FakeGateway, http: aiohttp.ClientSession
) -> None:
    async def scenario() -> None:
        model = inference.STT(STT_MODEL, base_url=gateway.url, http_session=http, **CREDS)
        errors = capture_errors(model)
        gateway.stt.push(handshake_error(429), ok("second time lucky"))
        try:
            events = await transcribe(
                model,
                silence(5),
                APIConnectOptions(max_retry=1, retry_interval=0.01, timeout=5.0),
            )
        finally:
            await model.aclose()
        finals = [e for e in events if e.type == stt.SpeechEventType.FINAL_TRANSCRIPT]
        assert [e.alternatives[0].text for e in finals] == ["second time lucky"]
        assert [e.event.recoverable for e in errors] == [True]
        assert isinstance(errors[0].error, APIStatusError)
        assert gateway.requests["stt"] == 2

    await bounded(scenario)


@pytest.mark.asyncio
async def test_ws_disconnect_needs_two_drops(
    gateway: FakeGateway, http: aiohttp.ClientSession
) -> None:
    async def scenario() -> None:
        tts_model = inference.TTS(TTS_MODEL, base_url=gateway.url, http_session=http, **CREDS)
        stt_model = inference.STT(STT_MODEL, base_url=gateway.url, http_session=http, **CREDS)
        tts_errors = capture_errors(tts_model)
        stt_errors = capture_errors(stt_model)
        try:
            # one drop: aiohttp retries the upgrade by itself
            gateway.tts.push(disconnect())
            gateway.stt.push(disconnect())
            assert await synthesize(tts_model, "stream", "Hello there.")
            assert await transcribe(stt_model, silence(3))
            assert gateway.requests["tts"] == 2
            assert gateway.requests["stt"] == 2
            assert tts_errors == []
            assert stt_errors == []
            await tts_model.aclose()  # drop the pooled connection

            gateway.tts.push(disconnect(), disconnect())
            gateway.stt.push(disconnect(), disconnect())
            with pytest.raises(APIConnectionError) as tts_info:
                await synthesize(tts_model, "stream", "Hello there.")
            retrying = APIConnectOptions(max_retry=2, retry_interval=0.01, timeout=5.0)
            with pytest.raises(aiohttp.ServerDisconnectedError) as stt_info:
                await transcribe(stt_model, silence(3), retrying)
        finally:
            await tts_model.aclose()
            await stt_model.aclose()

        assert tts_info.value.retryable is True
        assert isinstance(tts_info.value.__cause__, aiohttp.ServerDisconnectedError)
        assert [e.event.recoverable for e in tts_errors] == [False]
        # STT lets the raw aiohttp error out, and does not retry it despite max_retry=2
        assert [(e.error, e.event.recoverable) for e in stt_errors] == [(stt_info.value, False)]
        assert gateway.requests["tts"] == 4
        assert gateway.requests["stt"] == 4

    await bounded(scenario)


@pytest.mark.asyncio
async def test_stt_retries_exhausted_wraps_last_error(
    gateway: FakeGateway, http: aiohttp.ClientSession
) -> None:
    async def scenario() -> None:
        model = inference.STT(STT_MODEL, base_url=gateway.url, http_session=http, **CREDS)
        errors = capture_errors(model)
        gateway.stt.push(handshake_error(429), handshake_error(503))
        try:
            with pytest.raises(APIConnectionError) as info:
                await transcribe(
                    model,
                    silence(3),
                    APIConnectOptions(max_retry=1, retry_interval=0.01, timeout=5.0),
                )
        finally:
            await model.aclose()

        err = info.value
        assert err.message == "failed to recognize speech after 1 attempts"
        assert isinstance(err.__cause__, APIStatusError)
        assert err.__cause__.status_code == 503
        assert err.__cause__.retryable is True
        statuses = [getattr(e.error, "status_code", None) for e in errors]
        assert statuses == [429, 503]
        assert [e.event.recoverable for e in errors] == [True, False]

    await bounded(scenario)


# ---------------------------------------------------------------------------------------------
# the gateway itself


def test_quota_bodies() -> None:
    assert QUOTA_CREDITS_BODY == {
        "type": "inference_quota_exceeded",
        "error": (
            "LLM token credit quota exceeded, category: MaxGatewayCredits, remaining limit: 0"
        ),
        "quota_type": "llm",
        "category": "MaxGatewayCredits",
        "hint": "Wait for the next billing cycle or upgrade your plan.",
        "remaining_limit": "0",
    }
    body = quota_body("stt", "MaxConcurrentGatewaySTT", remaining_limit=None)
    assert body["type"] == "inference_quota_exceeded"
    assert ", category: MaxConcurrentGatewaySTT" in body["error"]
    assert "hint" not in body
    assert "remaining_limit" not in body


def test_fault_validation() -> None:
    gw = FakeGateway()
    with pytest.raises(ValueError, match="not supported"):
        gw.llm.push(ws_error({"message": "x"}))
    with pytest.raises(ValueError, match="not supported"):
        gw.stt.push(empty())
    with pytest.raises(ValueError, match="3xx-5xx"):
        http_error(200)
    with pytest.raises(TypeError):
        http_error(500, {"not json": object()})
    with pytest.raises(RuntimeError, match="not started"):
        _ = gw.url


@pytest.mark.asyncio
async def test_unknown_paths_and_malformed_requests(
    gateway: FakeGateway, http: aiohttp.ClientSession
) -> None:
    async def scenario() -> None:
        auth = {"Authorization": "Bearer x"}
        async with http.get(f"{gateway.url}/nope", headers=auth) as resp:
            assert resp.status == 404
        async with http.get(f"{gateway.url}/chat/completions", headers=auth) as resp:
            assert resp.status == 404
        async with http.post(
            f"{gateway.url}/chat/completions", data=b"\xff not json", headers=auth
        ) as resp:
            assert resp.status == 400
            assert "error" in await resp.json()
        async with http.post(f"{gateway.url}/chat/completions", json={"messages": []}) as resp:
            assert resp.status == 401  # no bearer token
        async with http.get(f"{gateway.url}/tts") as resp:
            assert resp.status == 401

        ws_url = gateway.url.replace("http", "ws", 1)
        async with http.ws_connect(f"{ws_url}/tts", headers=auth) as ws:
            await ws.send_str("not json")
            await ws.send_bytes(b"\x00\x01")
            await ws.send_str('["a list"]')
            await ws.send_str('{"type": "session.create", "sample_rate": "banana"}')
            created = await ws.receive_json()
            assert created["type"] == "session.created"
            await ws.send_str('{"type": "input_transcript", "transcript": 42}')
            await ws.send_str('{"type": "session.flush"}')
            assert (await ws.receive_json())["type"] == "done"
        async with http.ws_connect(f"{ws_url}/stt", headers=auth) as ws:
            await ws.send_str('{"type": "input_audio", "audio": "%%% not base64"}')
            await ws.send_str('{"type": "session.create", "settings": null}')
            assert (await ws.receive_json())["type"] == "session.created"

        # none of it broke the gateway or consumed a fault
        assert len(gateway.llm.consumed) == 0
        model = inference.LLM(LLM_MODEL, base_url=gateway.url, **CREDS)
        try:
            text, _ = await collect_text(model.chat(chat_ctx=chat_ctx(), conn_options=NO_RETRY))
        finally:
            await model.aclose()
        assert text == DEFAULT_TEXT
        assert gateway.requests["not_found"] == 2

    await bounded(scenario)


@pytest.mark.asyncio
async def test_aclose_closes_open_websockets_promptly(http: aiohttp.ClientSession) -> None:
    async def scenario() -> None:
        gw = FakeGateway()
        await gw.start()
        tts_model = inference.TTS(TTS_MODEL, base_url=gw.url, http_session=http, **CREDS)
        stt_model = inference.STT(STT_MODEL, base_url=gw.url, http_session=http, **CREDS)
        stt_errors = capture_errors(stt_model)
        stream = stt_model.stream(conn_options=NO_RETRY)
        try:
            await synthesize(tts_model, "stream", "Keep this connection pooled.")
            stream.push_frame(silence(1)[0])
            for _ in range(500):  # the STT stream connects in the background
                if gw.open_websockets == 2:
                    break
                await asyncio.sleep(0.01)

            # it closes the connections it holds rather than wait for them (a hang fails here)
            await asyncio.wait_for(gw.aclose(), TIMEOUT)
            assert gw.open_websockets == 0
            await gw.aclose()  # idempotent

            with pytest.raises(APIStatusError, match="closed unexpectedly"):
                async for _ in stream:
                    pass
            assert [e.event.recoverable for e in stt_errors] == [False]
        finally:
            await stream.aclose()
            await stt_model.aclose()
            await tts_model.aclose()
            await gw.aclose()

    await bounded(scenario)


# ---------------------------------------------------------------------------------------------
# LLM credit balance and its quota headers


@pytest.mark.asyncio
async def test_llm_credit_headers_balance_and_exhaustion(gateway: FakeGateway) -> None:
    limit_h, used_h = "X-LiveKit-Inference-Credits-Limit", "X-LiveKit-Inference-Credits-Used"
    body = {"model": LLM_MODEL, "messages": [{"role": "user", "content": "hi"}]}
    auth = {"Authorization": "Bearer t"}

    async def scenario() -> None:
        assert gateway.credits.used == 0  # a new gateway: a large, healthy balance
        gateway.set_credits(limit=1000, used=0, cost=400)
        async with httpx2.AsyncClient() as client:
            post = functools.partial(
                client.post, gateway.url + "/chat/completions", json=body, headers=auth
            )
            seen = []
            for _ in range(4):
                r = await post()
                seen.append((r.status_code, r.headers.get(limit_h), r.headers.get(used_h)))
            # charged when an answer starts, capped at the limit; then the credits 429
            assert seen == [
                (200, "1000", "400"),
                (200, "1000", "800"),
                (200, "1000", "1000"),
                (429, "1000", "1000"),
            ]
            assert r.json() == QUOTA_CREDITS_BODY
            # a scripted fault comes first, and carries the balance too
            gateway.set_credits(used=100)
            gateway.llm.push(http_error(503))
            r = await post()
            assert (r.status_code, r.headers.get(used_h)) == (503, "100")
            assert gateway.drain_credits(50).used == 150
            assert gateway.drain_credits().used == 1000
            assert (await post()).status_code == 429
        with pytest.raises(ValueError, match="credits cost"):
            gateway.set_credits(cost=-1)

    await bounded(scenario)


@pytest.mark.asyncio
async def test_llm_rate_headers_count_the_minute(gateway: FakeGateway) -> None:
    """``X-LiveKit-Inference-{RPM,TPM}-{Limit,Used}`` on every completion response: RPM used,
    the requests of the minute (this one included, refused ones too); TPM used, the tokens of
    the answers served in it (their ``usage.total_tokens``, streamed or not)."""
    names = ("RPM-Limit", "RPM-Used", "TPM-Limit", "TPM-Used", "Credits-Used")
    messages = [{"role": "user", "content": "hi"}]
    auth = {"Authorization": "Bearer t"}

    def quota(r: httpx2.Response) -> tuple[int, ...]:
        return (r.status_code, *(int(r.headers[f"X-LiveKit-Inference-{h}"]) for h in names))

    async def scenario() -> None:
        gateway.set_credits(limit=30, used=0, cost=10)
        async with httpx2.AsyncClient() as client:
            post = functools.partial(client.post, gateway.url + "/chat/completions", headers=auth)
            r = await post(json={"model": LLM_MODEL, "messages": messages})
            tokens = r.json()["usage"]["total_tokens"]
            assert quota(r) == (200, DEFAULT_RPM_LIMIT, 1, DEFAULT_TPM_LIMIT, tokens, 10)
            # streamed: the same answer, the same tokens (charged when the answer starts)
            stream = {"model": LLM_MODEL, "messages": messages, "stream": True}
            r = await post(json=stream)
            assert quota(r) == (200, DEFAULT_RPM_LIMIT, 2, DEFAULT_TPM_LIMIT, 2 * tokens, 20)
            gateway.llm.push(http_error(503))
            r = await post(json=stream)
            assert quota(r) == (503, DEFAULT_RPM_LIMIT, 3, DEFAULT_TPM_LIMIT, 2 * tokens, 20)
            await post(json=stream)  # the last 10 credits
            r = await post(json=stream)  # out of credits: refused, still counted
            assert quota(r) == (429, DEFAULT_RPM_LIMIT, 5, DEFAULT_TPM_LIMIT, 3 * tokens, 30)
            # the limits are only reported; a new minute counts from zero again
            gateway.rates.rpm_limit = 2
            gateway.set_credits(used=0)
            gateway.rates.new_minute()
            r = await post(json=stream)
            assert quota(r) == (200, 2, 1, DEFAULT_TPM_LIMIT, tokens, 10)
            assert gateway.rates.started is not None
            gateway.rates.started -= 60.0  # a minute has gone by
            r = await post(json=stream)
            assert quota(r) == (200, 2, 1, DEFAULT_TPM_LIMIT, tokens, 20)
            assert (gateway.rates.rpm_used, gateway.rates.tpm_used) == (1, tokens)

    await bounded(scenario)
