"""Cost of the failed-attempt hook, as a ratio to livekit's own emit to a no-op listener.

The baseline is what livekit already pays for every failed attempt: ``EventEmitter.emit`` of an
``LLMError`` to one listener that does nothing. The measured case is the same emit with
otel-agents' hook as the listener, on the metrics path (no tracer, ``otel_agents`` logger
quiet), and then with a span and a log line as well (an SDK tracer provider with a batch
processor, and a log handler that formats every record). Both run inside an asyncio task, as in
a real retry loop, over the same pre-built error chains (fresh objects: the hook deduplicates
re-emitted errors by identity), alternating baseline and measured batches so that machine noise
hits both alike. Targets (docs/architecture.md): metrics path <= 1.5x; with a span and a log
line, a median under 50 us.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from livekit.agents import APIStatusError, llm

import otel_agents
from bench import _common as c
from otel_agents import names as n
from tests.scripted import ScriptedLLM, gateway_status_error, ssl_connection_error

BATCH = c.size("hook_batch", 500, 200)
ROUNDS = c.size("hook_rounds", 15, 5)

QUOTA_BODY = {
    "type": "inference_quota_exceeded",
    "error": "LLM token credit quota exceeded, category: MaxGatewayCredits",
    "quota_type": "llm",
    "category": "MaxGatewayCredits",
    "hint": "Wait for the next billing cycle.",
    "remaining_limit": "0",
}
#: a 10 MB error body, shared by every error made from it (no 10 MB copy per error)
HUGE_BODY = "p" * (10 * 1024 * 1024)


def huge_body_error() -> None:
    raise APIStatusError("Error code: 503", status_code=503, body=HUGE_BODY, retryable=True)


ERRORS: dict[str, Callable[[], None]] = {
    "ssl": ssl_connection_error,
    "quota": gateway_status_error(429, QUOTA_BODY),
    "huge": huge_body_error,
}
LABELS = {
    "ssl": "TLS connection error chain",
    "quota": "gateway 429 quota body",
    "huge": "10 MB error body",
}
#: the hook on a 10 MB body, against the same hook on the quota body: it reads a bounded
#: prefix of any text, so the size of the body must not show (the timing bound a test once
#: asserted, as a ratio in one run)
HUGE_LIMIT = 2.0


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


async def _measure(make: Callable[[], None], provider: Any) -> tuple[list[float], list[float]]:
    """(baseline, measured) per-emit times in microseconds, one value per round."""

    def noop(ev: Any) -> None:
        pass

    baseline_llm = ScriptedLLM(["x"])  # built before init(): no hook attached
    baseline_llm.on("error", noop)
    otel_agents.init(tracer_provider=provider)
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


def _run(full: bool) -> dict[str, dict[str, float]]:
    c.configure_logging()  # the root logger formats every record (to /dev/null)
    log = logging.getLogger(n.LOGGER_NAME)
    provider: Any = None
    if full:
        provider = c.discard_provider()
        log.setLevel(logging.WARNING)  # every failed attempt logs one line
    else:
        log.setLevel(logging.CRITICAL)  # the metrics path alone
    out = {}
    try:
        for name, make in ERRORS.items():
            base, measured = asyncio.run(_measure(make, provider))
            b, m = c.median(base), c.median(measured)
            out[name] = {
                "baseline_us": b,
                "hooked_us": m,
                "added_us": m - b,
                "ratio": c.paired_ratio(measured, base),
            }
    finally:
        log.setLevel(logging.NOTSET)
        if provider is not None:
            provider.shutdown()
    return out


def run() -> dict[str, Any]:
    result: dict[str, Any] = {
        "batch": BATCH,
        "rounds": ROUNDS,
        "metrics_path": _run(full=False),
        "metrics_span_log": _run(full=True),
    }
    figures = []
    for key, r in result["metrics_path"].items():
        if key == "huge":
            continue
        figures.append(
            c.Figure(
                key=f"hook.metrics.{key}",
                name=f"failed-attempt hook, metrics path ({LABELS[key]})",
                value=r["hooked_us"],
                unit="µs",
                baseline=r["baseline_us"],
                baseline_label="livekit emit to a no-op listener",
                ratio=r["ratio"],
                on="ratio",
                op="<=",
                limit=1.5,
                note=f"+{r['added_us']:.1f} µs per failed attempt",
            )
        )
    for key, r in result["metrics_span_log"].items():
        if key == "huge":
            continue
        figures.append(
            c.Figure(
                key=f"hook.full.{key}",
                name=f"failed-attempt hook + span + log line ({LABELS[key]})",
                value=r["hooked_us"],
                unit="µs",
                baseline=r["baseline_us"],
                baseline_label="livekit emit to a no-op listener",
                ratio=r["ratio"],
                on="value",
                op="<",
                limit=50.0,
                note=f"+{r['added_us']:.1f} µs per failed attempt",
            )
        )
    for path, label in (("metrics_path", "metrics path"), ("metrics_span_log", "+ span + log")):
        huge, quota = result[path]["huge"], result[path]["quota"]
        figures.append(
            c.Figure(
                key=f"hook.{path}.huge_body",
                name=f"failed-attempt hook, {label}, on a 10 MB error body",
                value=huge["hooked_us"],
                unit="µs",
                baseline=quota["hooked_us"],
                baseline_label="the same hook on a gateway 429 quota body",
                ratio=huge["hooked_us"] / quota["hooked_us"],
                on="ratio",
                op="<=",
                limit=HUGE_LIMIT,
            )
        )
    result["figures"] = figures
    return result


def main() -> dict[str, Any]:
    result = run()
    print(f"hook_cost: per emit, medians of {ROUNDS} alternating batches of {BATCH}")
    c.print_figures(c.figures_of(result))
    c.write_result("hook_cost", c.jsonable(result))
    return result


if __name__ == "__main__":
    main()
