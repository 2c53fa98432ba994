"""All that otel-agents adds to one user turn: an answered turn, and a dead turn whose three
attempts all failed. Ratios to livekit's own CPU cost of the same turn, measured in the same run.

**What otel-agents adds** is measured directly and precisely: the events of a turn are first
captured from a real ``AgentSession`` (text mode, scripted LLM, no otel-agents), in the order
livekit emits them on the session and on its LLM: for an answered turn the user message, the
agent's state changes, the LLM's ``metrics_collected`` and the assistant message; for a dead turn
also three ``LLMError``s (a TLS connection error, a gateway 429, a TLS connection error; the last
one final) each followed by the session's ``error`` event. Those events are then replayed through
livekit's own ``EventEmitter.emit``, once to a real ``SessionTracker`` and to an LLM that has the
failed-attempt hook (what a session and its model look like after ``init()``), once to the same
emitters with no listener (without otel-agents). Batches alternate; medians; the difference is
what otel-agents adds per turn.

Two paths: **metrics** (no tracer, the ``otel_agents`` logger quiet) and **full** (an SDK tracer
provider with a batch processor, and each failed attempt's log line formatted by the root
logger's handler). The per-session cost (``begin``, the session span, ``finalize``) is measured
alongside.

**livekit's own turn** is the CPU time (``time.process_time``) of real sessions with answered
(or dead) turns minus the same sessions with no turn, per turn, without otel-agents: the
denominator of the ratio. Target (docs/architecture.md): all that otel-agents adds to one turn
costs under 100 us.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from typing import Any

from livekit import rtc
from livekit.agents import Agent, AgentSession, TurnHandlingOptions, llm
from livekit.agents.types import APIConnectOptions
from livekit.agents.voice.agent_session import SessionConnectOptions

import otel_agents
from bench import _common as c
from otel_agents import _runtime
from otel_agents import names as n
from otel_agents._capture import instrument, tracker
from otel_agents._capture import sessions as _session
from tests.scripted import ScriptedLLM, Step, gateway_status_error, ssl_connection_error

REPLAYS = c.size("turn_replays", 200, 50)  # turns per timed batch
ROUNDS = c.size("turn_rounds", 15, 4)
SESSIONS = c.size("turn_sessions", 20, 6)  # real sessions per livekit run (concurrent)
TURNS = c.size("turn_turns", 5, 2)  # turns per real session
LIVEKIT_ROUNDS = c.size("turn_livekit_rounds", 5, 2)

RATE_LIMITED = gateway_status_error(
    429,
    {
        "type": "inference_quota_exceeded",
        "error": "too many concurrent LLM requests",
        "quota_type": "llm",
        "category": "MaxConcurrentGatewayLLMRpm",
        "remaining_limit": "0",
    },
)
DEAD_TURN: list[Step] = [ssl_connection_error, RATE_LIMITED, ssl_connection_error]
ANSWER = "sure, here is what I found"

Captured = list[tuple[str, str, Any]]  # (emitter: "session" | "llm", event name, event)


def new_session(model: llm.LLM) -> AgentSession:
    """A text-mode session (no room, no VAD, no turn detector) whose LLM retries twice, and
    that survives dead turns."""
    return AgentSession(
        llm=model,
        vad=None,
        aec_warmup_duration=None,
        turn_handling=TurnHandlingOptions(turn_detection=None),
        user_away_timeout=None,
        conn_options=SessionConnectOptions(
            llm_conn_options=APIConnectOptions(max_retry=2, retry_interval=0.01, timeout=10),
            max_unrecoverable_errors=1_000_000,
        ),
    )


async def run_turn(session: AgentSession, text: str) -> None:
    with contextlib.suppress(Exception):  # a dead turn: run() raises the final error
        await session.run(user_input=text)


# --- capture -----------------------------------------------------------------------------------

SESSION_EVENTS = (
    *tracker._EVENTS,
    "speech_created",
    "metrics_collected",
    "session_usage_updated",
)


async def capture() -> dict[str, Captured]:
    """The events of one answered and one dead turn of a real session (no otel-agents)."""
    assert not instrument.is_instrumented()
    model = ScriptedLLM(["hello", ANSWER, *DEAD_TURN, ANSWER])
    session = new_session(model)
    log: Captured = []
    for name in SESSION_EVENTS:
        session.on(name, lambda ev, name=name: log.append(("session", name, ev)))
    for name in ("error", "metrics_collected"):
        model.on(name, lambda ev, name=name: log.append(("llm", name, ev)))
    await session.start(agent=Agent(instructions="bench"))
    await run_turn(session, "warm up")
    out = {}
    for kind in ("answered", "dead"):
        log.clear()
        await run_turn(session, "what is the weather like?")
        out[kind] = list(log)
    await session.aclose()
    errors = [ev for target, name, ev in out["dead"] if target == "llm" and name == "error"]
    assert [e.recoverable for e in errors] == [True, True, False], errors
    assert any(
        name == "metrics_collected" for target, name, _ in out["answered"] if target == "llm"
    )
    return out


# --- what otel-agents adds ----------------------------------------------------------------------


def _replay(session: rtc.EventEmitter[Any], model: llm.LLM, events: Captured) -> float:
    """Microseconds per turn of ``REPLAYS`` replays of ``events``."""
    emit_session, emit_llm = session.emit, model.emit
    start = time.perf_counter_ns()
    for _ in range(REPLAYS):
        for target, name, ev in events:
            (emit_session if target == "session" else emit_llm)(name, ev)
    return (time.perf_counter_ns() - start) / REPLAYS / 1000.0


async def _added(events: dict[str, Captured], full: bool) -> dict[str, Any]:
    log = logging.getLogger(n.LOGGER_NAME)
    log.setLevel(logging.WARNING if full else logging.CRITICAL)
    provider = c.discard_provider() if full else None
    bare_model = ScriptedLLM(["x"])  # built before init(): no hook
    bare_session: rtc.EventEmitter[Any] = rtc.EventEmitter()
    otel_agents.init(tracer_provider=provider)
    try:
        assert _runtime.current is not None
        recorder = _runtime.current.recorder
        hooked_model = ScriptedLLM(["x"])  # built after init(): the failed-attempt hook
        samples: dict[str, list[float]] = {}
        for _ in range(ROUNDS):
            for kind, evs in events.items():
                samples.setdefault(f"{kind}_without", []).append(
                    _replay(bare_session, bare_model, evs)
                )
                tracked: rtc.EventEmitter[Any] = rtc.EventEmitter()
                start = time.perf_counter_ns()
                tracker = _session.SessionTracker(tracked, recorder, silence_timeout=8.0)
                tracker.begin(tracked)
                tracker.started()
                opened = time.perf_counter_ns()
                # as wrap_start does: the provider hooks find the session through this
                token = _session.current.set(weakref.ref(tracker))
                samples.setdefault(f"{kind}_with", []).append(_replay(tracked, hooked_model, evs))
                _session.current.reset(token)
                finish = time.perf_counter_ns()
                tracker.finalize("user_initiated")
                lifecycle = (time.perf_counter_ns() - finish + opened - start) / 1000.0
                samples.setdefault("session_us", []).append(lifecycle)
        out: dict[str, Any] = {}
        for kind in events:
            without = c.median(samples[f"{kind}_without"])
            with_ = c.median(samples[f"{kind}_with"])
            out[kind] = {"without_us": without, "with_us": with_, "added_us": with_ - without}
        out["session_added_us"] = c.median(samples["session_us"])
        return out
    finally:
        otel_agents.shutdown()
        log.setLevel(logging.NOTSET)
        if provider is not None:
            provider.shutdown()


# --- livekit's own turn -------------------------------------------------------------------------


async def _sessions(kind: str) -> None:
    async def one() -> None:
        per_turn: list[Step] = DEAD_TURN if kind == "dead" else [ANSWER]
        session = new_session(ScriptedLLM(per_turn * TURNS))
        await session.start(agent=Agent(instructions="bench"))
        if kind != "none":
            for i in range(TURNS):
                await run_turn(session, f"turn {i}")
        await session.aclose()

    await asyncio.gather(*(one() for _ in range(SESSIONS)))


def _livekit_cpu(kind: str) -> float:
    with c.quiet_gc():
        start = time.process_time()
        asyncio.run(_sessions(kind))
        return time.process_time() - start


def livekit_costs() -> dict[str, float]:
    """livekit's own CPU per session (start + close) and per answered / dead turn, in us."""
    assert not instrument.is_instrumented()
    _livekit_cpu("dead")  # warm-up
    cpu = c.alternate(
        {k: (lambda k=k: _livekit_cpu(k)) for k in ("none", "answered", "dead")}, LIVEKIT_ROUNDS
    )
    none = c.median(cpu["none"])
    return {
        "session_us": none / SESSIONS * 1e6,
        "answered_us": (c.median(cpu["answered"]) - none) / (SESSIONS * TURNS) * 1e6,
        "dead_us": (c.median(cpu["dead"]) - none) / (SESSIONS * TURNS) * 1e6,
    }


# --- the figures --------------------------------------------------------------------------------


def run() -> dict[str, Any]:
    c.configure_logging()
    logging.getLogger("livekit").setLevel(logging.WARNING)
    events = asyncio.run(capture())
    livekit = livekit_costs()
    paths = {path: asyncio.run(_added(events, full=path == "full")) for path in ("metrics", "full")}
    result: dict[str, Any] = {
        "replays": REPLAYS,
        "rounds": ROUNDS,
        "livekit_sessions": SESSIONS,
        "livekit_turns": TURNS,
        "events": {kind: [f"{t}:{name}" for t, name, _ in evs] for kind, evs in events.items()},
        "livekit": livekit,
        **paths,
    }
    labels = {"metrics": "metrics path", "full": "+ spans + log lines"}
    figures = []
    for kind, what, target in (
        ("answered", "one answered user turn", True),
        ("dead", "one dead turn (3 failed attempts)", False),
    ):
        base = livekit[f"{kind}_us"]
        for path in ("metrics", "full"):
            added = paths[path][kind]["added_us"]
            figures.append(
                c.Figure(
                    key=f"turn.{kind}.{path}",
                    name=f"added to {what}, {labels[path]}",
                    value=added,
                    unit="µs",
                    baseline=base,
                    baseline_label=f"livekit's own CPU per {kind} turn",
                    ratio=(base + added) / base,
                    on="value" if target else "none",
                    op="<",
                    limit=100.0,
                )
            )
    for path in ("metrics", "full"):
        added = paths[path]["session_added_us"]
        figures.append(
            c.Figure(
                key=f"session.{path}",
                name=f"added to one session's start and close, {labels[path]}",
                value=added,
                unit="µs",
                baseline=livekit["session_us"],
                baseline_label="livekit's own CPU per session start + close",
                ratio=(livekit["session_us"] + added) / livekit["session_us"],
            )
        )
    result["figures"] = figures
    return result


def main() -> dict[str, Any]:
    result = run()
    print(f"turn_cost: medians of {ROUNDS} alternating batches of {REPLAYS} replayed turns")
    c.print_figures(c.figures_of(result))
    c.write_result("turn_cost", c.jsonable(result))
    return result


if __name__ == "__main__":
    main()
