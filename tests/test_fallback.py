"""livekit's real FallbackAdapters (llm, stt, tts) over scripted providers:
``otel_agents_fallback_switches_total``, ``otel_agents_fallback_exhausted_total`` and the
``otel_agents.fallback_switch`` / ``otel_agents.fallback_exhausted`` session span events."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from livekit.agents import Agent, AgentSession, APIConnectionError, llm, stt, tts
from livekit.agents.types import APIConnectOptions
from livekit.agents.voice.agent_session import SessionConnectOptions

from otel_agents import names as n

from scripted import (
    ScriptedLLM,
    ScriptedRealtimeModel,
    ScriptedSTT,
    ScriptedTTS,
    audio_frame,
    ssl_connection_error,
)

TIMEOUT = 10.0


def ssl_error() -> Exception:
    try:
        ssl_connection_error()
    except Exception as e:
        return e
    raise AssertionError("ssl_connection_error must raise")


NO_RETRY = APIConnectOptions(max_retry=0, retry_interval=0.01, timeout=5.0)
ONE_RETRY = APIConnectOptions(max_retry=1, retry_interval=0.01, timeout=5.0)


def switches(component: str, source: str, target: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    labels = {"component": component, "from_provider": source, "to_provider": target}
    return (n.FALLBACK_SWITCHES, tuple(sorted(labels.items())))


def exhausted(component: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return (n.FALLBACK_EXHAUSTED, (("component", component),))


def fallback_series(telemetry: Any) -> dict[Any, float]:
    return {
        k: v
        for k, v in telemetry.series().items()
        if k[0] in (n.FALLBACK_SWITCHES, n.FALLBACK_EXHAUSTED)
    }


async def chat(model: llm.LLM, conn_options: APIConnectOptions) -> str:
    ctx = llm.ChatContext.empty()
    ctx.add_message(role="user", content="hello")
    text = ""
    async with model.chat(chat_ctx=ctx, conn_options=conn_options) as stream:
        async for chunk in stream:
            if chunk.delta and chunk.delta.content:
                text += chunk.delta.content
    return text


@pytest.mark.asyncio
async def test_llm_switches_once_per_failed_provider_then_answers(telemetry: Any) -> None:
    adapter = llm.FallbackAdapter(
        [
            ScriptedLLM([ssl_connection_error], provider="first"),
            ScriptedLLM([ssl_connection_error], provider="second"),
            ScriptedLLM(["hi"], provider="third"),
        ],
        retry_interval=0.01,
    )
    assert await asyncio.wait_for(chat(adapter, NO_RETRY), TIMEOUT) == "hi"
    # the next request goes straight to the provider still up: no switch
    assert await asyncio.wait_for(chat(adapter, NO_RETRY), TIMEOUT) == "hi"
    assert fallback_series(telemetry) == {
        switches("llm", "first", "second"): 1,
        switches("llm", "second", "third"): 1,
    }
    await adapter.aclose()


@pytest.mark.asyncio
async def test_llm_exhausted_once_per_request_whatever_livekit_retried(telemetry: Any) -> None:
    adapter = llm.FallbackAdapter(
        [
            ScriptedLLM([ssl_connection_error], provider="first"),
            ScriptedLLM([ssl_connection_error], provider="second"),
        ],
        retry_interval=0.01,
    )
    # two rounds through both providers (livekit's own retry of the adapter), one request
    with pytest.raises(APIConnectionError):
        await asyncio.wait_for(chat(adapter, ONE_RETRY), TIMEOUT)
    # a second request, every provider already down: livekit tries both again, no signal
    with pytest.raises(APIConnectionError):
        await asyncio.wait_for(chat(adapter, NO_RETRY), TIMEOUT)
    assert fallback_series(telemetry) == {
        switches("llm", "first", "second"): 1,
        exhausted("llm"): 2,
    }
    await adapter.aclose()


@pytest.mark.asyncio
async def test_tts_switch_and_exhaustion(telemetry: Any) -> None:
    adapter = tts.FallbackAdapter(
        [
            ScriptedTTS([ssl_connection_error], provider="tts-a"),
            ScriptedTTS(["ok"], provider="tts-b"),
        ],
        max_retry_per_tts=0,
    )

    async def synthesize() -> None:
        async with adapter.synthesize("hello", conn_options=NO_RETRY) as stream:
            async for _ in stream:
                pass

    await asyncio.wait_for(synthesize(), TIMEOUT)
    assert fallback_series(telemetry) == {switches("tts", "tts-a", "tts-b"): 1}
    await adapter.aclose()

    dead = tts.FallbackAdapter(
        [ScriptedTTS([ssl_connection_error], provider="tts-a")], max_retry_per_tts=0
    )

    async def synthesize_dead() -> None:
        async with dead.synthesize("hello", conn_options=NO_RETRY) as stream:
            async for _ in stream:
                pass

    with pytest.raises(APIConnectionError):
        await asyncio.wait_for(synthesize_dead(), TIMEOUT)
    assert fallback_series(telemetry) == {
        switches("tts", "tts-a", "tts-b"): 1,
        exhausted("tts"): 1,
    }
    await dead.aclose()


@pytest.mark.asyncio
async def test_stt_recognize_switch(telemetry: Any) -> None:
    adapter = stt.FallbackAdapter(
        [
            ScriptedSTT([ssl_connection_error], provider="stt-a", streaming=True),
            ScriptedSTT(["hello"], provider="stt-b", streaming=True),
        ],
        max_retry_per_stt=0,
    )
    event = await asyncio.wait_for(
        adapter.recognize([audio_frame()], conn_options=NO_RETRY), TIMEOUT
    )
    assert event.alternatives[0].text == "hello"
    assert fallback_series(telemetry) == {switches("stt", "stt-a", "stt-b"): 1}
    await adapter.aclose()


@pytest.mark.asyncio
async def test_session_span_carries_the_switch_and_exhausted_events(telemetry: Any) -> None:
    adapter = llm.FallbackAdapter(
        [
            ScriptedLLM([ssl_connection_error], provider="first"),
            ScriptedLLM([ssl_connection_error], provider="second"),
        ],
        retry_interval=0.01,
    )
    session: AgentSession[None] = AgentSession(
        llm=adapter,
        vad=None,
        aec_warmup_duration=None,
        conn_options=SessionConnectOptions(llm_conn_options=NO_RETRY, max_unrecoverable_errors=5),
    )
    await session.start(agent=Agent(instructions="test agent"))
    with pytest.raises(Exception):  # noqa: B017, PT011 (livekit's wrapper of the dead turn)
        await asyncio.wait_for(session.run(user_input="hello there"), TIMEOUT)
    await session.aclose()
    await adapter.aclose()
    assert fallback_series(telemetry) == {
        switches("llm", "first", "second"): 1,
        exhausted("llm"): 1,
    }
    (span,) = telemetry.spans(n.SPAN_SESSION)
    events = [(e.name, dict(e.attributes or {})) for e in span.events]
    assert [e for e in events if e[0].startswith("otel_agents.fallback")] == [
        (
            n.EVENT_FALLBACK_SWITCH,
            {
                n.A_COMPONENT: "llm",
                n.E_FALLBACK_FROM_PROVIDER: "first",
                n.E_FALLBACK_TO_PROVIDER: "second",
            },
        ),
        (n.EVENT_FALLBACK_EXHAUSTED, {n.A_COMPONENT: "llm"}),
    ]


def test_a_broken_handler_is_counted_and_never_raises(telemetry: Any) -> None:
    from otel_agents._capture import fallback

    class Adapter:
        pass

    state = fallback._Adapter(Adapter(), "llm", 2)
    state.on_availability(object())  # no .available: contained
    assert telemetry.value(n.INTERNAL_ERRORS, where="fallback_hook") == 1


async def settle() -> None:
    """Let the adapter's swap task and the deferred decisions run."""
    for _ in range(5):
        await asyncio.sleep(0.01)


@pytest.mark.asyncio
async def test_realtime_switches_then_exhausted(telemetry: Any) -> None:
    """livekit's ``RealtimeModelFallbackAdapter``: a model failing unrecoverably is a switch to
    the next available one; when none is left (the others cooling down), the session escalates
    the error: exhausted."""
    first = ScriptedRealtimeModel(provider="rt-a")
    second = ScriptedRealtimeModel(provider="rt-b")
    adapter = llm.RealtimeModelFallbackAdapter([first, second], cooldown=60.0)
    session = adapter.session()
    escalated: list[llm.RealtimeModelError] = []
    session.on("error", escalated.append)

    first.sessions[0].emit_error(ssl_error(), recoverable=False)
    await settle()
    assert len(second.sessions) == 1  # livekit swapped to the second model
    assert fallback_series(telemetry) == {switches("realtime", "rt-a", "rt-b"): 1}
    assert [e.recoverable for e in escalated] == [True]  # livekit hides it while one is left

    second.sessions[0].emit_error(ssl_error(), recoverable=False)
    await settle()
    assert [e.recoverable for e in escalated] == [True, False]
    assert fallback_series(telemetry) == {
        switches("realtime", "rt-a", "rt-b"): 1,
        exhausted("realtime"): 1,
    }
    await session.aclose()
    await adapter.aclose()


@pytest.mark.asyncio
async def test_realtime_switch_back_to_a_model_whose_cooldown_expired(telemetry: Any) -> None:
    """livekit re-enables a cooled-down model right after the failure's event: the decision
    waits for it (a switch back, not an exhaustion); a lone model restarted is no switch."""
    first = ScriptedRealtimeModel(provider="rt-a")
    second = ScriptedRealtimeModel(provider="rt-b")
    adapter = llm.RealtimeModelFallbackAdapter([first, second], cooldown=0.05)
    session = adapter.session()
    first.sessions[0].emit_error(ssl_error(), recoverable=False)
    await settle()
    await asyncio.sleep(0.1)  # the primary's cooldown is over
    second.sessions[0].emit_error(ssl_error(), recoverable=False)
    await settle()
    assert len(first.sessions) == 2  # back on the primary
    assert fallback_series(telemetry) == {
        switches("realtime", "rt-a", "rt-b"): 1,
        switches("realtime", "rt-b", "rt-a"): 1,
    }
    await session.aclose()
    await adapter.aclose()

    alone = ScriptedRealtimeModel(provider="rt-alone")
    single = llm.RealtimeModelFallbackAdapter([alone], cooldown=0.0)
    session = single.session()
    alone.sessions[0].emit_error(ssl_error(), recoverable=False)
    await settle()
    assert len(alone.sessions) == 2  # livekit restarted it
    assert fallback_series(telemetry) == {
        switches("realtime", "rt-a", "rt-b"): 1,
        switches("realtime", "rt-b", "rt-a"): 1,
    }
    await session.aclose()
    await single.aclose()


@pytest.mark.asyncio
async def test_stt_stream_switch_and_exhaustion(telemetry: Any) -> None:
    """The streaming path: livekit's FallbackAdapter's ``stream()`` moves to the next STT when
    the stream of the first one fails, and fails itself when every one did."""
    adapter = stt.FallbackAdapter(
        [
            ScriptedSTT([ssl_connection_error], provider="stt-a", streaming=True),
            ScriptedSTT(["hello"], provider="stt-b", streaming=True),
        ],
        max_retry_per_stt=0,
    )

    async def transcribe(model: stt.STT) -> list[str]:
        texts = []
        async with model.stream(conn_options=NO_RETRY) as stream:
            stream.push_frame(audio_frame())
            stream.end_input()
            async for event in stream:
                if event.type == stt.SpeechEventType.FINAL_TRANSCRIPT:
                    texts.append(event.alternatives[0].text)
        return texts

    assert await asyncio.wait_for(transcribe(adapter), TIMEOUT) == ["hello"]
    assert fallback_series(telemetry) == {switches("stt", "stt-a", "stt-b"): 1}
    await adapter.aclose()

    dead = stt.FallbackAdapter(
        [
            ScriptedSTT([ssl_connection_error], provider="stt-a", streaming=True),
            ScriptedSTT([ssl_connection_error], provider="stt-b", streaming=True),
        ],
        max_retry_per_stt=0,
    )
    with pytest.raises(APIConnectionError):
        await asyncio.wait_for(transcribe(dead), TIMEOUT)
    assert fallback_series(telemetry) == {
        switches("stt", "stt-a", "stt-b"): 2,
        exhausted("stt"): 1,
    }
    await dead.aclose()
