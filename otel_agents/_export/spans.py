"""otel-agents' own spans: the ``otel_agents.attempt_failed`` span of a failed attempt and the
``otel_agents.session`` span, with their attributes (``docs/reference.md``).

Where an OpenTelemetry semantic convention covers an attribute, the span carries the
convention's (``conventions``); ``otel_agents.*`` holds the rest, and keeps the values the
metrics' labels carry. Every value is unfolded (no ``other``) and every foreign string cleaned.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from .. import names as n
from . import conventions
from .fields import cleaned_name
from .records import AttemptRecord
from .redact import utf8


def exportable(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Span attributes of ``(key, value)`` pairs: ``None`` left out, text made encodable."""
    return {
        key: utf8(value) if type(value) is str else value
        for key, value in pairs
        if value is not None
    }


def span_attributes(fields: dict[str, Any], rec: AttemptRecord) -> dict[str, Any]:
    """The ``otel_agents.attempt_failed`` span attributes of a failed attempt's fields
    (``fields.attempt_fields``) and of its record's conventions."""
    target = rec.target
    model = base_url = None
    if target is not None:
        model, base_url = target.model(), target.base_url()
    key = (rec.component, fields["provider"], model, base_url)
    conventional = _conventions.get(key)
    if conventional is None:
        if len(_conventions) >= conventions.CACHE_LIMIT:
            _conventions.clear()
        conventional = _conventions[key] = _conventional(*key)
    attributes = exportable(
        (
            (n.A_COMPONENT, fields["component"]),
            (n.A_PROVIDER, fields["provider"]),
            (n.A_ATTEMPT, fields["attempt"]),
            (n.A_FINAL, fields["final"]),
            (n.A_ERROR_TYPE, fields["error_type"]),
            (n.A_ERROR_CLASS, fields["error_class"]),
            (n.A_ROOT_CAUSE_TYPE, fields["root_cause_type"]),
            (n.A_ROOT_CAUSE_MESSAGE, fields["root_cause_message"]),
            (n.A_FIRST_ROOT_CAUSE_TYPE, fields["first_root_cause_type"]),
            (n.A_MASKED, fields["masked"]),
            (n.A_TERMINAL, fields["terminal"]),
            (n.A_QUOTA_TYPE, fields["quota_type"]),
            (n.A_QUOTA_CATEGORY, fields["quota_category"]),
            (n.A_QUOTA_HINT, fields["quota_hint"]),
            (n.A_QUOTA_REMAINING, fields["quota_remaining_limit"]),
            (n.A_STATUS_CODE, fields["status_code"]),
        )
    )
    attributes.update(conventional)
    conversation = conventions.conversation_id()
    if conversation:
        attributes[n.A_CONVERSATION_ID] = conversation
    return attributes


#: the convention attributes of a (component, cleaned provider, model, base URL): a process
#: sees a few of them
_conventions: dict[tuple[n.Component, str | None, str | None, str | None], dict[str, Any]] = {}


def _conventional(
    component: n.Component, provider: str | None, model: str | None, base_url: str | None
) -> dict[str, Any]:
    server = conventions.server(base_url) if base_url else None
    return exportable(
        (
            (n.A_OPERATION, n.OPERATIONS.get(component)),
            (
                n.A_GEN_AI_PROVIDER,
                conventions.gen_ai_provider(provider)
                if provider and provider != n.UNKNOWN
                else None,
            ),
            (n.A_MODEL, cleaned_name(model)),
            (n.A_SERVER_ADDRESS, server[0] if server else None),
            (n.A_SERVER_PORT, server[1] if server else None),
        )
    )


def session_span_attributes(fields: dict[str, Any]) -> dict[str, Any]:
    """The ``otel_agents.session`` span attributes of a session's fields (set at its close)."""
    return exportable(
        (
            (n.S_CLOSE_REASON, fields["close_reason"]),
            (n.S_SILENT, fields["silent"]),
            (n.S_SILENCE_CAUSE, fields["silence_cause"]),
            (n.S_AGENT_SPOKE, fields["agent_spoke"]),
            (n.S_USER_SPOKE, fields["user_spoke"]),
            (n.S_USER_TURNS, fields["user_turns"]),
            (n.S_ANSWERED_TURNS, fields["answered_turns"]),
            (n.S_DEAD_TURNS, fields["dead_turns"]),
            (n.S_UNANSWERED_TURNS, fields["unanswered_turns"]),
            (n.S_TIME_TO_FIRST_SPEECH, fields["time_to_first_speech"]),
            (n.S_ERRORS, fields["errors"]),
            (n.S_TERMINAL_ERROR, fields["terminal_error"]),
            (n.S_CLOSE_ERROR_TYPE, fields["close_error_type"]),
            (n.S_JOB_SHUTDOWN_REASON, fields["job_shutdown_reason"]),
        )
    )


def attempt_span(
    tracer: trace.Tracer, rec: AttemptRecord, fields: dict[str, Any]
) -> trace.SpanContext:
    """The failed attempt's span: a zero-length child of the span current at emit time
    (livekit's ``llm_request`` or ``tts_request``: the attempt's own span has ended by then)."""
    span = tracer.start_span(
        n.SPAN_ATTEMPT_FAILED,
        kind=SpanKind.INTERNAL,
        attributes=span_attributes(fields, rec),
        start_time=rec.timestamp_ns,
    )
    span.set_status(Status(StatusCode.ERROR, fields["root_cause_message"]))
    span.end(end_time=rec.timestamp_ns)
    return span.get_span_context()


def session_span(tracer: trace.Tracer, started_at_s: float) -> trace.Span:
    """The session's span, the current context its parent, opened in the job's context (its
    conversation id is known from the start; the rest is set at its close)."""
    conversation = conventions.conversation_id()
    return tracer.start_span(
        n.SPAN_SESSION,
        kind=SpanKind.INTERNAL,
        attributes={n.S_CONVERSATION_ID: conversation} if conversation else None,
        start_time=int(started_at_s * 1e9),
    )
