"""The structured log records on the ``otel_agents`` logger and the fields each carries."""

from __future__ import annotations

from typing import Final

# --- structured log records (logger ``otel_agents``) -------------------------------------------
LOGGER_NAME: Final = "otel_agents"
LOG_ATTEMPT_FAILED: Final = "attempt_failed"
LOG_SESSION_CLOSED: Final = "session_closed"
LOG_UNHANDLED_TASK_ERROR: Final = "unhandled_task_error"

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
