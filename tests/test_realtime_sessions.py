"""Sessions on a realtime (speech-to-speech) model, tracked as truly as pipeline sessions
(docs/sessions.md, "Realtime models"): a real ``AgentSession(llm=<realtime model>)`` on the
scripted realtime model of ``fake_realtime.py`` (livekit's public base classes, emitting what
livekit's OpenAI realtime session emits), with an audio sink that plays its frames, through both
input paths: ``generate_reply(user_input=...)`` and the audio path (server VAD, the final
transcript, a reply the model creates itself).

Each test asserts exact turn outcomes, the requests and attempts recorded, the unanswered gauge's
trace and the session record; latencies structurally (each answered turn's latency is its own
user message to its own reply's ``speaking``, as livekit stamped them), never against the clock.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Sequence
from typing import Any

import pytest
from fake_realtime import Empty, FailedResponse, FakeRealtimeModel, Refused, Reply, Stall, Step
from livekit.agents import Agent, AgentSession, llm
from test_audible import Sink
from test_session_turns import (
    TIMEOUT,
    Histograms,
    assert_log_mirrors_span,
    close,
    session_attributes,
    start,
    the_session_span,
    wait_until,
)

from otel_agents import _runtime
from otel_agents import names as n
from otel_agents._capture import sessions as _session

from conftest import session_series
from scripted import realtime_quota_error

PROVIDER = "fake-realtime"
GAP = 0.3  # between the turns of a test
SESSION_METRICS = {
    n.SESSIONS_STARTED,
    n.SESSIONS_CLOSED,
    n.SILENT_SESSIONS,
    n.USER_TURNS,
    n.DEAD_TURNS,
    n.UNHEARD_SPEECH,
}


def session_part(series: dict[Any, float]) -> dict[Any, float]:
    return {key: value for key, value in series.items() if key[0] in SESSION_METRICS}


def credits_error() -> Exception:
    """LiveKit Inference out of credits, as a realtime ``error`` event carries it: terminal."""
    return realtime_quota_error("MaxGatewayCredits")


def rate_limit_error() -> Exception:
    """LiveKit Inference rate limit (transient)."""
    return realtime_quota_error("MaxConcurrentGatewayLLMRpm")


class Run:
    """A realtime session under test, and what it emitted."""

    def __init__(self, telemetry: Any, script: Sequence[Step], *, audio: bool = True) -> None:
        self.telemetry = telemetry
        self.model = FakeRealtimeModel(script)
        self.session = AgentSession(
            llm=self.model,
            vad=None,
            aec_warmup_duration=None,
            turn_handling={"turn_detection": "realtime_llm"},
        )
        self.sink: Sink | None = None
        if audio:
            self.sink = Sink()
            self.session.output.audio = self.sink
        self.user_items: list[float] = []  # when each user turn began, as livekit stamped it
        self.speaking: list[float] = []
        self.speeches: list[Any] = []
        self.gauge: list[float] = []  # the unanswered gauge after each change
        on = self.session.on
        on("conversation_item_added", self._on_item)
        on("agent_state_changed", self._on_state)
        on("speech_created", lambda ev: self.speeches.append(ev.speech_handle))
        recorder = _runtime.current.recorder  # type: ignore[union-attr]
        unanswered = recorder.unanswered

        def traced(delta: int) -> None:
            unanswered(delta)
            self.gauge.append(telemetry.value(n.UNANSWERED_TURNS))

        recorder.unanswered = traced  # type: ignore[method-assign]

    def _on_item(self, ev: Any) -> None:
        if getattr(ev.item, "role", None) == "user":
            self.user_items.append(min(ev.item.created_at, ev.created_at))

    def _on_state(self, ev: Any) -> None:
        if ev.new_state == "speaking":
            self.speaking.append(ev.created_at)

    @property
    def rt(self) -> Any:
        return self.model.sessions[-1]

    async def __aenter__(self) -> Run:
        await start(self.session, Agent(instructions="test agent"))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await close(self.session)

    async def ask(self, text: str) -> None:
        """A user turn through ``generate_reply``, to the end of its reply."""
        handle = self.session.generate_reply(user_input=text)
        await asyncio.wait_for(handle.wait_for_playout(), TIMEOUT)
        await asyncio.sleep(GAP)

    async def say(self, text: str, *, late_transcript: bool = False) -> None:
        """A user turn through the audio path, to the end of the reply the model creates."""
        before = len(self.speeches)
        self.rt.user_says(text, late_transcript=late_transcript)
        await asyncio.sleep(GAP)
        for handle in self.speeches[before:]:
            await asyncio.wait_for(handle.wait_for_playout(), TIMEOUT)

    def attempts(self) -> list[tuple[Any, ...]]:
        return [
            (r.component, r.provider, r.attempt, r.final, r.classification.error_class)
            for r in self.telemetry.attempt_records
        ]

    def requests(self) -> dict[str, float]:
        value = self.telemetry.value
        return {
            outcome: value(n.REQUESTS, component="realtime", provider=PROVIDER, outcome=outcome)
            for outcome in ("ok", "failed")
        }


def latencies(run: Run, answered: Sequence[tuple[int, int]]) -> float:
    """The response latency histogram's sum these (user turn, speaking) pairs make."""
    return sum(run.speaking[s] - run.user_items[u] for u, s in answered)


# --- healthy ------------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["generate_reply", "audio", "audio_late_transcript"])
async def test_healthy_replies_are_answered_turns(telemetry, outcomes, path: str) -> None:
    histograms = Histograms(telemetry)
    async with Run(telemetry, [Reply("hi there"), Reply("sure")]) as run:
        for text in ("hello", "one more thing"):
            if path == "generate_reply":
                await run.ask(text)
            else:
                await run.say(text, late_transcript=path == "audio_late_transcript")

    assert outcomes == ["answered", "answered"]
    assert run.sink is not None
    assert run.sink.finished == [(0.2, False), (0.2, False)]
    assert run.requests() == {"ok": 2, "failed": 0}
    assert run.attempts() == []
    assert run.gauge == []
    assert session_part(telemetry.series()) == session_series(agent_spoke=True, turns=2)
    assert telemetry.value(n.UNHEARD_SPEECH, cause="no_frames") == 0
    # each turn's latency runs from its own user message to its own reply's first frame; a late
    # transcript is placed where the user's turn began, before the reply it prompted
    assert len(run.user_items) == len(run.speaking) == 2
    assert histograms.count(n.RESPONSE_LATENCY) == 2
    assert histograms.sum(n.RESPONSE_LATENCY) == pytest.approx(
        latencies(run, [(0, 0), (1, 1)]), abs=1e-6
    )
    assert all(u < s for u, s in zip(run.user_items, run.speaking, strict=True))
    span = the_session_span(telemetry)
    ttfs = span.attributes[n.S_TIME_TO_FIRST_SPEECH]
    assert histograms.count(n.TIME_TO_FIRST_SPEECH) == 1
    assert 0 < ttfs == pytest.approx(histograms.sum(n.TIME_TO_FIRST_SPEECH), abs=1e-9)
    assert dict(span.attributes) == session_attributes(
        silent=False,
        agent_spoke=True,
        user_turns=2,
        answered=2,
        dead=0,
        errors=0,
        time_to_first_speech=ttfs,
    )
    assert_log_mirrors_span(telemetry, span, "INFO")


# --- failing ------------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("path", "step"),
    [
        ("generate_reply", Refused(credits_error)),
        ("generate_reply", FailedResponse(credits_error)),
        ("audio", Refused(credits_error)),
        ("audio", FailedResponse(credits_error)),
    ],
    ids=["generate_reply-refused", "generate_reply-failed", "audio-refused", "audio-failed"],
)
@pytest.mark.otel_agents(silence_timeout=1.0)
async def test_credit_exhaustion_kills_each_turn_at_once(
    telemetry, outcomes, path: str, step: Step
) -> None:
    """Three replies fail with LiveKit Inference's terminal quota error (as a realtime ``error``
    event, ``recoverable=True``: livekit's realtime session does not call it fatal)."""
    async with Run(telemetry, [step]) as run:
        for turn in range(3):
            if path == "generate_reply":
                await run.ask(f"hello? ({turn})")
            else:
                await run.say(f"hello? ({turn})")
            # dead at once: not left waiting for the next turn or the close
            assert outcomes == ["dead_error"] * (turn + 1)

    assert run.speaking == []
    # one reply, one request: each failure is its reply's, attempt 0 and final
    assert run.attempts() == [("realtime", PROVIDER, 0, True, "quota_exhausted")] * 3
    assert run.requests() == {"ok": 0, "failed": 3}
    assert [r.masked for r in telemetry.attempt_records] == [False] * 3
    assert {r.first_root_cause_type for r in telemetry.attempt_records} == {
        "livekit.agents.APIError"
    }
    assert {r.classification.terminal for r in telemetry.attempt_records} == {True}
    # the turns died before they waited silence_timeout: never counted unanswered
    assert run.gauge == []
    assert telemetry.value(n.UNANSWERED_TURNS) == 0
    assert session_part(telemetry.series()) == session_series(
        agent_spoke=False, turns=3, dead={"error": 3}, cause="quota_exhausted"
    )
    span = the_session_span(telemetry)
    assert dict(span.attributes) == session_attributes(
        silent=True,
        agent_spoke=False,
        user_turns=3,
        answered=0,
        dead=3,
        errors=3,
        terminal=True,
        silence_cause="quota_exhausted",
    )
    assert_log_mirrors_span(telemetry, span, "WARNING")


@pytest.mark.asyncio
async def test_fatal_error_is_final_and_kills_its_turn(telemetry, outcomes) -> None:
    """A fatal error (raised in the receive loop, emitted ``recoverable=False``): livekit closes
    the session at the first unrecoverable realtime error."""
    async with Run(telemetry, [Refused(credits_error, fatal=True)]) as run:
        await run.ask("hello?")
        assert outcomes == ["dead_error"]
    assert run.attempts() == [("realtime", PROVIDER, 0, True, "quota_exhausted")]
    assert run.requests() == {"ok": 0, "failed": 1}
    assert session_part(telemetry.series()) == session_series(
        reason="error", agent_spoke=False, turns=1, dead={"error": 1}, cause="quota_exhausted"
    )


@pytest.mark.asyncio
async def test_answer_after_a_failed_turn_is_credited_to_its_own_turn(telemetry, outcomes) -> None:
    """A transient failure, then an answer: the answer is the second turn's, with the second
    turn's latency; the first turn is dead, not answered late."""
    histograms = Histograms(telemetry)
    async with Run(telemetry, [Refused(rate_limit_error), Reply("sorry, go on")]) as run:
        await run.ask("first")
        await asyncio.sleep(GAP)
        await run.ask("second")

    assert outcomes == ["dead_error", "answered"]
    assert run.attempts() == [("realtime", PROVIDER, 0, True, "rate_limited")]
    assert run.requests() == {"ok": 1, "failed": 1}
    assert histograms.count(n.RESPONSE_LATENCY) == 1
    assert histograms.sum(n.RESPONSE_LATENCY) == pytest.approx(latencies(run, [(1, 0)]), abs=1e-6)
    # shorter than the time since the first (failed) turn opened: not credited to it
    assert histograms.sum(n.RESPONSE_LATENCY) < run.speaking[0] - run.user_items[0]
    assert run.gauge == []
    assert session_part(telemetry.series()) == session_series(
        agent_spoke=True, turns=2, dead={"error": 1}
    )


# --- empty, text-only, stalled, timed out ---------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["generate_reply", "audio"])
async def test_empty_replies_are_dead_empty_turns(telemetry, outcomes, path: str) -> None:
    async with Run(telemetry, [Empty()]) as run:
        for text in ("hello", "anyone?"):
            await (run.ask(text) if path == "generate_reply" else run.say(text))
            assert outcomes[-1] == "dead_empty"

    assert outcomes == ["dead_empty", "dead_empty"]
    assert run.attempts() == []
    assert run.requests() == {"ok": 2, "failed": 0}  # the model answered, with nothing
    assert session_part(telemetry.series()) == session_series(
        agent_spoke=False, turns=2, dead={"empty": 2}, cause="empty_reply"
    )


@pytest.mark.asyncio
async def test_text_only_reply_with_an_audio_output_is_unheard(telemetry, outcomes) -> None:
    """livekit reaches ``speaking`` on the first text when no audio is forwarded: the sink
    received no frame, the caller heard nothing."""
    async with Run(telemetry, [Reply("hi there", audio=None)]) as run:
        await run.ask("hello")

    assert run.speaking != []  # livekit did say speaking
    assert run.sink is not None
    assert run.sink.frames == 0
    assert outcomes == ["unheard"]
    assert session_part(telemetry.series()) == session_series(
        agent_spoke=False, turns=1, cause="unheard", unheard={"no_frames": 1}
    )
    assert run.requests() == {"ok": 1, "failed": 0}


@pytest.mark.asyncio
async def test_text_reply_without_an_audio_output_is_heard(telemetry, outcomes) -> None:
    async with Run(telemetry, [Reply("hi there", audio=None)], audio=False) as run:
        await run.ask("hello")

    assert outcomes == ["answered"]
    assert session_part(telemetry.series()) == session_series(agent_spoke=True, turns=1)


@pytest.mark.asyncio
@pytest.mark.otel_agents(silence_timeout=0.2)
async def test_stalled_reply_is_unanswered_then_abandoned(telemetry, outcomes) -> None:
    """The user spoke, the model never replied (no error, no response): the turn waits, is
    counted unanswered while it waits, and is abandoned at the close."""
    async with Run(telemetry, [Stall()]) as run:
        run.rt.user_says("hello?")
        assert await wait_until(lambda: run.gauge == [1])
        assert outcomes == []

    assert outcomes == ["abandoned"]
    assert run.gauge == [1, 0]
    assert run.attempts() == []
    assert run.requests() == {"ok": 0, "failed": 0}
    assert session_part(telemetry.series()) == session_series(
        agent_spoke=False, turns=1, cause="stalled"
    )
    assert the_session_span(telemetry).attributes[n.S_UNANSWERED_TURNS] == 1


@pytest.mark.asyncio
@pytest.mark.otel_agents(silence_timeout=0.1)
async def test_timed_out_reply_is_a_failed_request_and_a_dead_turn(telemetry, outcomes) -> None:
    """livekit gives up on a ``generate_reply`` the model never answered (its ``RealtimeError``
    "generate_reply timed out.", never an ``error`` event): a final failed attempt classed
    ``timeout``, the turn dead at once, and the gauge back to 0 when livekit gave up."""
    async with Run(telemetry, [Stall()]) as run:
        handle = run.session.generate_reply(user_input="hello?")
        await asyncio.wait_for(handle.wait_for_playout(), TIMEOUT)
        assert isinstance(handle.exception(), llm.RealtimeError)
        assert outcomes == ["dead_error"]
        assert run.gauge == [1, 0]  # back to 0 when livekit gave up, not at the close

    assert run.gauge == [1, 0]  # it waited past silence_timeout (0.1 s) before the 0.3 s timeout
    assert run.attempts() == [("realtime", PROVIDER, 0, True, "timeout")]
    (record,) = telemetry.attempt_records
    assert record.classification.root_cause_type == "livekit.agents.llm.realtime.RealtimeError"
    assert run.requests() == {"ok": 0, "failed": 1}
    assert session_part(telemetry.series()) == session_series(
        agent_spoke=False, turns=1, dead={"error": 1}, cause="timeout"
    )


# --- mixed sequences ----------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.otel_agents(silence_timeout=1.0)
async def test_mixed_sequence_on_both_paths(telemetry, outcomes) -> None:
    script: list[Step] = [
        Reply("hello!"),
        Refused(rate_limit_error),
        Empty(),
        FailedResponse(credits_error),
        Reply("text only", audio=None),
        Reply("back again"),
    ]
    histograms = Histograms(telemetry)
    async with Run(telemetry, script) as run:
        await run.ask("hi")  # answered
        await run.say("are you there?")  # refused: dead_error
        await run.ask("hello?")  # empty: dead_empty
        await run.say("please")  # failed response: dead_error
        await run.ask("anything?")  # text only: unheard
        await run.say("last try", late_transcript=True)  # answered

    assert outcomes == [
        "answered",
        "dead_error",
        "dead_empty",
        "dead_error",
        "unheard",
        "answered",
    ]
    assert run.attempts() == [
        ("realtime", PROVIDER, 0, True, "rate_limited"),
        ("realtime", PROVIDER, 0, True, "quota_exhausted"),
    ]
    assert run.requests() == {"ok": 4, "failed": 2}  # empty and text-only: answered by the model
    assert run.gauge == []
    assert histograms.count(n.RESPONSE_LATENCY) == 2
    # speaking: the first reply, the text-only one, the last one
    assert len(run.speaking) == 3
    assert histograms.sum(n.RESPONSE_LATENCY) == pytest.approx(
        latencies(run, [(0, 0), (5, 2)]), abs=1e-6
    )
    assert session_part(telemetry.series()) == session_series(
        agent_spoke=True, turns=6, dead={"error": 2, "empty": 1}, unheard={"no_frames": 1}
    )
    span = the_session_span(telemetry)
    assert dict(span.attributes) == session_attributes(
        silent=False,
        agent_spoke=True,
        user_turns=6,
        answered=2,
        dead=3,
        errors=2,
        terminal=True,
        time_to_first_speech=span.attributes[n.S_TIME_TO_FIRST_SPEECH],
    )


@pytest.mark.asyncio
async def test_error_between_turns_is_not_final(telemetry, outcomes) -> None:
    """A model error while no reply is in flight and no turn waits (a reconnect while the caller
    listens): livekit's realtime session may still recover; nothing dies."""
    async with Run(telemetry, [Reply("hi")]) as run:
        await run.ask("hello")
        run.rt.emit_error(rate_limit_error(), recoverable=True)
        await run.ask("again")

    assert outcomes == ["answered", "answered"]
    assert run.attempts() == [("realtime", PROVIDER, 0, False, "rate_limited")]
    assert run.requests() == {"ok": 2, "failed": 0}


@pytest.mark.asyncio
async def test_a_kept_speech_handle_keeps_nothing_of_the_session(telemetry, outcomes) -> None:
    async with Run(telemetry, [Reply("hi")]) as run:
        kept = run.session.generate_reply(user_input="hello")
        await asyncio.wait_for(kept.wait_for_playout(), TIMEOUT)
    del run
    gc.collect()
    assert kept.done()
    assert outcomes == ["answered"]
    assert not [o for o in gc.get_objects() if type(o) is _session.SessionTracker]
