"""User turns of a real ``AgentSession`` (text mode, no room, offline): each outcome of
docs/sessions.md, as livekit 1.8.9 actually produces it, and the metrics, the
``otel_agents.session`` span and the ``session_closed`` log record agreeing on it.

Each test records the order of the session's public events (:class:`Timeline`) so that what it
asserts about the tracker rests on what livekit emitted, and spies on the tracker's turn outcomes
(``outcomes``), which no metric carries by name (``preempted``, ``tool_only``, ``abandoned``).
Cases where a first tracker disagreed with livekit's stream are pinned here: start() awaited in
a task of its own, a tool whose follow-up reply fails, a second message queued before the first
was answered (livekit answers both, in order).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from livekit.agents import Agent, AgentSession, APIError, function_tool, llm, vad
from livekit.agents.types import APIConnectOptions
from livekit.agents.voice.agent_session import SessionConnectOptions
from livekit.agents.voice.room_io import TextInputEvent, TextInputOptions
from opentelemetry import trace

import otel_agents
from otel_agents import names as n
from otel_agents._export import metrics as _metrics

from conftest import reset_metrics, session_series
from scripted import (
    ControlledVAD,
    Hang,
    PushAudioInput,
    RichScriptedLLM,
    ScriptedLLM,
    Sleep,
    ToolCall,
    gateway_status_error,
    ssl_connection_error,
)

# The gateway's 429 bodies (agent-gateway pkg/quota/response.go, as quoted in livekit/agents
# PR #6012): ``error`` is a bare string, the quota fields sit at the top.
CREDITS_BODY = {
    "type": "inference_quota_exceeded",
    "error": "LLM token credit quota exceeded, category: MaxGatewayCredits, remaining: 0",
    "quota_type": "llm",
    "category": "MaxGatewayCredits",
    "hint": "Wait for the next billing cycle or upgrade your plan.",
    "remaining_limit": "0",
}
RATE_LIMIT_BODY = {
    "type": "inference_quota_exceeded",
    "error": "LLM request rate exceeded, category: MaxConcurrentGatewayLLMRpm",
    "quota_type": "llm",
    "category": "MaxConcurrentGatewayLLMRpm",
    "hint": "Reduce request rate or upgrade your plan.",
    "remaining_limit": "0",
}

TIMEOUT = 10.0  # bound on every await: a hang fails the test instead of the suite
SESSION_METRICS = {
    n.SESSIONS_STARTED,
    n.SESSIONS_CLOSED,
    n.SILENT_SESSIONS,
    n.USER_TURNS,
    n.DEAD_TURNS,
}
# the session_closed record's fields and the session span's attributes they mirror
LOG_FIELDS = {
    "close_reason": n.S_CLOSE_REASON,
    "silent": n.S_SILENT,
    "silence_cause": n.S_SILENCE_CAUSE,
    "agent_spoke": n.S_AGENT_SPOKE,
    "user_spoke": n.S_USER_SPOKE,
    "user_turns": n.S_USER_TURNS,
    "answered_turns": n.S_ANSWERED_TURNS,
    "dead_turns": n.S_DEAD_TURNS,
    "unanswered_turns": n.S_UNANSWERED_TURNS,
    "time_to_first_speech": n.S_TIME_TO_FIRST_SPEECH,
    "errors": n.S_ERRORS,
    "terminal_error": n.S_TERMINAL_ERROR,
    "close_error_type": n.S_CLOSE_ERROR_TYPE,
    "job_shutdown_reason": n.S_JOB_SHUTDOWN_REASON,
}

THINKING = ("agent", "listening", "thinking")
BACK_TO_LISTENING = ("agent", "thinking", "listening")
SPEAKING = ("agent", "thinking", "speaking")


# --- helpers -------------------------------------------------------------------------------------


async def wait_until(condition: Callable[[], object], within: float = TIMEOUT) -> bool:
    """Poll ``condition`` until it holds (True) or ``within`` seconds pass (False)."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.005)
    return True


class Timeline:
    """The public events of a session and of its models, in the order they were emitted."""

    def __init__(self, session: AgentSession, **models: llm.LLM) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.times: list[float] = []
        on = session.on
        on("agent_state_changed", lambda ev: self._add("agent", ev.old_state, ev.new_state))
        on("user_state_changed", lambda ev: self._add("user", ev.old_state, ev.new_state))
        on("conversation_item_added", self._on_item)
        on("function_tools_executed", lambda ev: self._add("tools", _names(ev.function_calls)))
        on("error", lambda ev: self._add("session_error", ev.error.recoverable))
        on("close", lambda ev: self._add("close", getattr(ev.reason, "value", ev.reason)))
        for name, model in models.items():
            model.on("error", self._model_error(name))

    def _add(self, *event: Any) -> None:
        self.events.append(event)
        self.times.append(time.monotonic())

    def _on_item(self, ev: Any) -> None:
        role = getattr(ev.item, "role", None)
        if role in ("user", "assistant"):
            self._add("item", role, ev.item.text_content or "")

    def _model_error(self, name: str) -> Callable[[Any], None]:
        def on_error(ev: Any) -> None:
            self._add(f"{name}_error", ev.recoverable)

        return on_error

    def where(self, *kinds: str) -> list[tuple[Any, ...]]:
        return [e for e in self.events if e[0] in kinds]

    def time_of(self, event: tuple[Any, ...]) -> float:
        return self.times[self.events.index(event)]

    async def until(self, event: tuple[Any, ...], within: float = TIMEOUT) -> bool:
        return await wait_until(lambda: event in self.events, within)


def _names(calls: list[Any]) -> tuple[str, ...]:
    return tuple(call.name for call in calls)


def make_session(model: llm.LLM, *, max_retry: int = 2, **options: Any) -> AgentSession:
    """A text-only session (no room, no VAD) whose LLM retries fast; livekit's defaults
    otherwise, ``max_unrecoverable_errors`` (3) included."""
    return AgentSession(
        llm=model,
        vad=None,
        aec_warmup_duration=None,
        conn_options=SessionConnectOptions(
            llm_conn_options=APIConnectOptions(max_retry=max_retry, retry_interval=0.01)
        ),
        **options,
    )


async def start(session: AgentSession, agent: Agent | None = None) -> None:
    """``session.start()`` awaited in the test's own task, as an entrypoint does, bounded by
    ``asyncio.timeout``: on Python 3.11 ``asyncio.wait_for`` runs it in a new task, and the
    session's context variable would not reach the test's later ``run()`` calls (see
    ``test_start_inside_wait_for_still_attributes_attempts``)."""
    async with asyncio.timeout(TIMEOUT):
        await session.start(agent=agent or Agent(instructions="test agent"))


async def close(session: AgentSession) -> None:
    await asyncio.wait_for(session.aclose(), TIMEOUT)


def session_attributes(
    *,
    close_reason: str = "user_initiated",
    silent: bool,
    agent_spoke: bool,
    user_turns: int = 1,
    answered: int,
    dead: int,
    errors: int,
    unanswered: int = 0,
    time_to_first_speech: float | None = None,
    terminal: bool = False,
    close_error_type: str | None = None,
    silence_cause: str | None = None,
) -> dict[str, Any]:
    """The exact attributes of an ``otel_agents.session`` span (no job: no shutdown reason); a
    silent session names its ``silence_cause``."""
    assert silent == (silence_cause is not None)
    attributes: dict[str, Any] = {
        n.S_CLOSE_REASON: close_reason,
        n.S_SILENT: silent,
        n.S_AGENT_SPOKE: agent_spoke,
        n.S_USER_SPOKE: True,
        n.S_USER_TURNS: user_turns,
        n.S_ANSWERED_TURNS: answered,
        n.S_DEAD_TURNS: dead,
        n.S_UNANSWERED_TURNS: unanswered,
        n.S_ERRORS: errors,
        n.S_TERMINAL_ERROR: terminal,
    }
    if time_to_first_speech is not None:
        attributes[n.S_TIME_TO_FIRST_SPEECH] = time_to_first_speech
    if close_error_type is not None:
        attributes[n.S_CLOSE_ERROR_TYPE] = close_error_type
    if silence_cause is not None:
        attributes[n.S_SILENCE_CAUSE] = silence_cause
    return attributes


def the_session_span(telemetry: Any) -> Any:
    (span,) = telemetry.spans(n.SPAN_SESSION)
    return span


def session_part(series: dict[Any, float]) -> dict[Any, float]:
    return {key: value for key, value in series.items() if key[0] in SESSION_METRICS}


def assert_log_mirrors_span(telemetry: Any, span: Any, level: str) -> None:
    """One ``session_closed`` record, with the span's values and ids."""
    (record,) = telemetry.logs(n.LOG_SESSION_CLOSED)
    assert record.levelname == level
    assert {field: getattr(record, field) for field in LOG_FIELDS} == {
        field: span.attributes.get(attribute) for field, attribute in LOG_FIELDS.items()
    }
    assert record.trace_id == format(span.context.trace_id, "032x")
    assert record.span_id == format(span.context.span_id, "016x")


class Histograms:
    """Count and sum of the unlabeled histograms, as deltas from construction: ``reset_metrics``
    does not reset unlabeled histograms (see ``test_fresh_metrics_reset_unlabeled_histograms``)."""

    NAMES = (n.TIME_TO_FIRST_SPEECH, n.RESPONSE_LATENCY)

    def __init__(self, telemetry: Any) -> None:
        self.telemetry = telemetry
        self.base = {name: self._read(name) for name in self.NAMES}

    def _read(self, name: str) -> tuple[float, float]:
        value = self.telemetry.value
        return value(name + "_count"), value(name + "_sum")

    def count(self, name: str) -> float:
        return self._read(name)[0] - self.base[name][0]

    def sum(self, name: str) -> float:
        return self._read(name)[1] - self.base[name][1]


# --- 1. credit exhaustion ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_credit_exhaustion_closes_the_session_on_the_fourth_dead_turn(
    telemetry, outcomes
) -> None:
    # livekit's default tolerance, which this session keeps: the 4th unrecoverable LLM error
    # in a row closes the session
    assert SessionConnectOptions().max_unrecoverable_errors == 3
    model = ScriptedLLM([gateway_status_error(429, CREDITS_BODY)])  # every attempt, forever
    session = make_session(model, max_retry=1)
    timeline = Timeline(session, llm=model)
    try:
        await start(session)
        for turn in range(1, 5):
            with pytest.raises(APIError):
                await asyncio.wait_for(session.run(user_input=f"hello? ({turn})"), TIMEOUT)
            closed = await timeline.until(("close", "error"), within=5 if turn == 4 else 0.1)
            assert closed is (turn == 4), f"turn {turn}"
    finally:
        await close(session)

    # what livekit did: 4 turns of 2 attempts (retryable 429, max_retry=1), then close(error)
    assert model.calls == 8
    assert timeline.where("item") == [("item", "user", f"hello? ({t})") for t in range(1, 5)]
    e = "session_error"
    # per turn: a recoverable then an unrecoverable error
    assert timeline.where("session_error") == [(e, True), (e, False)] * 4
    assert timeline.where("close") == [("close", "error")]
    assert SPEAKING not in timeline.events
    assert outcomes == ["dead_error"] * 4

    # --- metrics
    v = telemetry.value
    assert session_part(telemetry.series()) == session_series(
        reason="error", agent_spoke=False, turns=4, dead={"error": 4}, cause="quota_exhausted"
    )
    assert v(n.SESSIONS_STARTED) == 1
    assert v(n.SESSIONS_CLOSED, reason="error", agent_spoke="false") == 1
    assert v(n.SILENT_SESSIONS, reason="error", cause="quota_exhausted") == 1
    assert v(n.USER_TURNS) == 4
    assert v(n.DEAD_TURNS, cause="error") == 4
    assert v(n.DEAD_TURNS, cause="empty") == 0
    assert v(n.SESSIONS_ACTIVE) == 0
    assert v(n.UNANSWERED_TURNS) == 0
    assert v(n.SESSION_DURATION + "_count", reason="error") == 1
    scripted = {"component": "llm", "provider": "scripted"}
    assert v(n.TERMINAL_ERRORS, **scripted, error_class="quota_exhausted") == 8
    assert (
        v(
            n.QUOTA_ERRORS,
            component="llm",
            quota_type="llm",
            quota_category="MaxGatewayCredits",
            terminal="true",
        )
        == 8
    )

    # --- the session span: livekit's trace, a child of its agent_session span
    span = the_session_span(telemetry)
    assert dict(span.attributes) == session_attributes(
        close_reason="error",
        silent=True,
        agent_spoke=False,
        user_turns=4,
        answered=0,
        dead=4,
        errors=8,
        terminal=True,
        close_error_type="livekit.agents.APIStatusError",
        silence_cause="quota_exhausted",
    )
    assert span.status.status_code is trace.StatusCode.ERROR
    assert span.status.description == "livekit.agents.APIStatusError"
    (root,) = telemetry.spans("agent_session")
    assert span.parent is not None
    assert span.parent.span_id == root.context.span_id
    assert span.context.trace_id == root.context.trace_id
    assert span.start_time <= span.end_time <= root.end_time
    attempts = telemetry.attempt_spans()
    assert [(s.attributes[n.A_ATTEMPT], s.attributes[n.A_FINAL]) for s in attempts] == [
        (0, False),
        (1, True),
    ] * 4
    assert {s.context.trace_id for s in attempts} == {root.context.trace_id}
    assert {s.attributes[n.A_QUOTA_CATEGORY] for s in attempts} == {"MaxGatewayCredits"}
    assert {s.attributes[n.A_TERMINAL] for s in attempts} == {True}

    # --- the log record says the same, with the session span's ids
    assert_log_mirrors_span(telemetry, span, "WARNING")


# --- 2. recovered -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_recovered_turn_is_answered_with_its_errors_counted(telemetry, outcomes) -> None:
    model = ScriptedLLM(
        [ssl_connection_error, gateway_status_error(429, RATE_LIMIT_BODY), "hi, how can I help?"]
    )
    session = make_session(model, max_retry=2)
    timeline = Timeline(session, llm=model)
    histograms = Histograms(telemetry)
    try:
        await start(session)
        await asyncio.wait_for(session.run(user_input="hello there"), TIMEOUT)
    finally:
        await close(session)

    assert timeline.where("session_error") == [("session_error", True)] * 2
    assert SPEAKING in timeline.events
    assert outcomes == ["answered"]

    v = telemetry.value
    assert session_part(telemetry.series()) == session_series(agent_spoke=True, turns=1)
    assert v(n.SESSIONS_ACTIVE) == 0
    assert v(n.UNANSWERED_TURNS) == 0
    assert v(n.SESSION_DURATION + "_count", reason="user_initiated") == 1
    assert histograms.count(n.TIME_TO_FIRST_SPEECH) == 1
    assert histograms.count(n.RESPONSE_LATENCY) == 1

    span = the_session_span(telemetry)
    ttfs = span.attributes[n.S_TIME_TO_FIRST_SPEECH]
    assert dict(span.attributes) == session_attributes(
        silent=False, agent_spoke=True, answered=1, dead=0, errors=2, time_to_first_speech=ttfs
    )
    assert ttfs == pytest.approx(histograms.sum(n.TIME_TO_FIRST_SPEECH), abs=1e-9)
    # from start(): includes livekit's first retry wait (0.1 s); the turn opened after start()
    latency = histograms.sum(n.RESPONSE_LATENCY)
    assert 0.1 <= ttfs < TIMEOUT
    assert 0 < latency <= ttfs
    assert span.status.status_code is trace.StatusCode.UNSET
    assert_log_mirrors_span(telemetry, span, "INFO")


# --- 3. dead_empty ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_empty_completion_is_a_dead_empty_turn(telemetry, outcomes) -> None:
    model = ScriptedLLM([""])
    session = make_session(model)
    timeline = Timeline(session, llm=model)
    try:
        await start(session)
        # livekit treats it as legitimate silence: the run does not raise
        await asyncio.wait_for(session.run(user_input="hello there"), TIMEOUT)
    finally:
        await close(session)

    assert timeline.where("session_error", "llm_error") == []
    assert timeline.where("agent", "item") == [
        ("agent", "initializing", "listening"),
        ("item", "user", "hello there"),
        THINKING,
        BACK_TO_LISTENING,
    ]
    assert outcomes == ["dead_empty"]
    assert session_part(telemetry.series()) == session_series(
        agent_spoke=False, turns=1, dead={"empty": 1}, cause="empty_reply"
    )
    assert telemetry.value(n.DEAD_TURNS, cause="error") == 0
    span = the_session_span(telemetry)
    assert dict(span.attributes) == session_attributes(
        silent=True, agent_spoke=False, answered=0, dead=1, errors=0, silence_cause="empty_reply"
    )
    assert span.status.status_code is trace.StatusCode.UNSET
    assert_log_mirrors_span(telemetry, span, "WARNING")


# --- 4. preempted ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_voice_barge_in_while_thinking_is_preempted(telemetry, outcomes) -> None:
    """VAD hears the user while the reply is still being generated: livekit interrupts it and
    goes thinking -> listening with the user speaking."""
    release = asyncio.Event()
    model = RichScriptedLLM([Hang(release, "too late")])
    detector = ControlledVAD()
    session = AgentSession(
        llm=model,
        vad=detector,
        aec_warmup_duration=None,
        turn_handling={"interruption": {"mode": "vad"}},  # no adaptive (network) detector
    )
    session.input.audio = PushAudioInput()
    timeline = Timeline(session, llm=model)
    try:
        await start(session)
        (stream,) = detector.streams
        reply = session.generate_reply(user_input="tell me a long story")
        assert await timeline.until(THINKING)
        stream.send(vad.VADEventType.START_OF_SPEECH, speech=0.1)
        # longer than the default interruption min_duration (0.5 s): a barge-in
        stream.send(vad.VADEventType.INFERENCE_DONE, speech=0.6)
        await asyncio.wait_for(reply.wait_for_playout(), TIMEOUT)
        assert reply.interrupted
        assert await timeline.until(BACK_TO_LISTENING)
        before_close = list(timeline.where("agent", "user", "item"))
    finally:
        release.set()
        await close(session)

    assert before_close == [
        ("agent", "initializing", "listening"),
        ("item", "user", "tell me a long story"),
        THINKING,
        ("user", "listening", "speaking"),
        BACK_TO_LISTENING,  # while the user is speaking
    ]
    assert outcomes == ["preempted"]
    # not dead; but the agent never spoke to a user who did: a silent session, the reply still
    # being generated when the caller spoke again (stalled)
    assert session_part(telemetry.series()) == session_series(
        agent_spoke=False, turns=1, cause="stalled"
    )
    assert dict(the_session_span(telemetry).attributes) == session_attributes(
        silent=True, agent_spoke=False, answered=0, dead=0, errors=0, silence_cause="stalled"
    )


@pytest.mark.asyncio
async def test_text_chat_barge_in_is_preempted_then_answered(telemetry, outcomes) -> None:
    """livekit's default handler of room text chat (``TextInputOptions().text_input_cb``) claims
    the user turn (user ``speaking``), interrupts the pending reply and sends the new message."""
    release = asyncio.Event()
    model = RichScriptedLLM([Hang(release, "too late"), "sure, never mind"])
    session = make_session(model)
    timeline = Timeline(session, llm=model)
    text_input_cb = TextInputOptions().text_input_cb
    try:
        await start(session)
        first = session.generate_reply(user_input="tell me a long story")
        assert await timeline.until(THINKING)
        handled = text_input_cb(session, TextInputEvent(text="actually, never mind"))
        assert handled is not None  # the default callback is a coroutine function
        await asyncio.wait_for(handled, TIMEOUT)
        assert await timeline.until(("item", "assistant", "sure, never mind"))
        assert first.interrupted
    finally:
        release.set()
        await close(session)

    assert timeline.where("agent", "user", "item") == [
        ("agent", "initializing", "listening"),
        ("item", "user", "tell me a long story"),
        THINKING,
        ("user", "listening", "speaking"),
        BACK_TO_LISTENING,  # interrupted while the user "speaks"
        ("user", "speaking", "listening"),
        ("item", "user", "actually, never mind"),
        THINKING,
        SPEAKING,
        ("item", "assistant", "sure, never mind"),
        ("agent", "speaking", "listening"),
    ]
    assert outcomes == ["preempted", "answered"]
    assert session_part(telemetry.series()) == session_series(agent_spoke=True, turns=2)
    span = the_session_span(telemetry)
    assert dict(span.attributes) == session_attributes(
        silent=False,
        agent_spoke=True,
        user_turns=2,
        answered=1,
        dead=0,
        errors=0,
        time_to_first_speech=span.attributes[n.S_TIME_TO_FIRST_SPEECH],
    )


async def _queued_second_message(telemetry: Any, outcomes: list[str]) -> Timeline:
    """Two user messages, the second sent while the first reply is still being generated, with
    no interruption (an app calling ``generate_reply`` twice)."""
    release = asyncio.Event()
    model = RichScriptedLLM([Hang(release, "first answer"), "second answer"])
    session = make_session(model)
    timeline = Timeline(session, llm=model)
    try:
        await start(session)
        session.generate_reply(user_input="first question")
        assert await timeline.until(THINKING)
        second = session.generate_reply(user_input="second question")
        assert await timeline.until(("item", "user", "second question"))
        release.set()
        await asyncio.wait_for(second.wait_for_playout(), TIMEOUT)
    finally:
        release.set()
        await close(session)
    return timeline


@pytest.mark.asyncio
async def test_queued_second_message_livekit_answers_both(telemetry, outcomes) -> None:
    timeline = await _queued_second_message(telemetry, outcomes)

    # livekit commits the second message as soon as it is queued, before the first answer,
    # then speaks both answers in order: nothing was preempted
    assert timeline.where("agent", "item") == [
        ("agent", "initializing", "listening"),
        ("item", "user", "first question"),
        THINKING,
        ("item", "user", "second question"),
        SPEAKING,
        ("item", "assistant", "first answer"),
        ("agent", "speaking", "listening"),
        ("agent", "listening", "speaking"),
        ("item", "assistant", "second answer"),
        ("agent", "speaking", "listening"),
    ]
    assert timeline.where("user") == []
    # whatever the tracker calls the first turn, neither is dead and the session is not silent
    assert session_part(telemetry.series()) == session_series(agent_spoke=True, turns=2)
    span = the_session_span(telemetry)
    assert span.attributes[n.S_DEAD_TURNS] == 0
    assert span.attributes[n.S_SILENT] is False


@pytest.mark.asyncio
async def test_queued_second_message_both_turns_answered(telemetry, outcomes) -> None:
    await _queued_second_message(telemetry, outcomes)

    assert outcomes == ["answered", "answered"]
    assert the_session_span(telemetry).attributes[n.S_ANSWERED_TURNS] == 2


# --- 5. tool_only ---------------------------------------------------------------------------------


class OrderAgent(Agent):
    def __init__(self) -> None:
        super().__init__(instructions="test agent")
        self.tool_calls = 0

    @function_tool
    async def look_up_order(self) -> str:
        """Look up the caller's order."""
        self.tool_calls += 1
        return "order 42 shipped"


@pytest.mark.asyncio
async def test_tool_call_then_empty_reply_is_tool_only(telemetry, outcomes) -> None:
    model = RichScriptedLLM([ToolCall("look_up_order"), ""])
    session = make_session(model)
    timeline = Timeline(session, llm=model)
    agent = OrderAgent()
    try:
        await start(session, agent)
        await asyncio.wait_for(session.run(user_input="where is my order?"), TIMEOUT)
    finally:
        await close(session)

    # the tool ran, livekit asked the LLM for a tool reply (empty), then went back to listening
    assert agent.tool_calls == 1
    assert model.calls == 2
    assert timeline.where("agent", "item", "tools") == [
        ("agent", "initializing", "listening"),
        ("item", "user", "where is my order?"),
        THINKING,
        ("tools", ("look_up_order",)),
        BACK_TO_LISTENING,
    ]
    assert outcomes == ["tool_only"]
    # not dead; the agent never spoke, so the session is silent (docs/sessions.md): the reply
    # after the tool was empty
    assert session_part(telemetry.series()) == session_series(
        agent_spoke=False, turns=1, cause="empty_reply"
    )
    assert dict(the_session_span(telemetry).attributes) == session_attributes(
        silent=True, agent_spoke=False, answered=0, dead=0, errors=0, silence_cause="empty_reply"
    )


@pytest.mark.asyncio
async def test_tool_reply_that_fails_is_a_dead_error_turn(telemetry, outcomes) -> None:
    model = RichScriptedLLM([ToolCall("look_up_order"), ssl_connection_error])
    session = make_session(model, max_retry=1)
    timeline = Timeline(session, llm=model)
    try:
        await start(session, OrderAgent())
        with pytest.raises(APIError):
            await asyncio.wait_for(session.run(user_input="where is my order?"), TIMEOUT)
    finally:
        await close(session)

    assert timeline.where("agent", "tools", "session_error")[2:] == [
        ("tools", ("look_up_order",)),
        ("session_error", True),
        ("session_error", False),
        BACK_TO_LISTENING,
    ]
    assert outcomes == ["dead_error"]
    assert telemetry.value(n.DEAD_TURNS, cause="error") == 1


# --- 6. unanswered-turn gauge ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_unanswered_turn_gauge_is_live(telemetry, outcomes) -> None:
    otel_agents.shutdown()
    otel_agents.init(tracer_provider=telemetry.provider, silence_timeout=0.2)
    model = RichScriptedLLM([Sleep(1.0, "sorry for the wait")])
    session = make_session(model)
    timeline = Timeline(session, llm=model)
    histograms = Histograms(telemetry)
    gauge = lambda: telemetry.value(n.UNANSWERED_TURNS)  # noqa: E731
    try:
        await start(session)
        run = asyncio.ensure_future(session.run(user_input="hello?"))
        assert await timeline.until(("item", "user", "hello?"))
        assert gauge() == 0
        # counted while the caller still waits: before the answer, before any close
        assert await wait_until(lambda: gauge() == 1, within=2)
        assert not run.done()
        assert SPEAKING not in timeline.events
        await asyncio.wait_for(run, TIMEOUT)
        assert SPEAKING in timeline.events
        assert gauge() == 0
    finally:
        await close(session)

    assert gauge() == 0
    assert outcomes == ["answered"]
    assert histograms.count(n.RESPONSE_LATENCY) == 1
    assert histograms.sum(n.RESPONSE_LATENCY) >= 0.9
    span = the_session_span(telemetry)
    assert dict(span.attributes) == session_attributes(
        silent=False,
        agent_spoke=True,
        answered=1,
        dead=0,
        errors=0,
        unanswered=1,
        time_to_first_speech=span.attributes[n.S_TIME_TO_FIRST_SPEECH],
    )
    assert_log_mirrors_span(telemetry, span, "INFO")


# --- 7. errors before the user item ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_error_before_the_user_item_is_attributed_to_its_turn(telemetry, outcomes) -> None:
    # turn 1 is answered (its error window closes); turn 2's only attempt (max_retry=0) fails
    model = ScriptedLLM(["hi there", ssl_connection_error])
    session = make_session(model, max_retry=0)
    timeline = Timeline(session, llm=model)
    try:
        await start(session)
        await asyncio.wait_for(session.run(user_input="hello"), TIMEOUT)
        mark = len(timeline.events)
        with pytest.raises(APIError):
            await asyncio.wait_for(session.run(user_input="are you there?"), TIMEOUT)
    finally:
        await close(session)

    # livekit starts the LLM request before it commits the user message (the reply task runs
    # inference while it waits to be scheduled): turn 2's one and final failure came before
    # its conversation_item_added, so a window opened at the user item would see no error
    assert [e for e in timeline.events[mark:] if e[0] in ("llm_error", "item", "agent")] == [
        ("llm_error", False),
        ("item", "user", "are you there?"),
        THINKING,
        BACK_TO_LISTENING,
    ]
    assert outcomes == ["answered", "dead_error"]
    assert telemetry.value(n.DEAD_TURNS, cause="error") == 1
    assert telemetry.value(n.DEAD_TURNS, cause="empty") == 0
    span = the_session_span(telemetry)
    assert dict(span.attributes) == session_attributes(
        silent=False,
        agent_spoke=True,
        user_turns=2,
        answered=1,
        dead=1,
        errors=1,
        time_to_first_speech=span.attributes[n.S_TIME_TO_FIRST_SPEECH],
    )


# --- 8. FallbackAdapter children ----------------------------------------------------------------


@pytest.mark.asyncio
async def test_fallback_children_errors_count_in_the_session(telemetry, outcomes) -> None:
    primary = ScriptedLLM([ssl_connection_error], provider="primary")
    secondary = ScriptedLLM([gateway_status_error(429, RATE_LIMIT_BODY)], provider="secondary")
    adapter = llm.FallbackAdapter([primary, secondary], attempt_timeout=2, retry_interval=0.01)
    session = make_session(adapter, max_retry=0)
    timeline = Timeline(session, primary=primary, secondary=secondary, adapter=adapter)
    try:
        await start(session)
        with pytest.raises(APIError):
            await asyncio.wait_for(session.run(user_input="hello there"), TIMEOUT)
        # each child: the request, then a background recovery probe (fails the same way); the
        # adapter's own "all LLMs failed" reports its children's failures: not one more
        assert await wait_until(lambda: len(telemetry.attempt_spans()) == 4)
    finally:
        await close(session)

    assert (primary.calls, secondary.calls) == (2, 2)
    assert Counter(e[0] for e in timeline.where("primary_error", "secondary_error")) == {
        "primary_error": 2,
        "secondary_error": 2,
    }
    # the session's error event only ever sees the adapter's own final failure
    assert timeline.where("adapter_error", "session_error") == [
        ("adapter_error", False),
        ("session_error", False),
    ]
    providers = Counter(s.attributes[n.A_PROVIDER] for s in telemetry.attempt_spans())
    assert providers == {"primary": 2, "secondary": 2}
    assert outcomes == ["dead_error"]
    # what killed the turn: both children failed, neither terminally; the last to fail was the
    # secondary, rate limited. Not the adapter's own "all LLMs failed" (it reports the children's
    # failures), nor the background recovery probes, which may land before the turn ends
    assert session_part(telemetry.series()) == session_series(
        agent_spoke=False, turns=1, dead={"error": 1}, cause="rate_limited"
    )
    assert dict(the_session_span(telemetry).attributes) == session_attributes(
        silent=True, agent_spoke=False, answered=0, dead=1, errors=4, silence_cause="rate_limited"
    )


@pytest.mark.asyncio
async def test_fallback_child_error_alone_makes_the_turn_dead_error(telemetry, outcomes) -> None:
    """The primary fails, the fallback answers with an empty completion: the session's error
    event sees nothing, so only the child's attempt record makes this dead_error, not
    dead_empty."""
    primary = ScriptedLLM([ssl_connection_error], provider="primary")
    secondary = ScriptedLLM([""], provider="secondary")
    adapter = llm.FallbackAdapter([primary, secondary], attempt_timeout=2, retry_interval=0.01)
    session = make_session(adapter, max_retry=0)
    timeline = Timeline(session, primary=primary, adapter=adapter)
    try:
        await start(session)
        await asyncio.wait_for(session.run(user_input="hello there"), TIMEOUT)
        assert await wait_until(lambda: primary.calls == 2 and len(telemetry.attempt_spans()) == 2)
    finally:
        await close(session)

    assert timeline.where("session_error", "adapter_error") == []
    assert timeline.where("primary_error") == [("primary_error", False)] * 2  # request, probe
    assert outcomes == ["dead_error"]
    assert telemetry.value(n.DEAD_TURNS, cause="error") == 1
    assert the_session_span(telemetry).attributes[n.S_ERRORS] == 2


@pytest.mark.asyncio
async def test_start_inside_wait_for_still_attributes_attempts(telemetry, outcomes) -> None:
    primary = ScriptedLLM([ssl_connection_error], provider="primary")
    secondary = ScriptedLLM([""], provider="secondary")
    adapter = llm.FallbackAdapter([primary, secondary], attempt_timeout=2, retry_interval=0.01)
    session = make_session(adapter, max_retry=0)
    try:
        # a task on every Python version (wait_for itself makes one only up to 3.11)
        starting = asyncio.ensure_future(session.start(agent=Agent(instructions="test agent")))
        await asyncio.wait_for(starting, TIMEOUT)
        await asyncio.wait_for(session.run(user_input="hello there"), TIMEOUT)
        assert await wait_until(lambda: primary.calls == 2 and len(telemetry.attempt_spans()) == 2)
    finally:
        await close(session)

    assert outcomes == ["dead_error"]
    assert the_session_span(telemetry).attributes[n.S_ERRORS] == 2


# --- the fixture's fresh metrics ------------------------------------------------------------------


def test_fresh_metrics_reset_unlabeled_histograms(telemetry) -> None:
    _metrics.get_metrics().time_to_first_speech.observe(0.5)
    _metrics.get_metrics().response_latency.observe(0.5)
    reset_metrics()
    assert telemetry.value(n.TIME_TO_FIRST_SPEECH + "_count") == 0
    assert telemetry.value(n.RESPONSE_LATENCY + "_count") == 0
