"""Failures livekit never emits as an ``error`` event, each counted once with its cause, and
livekit's own wrappers (FallbackAdapter, MultiSpeakerAdapter, the STT and TTS StreamAdapters)
counting a failure once (``docs/livekit.md``, "Failures that are never events").

Providers are built on livekit's public base classes (``tests/scripted.py``); livekit's own retry
loops and adapters run unchanged. Every assert is exact: one record per failure.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from livekit.agents import (
    Agent,
    AgentSession,
    APIConnectionError,
    APIError,
    APIStatusError,
    llm,
    stt,
    tts,
)
from livekit.agents.types import APIConnectOptions
from livekit.agents.voice.agent_session import SessionConnectOptions
from livekit.agents.voice.events import ErrorEvent
from prometheus_client import REGISTRY

from otel_agents import names as n

from scripted import (
    ScriptedLLM,
    ScriptedRealtimeModel,
    ScriptedRealtimeSession,
    ScriptedSTT,
    ScriptedTTS,
    audio_frame,
    raising,
    ssl_connection_error,
)

TIMEOUT = 10.0
CONN = APIConnectOptions(max_retry=2, retry_interval=0.01)


def key_error() -> None:
    """A plugin parsing a response it did not expect."""
    raise KeyError("audio")


def status_error() -> None:
    raise APIStatusError("bad request", status_code=400, retryable=False)


def records(telemetry: Any) -> list[tuple[str, str, int, bool, str, str]]:
    """(component, provider, attempt, final, root cause, error class) of every failed attempt."""
    return [
        (
            a[n.A_COMPONENT],
            a[n.A_PROVIDER],
            a[n.A_ATTEMPT],
            a[n.A_FINAL],
            a[n.A_ROOT_CAUSE_TYPE],
            a[n.A_ERROR_CLASS],
        )
        for a in (dict(s.attributes or {}) for s in telemetry.attempt_spans())
    ]


async def drain(stream: Any) -> None:
    async with stream:
        async for _ in stream:
            pass


async def synthesize_streamed(model: tts.TTS, conn: APIConnectOptions = CONN) -> None:
    async with model.stream(conn_options=conn) as stream:
        stream.push_text("hello there")
        stream.end_input()
        async for _ in stream:
            pass


async def chat_through(model: llm.LLM, conn: APIConnectOptions | None = None) -> None:
    kwargs: dict[str, Any] = {} if conn is None else {"conn_options": conn}
    async with model.chat(chat_ctx=llm.ChatContext.empty(), **kwargs) as stream:
        async for _ in stream:
            pass


async def settle() -> None:
    """Let done callbacks scheduled by finished tasks run."""
    for _ in range(3):
        await asyncio.sleep(0)


def retry_wait(component: str) -> tuple[float, float]:
    """(count, sum) of ``otel_agents_retry_wait_seconds{component}``."""
    labels = {"component": component}
    count = REGISTRY.get_sample_value(n.RETRY_WAIT + "_count", labels) or 0.0
    total = REGISTRY.get_sample_value(n.RETRY_WAIT + "_sum", labels) or 0.0
    return count, total


KEY_ERROR = ("KeyError", "internal")
BAD_REQUEST = ("livekit.agents.APIStatusError", "bad_request")
SSL = ("ssl.SSLCertVerificationError", "connection")


# --- 1. TTS: a non-APIError is never an event ----------------------------------------------------


@pytest.mark.asyncio
async def test_tts_chunked_non_api_error_recorded_once(telemetry) -> None:
    model = ScriptedTTS([key_error])
    with pytest.raises(KeyError):
        await asyncio.wait_for(drain(model.synthesize("hi", conn_options=CONN)), TIMEOUT)
    await settle()
    assert model.calls == 1  # livekit's TTS loop retries APIError only
    assert records(telemetry) == [("tts", "scripted-tts", 0, True, *KEY_ERROR)]
    assert retry_wait("tts") == (1.0, 0.0)  # one failed attempt, no retry: nothing waited


@pytest.mark.asyncio
async def test_tts_chunked_retried_then_non_api_error(telemetry) -> None:
    model = ScriptedTTS([ssl_connection_error, key_error])
    with pytest.raises(KeyError):
        await asyncio.wait_for(drain(model.synthesize("hi", conn_options=CONN)), TIMEOUT)
    await settle()
    assert records(telemetry) == [
        ("tts", "scripted-tts", 0, False, *SSL),
        ("tts", "scripted-tts", 1, True, *KEY_ERROR),
    ]


@pytest.mark.asyncio
async def test_tts_streaming_non_api_error_recorded_once(telemetry) -> None:
    model = ScriptedTTS([key_error], streaming=True)
    with pytest.raises(KeyError):
        await asyncio.wait_for(synthesize_streamed(model), TIMEOUT)
    await settle()
    assert records(telemetry) == [("tts", "scripted-tts", 0, True, *KEY_ERROR)]


# --- 2. the request methods themselves raise ----------------------------------------------------


class RaisingLLM(ScriptedLLM):
    """``chat()`` raises before any stream exists."""

    def chat(self, **kwargs: Any) -> Any:  # type: ignore[override]
        self.calls += 1
        status_error()


class RaisingTTS(ScriptedTTS):
    def synthesize(self, text: str, **kwargs: Any) -> Any:  # type: ignore[override]
        self.calls += 1
        status_error()

    def stream(self, **kwargs: Any) -> Any:  # type: ignore[override]
        self.calls += 1
        status_error()


class RaisingSTT(ScriptedSTT):
    def stream(self, **kwargs: Any) -> Any:  # type: ignore[override]
        self.calls += 1
        status_error()


@pytest.mark.asyncio
async def test_chat_raising_itself_recorded_once(telemetry) -> None:
    model = RaisingLLM(["unused"])
    with pytest.raises(APIStatusError):
        model.chat(chat_ctx=llm.ChatContext.empty(), conn_options=CONN)
    assert records(telemetry) == [("llm", "scripted", 0, True, *BAD_REQUEST)]


@pytest.mark.asyncio
async def test_synthesize_and_stream_raising_recorded_once_each(telemetry) -> None:
    model = RaisingTTS(["unused"])
    with pytest.raises(APIStatusError):
        model.synthesize("hi")
    with pytest.raises(APIStatusError):
        model.stream()
    stt_model = RaisingSTT(["unused"], streaming=True)
    with pytest.raises(APIStatusError):
        stt_model.stream()
    assert records(telemetry) == [
        ("tts", "scripted-tts", 0, True, *BAD_REQUEST),
        ("tts", "scripted-tts", 0, True, *BAD_REQUEST),
        ("stt", "scripted-stt", 0, True, *BAD_REQUEST),
    ]


@pytest.mark.asyncio
async def test_llm_non_api_error_is_an_event_and_counted_once(telemetry) -> None:
    # livekit's LLM loop emits a non-APIError (recoverable=False), then its task ends with it
    model = ScriptedLLM([key_error])
    with pytest.raises(KeyError):
        await asyncio.wait_for(chat_through(model, CONN), TIMEOUT)
    await settle()
    assert records(telemetry) == [("llm", "scripted", 0, True, *KEY_ERROR)]


@pytest.mark.asyncio
async def test_llm_retries_exhausted_counted_once(telemetry) -> None:
    # the task ends with livekit's "after 3 attempts" wrapper of the last emitted failure
    model = ScriptedLLM([ssl_connection_error])
    with pytest.raises(APIConnectionError):
        await asyncio.wait_for(chat_through(model, CONN), TIMEOUT)
    await settle()
    assert records(telemetry) == [
        ("llm", "scripted", 0, False, *SSL),
        ("llm", "scripted", 1, False, *SSL),
        ("llm", "scripted", 2, True, *SSL),
    ]


# --- 3. realtime: a session task that dies without an event -------------------------------------


class DyingRealtimeSession(ScriptedRealtimeSession):
    def __init__(self, realtime_model: llm.RealtimeModel) -> None:
        super().__init__(realtime_model)
        self._main_atask = asyncio.create_task(self._main())

    async def _main(self) -> None:
        await asyncio.sleep(0)
        key_error()


class DyingRealtimeModel(ScriptedRealtimeModel):
    def session(self, *, turn_detection_disabled: bool = False) -> DyingRealtimeSession:
        return DyingRealtimeSession(self)


@pytest.mark.asyncio
async def test_realtime_session_task_dying_recorded_once(telemetry) -> None:
    session = DyingRealtimeModel().session()
    with pytest.raises(KeyError):
        await asyncio.wait_for(session._main_atask, TIMEOUT)
    await settle()
    assert records(telemetry) == [("realtime", "scripted-realtime", 0, True, *KEY_ERROR)]


@pytest.mark.asyncio
async def test_realtime_emitted_then_raised_counted_once(telemetry) -> None:
    class EmittingSession(DyingRealtimeSession):
        async def _main(self) -> None:
            await asyncio.sleep(0)
            error = KeyError("audio")
            self.emit_error(error, recoverable=False)
            raise error

    session = EmittingSession(ScriptedRealtimeModel())
    with pytest.raises(KeyError):
        await asyncio.wait_for(session._main_atask, TIMEOUT)
    await settle()
    assert records(telemetry) == [("realtime", "scripted-realtime", 0, True, *KEY_ERROR)]


# --- 4. livekit's wrappers count a failure once -------------------------------------------------


@pytest.mark.asyncio
async def test_tts_fallback_adapter_all_fail_counts_children_only(telemetry) -> None:
    primary = ScriptedTTS([key_error], provider="tts-primary")
    backup = ScriptedTTS([status_error], provider="tts-backup")
    adapter = tts.FallbackAdapter([primary, backup], max_retry_per_tts=0)
    try:
        with pytest.raises(APIConnectionError):
            await asyncio.wait_for(drain(adapter.synthesize("hi")), TIMEOUT)
        await settle()
        got = records(telemetry)[:2]  # then the recovery probes fail in the background
    finally:
        await adapter.aclose()
    # the adapter's own "all TTSs failed" is a re-report: not a failure of its own
    assert got == [
        ("tts", "tts-primary", 0, True, *KEY_ERROR),
        ("tts", "tts-backup", 0, True, *BAD_REQUEST),
    ]
    assert not [r for r in records(telemetry) if r[1] == "fallback_adapter"]


@pytest.mark.asyncio
async def test_llm_fallback_adapter_chat_raising_child(telemetry) -> None:
    primary = RaisingLLM(["unused"], provider="primary")
    backup = ScriptedLLM(["hi"], provider="backup")
    adapter = llm.FallbackAdapter([primary, backup])
    try:
        async with adapter.chat(chat_ctx=llm.ChatContext.empty()) as stream:
            text = "".join([c.delta.content or "" async for c in stream if c.delta])
        await settle()
        got = records(telemetry)[:1]
    finally:
        await adapter.aclose()
    assert text == "hi"
    assert got == [("llm", "primary", 0, True, *BAD_REQUEST)]


@pytest.mark.asyncio
async def test_llm_fallback_adapter_all_fail_counts_children_only(telemetry) -> None:
    primary = ScriptedLLM([status_error], provider="primary")
    backup = ScriptedLLM([key_error], provider="backup")
    adapter = llm.FallbackAdapter([primary, backup], max_retry_per_llm=0)
    try:
        with pytest.raises(APIConnectionError):
            await asyncio.wait_for(chat_through(adapter), TIMEOUT)
        await settle()
        got = records(telemetry)[:2]
    finally:
        await adapter.aclose()
    assert got == [
        ("llm", "primary", 0, True, *BAD_REQUEST),
        ("llm", "backup", 0, True, *KEY_ERROR),
    ]
    assert not [r for r in records(telemetry) if r[1] == "fallback_adapter"]


class DiarizingSTT(ScriptedSTT):
    def __init__(self, script: list[Any]) -> None:
        super().__init__(script, streaming=True)
        self._capabilities = stt.STTCapabilities(
            streaming=True, interim_results=False, diarization=True
        )


@pytest.mark.asyncio
async def test_multi_speaker_adapter_stream_drop_counted_once(telemetry) -> None:
    inner = DiarizingSTT([raising(APIConnectionError("dropped", retryable=False))])
    adapter = stt.MultiSpeakerAdapter(stt=inner)
    stream = adapter.stream(conn_options=APIConnectOptions(max_retry=0))
    stream.push_frame(audio_frame())
    stream.end_input()
    with pytest.raises(APIConnectionError):
        await asyncio.wait_for(drain(stream), TIMEOUT)
    await settle()
    # the inner stream's failure; the adapter's retry loop re-emits the same exception
    assert records(telemetry) == [
        ("stt", "scripted-stt", 0, True, "livekit.agents.APIConnectionError", "connection")
    ]


@pytest.mark.asyncio
async def test_multi_speaker_adapter_recognize_counted_once(telemetry) -> None:
    inner = DiarizingSTT([ssl_connection_error])
    adapter = stt.MultiSpeakerAdapter(stt=inner)
    with pytest.raises(APIConnectionError):
        await asyncio.wait_for(
            adapter.recognize(
                [audio_frame()], conn_options=APIConnectOptions(max_retry=1, retry_interval=0.01)
            ),
            TIMEOUT,
        )
    await settle()
    # the adapter's recognize() retries the inner recognize(), which retries itself: every
    # inner attempt is a failure, the adapter's errors re-report them
    assert records(telemetry) == [
        ("stt", "scripted-stt", 0, False, *SSL),
        ("stt", "scripted-stt", 1, True, *SSL),
        ("stt", "scripted-stt", 0, False, *SSL),
        ("stt", "scripted-stt", 1, True, *SSL),
    ]


@pytest.mark.asyncio
async def test_tts_stream_adapter_non_api_error_counted_once(telemetry) -> None:
    inner = ScriptedTTS([key_error])
    adapter = tts.StreamAdapter(tts=inner)
    with pytest.raises(KeyError):
        await asyncio.wait_for(synthesize_streamed(adapter), TIMEOUT)
    await settle()
    assert records(telemetry) == [("tts", "scripted-tts", 0, True, *KEY_ERROR)]


@pytest.mark.asyncio
async def test_tts_stream_adapter_api_error_counted_once(telemetry) -> None:
    inner = ScriptedTTS([status_error])
    adapter = tts.StreamAdapter(tts=inner)
    with pytest.raises(APIStatusError):
        await asyncio.wait_for(synthesize_streamed(adapter), TIMEOUT)
    await settle()
    assert records(telemetry) == [("tts", "scripted-tts", 0, True, *BAD_REQUEST)]


@pytest.mark.asyncio
async def test_wrappers_found_by_structure(telemetry) -> None:
    from otel_agents._capture import attempts

    inner = ScriptedTTS(["audio"])
    wrappers = [
        tts.StreamAdapter(tts=inner),
        tts.FallbackAdapter([inner]),
        stt.MultiSpeakerAdapter(stt=DiarizingSTT(["hi"])),
        llm.FallbackAdapter([ScriptedLLM(["hi"])]),
    ]
    leaves = [inner, ScriptedLLM(["hi"]), ScriptedSTT(["hi"])]
    assert [attempts.instance_of(w).is_wrapper() for w in wrappers] == [True] * 4  # type: ignore[union-attr]
    assert [attempts.instance_of(x).is_wrapper() for x in leaves] == [False] * 3  # type: ignore[union-attr]


# --- 5. in a session: the turn it kills is dead_error, with its cause ---------------------------


def make_session(model: llm.LLM) -> AgentSession:
    return AgentSession(
        llm=model,
        vad=None,
        aec_warmup_duration=None,
        conn_options=SessionConnectOptions(
            llm_conn_options=APIConnectOptions(max_retry=0, retry_interval=0.01),
            max_unrecoverable_errors=0,
        ),
    )


def the_session_span(telemetry: Any) -> Any:
    spans = [s for s in telemetry.spans() if s.name == n.SPAN_SESSION]
    assert len(spans) == 1
    return spans[0]


@pytest.mark.asyncio
async def test_chat_raising_in_a_session_kills_the_turn_with_its_cause(telemetry) -> None:
    model = RaisingLLM(["unused"])
    session = make_session(model)
    await session.start(agent=Agent(instructions="t"))
    try:
        with pytest.raises(APIStatusError):
            await asyncio.wait_for(session.run(user_input="hello"), TIMEOUT)
    finally:
        await session.aclose()
    assert records(telemetry) == [("llm", "scripted", 0, True, *BAD_REQUEST)]
    series = telemetry.series()
    assert series[(n.DEAD_TURNS, (("cause", "error"),))] == 1
    assert (n.DEAD_TURNS, (("cause", "empty"),)) not in series
    attributes = the_session_span(telemetry).attributes
    assert attributes[n.S_ERRORS] == 1
    assert attributes[n.S_SILENCE_CAUSE] == "bad_request"


@pytest.mark.asyncio
async def test_error_injected_into_the_session_recorded_once(telemetry) -> None:
    model = ScriptedLLM(["hi"])
    session = make_session(model)
    await session.start(agent=Agent(instructions="t"))
    try:
        error = llm.LLMError(
            timestamp=time.time(),
            label="injected",
            error=APIError("injected", retryable=False),
            recoverable=True,
        )
        session.emit("error", ErrorEvent(error=error, source=model))
        session.emit("error", ErrorEvent(error=error, source=model))  # the same event again
    finally:
        await session.aclose()
    assert records(telemetry) == [
        ("llm", "scripted", 0, False, "livekit.agents.APIError", "server_error")
    ]
    assert the_session_span(telemetry).attributes[n.S_ERRORS] == 1


# --- 6. retry wait ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_retry_wait_of_a_request_failing_twice_then_succeeding(telemetry) -> None:
    model = ScriptedLLM([ssl_connection_error, ssl_connection_error, "hi"])
    conn = APIConnectOptions(max_retry=3, retry_interval=0.2)
    async with model.chat(chat_ctx=llm.ChatContext.empty(), conn_options=conn) as stream:
        async for _ in stream:
            pass
    await settle()
    count, total = retry_wait("llm")
    # livekit sleeps 0.1 s after the first failure, then retry_interval (0.2 s): the third
    # attempt starts at least 0.3 s after the first (a sleep never ends early; how much later
    # depends on the machine's load, so no upper bound is asserted)
    assert count == 1
    assert total >= 0.3
    assert retry_wait("tts") == (0.0, 0.0)


@pytest.mark.asyncio
async def test_retry_wait_of_a_request_that_fails(telemetry) -> None:
    model = ScriptedTTS([ssl_connection_error])
    conn = APIConnectOptions(max_retry=1, retry_interval=0.2)
    with pytest.raises(APIConnectionError):
        await asyncio.wait_for(drain(model.synthesize("hi", conn_options=conn)), TIMEOUT)
    await settle()
    count, total = retry_wait("tts")
    assert count == 1
    assert 0.1 <= total <= 0.1 + 0.1  # one retry, 0.1 s after the first failure


@pytest.mark.asyncio
async def test_no_retry_wait_without_a_failure(telemetry) -> None:
    model = ScriptedLLM(["hi"])
    async with model.chat(chat_ctx=llm.ChatContext.empty(), conn_options=CONN) as stream:
        async for _ in stream:
            pass
    await settle()
    assert retry_wait("llm") == (0.0, 0.0)
