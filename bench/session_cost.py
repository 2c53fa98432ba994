"""Many concurrent real ``AgentSession``s, with and without otel-agents: CPU time, event-loop
lag, and memory with the collector unreachable.

**The workload.** ``SESSIONS`` text-mode sessions run concurrently on one event loop (no room,
no keys, no network; a scripted LLM built on livekit's public base class). Each starts at a
random moment, runs ``TURNS`` user turns with a random pause between them (a user thinking), and
closes. Each turn is, at random but identically in every run (fixed seeds): answered at once
(75 %), answered after a retried TLS connection error (12 %), answered after a retried gateway
429 (8 %), or dead: three failed attempts (5 %; the session survives it, as livekit's default
``max_unrecoverable_errors`` allows). The errors are the real chains of ``tests/scripted.py``.
The root logger formats every WARNING (to /dev/null), as in a host agent. Before each run the
heap is collected and frozen (``gc.freeze()``): a full collection of livekit's long-lived objects
takes ~200 ms here and would otherwise land in one random run.

**Event-loop lag.** A heartbeat task sleeps 5 ms, over and over, and records how late it wakes
up. Each run's p99 is compared with its round's baseline (the median over rounds of the
differences); the pooled p99 of each mode is given too.

**Modes**, alternated round after round (rotating order), each against its baseline:

* ``metrics``: ``init()`` (no tracer) vs ``off`` (no otel-agents). Targets: CPU ratio <= 1.05
  (the median of the per-round ratios), lag p99 difference under 1 ms. ``off_again``, the same
  as ``off``, is the control: what the machine's noise alone makes of the same comparison.
* ``traced``: ``init(tracer_provider=...)`` (an SDK provider with a batch processor that
  discards) vs ``livekit_traced``: livekit's own tracing alone, the same kind of provider handed
  to ``livekit.agents.telemetry.set_tracer_provider`` with no otel-agents. What otel-agents adds
  on top of livekit's telemetry (same targets); and ``livekit_traced`` vs ``off`` for reference.
* ``closed_port`` / ``black_hole``: ``init(otlp_endpoint=...)`` pointed at a closed port, and at
  a TCP server that accepts and never answers, vs ``off`` (and ``livekit_traced`` for reference:
  ``init()`` hands livekit the provider, so livekit's own spans are made too). Targets: lag p99
  under 10 ms; ``shutdown(timeout=1)`` returns within 1.5 s. Then the memory rounds: one
  ``init()`` per mode, the workload ``MEMORY_ROUNDS`` times, and after each round the process's
  RSS, the number of objects the garbage collector tracks, the spans made so far and the span
  queue's length. Target: bounded, i.e. RSS growth per round after the first (which fills the
  span queue) under 2 MB beyond what the same rounds without otel-agents show; keeping every
  span instead would add each round's thousands of spans.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from livekit.agents import Agent

import otel_agents
from bench import _common as c
from bench.turn_cost import ANSWER, DEAD_TURN, RATE_LIMITED, new_session, run_turn
from otel_agents import _runtime
from otel_agents._capture import instrument
from tests.netfaults import BlackHole, closed_port
from tests.scripted import ScriptedLLM, Step, ssl_connection_error

SESSIONS = c.size("workload_sessions", 40, 12)
TURNS = c.size("workload_turns", 5, 3)
THINK_MS = c.size("workload_think_ms", 200, 100)  # mean pause between turns
ROUNDS = c.size("workload_rounds", 5, 2)
UNREACHABLE_ROUNDS = c.size("unreachable_rounds", 2, 1)
MEMORY_ROUNDS = c.size("memory_rounds", 5, 3)
#: how long a mode's teardown may wait for the threads it started (exporters) to end
SETTLE_S = 10.0
HEARTBEAT_S = 0.005
SEED = 20_240_601
SHUTDOWN_TIMEOUT_S = 1.0

#: (kind, share of turns, the LLM's steps for that turn)
MIX: tuple[tuple[str, float, list[Step]], ...] = (
    ("answered", 0.75, [ANSWER]),
    ("retried", 0.12, [ssl_connection_error, ANSWER]),
    ("rate_limited", 0.08, [RATE_LIMITED, ANSWER]),
    ("dead", 0.05, DEAD_TURN),
)


@dataclass
class Plan:
    """One session of the workload: when it starts, its turns, the pauses between them."""

    delay: float
    kinds: list[str]
    pauses: list[float]

    def script(self) -> list[Step]:
        steps = {kind: s for kind, _, s in MIX}
        return [step for kind in self.kinds for step in steps[kind]] + [ANSWER]


def plans() -> list[Plan]:
    rng = random.Random(SEED)
    kinds = [k for k, _, _ in MIX]
    weights = [w for _, w, _ in MIX]
    think = THINK_MS / 1000
    return [
        Plan(
            delay=rng.uniform(0, 2 * think),
            kinds=rng.choices(kinds, weights, k=TURNS),
            pauses=[rng.uniform(0, 2 * think) for _ in range(TURNS)],
        )
        for _ in range(SESSIONS)
    ]


PLANS = plans()


@dataclass
class Sample:
    cpu_s: float
    wall_s: float
    lags_ms: list[float]
    shutdown_s: float = 0.0
    spans: int = 0
    memory: list[dict[str, float]] = field(default_factory=list)
    lingering: list[str] = field(default_factory=list)  # threads still alive after teardown
    teardown_s: float = 0.0


async def _session(plan: Plan) -> None:
    await asyncio.sleep(plan.delay)
    session = new_session(ScriptedLLM(plan.script()))
    await session.start(agent=Agent(instructions="bench"))
    for i, pause in enumerate(plan.pauses):
        await run_turn(session, f"turn {i}")
        await asyncio.sleep(pause)
    await session.aclose()


async def _heartbeat(stop: asyncio.Event, lags_ms: list[float]) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        start = loop.time()
        await asyncio.sleep(HEARTBEAT_S)
        lags_ms.append((loop.time() - start - HEARTBEAT_S) * 1000)


async def workload(lags_ms: list[float]) -> None:
    stop = asyncio.Event()
    heartbeat = asyncio.create_task(_heartbeat(stop, lags_ms))
    try:
        await asyncio.gather(*(_session(plan) for plan in PLANS))
    finally:
        stop.set()
        await heartbeat


def _timed() -> tuple[float, float, list[float]]:
    lags: list[float] = []
    with c.quiet_gc():
        cpu, wall = time.process_time(), time.perf_counter()
        asyncio.run(workload(lags))
        return time.process_time() - cpu, time.perf_counter() - wall, lags


class _CountSpans:
    """A span processor that counts the spans ended (added to the provider init() made)."""

    def __init__(self) -> None:
        self.ended = 0

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        pass

    def _on_ending(self, span: Any) -> None:
        pass

    def on_end(self, span: Any) -> None:
        self.ended += 1

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def _abort_exports(provider: Any) -> None:
    """Shut the exporters of a provider init() made, so that its worker threads stop retrying
    against the unreachable collector and end: teardown hygiene, after shutdown() was timed."""
    try:
        for processor in provider._active_span_processor._span_processors:
            exporter = getattr(processor, "span_exporter", None)
            if exporter is not None:
                exporter.shutdown()
    except Exception:
        pass
    try:
        for reader in provider._metric_readers:
            reader._exporter.shutdown(timeout_millis=0)
    except Exception:
        pass


class Mode:
    """Sets a mode up and tears it down again, waiting for the threads it started."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.provider: Any = None
        self.hole: BlackHole | None = None
        self.shutdown_s = 0.0
        self.spans = _CountSpans()
        self.lingering: list[str] = []
        self.teardown_s = 0.0

    def __enter__(self) -> Mode:
        from livekit.agents.telemetry import set_tracer_provider

        self.threads = set(threading.enumerate())
        name = self.name
        if name in ("traced", "livekit_traced"):
            self.provider = c.discard_provider()
        if name == "metrics":
            otel_agents.init()
        elif name == "traced":
            otel_agents.init(tracer_provider=self.provider)
        elif name == "livekit_traced":
            set_tracer_provider(self.provider)
        elif name == "closed_port":
            otel_agents.init(otlp_endpoint=f"http://127.0.0.1:{closed_port()}")
        elif name == "black_hole":
            self.hole = BlackHole()
            otel_agents.init(otlp_endpoint=f"http://127.0.0.1:{self.hole.port}")
        else:
            assert name in ("off", "off_again")
        assert instrument.is_instrumented() == (name not in ("off", "off_again", "livekit_traced"))
        state = _runtime.current
        if state is not None and state.tracer_provider is not None:
            state.tracer_provider.add_span_processor(self.spans)
        elif self.provider is not None:
            self.provider.add_span_processor(self.spans)
        return self

    def __exit__(self, *exc: object) -> None:
        from livekit.agents.telemetry import set_tracer_provider
        from opentelemetry import trace

        state = _runtime.current
        owned = list(state.owned) if state is not None else []
        start = time.monotonic()
        otel_agents.shutdown(timeout=SHUTDOWN_TIMEOUT_S)
        self.shutdown_s = time.monotonic() - start
        for provider in owned:
            _abort_exports(provider)
        if self.name == "livekit_traced":
            set_tracer_provider(trace.get_tracer_provider())
        if self.provider is not None:
            self.provider.shutdown()
        if self.hole is not None:
            self.hole.close()
        deadline = time.monotonic() + SETTLE_S
        for thread in set(threading.enumerate()) - self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                self.lingering.append(thread.name)
        self.teardown_s = time.monotonic() - start


def _one(mode: str) -> Sample:
    with Mode(mode) as m:
        cpu, wall, lags = _timed()
    return Sample(cpu, wall, lags, m.shutdown_s, m.spans.ended, [], m.lingering, m.teardown_s)


def _span_queue() -> tuple[int, int]:
    """(length, capacity) of the span queue of the provider init() made; (0, 0) if none."""
    state = _runtime.current
    provider = state.tracer_provider if state is not None else None
    try:
        for p in provider._active_span_processor._span_processors:  # type: ignore[union-attr]
            batch = getattr(p, "_batch_processor", None)
            if batch is not None:
                return len(batch._queue), int(batch._max_queue_size)
    except Exception:
        pass
    return 0, 0


def _memory_rounds(mode: str) -> Sample:
    """One setup, ``MEMORY_ROUNDS`` workloads; memory after each. The span queue is filled
    first, so that the rounds after the first (which replaces the filler) start at its cap."""
    with Mode(mode) as m:
        state = _runtime.current
        if state is not None and state.tracer_provider is not None:
            tracer = state.tracer_provider.get_tracer("bench")
            for _ in range(_span_queue()[1] + 100):
                tracer.start_span("bench.fill").end()
        memory, lags, cpu, wall = [], [], 0.0, 0.0
        for _ in range(MEMORY_ROUNDS):
            dc, dw, dl = _timed()
            cpu, wall = cpu + dc, wall + dw
            lags += dl
            gc.collect()
            queue, capacity = _span_queue()
            memory.append(
                {
                    "rss_mb": c.rss_bytes() / 2**20,
                    "gc_objects": float(len(gc.get_objects())),
                    "span_queue": float(queue),
                    "span_queue_capacity": float(capacity),
                    "spans_ended": float(m.spans.ended),
                }
            )
    return Sample(cpu, wall, lags, m.shutdown_s, m.spans.ended, memory, m.lingering, m.teardown_s)


def _summary(samples: list[Sample]) -> dict[str, Any]:
    lags = [x for s in samples for x in s.lags_ms]
    return {
        "cpu_s": c.median([s.cpu_s for s in samples]),
        "wall_s": c.median([s.wall_s for s in samples]),
        "lag_p50_ms": c.percentile(lags, 50),
        "lag_p99_ms": c.percentile(lags, 99),
        "lag_max_ms": max(lags),
        "heartbeats": len(lags),
        "shutdown_max_s": max(s.shutdown_s for s in samples),
        "spans_per_run": c.median([s.spans for s in samples]),
        "cpu_s_per_round": [s.cpu_s for s in samples],
        "lag_p99_ms_per_round": [c.percentile(s.lags_ms, 99) for s in samples],
        "threads_left_after_teardown": sorted({t for s in samples for t in s.lingering}),
        "teardown_max_s": max(s.teardown_s for s in samples),
    }


def _cpu_ratio(mode: list[Sample], base: list[Sample]) -> tuple[float, str]:
    """The median of the paired per-round CPU ratios, and their interquartile range."""
    ratios = sorted(m.cpu_s / b.cpu_s for m, b in zip(mode, base, strict=True))
    spread = f"per-round ratios {c.percentile(ratios, 25):.2f}-{c.percentile(ratios, 75):.2f} (IQR)"
    return c.median(ratios), spread


def _lag_added(mode: list[Sample], base: list[Sample]) -> float:
    """The median over rounds of the paired difference of lag p99s (ms)."""
    return c.median(
        [
            c.percentile(m.lags_ms, 99) - c.percentile(b.lags_ms, 99)
            for m, b in zip(mode, base, strict=True)
        ]
    )


def _slope(memory: list[dict[str, float]], key: str) -> float:
    """Least-squares growth per round, after the first round (which fills caches and the span
    queue); 0 with fewer than two rounds after it."""
    ys = [r[key] for r in memory[1:]]
    if len(ys) < 2:
        return 0.0
    xs = range(len(ys))
    mx, my = sum(xs) / len(ys), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )


def run() -> dict[str, Any]:
    c.configure_logging()
    logging.getLogger("livekit").setLevel(logging.WARNING)
    _one("metrics")  # warm-up: imports, caches, the first sessions
    modes = ("off", "metrics", "livekit_traced", "traced", "off_again")
    main = c.alternate({m: (lambda m=m: _one(m)) for m in modes}, ROUNDS)
    memory = {m: _memory_rounds(m) for m in ("off", "closed_port", "black_hole")}
    unreachable_modes = ("off", "livekit_traced", "closed_port", "black_hole")
    unreachable = c.alternate(
        {m: (lambda m=m: _one(m)) for m in unreachable_modes}, UNREACHABLE_ROUNDS
    )

    kinds: dict[str, int] = {}
    for plan in PLANS:
        for kind in plan.kinds:
            kinds[kind] = kinds.get(kind, 0) + 1
    result: dict[str, Any] = {
        "sessions": SESSIONS,
        "turns_per_session": TURNS,
        "think_ms": THINK_MS,
        "turn_mix": kinds,
        "rounds": ROUNDS,
        "unreachable_rounds": UNREACHABLE_ROUNDS,
        "memory_rounds": MEMORY_ROUNDS,
        "modes": {m: _summary(s) for m, s in main.items()},
        "unreachable": {m: _summary(s) for m, s in unreachable.items()},
        "memory": {m: {**_summary([s]), "rounds": s.memory} for m, s in memory.items()},
    }
    summary, unr = result["modes"], result["unreachable"]
    workload = f"{SESSIONS} concurrent sessions"
    figures = []
    for mode, base, label in (
        ("metrics", "off", "no otel-agents"),
        ("traced", "livekit_traced", "livekit's own tracing alone"),
    ):
        what = "init()" if mode == "metrics" else "init() with a tracer provider"
        ratio, spread = _cpu_ratio(main[mode], main[base])
        figures.append(
            c.Figure(
                key=f"workload.cpu.{mode}",
                name=f"{workload}, CPU time: {what}",
                value=summary[mode]["cpu_s"],
                unit="s",
                baseline=summary[base]["cpu_s"],
                baseline_label=label,
                ratio=ratio,
                on="ratio",
                op="<=",
                limit=1.05,
                note=spread,
            )
        )
        figures.append(
            c.Figure(
                key=f"workload.lag.{mode}",
                name=f"{workload}, event-loop lag p99 added: {what}",
                value=_lag_added(main[mode], main[base]),
                unit="ms",
                baseline=summary[base]["lag_p99_ms"],
                baseline_label=f"lag p99, {label}",
                ratio=summary[mode]["lag_p99_ms"] / summary[base]["lag_p99_ms"],
                on="value",
                op="<",
                limit=1.0,
                note=f"pooled p99 {summary[mode]['lag_p99_ms']:.1f} ms vs "
                f"{summary[base]['lag_p99_ms']:.1f} ms",
            )
        )
    ratio, spread = _cpu_ratio(main["off_again"], main["off"])
    figures.append(
        c.Figure(
            key="workload.control",
            name=f"{workload}, control: the same run twice without otel-agents (noise floor)",
            value=summary["off_again"]["cpu_s"],
            unit="s",
            baseline=summary["off"]["cpu_s"],
            baseline_label="no otel-agents",
            ratio=ratio,
            note=f"{spread}; lag p99 difference {_lag_added(main['off_again'], main['off']):+.2f}"
            " ms",
        )
    )
    ratio, spread = _cpu_ratio(main["livekit_traced"], main["off"])
    figures.append(
        c.Figure(
            key="workload.cpu.livekit_traced",
            name=f"{workload}, CPU time: livekit's own tracing alone",
            value=summary["livekit_traced"]["cpu_s"],
            unit="s",
            baseline=summary["off"]["cpu_s"],
            baseline_label="no tracing",
            ratio=ratio,
            note=spread,
        )
    )
    where = {"closed_port": "a closed port", "black_hole": "a black hole"}
    for mode in ("closed_port", "black_hole"):
        ratio, _ = _cpu_ratio(unreachable[mode], unreachable["off"])
        figures.append(
            c.Figure(
                key=f"unreachable.{mode}.lag",
                name=f"OTLP endpoint at {where[mode]}: event-loop lag p99",
                value=unr[mode]["lag_p99_ms"],
                unit="ms",
                baseline=unr["off"]["lag_p99_ms"],
                baseline_label="no otel-agents",
                ratio=unr[mode]["lag_p99_ms"] / unr["off"]["lag_p99_ms"],
                on="value",
                op="<",
                limit=10.0,
                note=f"max {unr[mode]['lag_max_ms']:.1f} ms (no otel-agents: "
                f"{unr['off']['lag_max_ms']:.1f} ms); livekit's own tracing alone, same run: "
                f"p99 {unr['livekit_traced']['lag_p99_ms']:.1f} ms; CPU {ratio:.2f}x no "
                "otel-agents (livekit's spans included: init() hands livekit the provider)",
            )
        )
        figures.append(
            c.Figure(
                key=f"unreachable.{mode}.shutdown",
                name=f"OTLP endpoint at {where[mode]}: shutdown(timeout=1 s) returns in",
                value=unr[mode]["shutdown_max_s"],
                unit="s",
                baseline=SHUTDOWN_TIMEOUT_S,
                baseline_label="its timeout",
                ratio=unr[mode]["shutdown_max_s"] / SHUTDOWN_TIMEOUT_S,
                on="value",
                op="<",
                limit=1.5,
            )
        )
        rounds = result["memory"][mode]["rounds"]
        off_rounds = result["memory"]["off"]["rounds"]
        growth, base_growth = _slope(rounds, "rss_mb"), _slope(off_rounds, "rss_mb")
        objects = _slope(rounds, "gc_objects")
        base_objects = _slope(off_rounds, "gc_objects")
        per_round = (rounds[-1]["spans_ended"] - rounds[0]["spans_ended"]) / max(1, len(rounds) - 1)
        queue = max(r["span_queue"] for r in rounds)
        capacity = max(r["span_queue_capacity"] for r in rounds)
        figures.append(
            c.Figure(
                key=f"unreachable.{mode}.memory",
                name=f"OTLP endpoint at {where[mode]}: RSS growth per workload round",
                value=growth,
                unit="MB",
                baseline=base_growth,
                baseline_label="no otel-agents",
                ratio=rounds[-1]["rss_mb"] / off_rounds[-1]["rss_mb"],
                on="value",
                op="<",
                limit=max(0.0, base_growth) + 2.0,
                note=f"ratio: RSS after the rounds, vs without otel-agents; "
                f"{per_round:,.0f} spans made per round, the span queue held at most "
                f"{queue:,.0f} (capacity {capacity:,.0f}); gc-tracked objects "
                f"{objects:+,.0f} per round (no otel-agents: {base_objects:+,.0f})",
            )
        )
    result["figures"] = figures
    return result


def main() -> dict[str, Any]:
    result = run()
    print(
        f"session_cost: {SESSIONS} concurrent sessions x {TURNS} turns, medians of {ROUNDS} "
        "alternating rounds"
    )
    c.print_figures(c.figures_of(result))
    c.write_result("session_cost", c.jsonable(result))
    return result


if __name__ == "__main__":
    main()
