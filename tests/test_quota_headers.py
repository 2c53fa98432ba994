"""``otel_agents_quota_limit`` / ``otel_agents_quota_used`` from response headers.

The real ``livekit.agents.inference.LLM`` against the demo's fake gateway on 127.0.0.1, whose
completions (success and 429) carry ``X-LiveKit-Inference-{RPM,TPM,Credits}-{Limit,Used}`` from
its per-minute counts and credit balance; the openai SDK itself (``livekit-plugins-openai`` is
not installed here: the plugin calls the same SDK) with OpenAI's ``x-ratelimit-*`` headers on
an ``httpx2.MockTransport``; and the multiprocess merge (``max`` for limits, ``mostrecent`` for
use) by prometheus_client's own collector (livekit's ``/metrics``) and by the sidecar, with two
processes writing.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Literal

import httpx2
import openai
import pytest
from livekit.agents import APIConnectionError, APIConnectOptions, APIStatusError, inference, llm
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess

from otel_agents import names as n
from otel_agents.demo.gateway import (
    DEFAULT_RPM_LIMIT,
    DEFAULT_TPM_LIMIT,
    QUOTA_CREDITS_BODY,
    FakeGateway,
    http_error,
)

TIMEOUT = 10.0
asyncio_test = pytest.mark.asyncio
CREDS: dict[str, Any] = {"api_key": "devkey", "api_secret": "devsecret-devsecret-devsecret-0123"}
NO_RETRY = APIConnectOptions(max_retry=0, retry_interval=0.01, timeout=5.0)
TWO_RETRIES = APIConnectOptions(max_retry=2, retry_interval=0.01, timeout=5.0)


def gauge(name: str, provider: str, dimension: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"provider": provider, "dimension": dimension})


def quota_series() -> dict[tuple[str, str, str], float]:
    out = {}
    for metric in REGISTRY.collect():
        if metric.name in (n.QUOTA_LIMIT, n.QUOTA_USED):
            for s in metric.samples:
                out[(s.name, s.labels["provider"], s.labels["dimension"])] = s.value
    return out


async def chat(model: inference.LLM, conn_options: APIConnectOptions) -> str:
    ctx = llm.ChatContext.empty()
    ctx.add_message(role="user", content="Say something.")
    text = ""
    async with model.chat(chat_ctx=ctx, conn_options=conn_options) as stream:
        async for chunk in stream:
            if chunk.delta and chunk.delta.content:
                text += chunk.delta.content
    return text


# --- LiveKit Inference: the real inference.LLM against the fake gateway -----------------------


@asyncio_test
async def test_gateway_credit_headers_on_every_success(telemetry: Any) -> None:
    async with FakeGateway() as gateway:
        gateway.set_credits(limit=1000, used=100, cost=250)
        model = inference.LLM("openai/gpt-4.1-mini", base_url=gateway.url, **CREDS)
        assert await asyncio.wait_for(chat(model, NO_RETRY), TIMEOUT)
        tokens = gateway.rates.tpm_used
        assert tokens > 0
        assert quota_series() == {
            (n.QUOTA_LIMIT, "livekit", "credits"): 1000.0,
            (n.QUOTA_USED, "livekit", "credits"): 350.0,
            (n.QUOTA_LIMIT, "livekit", "rpm"): float(DEFAULT_RPM_LIMIT),
            (n.QUOTA_USED, "livekit", "rpm"): 1.0,
            (n.QUOTA_LIMIT, "livekit", "tpm"): float(DEFAULT_TPM_LIMIT),
            (n.QUOTA_USED, "livekit", "tpm"): float(tokens),
        }
        assert await asyncio.wait_for(chat(model, NO_RETRY), TIMEOUT)
        assert gauge(n.QUOTA_USED, "livekit", "credits") == 600.0
        assert gauge(n.QUOTA_USED, "livekit", "rpm") == 2.0
        assert gauge(n.QUOTA_USED, "livekit", "tpm") == 2.0 * tokens  # the same request again
        await model.aclose()


@asyncio_test
async def test_gateway_credit_headers_on_the_credits_exhausted_429(telemetry: Any) -> None:
    async with FakeGateway() as gateway:
        gateway.set_credits(limit=500, used=0, cost=300)
        model = inference.LLM("openai/gpt-4.1-mini", base_url=gateway.url, **CREDS)
        await asyncio.wait_for(chat(model, NO_RETRY), TIMEOUT)  # 300 of 500
        await asyncio.wait_for(chat(model, NO_RETRY), TIMEOUT)  # 500 of 500 (capped)
        with pytest.raises(APIConnectionError) as raised:  # livekit's, after its retries
            await asyncio.wait_for(chat(model, TWO_RETRIES), TIMEOUT)
        cause = raised.value.__cause__
        assert isinstance(cause, APIStatusError)
        assert cause.status_code == 429
        assert gateway.requests["llm"] == 5  # 2 answered, then 3 attempts all refused
        assert quota_series() == {
            (n.QUOTA_LIMIT, "livekit", "credits"): 500.0,
            (n.QUOTA_USED, "livekit", "credits"): 500.0,
            (n.QUOTA_LIMIT, "livekit", "rpm"): float(DEFAULT_RPM_LIMIT),
            (n.QUOTA_USED, "livekit", "rpm"): 5.0,  # the refused requests count too
            (n.QUOTA_LIMIT, "livekit", "tpm"): float(DEFAULT_TPM_LIMIT),
            (n.QUOTA_USED, "livekit", "tpm"): float(gateway.rates.tpm_used),  # 2 answers' tokens
        }
        # the 429s were quota errors too (the classifier read their body)
        assert (
            telemetry.value(
                n.QUOTA_ERRORS,
                component="llm",
                quota_type="llm",
                quota_category="MaxGatewayCredits",
                terminal="true",
            )
            == 3
        )
        await model.aclose()


@asyncio_test
async def test_a_scripted_429_carries_the_balance_and_its_own_headers(telemetry: Any) -> None:
    async with FakeGateway() as gateway:
        gateway.set_credits(limit=2000, used=1500)
        gateway.llm.push(
            http_error(
                429,
                QUOTA_CREDITS_BODY,
                headers={
                    "X-LiveKit-Inference-RPM-Limit": "60",
                    "X-LiveKit-Inference-RPM-Used": "60",
                },
            )
        )
        model = inference.LLM("openai/gpt-4.1-mini", base_url=gateway.url, **CREDS)
        with pytest.raises(APIStatusError):
            await asyncio.wait_for(chat(model, NO_RETRY), TIMEOUT)
        # the fault's own RPM headers replace the gateway's; its TPM ones are the gateway's
        assert quota_series() == {
            (n.QUOTA_LIMIT, "livekit", "credits"): 2000.0,
            (n.QUOTA_USED, "livekit", "credits"): 1500.0,
            (n.QUOTA_LIMIT, "livekit", "rpm"): 60.0,
            (n.QUOTA_USED, "livekit", "rpm"): 60.0,
            (n.QUOTA_LIMIT, "livekit", "tpm"): float(DEFAULT_TPM_LIMIT),
            (n.QUOTA_USED, "livekit", "tpm"): 0.0,
        }
        await model.aclose()


# --- the openai SDK with OpenAI's x-ratelimit headers -------------------------------------------

COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 0,
    "model": "gpt-4.1-mini",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
    ],
}
SSE = (
    b'data: {"id":"c","object":"chat.completion.chunk","created":0,"model":"m",'
    b'"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}\n\n'
    b"data: [DONE]\n\n"
)
RATELIMIT = {
    "x-ratelimit-limit-requests": "500",
    "x-ratelimit-remaining-requests": "499",
    "x-ratelimit-limit-tokens": "30000",
    "x-ratelimit-remaining-tokens": "29000",
}


def openai_client(handler: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        api_key="sk-test",
        base_url="https://api.openai.example/v1",
        max_retries=0,
        http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(handler)),
    )


@asyncio_test
async def test_openai_ratelimit_headers_non_streamed_and_streamed(telemetry: Any) -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        if b'"stream":true' in request.content.replace(b" ", b""):
            headers = {**RATELIMIT, "x-ratelimit-remaining-tokens": "28000"}
            return httpx2.Response(
                200, content=SSE, headers={**headers, "content-type": "text/event-stream"}
            )
        return httpx2.Response(200, json=COMPLETION, headers=RATELIMIT)

    client = openai_client(handler)
    messages: Any = [{"role": "user", "content": "hi"}]
    await client.chat.completions.create(model="gpt-4.1-mini", messages=messages)
    assert quota_series() == {
        (n.QUOTA_LIMIT, "openai", "requests"): 500.0,
        (n.QUOTA_USED, "openai", "requests"): 1.0,
        (n.QUOTA_LIMIT, "openai", "tokens"): 30000.0,
        (n.QUOTA_USED, "openai", "tokens"): 1000.0,
    }
    stream = await client.chat.completions.create(
        model="gpt-4.1-mini", messages=messages, stream=True
    )
    async for _ in stream:
        pass
    assert gauge(n.QUOTA_USED, "openai", "tokens") == 2000.0
    await client.close()


@asyncio_test
async def test_openai_429_headers_and_the_livekit_provider_label(telemetry: Any) -> None:
    """A 429 is read too; inside a livekit LLM stream the provider is that LLM's."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        headers = {**RATELIMIT, "x-ratelimit-remaining-requests": "0"}
        body = {"error": {"message": "Rate limit reached", "type": "requests", "code": None}}
        return httpx2.Response(429, json=body, headers=headers)

    client = openai_client(handler)

    class SdkLLM(llm.LLM):
        @property
        def provider(self) -> str:
            return "my-openai"

        def chat(self, **kwargs: Any) -> llm.LLMStream:
            return SdkStream(self, chat_ctx=kwargs["chat_ctx"], tools=[], conn_options=NO_RETRY)

    class SdkStream(llm.LLMStream):
        async def _run(self) -> None:
            try:
                await client.chat.completions.create(
                    model="gpt-4.1-mini", messages=[{"role": "user", "content": "hi"}]
                )
            except openai.RateLimitError as e:
                raise APIStatusError("rate limited", status_code=429, body=None) from e

    model = SdkLLM()
    with pytest.raises(APIStatusError):
        await asyncio.wait_for(chat(model, NO_RETRY), TIMEOUT)  # type: ignore[arg-type]
    assert quota_series() == {
        (n.QUOTA_LIMIT, "my-openai", "requests"): 500.0,
        (n.QUOTA_USED, "my-openai", "requests"): 500.0,
        (n.QUOTA_LIMIT, "my-openai", "tokens"): 30000.0,
        (n.QUOTA_USED, "my-openai", "tokens"): 1000.0,
    }
    await client.close()


@asyncio_test
async def test_absent_or_malformed_headers_make_no_series(telemetry: Any) -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        # a used without its limit is still a fact; garbage and negatives are nothing
        return httpx2.Response(
            200,
            json=COMPLETION,
            headers={
                "x-ratelimit-remaining-requests": "12",  # remaining without a limit: unknown
                "x-ratelimit-limit-tokens": "lots",
                "X-LiveKit-Inference-TPM-Used": "-5",
                "X-LiveKit-Inference-RPM-Used": "7",
            },
        )

    client = openai_client(handler)
    await client.chat.completions.create(
        model="gpt-4.1-mini", messages=[{"role": "user", "content": "hi"}]
    )
    assert quota_series() == {(n.QUOTA_USED, "livekit", "rpm"): 7.0}
    await client.close()
    # and a response with no quota header at all adds nothing
    from otel_agents._export import metrics

    before = metrics.get_metrics().quota_limit.series
    client = openai_client(lambda request: httpx2.Response(200, json=COMPLETION))
    await client.chat.completions.create(
        model="gpt-4.1-mini", messages=[{"role": "user", "content": "hi"}]
    )
    assert metrics.get_metrics().quota_limit.series == before
    await client.close()


def test_a_broken_capture_is_counted_and_never_raises(telemetry: Any) -> None:
    from otel_agents._capture import quota_headers

    class Hostile:
        @property
        def headers(self) -> Any:
            raise RuntimeError("boom")

    quota_headers.capture(Hostile())
    assert telemetry.value(n.INTERNAL_ERRORS, where="quota_hook") == 1


# --- multiprocess: the most recent limit and use, never a sum, never a stale maximum -------------

WRITER = textwrap.dedent(
    """
    import os, sys, time
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = sys.argv[1]
    import otel_agents
    otel_agents.init()
    from otel_agents import _runtime
    limit, used, delay = float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
    time.sleep(delay)
    _runtime.current.recorder.quota("livekit", "credits", limit, used)
    """
)


def _write(directory: Path, limit: float, used: float, delay: float) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    subprocess.run(
        [sys.executable, "-c", WRITER, str(directory), str(limit), str(used), str(delay)],
        env=env,
        check=True,
        timeout=120,
    )


def test_two_processes_merge_by_most_recent(tmp_path: Path) -> None:
    directory = tmp_path / "prom"
    directory.mkdir()
    # the first process sees the larger limit and the older use; the second writes later, after
    # the plan was lowered: its limit is the one that holds (a maximum would hide it forever)
    _write(directory, 1000.0, 900.0, 0.0)
    _write(directory, 800.0, 950.0, 0.05)
    assert list(directory.glob("gauge_max_*.db")) == []
    assert len(list(directory.glob("gauge_mostrecent_*.db"))) == 2

    # livekit's /metrics: prometheus_client's own multiprocess collector
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    labels = {"provider": "livekit", "dimension": "credits"}
    assert registry.get_sample_value(n.QUOTA_LIMIT, labels) == 800.0
    assert registry.get_sample_value(n.QUOTA_USED, labels) == 950.0
    text = generate_latest(registry).decode()
    assert text.count(f"{n.QUOTA_LIMIT}{{") == 1  # one series, no pid label
    assert text.count(f"{n.QUOTA_USED}{{") == 1

    # the sidecar's render of the same directory
    from otel_agents._sidecar import render

    body = render.render(str(directory)).decode()
    assert f'{n.QUOTA_LIMIT}{{dimension="credits",provider="livekit"}} 800.0' in body
    assert f'{n.QUOTA_USED}{{dimension="credits",provider="livekit"}} 950.0' in body


# --- the hot path: what it may skip, and when what it prepared is stale -------------------------


def gateway_response(**used: str) -> httpx2.Response:
    headers = {
        "content-type": "application/json",
        "X-LiveKit-Inference-Credits-Limit": "1000",
        **{f"X-LiveKit-Inference-{k.upper()}-Used": v for k, v in used.items()},
    }
    return httpx2.Response(200, json=COMPLETION, headers=headers)


def test_repeated_headers_and_resets(telemetry: Any) -> None:
    """Values parsed once are reused only for the same bytes; a set skipped only when the series
    already holds the value; series prepared before a metrics reset are prepared again."""
    from otel_agents import testing
    from otel_agents._capture import quota_headers

    for credits, want in (("10", 10.0), ("11", 11.0), ("10", 10.0), ("10", 10.0), (" 12 ", 12.0)):
        quota_headers.capture(gateway_response(credits=credits))
        assert gauge(n.QUOTA_USED, "livekit", "credits") == want
    assert gauge(n.QUOTA_LIMIT, "livekit", "credits") == 1000.0
    testing.reset_metrics()  # what a new test (or a clear) does: every series gone
    assert quota_series() == {}
    quota_headers.capture(gateway_response(credits="12"))
    assert quota_series() == {
        (n.QUOTA_LIMIT, "livekit", "credits"): 1000.0,
        (n.QUOTA_USED, "livekit", "credits"): 12.0,
    }
    # a provider from a livekit stream has its own series
    token = quota_headers._provider.set("my-gateway")
    try:
        quota_headers.capture(gateway_response(credits="7", rpm="3"))
    finally:
        quota_headers._provider.reset(token)
    assert gauge(n.QUOTA_USED, "my-gateway", "credits") == 7.0
    assert gauge(n.QUOTA_USED, "my-gateway", "rpm") == 3.0
    assert gauge(n.QUOTA_USED, "livekit", "credits") == 12.0


def test_headers_of_another_kind_are_read_by_their_raw_pairs(telemetry: Any) -> None:
    """Not httpx's ``Headers`` (whose lower-cased names are read as they are): ``raw`` pairs,
    any case."""
    from otel_agents._capture import quota_headers

    class Headers:
        raw = (
            (b"X-RateLimit-Limit-Requests", b"100"),
            (b"Content-Type", b"application/json"),
            (b"X-RATELIMIT-REMAINING-REQUESTS", b"60"),
            (b"x-livekit-inference-tpm-used", b"5"),
        )

    class Response:
        headers = Headers()

    quota_headers.capture(Response())
    assert quota_series() == {
        (n.QUOTA_LIMIT, "openai", "requests"): 100.0,
        (n.QUOTA_USED, "openai", "requests"): 40.0,
        (n.QUOTA_USED, "livekit", "tpm"): 5.0,
    }


def test_prepared_sets_skip_only_where_skipping_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``PreparedSet.held`` (the hot path may skip setting the value it holds): in one process,
    and across processes for ``max``; never across processes for ``mostrecent`` (each set
    stamps the time the merge compares) nor with an OTel mirror."""
    import time

    from prometheus_client import Gauge, values

    from otel_agents._export.metrics import SetGauge

    def set_gauge(name: str, mode: Literal["max", "mostrecent"]) -> SetGauge:
        metric = Gauge(name, "", ["provider", "dimension"], multiprocess_mode=mode, registry=None)
        return SetGauge(metric, name, 10, lambda labels: labels)

    labels = ("livekit", "credits")
    # one process
    modes: tuple[Literal["max", "mostrecent"], ...] = ("max", "mostrecent")
    for mode in modes:
        prepared = set_gauge(f"single_{mode}", mode).prepare(labels)
        prepared.set(5.0)
        assert prepared.held is not None
        assert prepared.held._value == 5.0

    # an OTel mirror: every value goes to it
    mirrored_gauge = set_gauge("mirrored", "max")
    seen: list[tuple[float, dict[str, str]]] = []

    class Mirror:
        def set(self, value: float, attributes: dict[str, str]) -> None:
            seen.append((value, attributes))

    mirrored_gauge._mirror = Mirror()
    mirrored = mirrored_gauge.prepare(labels)
    assert mirrored.held is None
    mirrored.set(3.0)
    assert seen == [(3.0, {"provider": "livekit", "dimension": "credits"})]

    # several processes (prometheus_client's multiprocess value files)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setattr(values, "ValueClass", values.MultiProcessValue())  # type: ignore[no-untyped-call]
    try:
        limit = set_gauge("multi_limit", "max").prepare(labels)
        assert limit.held is not None  # max: this process's file keeps its value
        limit.set(1000.0)
        assert limit.held._value == 1000.0
        used_gauge = set_gauge("multi_used", "mostrecent")
        used = used_gauge.prepare(labels)
        assert used.held is None
        value = used_gauge._children[labels]._value
        used.set(5.0)
        first = value._timestamp
        time.sleep(0.01)
        used.set(5.0)  # the same value again: a newer time, so it wins over older readings
        assert value._timestamp > first > 0
    finally:
        values.close_all_multiprocess_files()  # type: ignore[no-untyped-call]
