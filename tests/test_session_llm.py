"""A real AgentSession (text mode, no room) whose LLM retry loop masks its first root cause.

Attempt 0 fails with the TLS chain the inference plugin produces (ssl.SSLError -> httpx2 ->
openai -> livekit APIConnectionError); attempts 1 and 2 fail with a gateway 429 whose body is
only reachable through ``__context__.response``. livekit's logs end with "failed to generate LLM
completion after 3 attempts"; otel-agents must show every attempt, the first root cause, and
``masked=true`` on the final failure (a retry loop that hides its first cause).
"""

from __future__ import annotations

import asyncio

import pytest
from livekit.agents import Agent, AgentSession, APIConnectionError
from livekit.agents.types import APIConnectOptions
from livekit.agents.voice.agent_session import SessionConnectOptions
from opentelemetry import trace

from otel_agents import names as n

from conftest import session_series
from scripted import ScriptedLLM, gateway_status_error, ssl_connection_error

RATE_LIMIT_BODY = {
    "type": "inference_quota_exceeded",
    "error": "LLM request rate exceeded, category: MaxConcurrentGatewayLLMRpm",
    "quota_type": "llm",
    "category": "MaxConcurrentGatewayLLMRpm",
    "hint": "Reduce request rate or upgrade your plan.",
    "remaining_limit": "0",
}


async def _run_session(model: ScriptedLLM, *, max_retry: int) -> BaseException | None:
    session: AgentSession = AgentSession(
        llm=model,
        vad=None,
        aec_warmup_duration=None,
        conn_options=SessionConnectOptions(
            llm_conn_options=APIConnectOptions(max_retry=max_retry, retry_interval=0.01),
            max_unrecoverable_errors=0,
        ),
    )
    await session.start(agent=Agent(instructions="test agent"))
    raised = None
    try:
        await asyncio.wait_for(session.run(user_input="hello there"), 10)
    except Exception as exc:
        raised = exc
    await session.aclose()
    return raised


@pytest.mark.asyncio
async def test_masked_retry_loop_records_every_attempt(telemetry) -> None:
    model = ScriptedLLM([ssl_connection_error, gateway_status_error(429, RATE_LIMIT_BODY)])

    raised = await _run_session(model, max_retry=2)

    # the host sees exactly what it sees without otel-agents: livekit's masking wrapper
    assert isinstance(raised, APIConnectionError)
    assert "after 3 attempts" in str(raised)

    # --- spans: one per attempt, children of livekit's llm_request span, one trace
    attempts = telemetry.attempt_spans()
    assert [dict(s.attributes) for s in attempts] == [
        {
            n.A_COMPONENT: "llm",
            n.A_PROVIDER: "scripted",
            n.A_OPERATION: "chat",
            n.A_GEN_AI_PROVIDER: "scripted",
            n.A_ATTEMPT: 0,
            n.A_FINAL: False,
            n.A_ERROR_TYPE: "livekit.agents.APIConnectionError",
            n.A_ERROR_CLASS: "connection",
            n.A_ROOT_CAUSE_TYPE: "ssl.SSLCertVerificationError",
            n.A_ROOT_CAUSE_MESSAGE: "[SSL: CERTIFICATE_VERIFY_FAILED] failed",
            n.A_FIRST_ROOT_CAUSE_TYPE: "ssl.SSLCertVerificationError",
            n.A_MASKED: False,
            n.A_TERMINAL: False,
        },
        *[
            {
                n.A_COMPONENT: "llm",
                n.A_PROVIDER: "scripted",
                n.A_OPERATION: "chat",
                n.A_GEN_AI_PROVIDER: "scripted",
                n.A_ATTEMPT: attempt,
                n.A_FINAL: attempt == 2,
                n.A_ERROR_TYPE: "livekit.agents.APIStatusError",
                n.A_ERROR_CLASS: "rate_limited",
                n.A_ROOT_CAUSE_TYPE: "openai.RateLimitError",
                n.A_ROOT_CAUSE_MESSAGE: "Error code: 429",
                n.A_FIRST_ROOT_CAUSE_TYPE: "ssl.SSLCertVerificationError",
                n.A_MASKED: attempt == 2,
                n.A_TERMINAL: False,
                n.A_QUOTA_TYPE: "llm",
                n.A_QUOTA_CATEGORY: "MaxConcurrentGatewayLLMRpm",
                n.A_QUOTA_HINT: "Reduce request rate or upgrade your plan.",
                n.A_QUOTA_REMAINING: "0",
                n.A_STATUS_CODE: 429,
            }
            for attempt in (1, 2)
        ],
    ]
    for span in attempts:
        assert span.status.status_code is trace.StatusCode.ERROR
        assert span.start_time == span.end_time
    (request,) = telemetry.spans("llm_request")
    assert {s.parent.span_id for s in attempts if s.parent} == {request.context.span_id}
    assert {s.context.trace_id for s in attempts} == {request.context.trace_id}
    # livekit's own per-attempt spans are in the same trace too
    runs = telemetry.spans("llm_request_run")
    assert len(runs) == 3
    assert {s.context.trace_id for s in runs} == {request.context.trace_id}

    # --- metrics
    v = telemetry.value
    base = {"component": "llm", "provider": "scripted"}
    assert (
        v(
            n.ATTEMPT_FAILURES,
            **base,
            error_class="connection",
            root_cause="ssl.SSLCertVerificationError",
            final="false",
        )
        == 1
    )
    rate_limited = {**base, "error_class": "rate_limited", "root_cause": "openai.RateLimitError"}
    assert v(n.ATTEMPT_FAILURES, **rate_limited, final="false") == 1
    assert v(n.ATTEMPT_FAILURES, **rate_limited, final="true") == 1
    assert (
        v(
            n.QUOTA_ERRORS,
            component="llm",
            quota_type="llm",
            quota_category="MaxConcurrentGatewayLLMRpm",
            terminal="false",
        )
        == 2
    )
    assert (
        v(
            n.MASKED_FAILURES,
            component="llm",
            first_root_cause="ssl.SSLCertVerificationError",
            root_cause="openai.RateLimitError",
        )
        == 1
    )
    assert v(n.REQUESTS, **base, outcome="failed") == 1
    assert v(n.REQUESTS, **base, outcome="ok") == 0
    # nothing else: no terminal error, no internal error; one silent session with a dead turn
    assert {k[0] for k in telemetry.series()} == {
        n.ATTEMPT_FAILURES,
        n.QUOTA_ERRORS,
        n.MASKED_FAILURES,
        n.REQUESTS,
        *(k[0] for k in session_series(agent_spoke=False, dead={"error": 1}, cause="rate_limited")),
    }
    # what killed the turn (livekit then closed the session: max_unrecoverable_errors=0): no
    # error was terminal, and the request's last was the rate limit
    assert v(n.SILENT_SESSIONS, reason="error", cause="rate_limited") == 1

    # --- logs: one record per attempt, same fields, carrying the span's ids
    logs = telemetry.logs()
    assert [(r.levelname, r.attempt, r.final, r.masked) for r in logs] == [
        ("WARNING", 0, False, False),
        ("WARNING", 1, False, False),
        ("ERROR", 2, True, True),
    ]
    for record, span in zip(logs, attempts, strict=True):
        assert record.name == "otel_agents"
        assert record.trace_id == format(span.context.trace_id, "032x")
        assert record.span_id == format(span.context.span_id, "016x")
        assert record.root_cause_type == span.attributes[n.A_ROOT_CAUSE_TYPE]
        assert record.first_root_cause_type == "ssl.SSLCertVerificationError"
        assert record.exc_info is None  # no traceback formatting in the hook


@pytest.mark.asyncio
async def test_recovered_request_counts_ok_and_is_not_masked(telemetry) -> None:
    model = ScriptedLLM([ssl_connection_error, "hi, how can I help?"])

    raised = await _run_session(model, max_retry=2)

    assert raised is None
    (span,) = telemetry.attempt_spans()
    assert span.attributes[n.A_ATTEMPT] == 0
    assert span.attributes[n.A_FINAL] is False
    assert telemetry.value(n.REQUESTS, component="llm", provider="scripted", outcome="ok") == 1
    assert telemetry.value(n.REQUESTS, component="llm", provider="scripted", outcome="failed") == 0
    assert telemetry.series(n.MASKED_FAILURES) == {}


@pytest.mark.asyncio
async def test_capture_messages_false_drops_messages(telemetry, monkeypatch) -> None:
    from otel_agents import _runtime

    assert _runtime.current is not None
    monkeypatch.setattr(_runtime.current.recorder, "capture_messages", False)
    model = ScriptedLLM([ssl_connection_error])

    await _run_session(model, max_retry=0)

    (span,) = telemetry.attempt_spans()
    assert n.A_ROOT_CAUSE_MESSAGE not in span.attributes
    assert span.status.description is None
    (record,) = telemetry.logs()
    assert record.root_cause_message is None
