"""Cost of reading the quota headers of every provider response, as a ratio to the same
response without otel-agents.

A response is one non-streamed chat completion through the real openai SDK (what
``inference.LLM`` and ``livekit-plugins-openai`` use), on an in-process ``httpx2.MockTransport``
that answers the way the LiveKit Inference gateway does: its six
``X-LiveKit-Inference-{RPM,TPM,Credits}-{Limit,Used}`` headers among eight others, the limits
the same on every response and the three uses different on each (as traffic spends them). The
baseline is the same call with otel-agents' wraps removed (``uninstrument()``), measured in
alternating batches in the same run. The second figure is ``quota_headers.capture()`` alone on
such responses (one pass over the headers; the three uses parsed and set, the unchanged limits
not), against its floor: six bare prometheus_client ``Gauge.set`` calls, timed in the same run.
Targets (issue 13): a few microseconds per response: ratio <= 1.05, and capture within 2x of
the six sets.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import httpx2
import openai
from prometheus_client import CollectorRegistry, Gauge

import otel_agents
from bench import _common as c
from otel_agents._capture import instrument, quota_headers

BATCH = c.size("quota_batch", 400, 100)
ROUNDS = c.size("quota_rounds", 15, 5)

HEADERS = {
    "content-type": "application/json",
    "date": "Tue, 01 Jul 2025 12:00:00 GMT",
    "x-request-id": "req_0123456789",
    "cache-control": "no-cache",
    "server": "livekit-inference",
    "x-livekit-inference-provider": "openai",
    "openai-processing-ms": "312",
    "vary": "Accept-Encoding",
    "X-LiveKit-Inference-RPM-Limit": "600",
    "X-LiveKit-Inference-RPM-Used": "42",
    "X-LiveKit-Inference-TPM-Limit": "200000",
    "X-LiveKit-Inference-TPM-Used": "15300",
    "X-LiveKit-Inference-Credits-Limit": "1000000",
    "X-LiveKit-Inference-Credits-Used": "53210",
}
COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 0,
    "model": "gpt-4.1-mini",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11},
}


#: distinct responses the capture-alone loop cycles through (uses differ from one to the next)
VARIANTS = 64


def _headers(i: int) -> dict[str, str]:
    """``HEADERS`` with the three uses of the ``i``-th response: they grow with each one."""
    return {
        **HEADERS,
        "X-LiveKit-Inference-RPM-Used": str(42 + i % 500),
        "X-LiveKit-Inference-TPM-Used": str(15300 + 11 * i),
        "X-LiveKit-Inference-Credits-Used": str(53210 + 7 * i),
    }


def _client() -> openai.OpenAI:
    served = itertools.count()

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json=COMPLETION, headers=_headers(next(served)))

    return openai.OpenAI(
        api_key="sk-bench",
        base_url="https://agent-gateway.example/v1",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )


def _batch(client: openai.OpenAI, hooked: bool) -> float:
    """Mean µs per response over one batch, with otel-agents' wraps in or out."""
    if hooked:
        instrument.instrument()
    else:
        instrument.uninstrument()
    messages: Any = [{"role": "user", "content": "hi"}]
    create = client.chat.completions.create
    start = time.perf_counter()
    for _ in range(BATCH):
        create(model="gpt-4.1-mini", messages=messages)
    return (time.perf_counter() - start) / BATCH * 1e6


def _gauge_sets_cost() -> float:
    gauge = Gauge("bench_quota", "", ["provider", "dimension"], registry=CollectorRegistry())
    child = gauge.labels("livekit", "credits")
    start = time.perf_counter()
    for _ in range(BATCH * 10):
        for _ in range(6):
            child.set(1.0)
    return (time.perf_counter() - start) / (BATCH * 10) * 1e6


def _capture_cost() -> float:
    responses = [
        httpx2.Response(200, json=COMPLETION, headers=_headers(i)) for i in range(VARIANTS)
    ]
    capture = quota_headers.capture
    rounds = max(1, BATCH * 10 // VARIANTS)
    start = time.perf_counter()
    for _ in range(rounds):
        for response in responses:
            capture(response)
    return (time.perf_counter() - start) / (rounds * VARIANTS) * 1e6


def run() -> dict[str, Any]:
    otel_agents.init(service_name="bench-quota-headers")
    client = _client()
    try:
        for hooked in (False, True):  # warm both paths (imports, caches, the series)
            _batch(client, hooked)
        runs = c.alternate(
            {"base": lambda: _batch(client, False), "hooked": lambda: _batch(client, True)},
            ROUNDS,
        )
        instrument.instrument()
        floor = c.alternate({"capture": _capture_cost, "sets": _gauge_sets_cost}, ROUNDS)
        capture_us, sets_us = c.median(floor["capture"]), c.median(floor["sets"])
    finally:
        client.close()
        otel_agents.shutdown()
    base, hooked = c.median(runs["base"]), c.median(runs["hooked"])
    ratio = c.paired_ratio(runs["hooked"], runs["base"])
    result: dict[str, Any] = {
        "batch": BATCH,
        "rounds": ROUNDS,
        "baseline_us": base,
        "hooked_us": hooked,
        "added_us": hooked - base,
        "ratio": ratio,
        "capture_us": capture_us,
        "six_gauge_sets_us": sets_us,
    }
    result["figures"] = [
        c.Figure(
            key="quota.response",
            name="openai SDK response with quota header capture",
            value=hooked,
            unit="µs",
            baseline=base,
            baseline_label="the same response, otel-agents' wraps removed",
            ratio=ratio,
            on="ratio",
            op="<=",
            limit=1.05,
            note=f"{hooked - base:+.1f} µs per response (difference of medians)",
        ),
        c.Figure(
            key="quota.capture",
            name="quota header capture alone (6 LiveKit headers of 14)",
            value=capture_us,
            unit="µs",
            baseline=sets_us,
            baseline_label="6 bare prometheus_client Gauge.set",
            ratio=c.paired_ratio(floor["capture"], floor["sets"]),
            on="ratio",
            op="<=",
            limit=2.0,
        ),
    ]
    return result


def main() -> dict[str, Any]:
    result = run()
    print(f"quota_headers: per response, medians of {ROUNDS} alternating batches of {BATCH}")
    c.print_figures(c.figures_of(result))
    c.write_result("quota_headers", c.jsonable(result))
    return result


if __name__ == "__main__":
    main()
