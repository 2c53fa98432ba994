"""Metric names, label names, their closed value sets and bounds, and :data:`METRICS`: every
metric declared once (its type, labels, series budget, buckets, unit and help text)."""

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
        "A provider quota's limit, from its response headers (the most recent).",
        (_PROVIDER, Label(L_DIMENSION, QUOTA_DIMENSIONS)),
        budget=40,
        fold=(L_PROVIDER,),
        multiprocess_mode="mostrecent",
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
