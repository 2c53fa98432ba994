"""What otel-agents adds to one answered user turn and to one session's lifecycle, measured
directly: the session events of a turn, as livekit emits them, dispatched through livekit's own
``EventEmitter.emit`` to a real ``SessionTracker``, against the same emits with no listener
(a session without otel-agents). Batches alternate in one run; medians are reported, with the
added cost as a fraction of livekit's own per-turn cost measured by ``bench/session_cost.py``.

A turn here is livekit's sequence for an answered reply: the user message committed,
listening -> thinking, thinking -> speaking, the assistant message, speaking -> listening. The
tracker opens the turn, arms and cancels the silence timer, observes response latency and time to
first speech, and counts the turn.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

from livekit import rtc
from livekit.agents import llm
from livekit.agents.voice.events import AgentStateChangedEvent, ConversationItemAddedEvent

from otel_agents import _session
from otel_agents._metrics import get_metrics
from otel_agents._record import Recorder

RESULTS = Path(__file__).parent / "results"
TURNS = 200
ROUNDS = 15


def _turn_events() -> list[tuple[str, Any]]:
    user = ConversationItemAddedEvent(item=llm.ChatMessage(role="user", content=["hi"]))
    agent = ConversationItemAddedEvent(item=llm.ChatMessage(role="assistant", content=["hello"]))
    return [
        ("conversation_item_added", user),
        (
            "agent_state_changed",
            AgentStateChangedEvent(old_state="listening", new_state="thinking"),
        ),
        ("agent_state_changed", AgentStateChangedEvent(old_state="thinking", new_state="speaking")),
        ("conversation_item_added", agent),
        (
            "agent_state_changed",
            AgentStateChangedEvent(old_state="speaking", new_state="listening"),
        ),
    ]


def _run_turns(emitter: rtc.EventEmitter[Any], events: list[tuple[str, Any]]) -> float:
    emit = emitter.emit
    start = time.perf_counter_ns()
    for _ in range(TURNS):
        for name, ev in events:
            emit(name, ev)
    return (time.perf_counter_ns() - start) / TURNS / 1000.0


async def _measure() -> dict[str, float]:
    recorder = Recorder(get_metrics(), None, capture_messages=True)
    events = _turn_events()
    bare: rtc.EventEmitter[Any] = rtc.EventEmitter()  # a session without otel-agents
    base_turn, tracked_turn, lifecycle = [], [], []
    for _ in range(ROUNDS):
        base_turn.append(_run_turns(bare, events))
        tracked: rtc.EventEmitter[Any] = rtc.EventEmitter()
        start = time.perf_counter_ns()
        tracker = _session.SessionTracker(tracked, recorder, silence_timeout=8.0)
        tracker.begin(tracked)
        begun = time.perf_counter_ns()
        tracked_turn.append(_run_turns(tracked, events))
        finish = time.perf_counter_ns()
        tracker.finalize("user_initiated")
        lifecycle.append((time.perf_counter_ns() - finish + begun - start) / 1000.0)
    base, tracked_med = statistics.median(base_turn), statistics.median(tracked_turn)
    return {
        "turn_without_us": base,
        "turn_with_us": tracked_med,
        "added_per_turn_us": tracked_med - base,
        "added_per_session_us": statistics.median(lifecycle),
    }


def main() -> dict[str, Any]:
    result = asyncio.run(_measure())
    livekit_turn = None
    session_cost = RESULTS / "session_cost.json"
    if session_cost.exists():
        livekit_turn = json.loads(session_cost.read_text())["metrics"]["baseline_turn_us"]
        result["livekit_turn_us"] = livekit_turn
        result["added_fraction_of_livekit_turn"] = result["added_per_turn_us"] / livekit_turn
    print("session events of one answered turn, through livekit's emit (medians)")
    print(
        f"added per turn: {result['added_per_turn_us']:.1f} us"
        f" ({result['turn_without_us']:.1f} us without a listener,"
        f" {result['turn_with_us']:.1f} us with the tracker)"
    )
    print(f"added per session (start + close, no span): {result['added_per_session_us']:.1f} us")
    if livekit_turn:
        print(
            f"as a share of livekit's own turn ({livekit_turn:.0f} us):"
            f" {100 * result['added_fraction_of_livekit_turn']:.2f}%"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "turn_cost.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
