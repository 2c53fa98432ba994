"""Whether the caller heard the agent (docs/sessions.md): a real ``AgentSession`` whose TTS
output goes to an audio sink built on livekit's ``io.AudioOutput``, offline. The agent reaching
``speaking`` is not enough: its audio must have played (a playout position above zero).

Each sink reports its playouts the way livekit asks a sink to (``on_playback_started`` when audio
starts, ``on_playback_finished`` at the end of each segment, with how much of it played).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterable
from typing import Any

import pytest
from livekit import rtc
from livekit.agents import Agent, AgentSession, APIError, ModelSettings
from livekit.agents.types import APIConnectOptions
from livekit.agents.voice import io
from livekit.agents.voice.agent_session import SessionConnectOptions
from test_session_turns import TIMEOUT, close, start, wait_until

from otel_agents import names as n

from conftest import session_series
from scripted import ScriptedLLM, ScriptedTTS, raising

REPLY = "hi, how can I help?"
AUDIBLE_METRICS = {
    n.SESSIONS_STARTED,
    n.SESSIONS_CLOSED,
    n.SILENT_SESSIONS,
    n.USER_TURNS,
    n.DEAD_TURNS,
    n.UNHEARD_SPEECH,
}


class Sink(io.AudioOutput):
    """An audio sink: ``plays`` every frame at once, or never plays any (position 0), or holds
    them until ``clear_buffer`` (``hold``)."""

    def __init__(self, *, plays: bool = True, hold: bool = False) -> None:
        super().__init__(label="test-sink", capabilities=io.AudioOutputCapabilities(pause=False))
        self.plays = plays
        self.hold = hold
        self.frames = 0
        self.position = 0.0
        self.started = False
        self.open = False  # a segment is in progress (frames captured, not reported)
        self.finished: list[tuple[float, bool]] = []

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        self.frames += 1
        self.open = True
        if self.plays:
            if not self.started:
                self.started = True
                self.on_playback_started(created_at=time.time())
            self.position += frame.duration

    def flush(self) -> None:
        super().flush()
        if not self.hold:
            self._finish(interrupted=False)

    def clear_buffer(self) -> None:
        self._finish(interrupted=True)

    def _finish(self, *, interrupted: bool) -> None:
        if not self.open:
            return
        position = self.position
        self.open, self.started, self.position = False, False, 0.0
        self.finished.append((position, interrupted))
        asyncio.get_running_loop().call_soon(
            lambda: self.on_playback_finished(playback_position=position, interrupted=interrupted)
        )


class NoAudioAgent(Agent):
    """An agent whose TTS node yields no audio at all (and no error)."""

    async def tts_node(  # type: ignore[override]
        self, text: AsyncIterable[str], model_settings: ModelSettings
    ) -> AsyncIterable[rtc.AudioFrame]:
        async for _ in text:
            pass
        return
        yield  # an async generator that yields nothing


def make_session(script: list[Any], tts_script: list[Any] | None = None) -> AgentSession:
    fast = APIConnectOptions(max_retry=1, retry_interval=0.01)
    return AgentSession(
        llm=ScriptedLLM(script),
        tts=ScriptedTTS(tts_script or ["audio"]),
        vad=None,
        aec_warmup_duration=None,
        conn_options=SessionConnectOptions(llm_conn_options=fast, tts_conn_options=fast),
    )


def audible_part(series: dict[Any, float]) -> dict[Any, float]:
    return {key: value for key, value in series.items() if key[0] in AUDIBLE_METRICS}


def closed_session(telemetry: Any) -> tuple[dict[str, Any], Any]:
    """The session span's attributes and the ``session_closed`` record, which must agree."""
    (span,) = telemetry.spans(n.SPAN_SESSION)
    (record,) = telemetry.logs(n.LOG_SESSION_CLOSED)
    attributes = dict(span.attributes)
    assert record.silence_cause == attributes.get(n.S_SILENCE_CAUSE)
    assert record.silent == attributes[n.S_SILENT]
    assert record.agent_spoke == attributes[n.S_AGENT_SPOKE]
    assert record.answered_turns == attributes[n.S_ANSWERED_TURNS]
    assert record.levelname == ("WARNING" if attributes[n.S_SILENT] else "INFO")
    return attributes, record


def heard_part(attributes: dict[str, Any]) -> dict[str, Any]:
    keys = (
        n.S_SILENT,
        n.S_SILENCE_CAUSE,
        n.S_AGENT_SPOKE,
        n.S_USER_SPOKE,
        n.S_USER_TURNS,
        n.S_ANSWERED_TURNS,
        n.S_DEAD_TURNS,
        n.S_ERRORS,
    )
    return {k: attributes[k] for k in keys if k in attributes}


def heard(
    *,
    silent: bool,
    answered: int,
    dead: int = 0,
    errors: int = 0,
    cause: str | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        n.S_SILENT: silent,
        n.S_AGENT_SPOKE: not silent,
        n.S_USER_SPOKE: True,
        n.S_USER_TURNS: 1,
        n.S_ANSWERED_TURNS: answered,
        n.S_DEAD_TURNS: dead,
        n.S_ERRORS: errors,
    }
    if cause is not None:
        out[n.S_SILENCE_CAUSE] = cause
    return out


@pytest.mark.asyncio
async def test_audio_that_plays_is_heard(telemetry) -> None:
    session = make_session([REPLY])
    sink = Sink()
    session.output.audio = sink
    try:
        await start(session)
        await asyncio.wait_for(session.run(user_input="hello there"), TIMEOUT)
    finally:
        await close(session)

    assert sink.frames > 0
    assert len(sink.finished) == 1
    assert sink.finished[0][0] > 0
    assert audible_part(telemetry.series()) == session_series(agent_spoke=True, turns=1)
    attributes, _ = closed_session(telemetry)
    assert heard_part(attributes) == heard(silent=False, answered=1)
    assert attributes[n.S_TIME_TO_FIRST_SPEECH] > 0


@pytest.mark.asyncio
async def test_audio_that_never_plays_is_unheard(telemetry) -> None:
    """The sink takes every frame and reports the segment finished at position 0: livekit
    never reaches ``speaking``, the reply is in the history, and the caller heard nothing."""
    session = make_session([REPLY])
    sink = Sink(plays=False)
    session.output.audio = sink
    states: list[str] = []
    session.on("agent_state_changed", lambda ev: states.append(ev.new_state))
    try:
        await start(session)
        await asyncio.wait_for(session.run(user_input="hello there"), TIMEOUT)
    finally:
        await close(session)

    assert sink.frames > 0
    assert sink.finished == [(0.0, False)]
    assert "speaking" not in states
    assert audible_part(telemetry.series()) == session_series(
        agent_spoke=False, turns=1, cause="unheard", unheard={"never_played": 1}
    )
    attributes, _ = closed_session(telemetry)
    assert heard_part(attributes) == heard(silent=True, answered=0, cause="unheard")
    assert n.S_TIME_TO_FIRST_SPEECH not in attributes


@pytest.mark.asyncio
async def test_audio_cleared_before_it_played_is_unheard(telemetry) -> None:
    """The sink holds the reply's audio; the speech is interrupted before any of it played."""
    session = make_session([REPLY])
    sink = Sink(plays=False, hold=True)
    session.output.audio = sink
    try:
        await start(session)
        handle = session.generate_reply(user_input="hello there")
        assert await wait_until(lambda: sink.frames > 0)
        await asyncio.sleep(0.05)
        await asyncio.wait_for(session.interrupt(), TIMEOUT)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(handle.wait_for_playout(), TIMEOUT)
        assert await wait_until(lambda: session.agent_state == "listening")
    finally:
        await close(session)

    assert sink.finished == [(0.0, True)]
    assert audible_part(telemetry.series()) == session_series(
        agent_spoke=False, turns=1, cause="unheard", unheard={"cleared_before_playout": 1}
    )
    attributes, _ = closed_session(telemetry)
    assert heard_part(attributes) == heard(silent=True, answered=0, cause="unheard")


@pytest.mark.asyncio
async def test_a_reply_without_audio_frames_is_unheard(telemetry) -> None:
    """The TTS node yields nothing, without an error: the reply's text is in the history, the
    sink never got a frame."""
    session = make_session([REPLY])
    sink = Sink()
    session.output.audio = sink
    items: list[str] = []
    session.on(
        "conversation_item_added",
        lambda ev: items.append(f"{ev.item.role}: {ev.item.text_content}"),
    )
    try:
        await start(session, NoAudioAgent(instructions="test agent"))
        await asyncio.wait_for(session.run(user_input="hello there"), TIMEOUT)
    finally:
        await close(session)

    assert sink.frames == 0
    assert items == ["user: hello there", f"assistant: {REPLY}"]
    assert audible_part(telemetry.series()) == session_series(
        agent_spoke=False, turns=1, cause="unheard", unheard={"no_frames": 1}
    )
    attributes, _ = closed_session(telemetry)
    assert heard_part(attributes) == heard(silent=True, answered=0, cause="unheard")


@pytest.mark.asyncio
async def test_a_failed_synthesis_kills_the_turn(telemetry) -> None:
    """The TTS fails on every attempt: no frame reaches the sink. The failure killed the turn
    (a dead turn, not unheard speech: livekit keeps no reply), and the silence is blamed on it."""
    failing = raising(APIError("tts backend unavailable", retryable=False))
    session = make_session([REPLY], [failing])
    sink = Sink()
    session.output.audio = sink
    items: list[str] = []
    session.on("conversation_item_added", lambda ev: items.append(ev.item.role))
    try:
        await start(session)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(session.run(user_input="hello there"), TIMEOUT)
    finally:
        await close(session)

    assert sink.frames == 0
    assert items == ["user"]
    (tts_attempt,) = [s for s in telemetry.attempt_spans() if s.attributes[n.A_COMPONENT] == "tts"]
    # a provider's APIError without a status or a cause: a server-side failure
    error_class = "server_error"
    assert tts_attempt.attributes[n.A_ERROR_CLASS] == error_class
    assert audible_part(telemetry.series()) == session_series(
        agent_spoke=False,
        turns=1,
        dead={"error": 1},
        cause=error_class,
    )
    attributes, _ = closed_session(telemetry)
    assert heard_part(attributes) == heard(
        silent=True, answered=0, dead=1, errors=1, cause=error_class
    )


@pytest.mark.asyncio
async def test_a_text_session_is_heard_by_its_reply(telemetry) -> None:
    """No audio output: a non-empty reply is what the caller gets."""
    session = make_session([REPLY])
    session.output.audio = None
    try:
        await start(session)
        await asyncio.wait_for(session.run(user_input="hello there"), TIMEOUT)
    finally:
        await close(session)

    assert audible_part(telemetry.series()) == session_series(agent_spoke=True, turns=1)
    attributes, _ = closed_session(telemetry)
    assert heard_part(attributes) == heard(silent=False, answered=1)
