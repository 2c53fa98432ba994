"""Every metric, label, span, attribute and log-field name otel-agents emits.

Dashboards, alert rules and users depend on these strings (DESIGN.md sections 6 and 7):
change one only together with everything that uses it. ``tests/test_names.py`` freezes them.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

PREFIX: Final = "otel_agents"

# --- Prometheus metric names (section 6). Counters carry ``_total``. ---------------------------
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

# --- closed label value sets -------------------------------------------------------------------
OTHER: Final = "other"
UNKNOWN: Final = "unknown"
COMPONENTS: Final = ("llm", "stt", "tts", "realtime", "interruption")
ERROR_CLASSES: Final = (
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
)
OUTCOMES: Final = ("ok", "failed")
# Quota types the gateway uses (``quota_type`` in its 429 body).
QUOTA_TYPES: Final = ("llm", "stt", "tts", "bargein")
# Gateway quota categories (agent-gateway pkg/quota, as quoted in livekit/agents PR #6012).
QUOTA_CATEGORIES: Final = (
    "MaxGatewayCredits",
    "MaxBargeInRequests",
    "MaxConcurrentGatewayLLMRpm",
    "MaxConcurrentGatewayLLMTpm",
    "MaxConcurrentGatewaySTT",
    "MaxConcurrentGatewayTTS",
    "MaxBargeInRPM",
)
# livekit's CloseReason values (voice/events.py); anything else is "other"
CLOSE_REASONS: Final = (
    "error",
    "job_shutdown",
    "participant_disconnected",
    "user_initiated",
    "task_completed",
)
DEAD_TURN_CAUSES: Final = ("error", "empty")
TURN_OUTCOMES: Final = (
    "answered",
    "preempted",
    "tool_only",
    "dead_error",
    "dead_empty",
    "abandoned",
)
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
]
WHERE: Final[tuple[Where, ...]] = get_args(Where)
# Open labels keep at most this many distinct values per process; the rest fold into "other".
OPEN_LABEL_LIMIT: Final = 32

# --- span names and attributes (section 7) -----------------------------------------------------
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
EVENT_UNHANDLED_TASK_ERROR: Final = "otel_agents.unhandled_task_error"
E_TASK_NAME: Final = "otel_agents.task.name"

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
# ``otel_agents_internal_errors_total{where}`` value for a failed liveness registration
WHERE_LIVENESS: Final[Where] = "liveness"
# ... and for a failure to clean the error text of a livekit span (_export.span_redaction)
WHERE_SPAN_REDACTION: Final[Where] = "span_redaction"
