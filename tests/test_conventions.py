"""The OpenTelemetry semantic conventions on otel-agents' spans: their names come from the
conventions' package, the README maps every span attribute to its convention (or none), the
values follow the conventions (GenAI registry providers, hosts without credentials, the room's
sid as the conversation id), and the dashboards' trace links still match real spans."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any
from urllib.parse import unquote

import pytest
from livekit.agents import Agent, AgentSession, APIConnectOptions, llm
from livekit.agents.telemetry import trace_types
from livekit.agents.testing import fake_job_context
from livekit.agents.voice.agent_session import SessionConnectOptions
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes
from opentelemetry.semconv.attributes import (
    error_attributes,
    http_attributes,
    server_attributes,
)

from dashboards import dashboards as d
from dashboards.tracelinks import SPAN_ATTRIBUTES
from otel_agents import names as n
from otel_agents._export import conventions

from scripted import ScriptedLLM, gateway_status_error, ssl_connection_error

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 10.0
SEMCONV: dict[str, ModuleType] = {
    "gen_ai_attributes": gen_ai_attributes,
    "error_attributes": error_attributes,
    "http_attributes": http_attributes,
    "server_attributes": server_attributes,
}
REGISTRY = {v.value for v in gen_ai_attributes.GenAiProviderNameValues}
SSL_ROOT = "ssl.SSLCertVerificationError"
SSL_MESSAGE = "[SSL: CERTIFICATE_VERIFY_FAILED] failed"
CREDITS_BODY = {
    "type": "inference_quota_exceeded",
    "error": "LLM token credit quota exceeded, category: MaxGatewayCredits",
    "quota_type": "llm",
    "category": "MaxGatewayCredits",
    "hint": "Add credits to your project.",
    "remaining_limit": "0",
}


def every_span_attribute() -> set[str]:
    """Every attribute of otel-agents' spans and of their events."""
    attributes = {a for span in n.SPANS for a in span.attributes}
    events = {n.E_TASK_NAME, n.E_FALLBACK_FROM_PROVIDER, n.E_FALLBACK_TO_PROVIDER}
    return attributes | events


def readme_table() -> dict[str, str]:
    """The README's attribute-to-convention table (traces section): attribute -> convention."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("\n### Traces\n") :]
    section = section[: section.index("\n### ", 1)]
    rows = re.findall(r"^\| `([^`]+)`( \(\d+\))? \| [^|]+ \| ([^|]+) \|$", section, re.M)
    table = {name + count: convention.strip() for name, count, convention in rows}
    assert len(table) == len(rows), "an attribute is mapped twice"
    return table


# --- names and the README's table ---------------------------------------------------------------


def test_convention_names_are_the_semconv_packages() -> None:
    assert n.A_ERROR_TYPE == error_attributes.ERROR_TYPE == "error.type"
    assert n.A_STATUS_CODE == http_attributes.HTTP_RESPONSE_STATUS_CODE
    assert n.A_OPERATION == gen_ai_attributes.GEN_AI_OPERATION_NAME == "gen_ai.operation.name"
    assert n.A_GEN_AI_PROVIDER == gen_ai_attributes.GEN_AI_PROVIDER_NAME == "gen_ai.provider.name"
    assert n.A_MODEL == gen_ai_attributes.GEN_AI_REQUEST_MODEL == "gen_ai.request.model"
    assert n.A_SERVER_ADDRESS == server_attributes.SERVER_ADDRESS == "server.address"
    assert n.A_SERVER_PORT == server_attributes.SERVER_PORT == "server.port"
    assert n.A_CONVERSATION_ID == gen_ai_attributes.GEN_AI_CONVERSATION_ID
    assert n.S_CONVERSATION_ID == "gen_ai.conversation.id"
    ops = gen_ai_attributes.GenAiOperationNameValues
    # the convention's values where it has one (chat, generate_content); ours otherwise
    assert (ops.CHAT.value, ops.GENERATE_CONTENT.value) == ("chat", "generate_content")
    operations = dict(n.OPERATIONS)
    assert operations == {
        "llm": "chat",
        "realtime": "generate_content",
        "stt": "speech_to_text",
        "tts": "text_to_speech",
        "interruption": "interruption_detection",
    }
    assert set(operations) == set(n.COMPONENTS)


def test_the_readme_maps_every_span_attribute_to_its_convention_or_none() -> None:
    table = readme_table()
    covered: set[str] = set()
    for row, convention in table.items():
        wildcard = re.fullmatch(r"(.+)\.\* \((\d+)\)", row)
        if wildcard:
            prefix, count = wildcard.group(1) + ".", int(wildcard.group(2))
            names = {a for a in every_span_attribute() if a.startswith(prefix)}
            assert len(names) == count, (row, sorted(names))
            covered |= names
            assert convention.startswith("none"), row
            continue
        covered.add(row)
        if row.startswith(n.PREFIX + "."):
            assert convention.startswith("none"), (row, convention)
            continue
        # a convention's attribute: the README names the constant it comes from
        reference = re.match(r"`(\w+)\.([A-Z_]+)`", convention)
        assert reference, (row, convention)
        module, constant = reference.groups()
        assert getattr(SEMCONV[module], constant) == row, (row, convention)
    assert covered == every_span_attribute()


# --- the values ---------------------------------------------------------------------------------


def test_gen_ai_provider_names_are_the_registrys_where_it_has_one() -> None:
    cases = {
        "openai": "openai",
        "OpenAI": "openai",
        "api.openai.com": "openai",
        "Google": "gcp.gen_ai",
        "gemini": "gcp.gemini",
        "Vertex AI": "gcp.vertex_ai",
        "AWS Bedrock": "aws.bedrock",
        "bedrock-runtime.us-east-1.amazonaws.com": "aws.bedrock",
        "my-resource.openai.azure.com": "azure.ai.openai",
        "MistralAI": "mistral_ai",
        "xAI": "x_ai",
        "anthropic": "anthropic",
        "api.groq.com": "groq",
        # not in the registry: their own names
        "livekit": "livekit",
        "deepgram": "deepgram",
        "Cartesia": "Cartesia",
        "fallback_adapter": "fallback_adapter",
    }
    assert {k: conventions.gen_ai_provider(k) for k in cases} == cases


def test_every_mapped_provider_is_a_registry_value() -> None:
    mapped = {*conventions.BY_NAME.values(), *conventions.BY_HOST.values()}
    mapped |= {value for _, value in conventions.BY_HOST_SUFFIX}
    assert mapped <= REGISTRY


def test_provider_names_agree_with_livekits_own_spans() -> None:
    """livekit puts ``gen_ai.provider.name`` on its own spans of the same trace: where its
    mapping lands on a registry value of this conventions package, ours is the same."""
    names = [*trace_types._PROVIDER_BY_NAME, *trace_types._PROVIDER_BY_HOST]
    checked = 0
    for name in names:
        theirs = trace_types.gen_ai_provider_name(name)
        if theirs in REGISTRY:
            assert conventions.gen_ai_provider(name) == theirs, name
            checked += 1
    assert checked >= 25


def test_server_is_the_host_and_port_never_credentials_path_or_query() -> None:
    secret = "sk-proj-" + "Ab3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF"
    assert conventions.server(
        f"https://user:{secret}@Proxy.Example.com:8443/v1?api_key={secret}#{secret}"
    ) == ("proxy.example.com", 8443)
    assert conventions.server("https://api.openai.com/v1") == ("api.openai.com", 443)
    assert conventions.server("http://127.0.0.1:8080/v1") == ("127.0.0.1", 8080)
    assert conventions.server("wss://agent-gateway.livekit.cloud") == (
        "agent-gateway.livekit.cloud",
        443,
    )
    assert conventions.server("ws://localhost/x") == ("localhost", 80)
    assert conventions.server("http://[::1]:9/v1") == ("::1", 9)
    assert conventions.server("grpc://models.internal") == ("models.internal", None)
    # a key where the host should be is redacted like every foreign name
    assert conventions.server(f"https://{secret}.example.com/v1") == (
        "[REDACTED].example.com",
        443,
    )
    for not_a_server in ("", "api.openai.com", "/v1", "http://host:99999", "http://[::1"):
        assert conventions.server(not_a_server) is None, not_a_server


# --- on real spans ------------------------------------------------------------------------------


class CompatibleLLM(ScriptedLLM):
    """An OpenAI-compatible plugin: ``provider`` is its base URL's host, the URL in its options
    (here with credentials in its userinfo and query, which must never reach a span)."""

    def __init__(self, script: list[Any], base_url: str) -> None:
        super().__init__(script, provider="api.openai.com")
        self._opts = SimpleNamespace(base_url=base_url, model="gpt-4o-mini")

    @property
    def model(self) -> str:
        return str(self._opts.model)

    def set_model(self, model: str) -> None:
        self._opts.model = model


async def chat_once(model: llm.LLM, max_retry: int) -> None:
    try:
        async with model.chat(
            chat_ctx=llm.ChatContext.empty(),
            conn_options=APIConnectOptions(max_retry=max_retry, retry_interval=0.01),
        ) as stream:
            async for _ in stream:
                pass
    except Exception:
        pass


def ssl_attempt(provider: str, attempt: int, final: bool) -> dict[str, Any]:
    return {
        n.A_COMPONENT: "llm",
        n.A_PROVIDER: provider,
        n.A_ATTEMPT: attempt,
        n.A_FINAL: final,
        n.A_ERROR_TYPE: "livekit.agents.APIConnectionError",
        n.A_ERROR_CLASS: "connection",
        n.A_ROOT_CAUSE_TYPE: SSL_ROOT,
        n.A_ROOT_CAUSE_MESSAGE: SSL_MESSAGE,
        n.A_FIRST_ROOT_CAUSE_TYPE: SSL_ROOT,
        n.A_MASKED: False,
        n.A_TERMINAL: False,
        n.A_OPERATION: "chat",
    }


@pytest.mark.asyncio
async def test_an_openai_compatible_providers_span_carries_the_conventions(telemetry) -> None:
    secret = "sk-proj-" + "Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Jh1Gf0Ed"
    model = CompatibleLLM(
        [ssl_connection_error], f"https://team:{secret}@llm-proxy.example.com:8443/v1?key={secret}"
    )

    await asyncio.wait_for(chat_once(model, 0), TIMEOUT)

    (span,) = telemetry.attempt_spans()
    assert dict(span.attributes or {}) == {
        **ssl_attempt("api.openai.com", 0, True),
        n.A_GEN_AI_PROVIDER: "openai",
        n.A_MODEL: "gpt-4o-mini",
        n.A_SERVER_ADDRESS: "llm-proxy.example.com",
        n.A_SERVER_PORT: 8443,
    }
    assert not [v for v in (span.attributes or {}).values() if "team" in str(v)]
    assert not [v for v in (span.attributes or {}).values() if secret[8:] in str(v)]
    # the model is read at each failure: update_options may change it
    model.set_model("gpt-4.1")
    await asyncio.wait_for(chat_once(model, 0), TIMEOUT)
    assert [dict(s.attributes or {})[n.A_MODEL] for s in telemetry.attempt_spans()] == [
        "gpt-4o-mini",
        "gpt-4.1",
    ]


@pytest.mark.asyncio
async def test_spans_in_a_job_carry_the_rooms_sid_as_conversation_id(telemetry) -> None:
    with fake_job_context() as job:
        sid = job.job.room.sid
        assert sid.startswith("RM_")
        session: AgentSession = AgentSession(
            llm=ScriptedLLM([ssl_connection_error, "hello"]),
            vad=None,
            aec_warmup_duration=None,
            conn_options=SessionConnectOptions(
                llm_conn_options=APIConnectOptions(max_retry=1, retry_interval=0.01)
            ),
        )
        await asyncio.wait_for(session.start(agent=Agent(instructions="t")), TIMEOUT)
        await asyncio.wait_for(session.run(user_input="hi"), TIMEOUT)
        await asyncio.wait_for(session.aclose(), TIMEOUT)
        # what livekit's job process does last: the shutdown callbacks, with the reason
        callbacks = [c("room deleted") for c in job._shutdown_callbacks]
        await asyncio.wait_for(asyncio.gather(*callbacks), TIMEOUT)

    (attempt,) = telemetry.attempt_spans()
    assert dict(attempt.attributes or {}) == {
        **ssl_attempt("scripted", 0, False),
        n.A_GEN_AI_PROVIDER: "scripted",
        n.A_CONVERSATION_ID: sid,
    }
    (session_span,) = telemetry.spans(n.SPAN_SESSION)
    assert (session_span.attributes or {})[n.S_CONVERSATION_ID] == sid
    # livekit's own spans of the session have the same conversation id
    livekit_spans = [s for s in telemetry.spans() if not s.name.startswith(n.PREFIX)]
    assert livekit_spans
    assert {(s.attributes or {}).get(n.A_CONVERSATION_ID) for s in livekit_spans} == {sid}


@pytest.mark.asyncio
async def test_outside_a_job_there_is_no_conversation_id(telemetry) -> None:
    await asyncio.wait_for(chat_once(ScriptedLLM([ssl_connection_error]), 0), TIMEOUT)

    (span,) = telemetry.attempt_spans()
    assert dict(span.attributes or {}) == {
        **ssl_attempt("scripted", 0, True),
        n.A_GEN_AI_PROVIDER: "scripted",
    }


# --- the dashboards' trace links ----------------------------------------------------------------


def traceql_attributes(span: str) -> set[str]:
    """Every span attribute the TraceQL queries on spans named ``span`` name: the dashboards'
    (links and panels) and the runbook's."""
    text = unquote(json.dumps([d.load(name) for name in d.DASHBOARDS]))
    text += (ROOT / "dashboards" / "runbook.md").read_text()
    body = r"(?:[^{}]|\$\{[^{}]*\})*"  # a query holds Grafana's ${...} placeholders
    named = r"\bname\s*=\s*\\*\"" + re.escape(span) + r"\\*\""
    queries = re.findall(r"\{" + body + named + body + r"\}", text)
    assert queries, span
    return {a for q in queries for a in re.findall(r"\bspan\.([a-z_]+(?:\.[a-z_]+)+)", q)}


def test_session_queries_name_session_span_attributes() -> None:
    (session,) = (s for s in n.SPANS if s.name == n.SPAN_SESSION)
    assert traceql_attributes(n.SPAN_SESSION) <= set(session.attributes)


def label_value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


@pytest.mark.asyncio
async def test_trace_links_match_the_attributes_real_spans_carry(telemetry) -> None:
    """A request masked by a retry: its first attempt failed on TLS, its last on spent credits
    (terminal, with a quota body). Every attribute the dashboards' and runbook's TraceQL
    queries name is on these real spans, and each link's attribute holds its label's value
    exactly as the series of the same attempt has it (so following a link finds the span)."""
    # a provider the GenAI registry spells otherwise (openai): links must match its own name
    model = ScriptedLLM(
        [ssl_connection_error, gateway_status_error(429, CREDITS_BODY)], provider="api.openai.com"
    )

    await asyncio.wait_for(chat_once(model, 1), TIMEOUT)

    spans = [dict(s.attributes or {}) for s in telemetry.attempt_spans()]
    assert [(s[n.A_ATTEMPT], s[n.A_FINAL]) for s in spans] == [(0, False), (1, True)]
    carried = set().union(*spans)
    queried = traceql_attributes(n.SPAN_ATTEMPT_FAILED)
    linked = {attribute for attribute, _ in SPAN_ATTRIBUTES.values()}
    assert linked <= queried
    assert queried <= carried, queried - carried

    final = spans[-1]
    assert (final[n.A_PROVIDER], final[n.A_GEN_AI_PROVIDER]) == ("api.openai.com", "openai")
    series = [
        dict(labels)
        for name, labels in telemetry.series()
        if name in (n.ATTEMPT_FAILURES, n.QUOTA_ERRORS, n.TERMINAL_ERRORS, n.MASKED_FAILURES)
        and ("final", "false") not in labels
    ]
    assert len(series) == 4
    for labels in series:
        for label, value in labels.items():
            attribute, quoted = SPAN_ATTRIBUTES[label]
            assert label_value(final[attribute]) == value, (label, attribute)
            assert quoted == isinstance(final[attribute], str), label
