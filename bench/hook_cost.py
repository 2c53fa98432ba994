"""Cost of the failed-attempt hook, as a ratio to livekit's own emit to a no-op listener.

The baseline is what livekit already pays for every failed attempt: ``EventEmitter.emit`` of an
``LLMError`` to one listener that does nothing. The measured case is the same emit with
otel-agents' hook as the listener, on the metrics path (no tracer, ``otel_agents`` logger
quiet), and then with a span and a log line as well. Both run inside an asyncio task, as in a
real retry loop, over the same pre-built error chains (fresh objects: the hook deduplicates
re-emitted errors by identity), alternating baseline and measured batches so that machine
noise hits both alike. Target (DESIGN.md section 9): metrics path <= 1.5x; full path median
under 50 us.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from livekit.agents import llm

import otel_agents
from otel_agents import _names as n
from tests.scripted import (
    ScriptedLLM,
    gateway_status_error,
    ssl_connection_error,
)

RESULTS = Path(__file__).parent / "results"
BATCH = 500
ROUNDS = 15

QUOTA_BODY = {
    "type": "inference_quota_exceeded",
    "error": "LLM token credit quota exceeded, category: MaxGatewayCredits",
    "quota_type": "llm",
    "category": "MaxGatewayCredits",
    "hint": "Wait for the next billing cycle.",
    "remaining_limit": "0",
}
ERRORS: dict[str, Callable[[], None]] = {
    "ssl connection chain": ssl_connection_error,
    "gateway 429 quota": gateway_status_error(429, QUOTA_BODY),
}


def _events(make: Callable[[], None], count: int) -> list[llm.LLMError]:
    events = []
    for i in range(count):
        try:
            make()
        except Exception as exc:
            events.append(
                llm.LLMError(
                    timestamp=time.time(), label="bench", error=exc, recoverable=i % 3 != 2
                )
            )
    return events


def _time_batch(emitter: llm.LLM, events: list[llm.LLMError]) -> float:
    emit = emitter.emit
    start = time.perf_counter_ns()
    for ev in events:
        emit("error", ev)
    return (time.perf_counter_ns() - start) / len(events) / 1000.0  # us per emit


async def _measure(make: Callable[[], None]) -> tuple[list[float], list[float]]:
    """(baseline, measured) per-emit times in microseconds, one value per round."""

    def noop(ev: Any) -> None:
        pass

    baseline_llm = ScriptedLLM(["x"])  # built before init(): no hook attached
    baseline_llm.on("error", noop)
    otel_agents.init(tracer_provider=_TRACER_PROVIDER) if _FULL else otel_agents.init()
    try:
        hooked_llm = ScriptedLLM(["x"])  # built after init(): the hook is its one listener
        assert len(hooked_llm._events["error"]) == 1
        base, measured = [], []
        for _ in range(ROUNDS):
            base.append(_time_batch(baseline_llm, _events(make, BATCH)))
            measured.append(_time_batch(hooked_llm, _events(make, BATCH)))
        return base, measured
    finally:
        otel_agents.shutdown()


_FULL = False
_TRACER_PROVIDER: Any = None


def _run(full: bool) -> dict[str, dict[str, float]]:
    global _FULL, _TRACER_PROVIDER
    _FULL = full
    log = logging.getLogger(n.LOGGER_NAME)
    handler: logging.Handler | None = None
    if full:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        _TRACER_PROVIDER = TracerProvider()
        _TRACER_PROVIDER.add_span_processor(BatchSpanProcessor(InMemorySpanExporter()))
        handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115
        log.addHandler(handler)
        log.setLevel(logging.WARNING)
    else:
        log.setLevel(logging.CRITICAL)
    out = {}
    try:
        for name, make in ERRORS.items():
            base, measured = asyncio.run(_measure(make))
            b, m = statistics.median(base), statistics.median(measured)
            out[name] = {"baseline_us": b, "hooked_us": m, "ratio": m / b, "added_us": m - b}
    finally:
        if handler is not None:
            log.removeHandler(handler)
        log.setLevel(logging.NOTSET)
    return out


def main() -> dict[str, Any]:
    results = {
        "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cpus, "
        f"Python {platform.python_version()}".replace("  ", " "),
        "metrics_path": _run(full=False),
        "metrics_span_log": _run(full=True),
    }
    print(f"failed-attempt hook vs livekit emit to a no-op listener ({results['machine']})")
    print(f"{'path':<18} {'error':<22} {'baseline':>10} {'hooked':>10} {'ratio':>7}")
    for path in ("metrics_path", "metrics_span_log"):
        for error, r in results[path].items():
            print(
                f"{path:<18} {error:<22} {r['baseline_us']:>8.2f}us {r['hooked_us']:>8.2f}us"
                f" {r['ratio']:>6.2f}x"
            )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "hook_cost.json").write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
