"""The demo's scenarios: real ``AgentSession``s on the real inference plugins, scripted faults.

Each scenario is one text-mode ``AgentSession`` (no room) whose LLM and TTS are livekit's own
``livekit.agents.inference`` plugins pointed at the local :class:`~.gateway.FakeGateway`. The
gateway's fault queues decide what each request meets; the session sees the same chains of
exceptions it would see from the real gateway, and otel-agents records them through its
ordinary hooks. Nothing here talks to otel-agents directly.

The "realtime" scenario runs on a realtime (speech-to-speech) model instead: an in-process
model standing for LiveKit Inference's realtime gateway (``realtime.py``), with no STT, LLM or TTS.

The audio output is :class:`Speaker`, a sink that "plays" every frame at once, so the TTS runs
and the agent reaches ``speaking`` exactly as it would in a room (the "unheard" scenario's never
plays anything).

"credits-draining" can be paced (``pace``: seconds between its turns; the CLI's
``--drain-pace``), so a Prometheus scraping ``/metrics`` every second sees the balance burn over
several scrapes before it runs out, as ``LiveKitAgentsCreditsRunningOut`` needs. It runs before
"credits-exhausted", whose terminal quota errors would otherwise silence that forecast, and late
in a round: a Prometheus started with the demo scrapes it only after its discovery's first
update, seconds later.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from livekit import rtc
from livekit.agents import Agent, AgentSession, APIConnectOptions, CloseEvent, inference
from livekit.agents.voice import io
from livekit.agents.voice.agent_session import SessionConnectOptions

from .faults import (
    QUOTA_CREDITS_BODY,
    Fault,
    disconnect,
    empty,
    http_error,
    no_session_id,
    ok,
    openai_error_body,
    quota_body,
    ws_error,
)
from .gateway import DEFAULT_CREDIT_COST, DEFAULT_CREDITS_LIMIT, FakeGateway
from .realtime import Answer, DemoRealtimeModel, RealtimeStep, Rejected

__all__ = ["SCENARIOS", "Scenario", "Speaker", "run_scenario", "scenario_names"]

LLM_MODEL: Final = "openai/gpt-4.1-mini"
TTS_MODEL: Final = "cartesia/sonic-3"
#: any pair works: the fake gateway does not verify the JWT the plugins sign with it
API_KEY: Final = "demo-key"
API_SECRET: Final = "demo-secret-demo-secret-demo-0123"
#: livekit's defaults are 3 retries 2 s apart; shorter here so a round takes seconds
LLM_RETRY: Final = APIConnectOptions(max_retry=2, retry_interval=0.1, timeout=5.0)
TTS_RETRY: Final = APIConnectOptions(max_retry=2, retry_interval=0.1, timeout=5.0)
TURN_TIMEOUT: Final = 15.0
#: the demo's silence timeout: a user turn unanswered this long counts as unanswered, live
SILENCE_TIMEOUT: Final = 2.0
#: how long the "stalled" scenario's LLM takes to start answering (under the LLM timeout)
STALL_SECONDS: Final = 4.5

RPM_BODY: Final = quota_body(
    "llm", "MaxConcurrentGatewayLLMRpm", hint="Reduce request rate or upgrade your plan."
)
TTS_RATE_BODY: Final = quota_body(
    "tts", "MaxConcurrentGatewayTTS", hint="Reduce concurrent TTS requests or upgrade your plan."
)
OVERLOADED_BODY: Final = openai_error_body("upstream model overloaded", type="server_error")
REVOKED_KEY_BODY: Final = openai_error_body(
    "Incorrect API key provided.", type="invalid_request_error", code="invalid_api_key"
)
#: the gateway's credit balance for a scenario: (limit, used, cost of each completion)
Credits = tuple[int, int, int]
HEALTHY_CREDITS: Final[Credits] = (DEFAULT_CREDITS_LIMIT, 0, DEFAULT_CREDIT_COST)
#: "credits-draining": each answer costs a fifth of the balance; the sixth turn finds it empty
DRAINING_CREDITS: Final[Credits] = (500, 0, 100)


@dataclass(frozen=True)
class Scenario:
    """One session: what the gateway does, and what the caller says."""

    name: str
    summary: str
    turns: Sequence[str]
    llm: Sequence[Fault] = ()
    tts: Sequence[Fault] = ()
    #: livekit closes this session itself after the last turn (it gives up on errors)
    closes_itself: bool = False
    #: the gateway's credit balance while it runs (its quota headers report it)
    credits: Credits = HEALTHY_CREDITS
    #: its turns are spaced by ``run_scenario``'s ``pace`` (the CLI's ``--drain-pace``)
    paced: bool = False
    #: False: the audio output takes the agent's frames and never plays them
    plays_audio: bool = True
    #: a session on the demo's realtime model, one step per reply (no gateway LLM or TTS)
    realtime: Sequence[RealtimeStep] = ()


SCENARIOS: Final[tuple[Scenario, ...]] = (
    Scenario(
        "healthy",
        "every request succeeds",
        turns=("Hi, where is my order?", "Thanks!"),
    ),
    Scenario(
        "connection-blip",
        "the LLM connection drops mid-request once; the retry answers",
        turns=("Hi, can you hear me?",),
        llm=(disconnect(),),
    ),
    Scenario(
        "masked-retry",
        "a dropped connection, then 503s: the final error hides the first cause",
        turns=("What's the weather?", "Hello?"),
        llm=(disconnect(), http_error(503, OVERLOADED_BODY), http_error(503, OVERLOADED_BODY)),
    ),
    Scenario(
        "rate-limited",
        "two 429s of the gateway's LLM rate limit, then an answer",
        turns=("Book me a table.",),
        llm=(http_error(429, RPM_BODY), http_error(429, RPM_BODY)),
    ),
    Scenario(
        "bad-key",
        "the project's API key was revoked: a 401 that no retry can fix",
        turns=("Hello?",),
        llm=(http_error(401, REVOKED_KEY_BODY),),
    ),
    Scenario(
        "tts-rate-limited",
        "the TTS websocket reports its rate limit twice, then speaks",
        turns=("Read me my balance.",),
        tts=(ws_error(TTS_RATE_BODY), ws_error(TTS_RATE_BODY)),
    ),
    Scenario(
        "stalled",
        f"the LLM takes {STALL_SECONDS:g} s to start answering: the caller waits, unanswered",
        turns=("Are you still there?",),
        llm=(ok("Sorry for the wait, I'm here.", delay=STALL_SECONDS),),
    ),
    Scenario(
        "silent",
        "empty LLM replies, no error anywhere: the caller hears nothing",
        turns=("Hello?", "Is anyone there?"),
        llm=(empty(), empty()),
    ),
    Scenario(
        "credits-draining",
        "each answer spends a fifth of the credit balance; then the gateway refuses with 429s",
        # 100, 200, ..., 500 of 500 credits used; the sixth turn meets the credits-exhausted 429
        turns=(
            "What's my balance?",
            "And my last order?",
            "When does it arrive?",
            "Can I change the address?",
            "Cancel it then.",
            "Hello?",
        ),
        credits=DRAINING_CREDITS,
        paced=True,
    ),
    Scenario(
        "credits-exhausted",
        "out of credits: every turn dies until livekit gives up",
        # livekit closes a session after its 4th unrecoverable error (max_unrecoverable_errors=3)
        turns=("Hello?", "Hello, anyone there?", "Can you hear me?", "Hello??"),
        llm=tuple(http_error(429, QUOTA_CREDITS_BODY) for _ in range(3 * 4)),
        closes_itself=True,
        credits=(DRAINING_CREDITS[0], DRAINING_CREDITS[0], DRAINING_CREDITS[2]),  # spent
    ),
    Scenario(
        "tts-broken",
        "the TTS gets messages it does not expect and raises (no APIError): the caller hears "
        "nothing",
        # the gateway's TTS messages carry no session_id: livekit's AudioEmitter raises a
        # RuntimeError that its retry loop never catches, on every synthesis of the connection
        turns=("Hello?", "Can you hear me?"),
        tts=(no_session_id(),),
    ),
    Scenario(
        "unheard",
        "the agent answers, but its audio output never plays it: the caller hears nothing",
        turns=("Hi, is this support?", "Hello?", "Can you hear me?", "Anyone there?"),
        plays_audio=False,
    ),
    Scenario(
        "realtime",
        "a speech-to-speech model: answers, a rate-limited reply, an answer, then out of credits",
        turns=("Hi, is this the help line?", "I'd like to move my booking.", "Hello?", "Hello??"),
        realtime=(
            Answer("Yes, how can I help?"),
            Rejected("MaxConcurrentGatewayLLMRpm", "Reduce request rate or upgrade your plan."),
            Answer("Sure, to which date?"),
            Rejected("MaxGatewayCredits", "Wait for the next billing cycle or upgrade your plan."),
        ),
    ),
)


def scenario_names() -> list[str]:
    return [s.name for s in SCENARIOS]


class Speaker(io.AudioOutput):
    """An audio sink that plays every frame instantly: the TTS runs, the agent speaks.

    With ``plays=False`` it takes every frame and never plays any (a track nobody hears): each
    playout ends at position 0, never started.
    """

    def __init__(self, *, plays: bool = True) -> None:
        super().__init__(label="otel-agents-demo", capabilities=io.AudioOutputCapabilities(True))
        self._plays = plays
        self._position = 0.0
        self._playing = False

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        if not self._playing:
            self._playing = True
            if self._plays:
                self.on_playback_started(created_at=time.time())
        if self._plays:
            self._position += frame.duration

    def flush(self) -> None:
        super().flush()
        self._finish(interrupted=False)

    def clear_buffer(self) -> None:
        self._finish(interrupted=True)

    def _finish(self, *, interrupted: bool) -> None:
        if not self._playing:
            return
        position, self._position, self._playing = self._position, 0.0, False
        asyncio.get_running_loop().call_soon(
            lambda: self.on_playback_finished(playback_position=position, interrupted=interrupted)
        )


@dataclass
class ScenarioRun:
    """What the demo itself saw of one scenario (otel-agents' records are read elsewhere)."""

    scenario: Scenario
    turns_said: int = 0
    failed_turns: int = 0
    close_reason: str | None = None
    seconds: float = 0.0
    requests: dict[str, int] = field(default_factory=dict)


async def run_scenario(
    scenario: Scenario,
    gateway: FakeGateway,
    *,
    on_turn: Callable[[int], None] | None = None,
    pace: float = 0.0,
    base_url: str | None = None,
    api_key: str = API_KEY,
    api_secret: str = API_SECRET,
) -> ScenarioRun:
    """Run one scenario's session to its close, with the gateway scripted for it.

    ``pace``: the seconds between two turns of a ``paced`` scenario (others ignore it).

    ``base_url`` (default ``gateway.url``), ``api_key`` and ``api_secret`` are what the inference
    plugins are built with: a test can plant credentials in them (e.g. userinfo in the URL).
    """
    gateway.llm.clear()
    gateway.tts.clear()
    gateway.set_credits(*scenario.credits)
    gateway.llm.push(*scenario.llm)
    gateway.tts.push(*scenario.tts)
    before = dict(gateway.requests)
    run = ScenarioRun(scenario)
    started = time.monotonic()

    url = gateway.url if base_url is None else base_url
    llm = inference.LLM(LLM_MODEL, base_url=url, api_key=api_key, api_secret=api_secret)
    tts = inference.TTS(TTS_MODEL, base_url=url, api_key=api_key, api_secret=api_secret)
    session: AgentSession[None]
    if scenario.realtime:
        session = AgentSession(
            llm=DemoRealtimeModel(scenario.realtime),
            vad=None,
            aec_warmup_duration=None,
            turn_handling={"turn_detection": "realtime_llm"},
        )
    else:
        session = AgentSession(
            llm=llm,
            tts=tts,
            vad=None,
            aec_warmup_duration=None,
            conn_options=SessionConnectOptions(
                llm_conn_options=LLM_RETRY, tts_conn_options=TTS_RETRY
            ),
        )
    session.output.audio = Speaker(plays=scenario.plays_audio)
    closed = asyncio.Event()

    def on_close(event: CloseEvent) -> None:
        run.close_reason = str(event.reason.value)
        closed.set()

    session.on("close", on_close)
    try:
        await session.start(agent=Agent(instructions="You are a helpful, brief voice agent."))
        for i, text in enumerate(scenario.turns):
            if i and scenario.paced and pace > 0:
                await asyncio.sleep(pace)
            run.turns_said += 1
            if on_turn is not None:
                on_turn(run.turns_said)
            if scenario.realtime:
                # a realtime reply's failure is on its handle (awaiting it never raises)
                reply = session.generate_reply(user_input=text)
                await asyncio.wait_for(reply.wait_for_playout(), TURN_TIMEOUT)
                run.failed_turns += reply.exception() is not None
                continue
            try:
                await asyncio.wait_for(session.run(user_input=text), TURN_TIMEOUT)
            except TimeoutError:
                raise
            except Exception:
                # run() raises livekit's wrapper for a dead turn: otel-agents has recorded it
                run.failed_turns += 1
        if scenario.closes_itself:
            await asyncio.wait_for(closed.wait(), TURN_TIMEOUT)
    finally:
        await session.aclose()
        await llm.aclose()
        await tts.aclose()
        gateway.llm.clear()
        gateway.tts.clear()
        gateway.set_credits(*HEALTHY_CREDITS)
    run.seconds = time.monotonic() - started
    run.requests = {k: v - before.get(k, 0) for k, v in gateway.requests.items()}
    return run
