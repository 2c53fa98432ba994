"""The recorder: the only code that touches Prometheus, OpenTelemetry metrics, spans and log
records. Capture hands it records and turn events; it bounds label values for metrics, cleans
every foreign string for spans and logs, and contains every failure of its own.

Each export step is contained on its own: a failing tracer does not lose the metrics, a failing
log handler does not lose the span, and every contained failure is counted in
``otel_agents_internal_errors_total{where}``. Span handles it returns are opaque to capture.

By concern: metric families are in :mod:`.metrics`; foreign strings become exportable fields in
:mod:`.fields`; spans and their attributes (semantic conventions: :mod:`.conventions`) are built
in :mod:`.spans`; this module sequences them and writes the log records.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from .. import names as n
from .._classify import safe_message
from . import labels as lbl
from .fields import attempt_fields, root_message
from .fields import clean_field as _clean
from .fields import cleaned_name as _name
from .metrics import Metrics, PreparedSet
from .records import AttemptRecord, SessionRecord, TaskErrorRecord
from .redact import clean_name, utf8
from .spans import attempt_span, exportable, session_span, session_span_attributes

# No handler of its own (not even a NullHandler): records reach the host's logging; a host that
# configured none sees WARNING and above on stderr (Python's last-resort handler), so a taken
# /metrics port or records going nowhere are never silent.
logger = logging.getLogger(n.LOGGER_NAME)

#: what a test (``otel_agents.testing``) may subscribe to: every record, as it is exported
#: prepared increments kept (distinct kinds of failed attempt); beyond, start again
PREPARED_LIMIT = 512

Observer = Callable[[AttemptRecord | SessionRecord | TaskErrorRecord], None]


class Recorder:
    """Exports records. Built by ``init()``; capture calls it and nothing else."""

    def __init__(
        self,
        metrics: Metrics,
        tracer: trace.Tracer | None,
        capture_messages: bool,
    ) -> None:
        self.metrics = metrics
        self.tracer = tracer
        self.capture_messages = capture_messages
        #: called with every record after it is exported (``otel_agents.testing``)
        self.observer: Observer | None = None

    # --- contained failures and requests ------------------------------------------------------

    def internal_error(self, where: n.Where) -> None:
        """Count a contained failure of otel-agents itself. Never raises."""
        with contextlib.suppress(Exception):
            self.metrics.internal_errors.inc((where,))

    def request_ok(self, component: n.Component, provider: str) -> None:
        self.metrics.requests.inc((component, lbl.provider(_name(provider)), "ok"))

    def retry_wait(self, component: n.Component, seconds: float) -> None:
        """A request that had a failed attempt ended: from its first attempt's start to its
        last's (what its retries cost the caller)."""
        self.metrics.retry_wait.observe(max(0.0, seconds), (component,))

    # --- failed attempts ----------------------------------------------------------------------

    def attempt_failed(self, rec: AttemptRecord) -> None:
        try:
            self._metrics(rec)
        except Exception:
            self.internal_error("export_metrics")
        if self.tracer is not None or logger.isEnabledFor(logging.WARNING):
            try:
                fields = attempt_fields(rec, self.capture_messages)
            except Exception:
                self.internal_error("classify")
            else:
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
        self._observe(rec)

    def _metrics(self, rec: AttemptRecord) -> None:
        # A failed attempt's series depend only on these values: prepare their increments once
        # (labels bounded, names cleaned, children and mirrors resolved), then replay them.
        c = rec.classification
        key = (
            rec.component,
            rec.provider,
            c.error_class,
            c.root_cause_type,
            rec.final,
            c.quota,
            c.terminal,
            rec.masked and rec.first_root_cause_type,
        )
        prepared = self.metrics.prepared
        incs = prepared.get(key)
        if incs is None:
            incs = self._prepare(rec)
            if len(prepared) >= PREPARED_LIMIT:
                prepared.clear()
            prepared[key] = incs
        for inc in incs:
            inc()

    def _prepare(self, rec: AttemptRecord) -> tuple[Callable[[], None], ...]:
        m = self.metrics
        incs = []
        c = rec.classification
        component = rec.component
        # open labels are names from outside: redacted like on spans (a class made with
        # ``type()`` can be named anything)
        provider = lbl.provider(_name(rec.provider))
        error_class = c.error_class
        root = lbl.root_cause(_name(c.root_cause_type))
        final = lbl.boolean(rec.final)
        incs.append(m.attempt_failures.incrementer((component, provider, error_class, root, final)))
        if c.quota is not None:
            quota_labels = (
                component,
                lbl.quota_type(c.quota.quota_type),
                lbl.quota_category(c.quota.category),
                lbl.boolean(c.terminal),
            )
            incs.append(m.quota_errors.incrementer(quota_labels))
        if c.terminal:
            incs.append(m.terminal_errors.incrementer((component, provider, error_class)))
        if rec.final:
            incs.append(m.requests.incrementer((component, provider, "failed")))
            if rec.masked:
                first = lbl.root_cause(_name(rec.first_root_cause_type))
                incs.append(m.masked_failures.incrementer((component, first, root)))
        return tuple(incs)

    def _span(self, rec: AttemptRecord, fields: dict[str, Any]) -> trace.SpanContext:
        assert self.tracer is not None
        return attempt_span(self.tracer, rec, fields)

    def _log(
        self, rec: AttemptRecord, fields: dict[str, Any], span_context: trace.SpanContext | None
    ) -> None:
        log(
            logging.ERROR if rec.final else logging.WARNING,
            n.LOG_ATTEMPT_FAILED,
            fields,
            span_context,
        )

    # --- sessions -----------------------------------------------------------------------------

    def session_started(self) -> None:
        self.metrics.sessions_started.inc(())
        self.metrics.sessions_active.add(1)

    def user_turn(self) -> None:
        self.metrics.user_turns.inc(())

    def unanswered(self, delta: int) -> None:
        """A user turn started (+1) or stopped (-1) waiting past the silence timeout."""
        self.metrics.unanswered_turns.add(delta)

    def dead_turn(self, cause: n.DeadTurnCause) -> None:
        self.metrics.dead_turns.inc((cause,))

    def unheard_speech(self, cause: n.UnheardCause) -> None:
        """An agent reply the caller never heard (``docs/sessions.md``)."""
        self.metrics.unheard_speech.inc((cause,))

    def first_speech(self, seconds: float) -> None:
        self.metrics.time_to_first_speech.observe(seconds)

    def answered(self, latency_s: float) -> None:
        self.metrics.response_latency.observe(latency_s)

    def open_session_span(self, started_at_s: float) -> Any:
        """The session's span, current context as parent; ``None`` without a tracer."""
        if self.tracer is None:
            return None
        try:
            return session_span(self.tracer, started_at_s)
        except Exception:
            self.internal_error("export_span")
            return None

    def session_event(
        self, span: Any, name: str, attributes: dict[str, Any], timestamp_ns: int | None = None
    ) -> None:
        try:
            span.add_event(name, attributes, timestamp_ns)
        except Exception:
            self.internal_error("export_span")

    def session_closed(self, rec: SessionRecord) -> None:
        """The session's metrics, at its close (its span and log record wait: ``publish``)."""
        m = self.metrics
        spoke = lbl.boolean(rec.agent_spoke)
        reason = rec.close_reason
        m.sessions_closed.inc((reason, spoke))
        if rec.silent:
            m.silent_sessions.inc((reason, rec.silence_cause or "unknown"))
        m.session_duration.observe(max(0.0, rec.closed_at - rec.started_at), (reason,))
        m.sessions_active.add(-1)

    def publish_session(self, rec: SessionRecord, span: Any) -> None:
        """The session's span (ended at its close) and ``session_closed`` log record."""
        fields = rec.fields()
        fields["close_error_type"] = _name(rec.close_error_type)
        reason = rec.job_shutdown_reason
        fields["job_shutdown_reason"] = _clean(reason) if self.capture_messages else None
        if span is not None:
            try:
                span.set_attributes(session_span_attributes(fields))
                if rec.close_reason == "error":
                    span.set_status(Status(StatusCode.ERROR, fields["close_error_type"]))
                span.end(end_time=int(rec.closed_at * 1e9))
            except Exception:
                self.internal_error("export_span")
        try:
            log(
                logging.WARNING if rec.silent else logging.INFO,
                n.LOG_SESSION_CLOSED,
                fields,
                span.get_span_context() if span is not None else None,
            )
        except Exception:
            self.internal_error("export_log")
        self._observe(rec)

    # --- provider quotas (response headers) and FallbackAdapters -------------------------------

    def quota(
        self,
        provider: str | None,
        dimension: n.QuotaDimension,
        limit: float | None,
        used: float | None,
    ) -> None:
        """A quota a provider's response headers stated: its limit and use (``None``: the
        header was absent, which means unknown, never zero: no sample)."""
        labels = (lbl.provider(_name(provider)), dimension)
        if limit is not None:
            self.metrics.quota_limit.set(limit, labels)
        if used is not None:
            self.metrics.quota_used.set(used, labels)

    def quota_gauge(
        self, provider: str | None, dimension: n.QuotaDimension, used: bool
    ) -> PreparedSet:
        """:meth:`quota` prepared for one series: the limit's (``used=False``) or the use's of
        ``provider``'s ``dimension`` (created now: prepare it when there is a value). Stale when
        ``self.metrics.generation`` changes."""
        labels = (lbl.provider(_name(provider)), dimension)
        gauge = self.metrics.quota_used if used else self.metrics.quota_limit
        return gauge.prepare(labels)

    def fallback_switch(
        self, component: n.Component, from_provider: str | None, to_provider: str | None
    ) -> dict[str, Any]:
        """Count a FallbackAdapter's switch; the attributes of its session span event."""
        source, target = _name(from_provider), _name(to_provider)
        self.metrics.fallback_switches.inc((component, lbl.provider(source), lbl.provider(target)))
        return exportable(
            (
                (n.A_COMPONENT, component),
                (n.E_FALLBACK_FROM_PROVIDER, source or n.UNKNOWN),
                (n.E_FALLBACK_TO_PROVIDER, target or n.UNKNOWN),
            )
        )

    def fallback_exhausted(self, component: n.Component) -> dict[str, Any]:
        """Count a FallbackAdapter request every provider failed; its span event's attributes."""
        self.metrics.fallback_exhausted.inc((component,))
        return {n.A_COMPONENT: component}

    # --- unhandled task errors ----------------------------------------------------------------

    def task_error(self, rec: TaskErrorRecord) -> dict[str, Any]:
        """Count it; the attributes of its ``otel_agents.unhandled_task_error`` event."""
        root_type = _name(rec.root_cause_type)
        self.metrics.unhandled_task_errors.inc((lbl.root_cause(root_type),))
        attributes = {
            n.A_ERROR_TYPE: utf8(_name(rec.error_type) or ""),
            n.A_ROOT_CAUSE_TYPE: utf8(root_type or ""),
        }
        if self.capture_messages:
            attributes[n.A_ROOT_CAUSE_MESSAGE] = utf8(root_message(safe_message(rec.root)))
        if rec.task_name:
            attributes[n.E_TASK_NAME] = utf8(clean_name(rec.task_name))
        return attributes

    def log_task_error(self, rec: TaskErrorRecord, attributes: dict[str, Any], span: Any) -> None:
        log(
            logging.ERROR,
            n.LOG_UNHANDLED_TASK_ERROR,
            {
                "error_type": attributes.get(n.A_ERROR_TYPE),
                "root_cause_type": attributes.get(n.A_ROOT_CAUSE_TYPE),
                "root_cause_message": attributes.get(n.A_ROOT_CAUSE_MESSAGE),
                "task_name": attributes.get(n.E_TASK_NAME),
            },
            span.get_span_context() if span is not None else None,
        )
        self._observe(rec)

    def _observe(self, rec: AttemptRecord | SessionRecord | TaskErrorRecord) -> None:
        observer = self.observer
        if observer is not None:
            try:
                observer(rec)
            except Exception:
                self.internal_error("export_log")


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
