"""Every metric, label, span, attribute, event and log-field name otel-agents emits: the
public contract.

Dashboards, alert rules and users' own queries depend on these strings: one changes only
together with everything that uses it (``tests/test_names.py`` freezes them). :data:`METRICS`
declares every metric once: its type, labels with their bounds, series budget, buckets, unit
and help text; the Prometheus families, the OpenTelemetry instruments, the dashboards'
catalogue and ``docs/reference.md`` are all derived from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, get_args

PREFIX: Final = "otel_agents"

# --- Prometheus metric names. Counters carry ``_total``. -----------------------------------------
ATTEMPT_FAILURES: Final = "otel_agents_attempt_failures_total"
QUOTA_ERRORS: Final = "otel_agents_quota_errors_total"
TERMINAL_ERRORS: Final = "otel_agents_terminal_errors_total"
MASKED_FAILURES: Final = "otel_agents_masked_failures_total"
REQUESTS: Final = "otel_agents_requests_total"
INTERNAL_ERRORS: Final = "otel_agents_internal_errors_total"
SESSIONS_STARTED: Final = "otel_agents_sessions_started_total"
SESSIONS_ACTIVE: Final = "otel_agents_sessions_active"
SESSIONS_CLOSED: Final = "otel_agents_sessions_closed_total"
SILENT_SESSIONS: Final = "otel_agents_silent_sessions_total"
USER_TURNS: Final = "otel_agents_user_turns_total"
DEAD_TURNS: Final = "otel_agents_dead_turns_total"
UNANSWERED_TURNS: Final = "otel_agents_unanswered_turns"
TIME_TO_FIRST_SPEECH: Final = "otel_agents_time_to_first_speech_seconds"
RESPONSE_LATENCY: Final = "otel_agents_response_latency_seconds"
SESSION_DURATION: Final = "otel_agents_session_duration_seconds"
UNHANDLED_TASK_ERRORS: Final = "otel_agents_unhandled_task_errors_total"
UNHEARD_SPEECH: Final = "otel_agents_unheard_speech_total"
QUOTA_LIMIT: Final = "otel_agents_quota_limit"
QUOTA_USED: Final = "otel_agents_quota_used"
FALLBACK_SWITCHES: Final = "otel_agents_fallback_switches_total"
FALLBACK_EXHAUSTED: Final = "otel_agents_fallback_exhausted_total"
RETRY_WAIT: Final = "otel_agents_retry_wait_seconds"

# --- label names -------------------------------------------------------------------------------
L_COMPONENT: Final = "component"
L_PROVIDER: Final = "provider"
L_ERROR_CLASS: Final = "error_class"
L_ROOT_CAUSE: Final = "root_cause"
L_FIRST_ROOT_CAUSE: Final = "first_root_cause"
L_FINAL: Final = "final"
L_QUOTA_TYPE: Final = "quota_type"
L_QUOTA_CATEGORY: Final = "quota_category"
L_TERMINAL: Final = "terminal"
L_OUTCOME: Final = "outcome"
L_WHERE: Final = "where"
L_REASON: Final = "reason"
L_AGENT_SPOKE: Final = "agent_spoke"
L_CAUSE: Final = "cause"
L_DIMENSION: Final = "dimension"
L_FROM_PROVIDER: Final = "from_provider"
L_TO_PROVIDER: Final = "to_provider"

# --- closed label value sets: typed, so that a value outside its set is a type error -----------
OTHER: Final = "other"
UNKNOWN: Final = "unknown"
Component = Literal["llm", "stt", "tts", "realtime", "interruption"]
COMPONENTS: Final[tuple[Component, ...]] = get_args(Component)
ErrorClass = Literal[
    "quota_exhausted",
    "rate_limited",
    "auth",
    "bad_request",
    "server_error",
    "timeout",
    "connection",
    "cancelled",
    "internal",
    "unknown",
]
ERROR_CLASSES: Final[tuple[ErrorClass, ...]] = get_args(ErrorClass)
Outcome = Literal["ok", "failed"]
OUTCOMES: Final[tuple[Outcome, ...]] = get_args(Outcome)
# Quota types the gateway uses (``quota_type`` in its 429 body).
QUOTA_TYPES: Final = ("llm", "stt", "tts", "bargein")
# The LiveKit Inference gateway's quota categories, as its 429 bodies name them.
QUOTA_CATEGORIES: Final = (
    "MaxGatewayCredits",
    "MaxBargeInRequests",
    "MaxConcurrentGatewayLLMRpm",
    "MaxConcurrentGatewayLLMTpm",
    "MaxConcurrentGatewaySTT",
    "MaxConcurrentGatewayTTS",
    "MaxBargeInRPM",
)
# livekit's CloseReason values; anything else is "other"
CloseReason = Literal[
    "error", "job_shutdown", "participant_disconnected", "user_initiated", "task_completed"
]
CLOSE_REASONS: Final[tuple[CloseReason, ...]] = get_args(CloseReason)
DeadTurnCause = Literal["error", "empty"]
DEAD_TURN_CAUSES: Final[tuple[DeadTurnCause, ...]] = get_args(DeadTurnCause)
# Why a reply the agent produced was never heard (docs/sessions.md, "the agent spoke")
UnheardCause = Literal["no_frames", "never_played", "cleared_before_playout"]
UNHEARD_CAUSES: Final[tuple[UnheardCause, ...]] = get_args(UnheardCause)
# Why a silent session was silent: the error class of the terminal (else last) provider error
# that killed its turns, or one of these
SilenceCause = Literal[ErrorClass, "empty_reply", "unheard", "stalled", "unknown"]
SILENCE_CAUSES: Final[tuple[SilenceCause, ...]] = get_args(SilenceCause)
# What a quota gauge measures (LiveKit Inference and OpenAI-compatible rate-limit headers)
QuotaDimension = Literal["credits", "rpm", "tpm", "requests", "tokens"]
QUOTA_DIMENSIONS: Final[tuple[QuotaDimension, ...]] = get_args(QuotaDimension)
TurnOutcome = Literal[
    "answered", "unheard", "preempted", "tool_only", "dead_error", "dead_empty", "abandoned"
]
TURN_OUTCOMES: Final[tuple[TurnOutcome, ...]] = get_args(TurnOutcome)
# Histogram buckets: voice latencies (tens of ms to a minute), session lengths (seconds to hours)
VOICE_BUCKETS: Final = (
    0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0, 60.0,
)  # fmt: skip
DURATION_BUCKETS: Final = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)
# Where a contained internal failure happened (``otel_agents_internal_errors_total{where}``):
# a closed set, typed, so that a misspelt place is a type error rather than a silent "other".
Where = Literal[
    "attempt_hook",
    "request_hook",
    "classify",
    "export_span",
    "export_log",
    "export_metrics",
    "instrument",
    "session_hook",
    "task_error_hook",
    "liveness",
    "span_redaction",
    "quota_hook",
    "fallback_hook",
]
WHERE: Final[tuple[Where, ...]] = get_args(Where)
# Open labels keep at most this many distinct values per process; the rest fold into "other".
OPEN_LABEL_LIMIT: Final = 32

# --- span names and attributes ------------------------------------------------------------------
SPAN_ATTEMPT_FAILED: Final = "otel_agents.attempt_failed"
A_COMPONENT: Final = "otel_agents.component"
A_PROVIDER: Final = "otel_agents.provider"
A_ATTEMPT: Final = "otel_agents.attempt"
A_FINAL: Final = "otel_agents.final"
A_ERROR_TYPE: Final = "error.type"
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
A_STATUS_CODE: Final = "http.response.status_code"

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

# --- structured log records (logger ``otel_agents``) -------------------------------------------
LOGGER_NAME: Final = "otel_agents"
LOG_ATTEMPT_FAILED: Final = "attempt_failed"
LOG_SESSION_CLOSED: Final = "session_closed"
LOG_UNHANDLED_TASK_ERROR: Final = "unhandled_task_error"

# --- sidecar and multiprocess reaping (otel_agents._sidecar) -------------------------------------
# Self-metrics the sidecar appends to its scrape of PROMETHEUS_MULTIPROC_DIR. Base units only.
SIDECAR_RENDER_SECONDS: Final = "otel_agents_sidecar_render_seconds"
SIDECAR_LIVE_PROCESSES: Final = "otel_agents_sidecar_live_processes"
SIDECAR_DB_FILES: Final = "otel_agents_sidecar_db_files"
SIDECAR_REAPED_PROCESSES: Final = "otel_agents_sidecar_reaped_processes_total"
SIDECAR_REAP_ERRORS: Final = "otel_agents_sidecar_reap_errors_total"
# files in the directory a render skipped (unreadable, not a metric file, a symlink...), per render
SIDECAR_SKIPPED_FILES: Final = "otel_agents_sidecar_skipped_files_total"
# dead processes' unreadable files and unreadable compacted files renamed to *.corrupt
SIDECAR_QUARANTINED_FILES: Final = "otel_agents_sidecar_quarantined_files_total"
# the sidecar's HTTP server: open connections, and connections and requests it refused
SIDECAR_CONNECTIONS: Final = "otel_agents_sidecar_connections"
SIDECAR_HEADER_TIMEOUTS: Final = "otel_agents_sidecar_header_timeouts_total"
SIDECAR_REJECTED_CONNECTIONS: Final = "otel_agents_sidecar_rejected_connections_total"
SIDECAR_BAD_REQUESTS: Final = "otel_agents_sidecar_bad_requests_total"
# ``otel_agents_internal_errors_total{where}`` value for a failed liveness registration
WHERE_LIVENESS: Final[Where] = "liveness"
# ... and for a failure to clean the error text of a livekit span (_export.span_redaction)
WHERE_SPAN_REDACTION: Final[Where] = "span_redaction"


# --- every metric, declared once -----------------------------------------------------------------


@dataclass(frozen=True)
class Label:
    """A metric label. ``values``: its closed set (anything else is ``other``); ``None``: an
    open label (a provider or class name), of which a process keeps ``OPEN_LABEL_LIMIT`` values
    and folds the rest into ``other``. Never free text, ids or rooms."""

    name: str
    values: tuple[str, ...] | None = None


BOOLEAN: Final = ("true", "false")


@dataclass(frozen=True)
class Metric:
    """One metric: what the Prometheus family, the OTel instrument and the docs derive from."""

    name: str  #: the Prometheus name (counters end in ``_total``, durations in ``_seconds``)
    kind: Literal["counter", "gauge", "histogram"]
    help: str
    labels: tuple[Label, ...] = ()
    #: series a process may create; then a new label set folds ``fold`` labels into ``other``
    budget: int = 1
    fold: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()
    #: how a gauge combines across processes: ``livesum`` (summed over live processes),
    #: ``max`` or ``mostrecent`` (one project's quota seen by several processes: never a sum)
    multiprocess_mode: Literal["livesum", "max", "mostrecent"] = "livesum"

    @property
    def label_names(self) -> tuple[str, ...]:
        return tuple(label.name for label in self.labels)

    @property
    def key(self) -> str:
        """``otel_agents_attempt_failures_total`` -> ``attempt_failures``."""
        return self.name.removeprefix(PREFIX + "_").removesuffix("_total").removesuffix("_seconds")

    @property
    def otlp_name(self) -> str:
        """The OpenTelemetry name: ``otel_agents.attempt_failures``, ``..._seconds`` kept."""
        return f"{PREFIX}.{self.name.removeprefix(PREFIX + '_').removesuffix('_total')}"

    @property
    def unit(self) -> str:
        return "s" if self.name.endswith("_seconds") else ""


_COMPONENT = Label(L_COMPONENT, COMPONENTS)
_PROVIDER = Label(L_PROVIDER)
_ERROR_CLASS = Label(L_ERROR_CLASS, ERROR_CLASSES)
_ROOT_CAUSE = Label(L_ROOT_CAUSE)
_REASON = Label(L_REASON, CLOSE_REASONS)

METRICS: Final[tuple[Metric, ...]] = (
    Metric(
        ATTEMPT_FAILURES,
        "counter",
        "Failed provider attempts (one per livekit 'error' event, retries included).",
        (_COMPONENT, _PROVIDER, _ERROR_CLASS, _ROOT_CAUSE, Label(L_FINAL, BOOLEAN)),
        budget=100,
        fold=(L_PROVIDER, L_ROOT_CAUSE),
    ),
    Metric(
        QUOTA_ERRORS,
        "counter",
        "Failed attempts that carried a LiveKit Inference quota body.",
        (
            _COMPONENT,
            Label(L_QUOTA_TYPE, QUOTA_TYPES),
            Label(L_QUOTA_CATEGORY, QUOTA_CATEGORIES),
            Label(L_TERMINAL, BOOLEAN),
        ),
        budget=40,
        fold=(L_QUOTA_CATEGORY,),
    ),
    Metric(
        TERMINAL_ERRORS,
        "counter",
        "Failed attempts that will not recover without operator action.",
        (_COMPONENT, _PROVIDER, _ERROR_CLASS),
        budget=40,
        fold=(L_PROVIDER,),
    ),
    Metric(
        MASKED_FAILURES,
        "counter",
        "Requests whose final root cause differs from their first attempt's.",
        (_COMPONENT, Label(L_FIRST_ROOT_CAUSE), _ROOT_CAUSE),
        budget=40,
        fold=(L_FIRST_ROOT_CAUSE, L_ROOT_CAUSE),
    ),
    Metric(
        REQUESTS,
        "counter",
        "Provider requests by outcome: ok (metrics reported) or failed (retries exhausted).",
        (_COMPONENT, _PROVIDER, Label(L_OUTCOME, OUTCOMES)),
        budget=40,
        fold=(L_PROVIDER,),
    ),
    Metric(
        INTERNAL_ERRORS,
        "counter",
        "Failures inside otel-agents' own hooks, contained so the agent carries on.",
        (Label(L_WHERE, WHERE),),
        budget=len(WHERE) + 1,
    ),
    Metric(
        UNHANDLED_TASK_ERRORS,
        "counter",
        "asyncio task and future exceptions that were never retrieved, by root cause.",
        (_ROOT_CAUSE,),
        budget=OPEN_LABEL_LIMIT + 1,
        fold=(L_ROOT_CAUSE,),
    ),
    Metric(SESSIONS_STARTED, "counter", "AgentSession.start() calls."),
    Metric(
        SESSIONS_CLOSED,
        "counter",
        "Sessions closed, by close reason and whether the agent ever spoke.",
        (_REASON, Label(L_AGENT_SPOKE, BOOLEAN)),
        budget=2 * (len(CLOSE_REASONS) + 1),
    ),
    Metric(
        SILENT_SESSIONS,
        "counter",
        "Closed sessions in which the user spoke and the agent was never heard, by close reason "
        "and cause.",
        (_REASON, Label(L_CAUSE, SILENCE_CAUSES)),
        budget=(len(CLOSE_REASONS) + 1) * (len(SILENCE_CAUSES) + 1),
    ),
    Metric(USER_TURNS, "counter", "User turns (user messages committed)."),
    Metric(
        DEAD_TURNS,
        "counter",
        "User turns the agent went back to listening on without speaking.",
        (Label(L_CAUSE, DEAD_TURN_CAUSES),),
        budget=len(DEAD_TURN_CAUSES),
    ),
    Metric(
        UNHEARD_SPEECH,
        "counter",
        "Agent replies the caller never heard, by cause.",
        (Label(L_CAUSE, UNHEARD_CAUSES),),
        budget=len(UNHEARD_CAUSES) + 1,
    ),
    Metric(
        FALLBACK_SWITCHES,
        "counter",
        "FallbackAdapter switches from a failed provider to the next one.",
        (_COMPONENT, Label(L_FROM_PROVIDER), Label(L_TO_PROVIDER)),
        budget=40,
        fold=(L_FROM_PROVIDER, L_TO_PROVIDER),
    ),
    Metric(
        FALLBACK_EXHAUSTED,
        "counter",
        "FallbackAdapter requests on which every provider failed.",
        (_COMPONENT,),
        budget=len(COMPONENTS) + 1,
    ),
    Metric(SESSIONS_ACTIVE, "gauge", "Sessions started and not closed."),
    Metric(
        UNANSWERED_TURNS,
        "gauge",
        "User turns waiting longer than the silence timeout for the agent to speak, now.",
    ),
    Metric(
        TIME_TO_FIRST_SPEECH,
        "histogram",
        "From AgentSession.start() to the agent's first speech.",
        buckets=VOICE_BUCKETS,
    ),
    Metric(
        RESPONSE_LATENCY,
        "histogram",
        "From a user turn opening to the agent speaking, for answered turns.",
        buckets=VOICE_BUCKETS,
    ),
    Metric(
        QUOTA_LIMIT,
        "gauge",
        "A provider quota's limit, from its response headers (the largest any process saw).",
        (_PROVIDER, Label(L_DIMENSION, QUOTA_DIMENSIONS)),
        budget=40,
        fold=(L_PROVIDER,),
        multiprocess_mode="max",
    ),
    Metric(
        QUOTA_USED,
        "gauge",
        "How much of a provider quota is used, from its response headers (the most recent).",
        (_PROVIDER, Label(L_DIMENSION, QUOTA_DIMENSIONS)),
        budget=40,
        fold=(L_PROVIDER,),
        multiprocess_mode="mostrecent",
    ),
    Metric(
        RETRY_WAIT,
        "histogram",
        "For a request with a failed attempt: from its first attempt's start to its last's.",
        (_COMPONENT,),
        budget=len(COMPONENTS) + 1,
        buckets=VOICE_BUCKETS,
    ),
    Metric(
        SESSION_DURATION,
        "histogram",
        "From AgentSession.start() to close, by close reason.",
        (_REASON,),
        budget=len(CLOSE_REASONS) + 1,
        buckets=DURATION_BUCKETS,
    ),
)


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

#: the log records on the ``otel_agents`` logger, and the fields each carries
LOG_RECORDS: Final[tuple[tuple[str, str, tuple[str, ...]], ...]] = (
    (
        LOG_ATTEMPT_FAILED,
        "WARNING, ERROR for the final attempt",
        (
            "component", "provider", "attempt", "final", "error_type", "status_code",
            "error_class", "root_cause_type", "root_cause_message", "first_root_cause_type",
            "masked", "terminal", "quota_type", "quota_category", "quota_hint",
            "quota_remaining_limit", "trace_id", "span_id",
        ),
    ),
    (
        LOG_SESSION_CLOSED,
        "INFO, WARNING for a silent session",
        (
            "close_reason", "silent", "silence_cause", "agent_spoke", "user_spoke", "user_turns",
            "answered_turns", "dead_turns", "unanswered_turns", "time_to_first_speech",
            "errors", "terminal_error", "close_error_type", "job_shutdown_reason", "trace_id",
            "span_id",
        ),
    ),
    (
        LOG_UNHANDLED_TASK_ERROR,
        "ERROR",
        (
            "error_type", "root_cause_type", "root_cause_message", "task_name", "trace_id",
            "span_id",
        ),
    ),
)  # fmt: skip
