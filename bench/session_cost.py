"""What otel-agents adds to a session and to a user turn, as ratios to the same workload run
without otel-agents in the same process.

Workloads are real ``AgentSession``s in text mode with a scripted LLM that answers: sessions
started and closed with no turn (the per-session cost), and sessions with five answered turns
(the per-turn cost is the difference, per turn). Runs with and without ``init()`` alternate,
round after round, and CPU time (``time.process_time``) is compared, medians over the rounds.
``init()`` has no tracer on the metrics path (session metrics, turn outcomes, timers). The
traced path gives ``init()`` an SDK tracer provider with a batch processor, as production would,
and is compared with livekit's own tracing alone (the same provider handed to livekit with
``set_tracer_provider``, no otel-agents): what otel-agents adds on top of livekit's telemetry.
"""

from __future__ import annotations

import asyncio
import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any

from livekit.agents import Agent, AgentSession

import otel_agents
from otel_agents import _names as n
from tests.scripted import ScriptedLLM

RESULTS = Path(__file__).parent / "results"
SESSIONS = 40
TURNS = 5
ROUNDS = 9


async def _workload(turns: int) -> None:
    for _ in range(SESSIONS):
        session: AgentSession = AgentSession(
            llm=ScriptedLLM(["hello, how can I help?"]), vad=None, aec_warmup_duration=None
        )
        await session.start(agent=Agent(instructions="bench"))
        for i in range(turns):
            await session.run(user_input=f"turn {i}")
        await session.aclose()


BASELINE = {"metrics": "off", "traced": "livekit_traced"}


def _cpu(turns: int, mode: str) -> float:
    """CPU seconds of one workload run in ``mode``: off, metrics (init() without a tracer),
    livekit_traced (livekit's tracing alone), traced (init() with that tracer)."""
    from livekit.agents.telemetry import set_tracer_provider
    from opentelemetry import trace

    provider: Any = None
    if mode in ("traced", "livekit_traced"):
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(InMemorySpanExporter()))
    if mode in ("metrics", "traced"):
        otel_agents.init(tracer_provider=provider)
    elif mode == "livekit_traced":
        set_tracer_provider(provider)
    try:
        start = time.process_time()
        asyncio.run(_workload(turns))
        return time.process_time() - start
    finally:
        otel_agents.shutdown()
        set_tracer_provider(trace.get_tracer_provider())
        if provider is not None:
            provider.shutdown()


def main() -> dict[str, Any]:
    logging.getLogger("livekit").setLevel(logging.ERROR)
    logging.getLogger(n.LOGGER_NAME).setLevel(logging.INFO)  # session_closed is INFO: quiet
    _cpu(1, "off")  # warm-up: imports, caches
    _cpu(1, "metrics")
    samples: dict[tuple[int, str], list[float]] = {}
    for _ in range(ROUNDS):
        for turns in (0, TURNS):
            for mode in ("off", "metrics", "livekit_traced", "traced"):
                samples.setdefault((turns, mode), []).append(_cpu(turns, mode))
    med = {key: statistics.median(values) for key, values in samples.items()}
    out: dict[str, Any] = {"sessions_per_run": SESSIONS, "turns_per_session": TURNS}
    for mode in ("metrics", "traced"):
        base = BASELINE[mode]
        session_off, session_on = med[(0, base)], med[(0, mode)]
        turns_off, turns_on = med[(TURNS, base)], med[(TURNS, mode)]
        per_session_us = (session_on - session_off) / SESSIONS * 1e6
        per_turn_us = ((turns_on - turns_off) - (session_on - session_off)) / (SESSIONS * TURNS)
        out[mode] = {
            "session_ratio": session_on / session_off,
            "session_with_turns_ratio": turns_on / turns_off,
            "added_per_session_us": per_session_us,
            "added_per_turn_us": per_turn_us * 1e6,
            "baseline_session_us": session_off / SESSIONS * 1e6,
            "baseline_turn_us": (turns_off - session_off) / (SESSIONS * TURNS) * 1e6,
        }
    print(
        f"session and turn cost (CPU time, medians of {ROUNDS} alternating rounds; metrics vs no"
        " otel-agents, traced vs livekit's own tracing alone)"
    )
    print(f"{'mode':<8} {'session':>9} {'5 turns':>9} {'+/session':>11} {'+/turn':>9}")
    for mode in ("metrics", "traced"):
        r = out[mode]
        print(
            f"{mode:<8} {r['session_ratio']:>8.3f}x {r['session_with_turns_ratio']:>8.3f}x"
            f" {r['added_per_session_us']:>9.0f}us {r['added_per_turn_us']:>7.0f}us"
        )
    for mode in ("metrics", "traced"):
        print(
            f"baseline ({BASELINE[mode]}): {out[mode]['baseline_session_us']:.0f} us per session,"
            f" {out[mode]['baseline_turn_us']:.0f} us per turn"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "session_cost.json").write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
