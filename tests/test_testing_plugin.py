"""``otel_agents.testing`` as a user meets it: a pytest plugin registered by installing the
package, whose ``otel_agents_capture`` fixture lets an agent's own tests assert that a scenario
is, or is not, silent. Run in a separate pytest process, on a test file a user could write."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

USER_TESTS = """
import asyncio
import pytest
from livekit.agents import Agent, AgentSession, APIConnectOptions
from livekit.agents.voice.agent_session import SessionConnectOptions
from scripted import ScriptedLLM, gateway_status_error

CREDITS = {"type": "inference_quota_exceeded", "error": "out of credits",
           "quota_type": "llm", "category": "MaxGatewayCredits"}


async def one_turn(model):
    session = AgentSession(
        llm=model, vad=None, aec_warmup_duration=None,
        conn_options=SessionConnectOptions(
            llm_conn_options=APIConnectOptions(max_retry=1, retry_interval=0.01)),
    )
    await session.start(agent=Agent(instructions="a test agent"))
    try:
        await asyncio.wait_for(session.run(user_input="hello?"), 10)
    except Exception:
        pass  # a dead turn raises to the caller
    await session.aclose()


@pytest.mark.asyncio
async def test_an_answered_turn_is_not_silent(otel_agents_capture):
    await one_turn(ScriptedLLM(["Hi, how can I help?"]))
    assert otel_agents_capture.silent_sessions() == []
    (session,) = otel_agents_capture.session_records
    assert session.answered_turns == 1
    assert otel_agents_capture.attempt_records == []


@pytest.mark.asyncio
@pytest.mark.otel_agents(capture_messages=False)
async def test_exhausted_credits_make_a_silent_session(otel_agents_capture):
    await one_turn(ScriptedLLM([gateway_status_error(429, CREDITS)] * 2, provider="acme"))
    (silent,) = otel_agents_capture.silent_sessions()
    assert silent.dead_turns == 1 and silent.terminal_error
    attempts = otel_agents_capture.attempt_records
    assert [a.classification.error_class for a in attempts] == ["quota_exhausted"] * 2
    assert [a.final for a in attempts] == [False, True]
    assert otel_agents_capture.value(
        "otel_agents_terminal_errors_total",
        component="llm", provider="acme", error_class="quota_exhausted",
    ) == 2
    (span,) = otel_agents_capture.spans("otel_agents.session")
    assert span.attributes["otel_agents.session.silent"] is True
    # the marker's init() argument: no message leaves the process
    assert all(r.root_cause_message is None for r in otel_agents_capture.logs())
"""


def test_the_fixture_as_a_user_uses_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_my_agent=USER_TESTS)
    pytester.makeini(
        "[pytest]\n"
        "asyncio_mode = strict\n"
        "asyncio_default_fixture_loop_scope = function\n"
        f"pythonpath = {Path(__file__).parent}\n"  # the scripted providers
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--strict-markers")
    result.assert_outcomes(passed=2)
