"""One failed attempt, exported as Prometheus metrics, an ``otel_agents.attempt_failed`` span and
a structured log record (DESIGN.md sections 4, 6, 7).

Each export step is contained on its own: a failing tracer does not lose the metrics, a failing
log handler does not lose the span, and every contained failure is counted in
``otel_agents_internal_errors_total{where}``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from .. import names as n
from .._classify import Classification, safe_message
from . import labels as lbl
from .metrics import Metrics
from .redact import clean_message, clean_repeated, utf8

logger = logging.getLogger(n.LOGGER_NAME)
# A library's logger: silent unless the host configures logging (no "last resort" stderr lines).
logger.addHandler(logging.NullHandler())


@dataclass(slots=True)
class AttemptRecord:
    """The record of DESIGN.md section 4 for one failed attempt."""

    component: str
    provider: str
    attempt: int
    final: bool
    first_root_cause_type: str
    masked: bool
    classification: Classification
    timestamp_ns: int

    def fields(self, capture_messages: bool) -> dict[str, Any]:
        """The record as flat log fields (``None`` where a field does not apply)."""
        c = self.classification
        q = c.quota
        return {
            "component": self.component,
            "provider": self.provider,
            "attempt": self.attempt,
            "final": self.final,
            "error_type": c.error_type,
            "status_code": c.status_code,
            "error_class": c.error_class,
            "root_cause_type": c.root_cause_type,
            "root_cause_message": clean_message(safe_message(c.root)) if capture_messages else None,
            "first_root_cause_type": self.first_root_cause_type,
            "masked": self.masked,
            "terminal": c.terminal,
            # every field of a quota body is foreign text: a buggy or hostile upstream could
            # put anything there (metrics use closed label sets; spans and logs get it cleaned)
            "quota_type": _clean(q.quota_type) if q else None,
            "quota_category": _clean(q.category) if q else None,
            "quota_hint": _clean(q.hint) if q else None,
            "quota_remaining_limit": _clean(q.remaining_limit) if q else None,
        }


def _clean(value: str | None) -> str | None:
    return clean_repeated(value) if value else value


def span_attributes(fields: dict[str, Any]) -> dict[str, Any]:
    """The ``otel_agents.attempt_failed`` span attributes of a record's fields (no ``None``)."""
    pairs = (
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
    return exportable(pairs)


def exportable(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Span attributes of ``(key, value)`` pairs: ``None`` left out, text made encodable."""
    return {
        key: utf8(value) if type(value) is str else value
        for key, value in pairs
        if value is not None
    }


class Recorder:
    """Exports attempt records. Built by ``init()``; hooks call it and nothing else."""

    def __init__(
        self,
        metrics: Metrics,
        tracer: trace.Tracer | None,
        capture_messages: bool,
    ) -> None:
        self.metrics = metrics
        self.tracer = tracer
        self.capture_messages = capture_messages

    def internal_error(self, where: str) -> None:
        """Count a contained failure of otel-agents itself. Never raises."""
        with contextlib.suppress(Exception):
            self.metrics.internal_errors.inc((lbl.where(where),))

    def request_ok(self, component: str, provider: str) -> None:
        self.metrics.requests.inc((component, provider, "ok"))

    def attempt_failed(self, rec: AttemptRecord) -> None:
        try:
            self._metrics(rec)
        except Exception:
            self.internal_error("export_metrics")
        if self.tracer is None and not logger.isEnabledFor(logging.WARNING):
            return
        try:
            fields = rec.fields(self.capture_messages)
        except Exception:
            self.internal_error("classify")
            return
        span_context = None
        if self.tracer is not None:
            try:
                span_context = self._span(rec, fields)
            except Exception:
                self.internal_error("export_span")
        try:
            self._log(rec, fields, span_context)
        except Exception:
            self.internal_error("export_log")

    def _metrics(self, rec: AttemptRecord) -> None:
        m = self.metrics
        c = rec.classification
        component = rec.component
        provider = rec.provider
        error_class = c.error_class
        root = lbl.root_cause(c.root_cause_type)
        final = lbl.boolean(rec.final)
        m.attempt_failures.inc((component, provider, error_class, root, final))
        if c.quota is not None:
            m.quota_errors.inc(
                (
                    component,
                    lbl.quota_type(c.quota.quota_type),
                    lbl.quota_category(c.quota.category),
                    lbl.boolean(c.terminal),
                )
            )
        if c.terminal:
            m.terminal_errors.inc((component, provider, error_class))
        if rec.final:
            m.requests.inc((component, provider, "failed"))
            if rec.masked:
                first = lbl.root_cause(rec.first_root_cause_type)
                m.masked_failures.inc((component, first, root))

    def _span(self, rec: AttemptRecord, fields: dict[str, Any]) -> trace.SpanContext:
        assert self.tracer is not None
        # A zero-length child of the span current at emit time (livekit's llm_request or
        # tts_request): the attempt's own span has already ended by then.
        span = self.tracer.start_span(
            n.SPAN_ATTEMPT_FAILED,
            kind=SpanKind.INTERNAL,
            attributes=span_attributes(fields),
            start_time=rec.timestamp_ns,
        )
        span.set_status(Status(StatusCode.ERROR, fields["root_cause_message"]))
        span.end(end_time=rec.timestamp_ns)
        return span.get_span_context()

    def _log(
        self, rec: AttemptRecord, fields: dict[str, Any], span_context: trace.SpanContext | None
    ) -> None:
        log(
            logging.ERROR if rec.final else logging.WARNING,
            n.LOG_ATTEMPT_FAILED,
            fields,
            span_context,
        )


def log(
    level: int, message: str, fields: dict[str, Any], span_context: trace.SpanContext | None
) -> None:
    """One structured record on the ``otel_agents`` logger, with the ``trace_id``/``span_id`` of
    ``span_context``, else of the span current now."""
    if not logger.isEnabledFor(level):
        return
    if span_context is None or not span_context.is_valid:
        span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        fields["trace_id"] = format(span_context.trace_id, "032x")
        fields["span_id"] = format(span_context.span_id, "016x")
    else:
        fields["trace_id"] = fields["span_id"] = None
    logger.log(level, message, extra=fields)
