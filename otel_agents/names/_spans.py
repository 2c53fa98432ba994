"""Span, attribute and event names, and what each means (``docs/reference.md``). Where an
OpenTelemetry semantic convention covers an attribute, its name comes from the convention's
package (``opentelemetry-semantic-conventions``), never typed here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as _gen_ai
from opentelemetry.semconv.attributes import error_attributes as _error
from opentelemetry.semconv.attributes import http_attributes as _http
from opentelemetry.semconv.attributes import server_attributes as _server

from ._metrics import Component

# --- span names and attributes ------------------------------------------------------------------
SPAN_ATTEMPT_FAILED: Final = "otel_agents.attempt_failed"
A_COMPONENT: Final = "otel_agents.component"
A_PROVIDER: Final = "otel_agents.provider"
A_ATTEMPT: Final = "otel_agents.attempt"
A_FINAL: Final = "otel_agents.final"
A_ERROR_TYPE: Final = _error.ERROR_TYPE
A_ERROR_CLASS: Final = "otel_agents.error_class"
A_ROOT_CAUSE_TYPE: Final = "otel_agents.root_cause.type"
A_ROOT_CAUSE_MESSAGE: Final = "otel_agents.root_cause.message"
A_FIRST_ROOT_CAUSE_TYPE: Final = "otel_agents.first_root_cause.type"
A_MASKED: Final = "otel_agents.masked"
A_TERMINAL: Final = "otel_agents.terminal"
A_QUOTA_TYPE: Final = "otel_agents.quota.type"
A_QUOTA_CATEGORY: Final = "otel_agents.quota.category"
A_QUOTA_HINT: Final = "otel_agents.quota.hint"
A_QUOTA_REMAINING: Final = "otel_agents.quota.remaining_limit"
A_STATUS_CODE: Final = _http.HTTP_RESPONSE_STATUS_CODE
# OpenTelemetry GenAI and server conventions: ``otel_agents.component`` and
# ``otel_agents.provider`` stay beside them (they carry the metric labels' values, which the
# dashboards' trace links match)
A_OPERATION: Final = _gen_ai.GEN_AI_OPERATION_NAME
A_GEN_AI_PROVIDER: Final = _gen_ai.GEN_AI_PROVIDER_NAME
A_MODEL: Final = _gen_ai.GEN_AI_REQUEST_MODEL
A_SERVER_ADDRESS: Final = _server.SERVER_ADDRESS
A_SERVER_PORT: Final = _server.SERVER_PORT
A_CONVERSATION_ID: Final = _gen_ai.GEN_AI_CONVERSATION_ID
_OPERATION_VALUES = _gen_ai.GenAiOperationNameValues
#: ``gen_ai.operation.name`` by component: the convention's value where it has one (a realtime
#: model's turn is multimodal content generation, as on livekit's own spans); the convention
#: has none for speech-to-text, text-to-speech or interruption detection: these are our own
OPERATIONS: Final[dict[Component, str]] = {
    "llm": _OPERATION_VALUES.CHAT.value,
    "realtime": _OPERATION_VALUES.GENERATE_CONTENT.value,
    "stt": "speech_to_text",
    "tts": "text_to_speech",
    "interruption": "interruption_detection",
}

SPAN_SESSION: Final = "otel_agents.session"
S_CLOSE_REASON: Final = "otel_agents.session.close_reason"
S_SILENT: Final = "otel_agents.session.silent"
S_AGENT_SPOKE: Final = "otel_agents.session.agent_spoke"
S_USER_SPOKE: Final = "otel_agents.session.user_spoke"
S_USER_TURNS: Final = "otel_agents.session.user_turns"
S_ANSWERED_TURNS: Final = "otel_agents.session.answered_turns"
S_DEAD_TURNS: Final = "otel_agents.session.dead_turns"
S_UNANSWERED_TURNS: Final = "otel_agents.session.unanswered_turns"
S_TIME_TO_FIRST_SPEECH: Final = "otel_agents.session.time_to_first_speech"
S_ERRORS: Final = "otel_agents.session.errors"
S_TERMINAL_ERROR: Final = "otel_agents.session.terminal_error"
S_CLOSE_ERROR_TYPE: Final = "otel_agents.session.close_error.type"
S_JOB_SHUTDOWN_REASON: Final = "otel_agents.session.job_shutdown_reason"
S_SILENCE_CAUSE: Final = "otel_agents.session.silence_cause"
S_CONVERSATION_ID: Final = A_CONVERSATION_ID  # the session span carries it too
EVENT_UNHANDLED_TASK_ERROR: Final = "otel_agents.unhandled_task_error"
E_TASK_NAME: Final = "otel_agents.task.name"
# a FallbackAdapter moved from a failed provider to the next one; every provider failed
EVENT_FALLBACK_SWITCH: Final = "otel_agents.fallback_switch"
EVENT_FALLBACK_EXHAUSTED: Final = "otel_agents.fallback_exhausted"
E_FALLBACK_FROM_PROVIDER: Final = "otel_agents.fallback.from_provider"
E_FALLBACK_TO_PROVIDER: Final = "otel_agents.fallback.to_provider"

# the demo's own span around each scenario (``otel-agents demo``): one trace per scenario
SPAN_DEMO_SCENARIO: Final = "otel_agents.demo.scenario"
D_SCENARIO: Final = "otel_agents.demo.scenario"
D_ROUND: Final = "otel_agents.demo.round"


# --- what every span, attribute, event and log record means (docs/reference.md) ----------------


@dataclass(frozen=True)
class Span:
    name: str
    help: str
    attributes: tuple[str, ...]


ATTRIBUTE_HELP: Final[dict[str, str]] = {
    A_COMPONENT: "`llm`, `stt`, `tts`, `realtime` or `interruption`",
    A_PROVIDER: "the provider instance's own name (`openai`, `deepgram`, `livekit`...), cleaned",
    A_ATTEMPT: "0-based index of the attempt within its request",
    A_FINAL: "livekit will not retry it: the request failed",
    A_ERROR_TYPE: "class of the exception livekit emitted",
    A_ERROR_CLASS: "`quota_exhausted`, `rate_limited`, `auth`, `bad_request`, `server_error`, "
    "`timeout`, `connection`, `cancelled`, `internal` or `unknown`",
    A_ROOT_CAUSE_TYPE: "class of the root cause: the deepest exception of the chain",
    A_ROOT_CAUSE_MESSAGE: "its message, redacted then truncated (absent without "
    "`capture_messages`)",
    A_FIRST_ROOT_CAUSE_TYPE: "the root cause of the request's first attempt",
    A_MASKED: "the final attempt's root cause differs from the first attempt's",
    A_TERMINAL: "will not recover without operator action",
    A_QUOTA_TYPE: "LiveKit Inference quota body: `quota_type`",
    A_QUOTA_CATEGORY: "LiveKit Inference quota body: `category` (e.g. `MaxGatewayCredits`)",
    A_QUOTA_HINT: "LiveKit Inference quota body: `hint`, cleaned",
    A_QUOTA_REMAINING: "LiveKit Inference quota body: `remaining_limit`",
    A_STATUS_CODE: "HTTP status, when the chain carries one",
    A_OPERATION: "by component: `chat` (LLM), `generate_content` (realtime), `speech_to_text`, "
    "`text_to_speech`, `interruption_detection` (the last three are not the convention's)",
    A_GEN_AI_PROVIDER: "the provider's registry value where the convention has one (`openai`, "
    "`gcp.gemini`, `anthropic`...), else `otel_agents.provider`",
    A_MODEL: "the model the provider instance was asked for, when it names one, cleaned",
    A_SERVER_ADDRESS: "host of the provider's base URL, when it has one (never its credentials, "
    "path or query), cleaned",
    A_SERVER_PORT: "its port (explicit, else the scheme's default)",
    A_CONVERSATION_ID: "the LiveKit room's sid, inside a job (as on livekit's own spans)",
    S_CLOSE_REASON: "livekit's close reason (`other`: still open at process exit)",
    S_SILENT: "the user spoke and the caller never heard the agent",
    S_AGENT_SPOKE: "the caller heard the agent: its audio played (position > 0), or, without an "
    "audio output, a non-empty reply went out",
    S_USER_SPOKE: "a user message, VAD speech, a non-empty transcript or a transcription timeout",
    S_USER_TURNS: "user turns",
    S_ANSWERED_TURNS: "user turns the agent answered",
    S_DEAD_TURNS: "user turns after which the agent went back to listening without speaking",
    S_UNANSWERED_TURNS: "user turns that waited longer than `silence_timeout`",
    S_TIME_TO_FIRST_SPEECH: "seconds from `start()` to the first speech the caller heard",
    S_ERRORS: "failed provider attempts in the session",
    S_TERMINAL_ERROR: "one of them was terminal",
    S_CLOSE_ERROR_TYPE: "class of the error livekit closed the session with",
    S_JOB_SHUTDOWN_REASON: "the livekit job's shutdown reason, when the job gave one",
    S_SILENCE_CAUSE: "why a silent session was silent: the error class of the provider error "
    "that killed its turns, `empty_reply`, `unheard`, `stalled` (or `unknown`: a defect)",
    E_TASK_NAME: "the asyncio task's name",
    E_FALLBACK_FROM_PROVIDER: "the provider a FallbackAdapter left because it failed, cleaned",
    E_FALLBACK_TO_PROVIDER: "the provider it moved on to (the one that serves next), cleaned",
}

SPANS: Final[tuple[Span, ...]] = (
    Span(
        SPAN_ATTEMPT_FAILED,
        "One failed attempt of a provider request: zero length, status ERROR, a child of "
        "livekit's request span (`llm_request`, `tts_request`) current when it failed.",
        tuple(v for k, v in list(globals().items()) if k.startswith("A_")),
    ),
    Span(
        SPAN_SESSION,
        "One `AgentSession`, from `start()` to its close, in the trace of livekit's "
        "`agent_session` span. Its `otel_agents.unhandled_task_error` events name the root "
        "cause of asyncio task exceptions nobody retrieved (attributes `error.type`, "
        "`otel_agents.root_cause.type`, `.message`, `otel_agents.task.name`). Its "
        "`otel_agents.fallback_switch` events mark a FallbackAdapter moving from a failed "
        "provider to the next (`otel_agents.component`, `otel_agents.fallback.from_provider`, "
        "`otel_agents.fallback.to_provider`), and `otel_agents.fallback_exhausted` a request "
        "on which every provider failed (`otel_agents.component`).",
        tuple(v for k, v in list(globals().items()) if k.startswith("S_")),
    ),
)
