"""The contract dashboards and alerts depend on (``otel_agents.names``), frozen.

A change here must come with the same change in every dashboard, alert rule and doc.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry

from otel_agents import names as n
from otel_agents._export import metrics as _metrics

FROZEN_METRICS = {
    # name: (type, labels)
    "otel_agents_attempt_failures_total": (
        "counter",
        ("component", "provider", "error_class", "root_cause", "final"),
    ),
    "otel_agents_quota_errors_total": (
        "counter",
        ("component", "quota_type", "quota_category", "terminal"),
    ),
    "otel_agents_terminal_errors_total": ("counter", ("component", "provider", "error_class")),
    "otel_agents_masked_failures_total": (
        "counter",
        ("component", "first_root_cause", "root_cause"),
    ),
    "otel_agents_requests_total": ("counter", ("component", "provider", "outcome")),
    "otel_agents_internal_errors_total": ("counter", ("where",)),
    "otel_agents_unhandled_task_errors_total": ("counter", ("root_cause",)),
    "otel_agents_sessions_started_total": ("counter", ()),
    "otel_agents_sessions_closed_total": ("counter", ("reason", "agent_spoke")),
    "otel_agents_silent_sessions_total": ("counter", ("reason", "cause")),
    "otel_agents_unheard_speech_total": ("counter", ("cause",)),
    "otel_agents_fallback_switches_total": (
        "counter",
        ("component", "from_provider", "to_provider"),
    ),
    "otel_agents_fallback_exhausted_total": ("counter", ("component",)),
    "otel_agents_quota_limit": ("gauge", ("provider", "dimension")),
    "otel_agents_quota_used": ("gauge", ("provider", "dimension")),
    "otel_agents_retry_wait_seconds": ("histogram", ("component",)),
    "otel_agents_user_turns_total": ("counter", ()),
    "otel_agents_dead_turns_total": ("counter", ("cause",)),
    "otel_agents_sessions_active": ("gauge", ()),
    "otel_agents_unanswered_turns": ("gauge", ()),
    "otel_agents_time_to_first_speech_seconds": ("histogram", ()),
    "otel_agents_response_latency_seconds": ("histogram", ()),
    "otel_agents_session_duration_seconds": ("histogram", ("reason",)),
}

FROZEN_SESSION_SPAN_ATTRIBUTES = (
    "otel_agents.session.close_reason",
    "otel_agents.session.silent",
    "otel_agents.session.agent_spoke",
    "otel_agents.session.user_spoke",
    "otel_agents.session.user_turns",
    "otel_agents.session.answered_turns",
    "otel_agents.session.dead_turns",
    "otel_agents.session.unanswered_turns",
    "otel_agents.session.time_to_first_speech",
    "otel_agents.session.errors",
    "otel_agents.session.terminal_error",
    "otel_agents.session.close_error.type",
    "otel_agents.session.job_shutdown_reason",
    "otel_agents.session.silence_cause",
    "gen_ai.conversation.id",
)

FROZEN_SPAN_ATTRIBUTES = (
    "otel_agents.component",
    "otel_agents.provider",
    "otel_agents.attempt",
    "otel_agents.final",
    "error.type",
    "otel_agents.error_class",
    "otel_agents.root_cause.type",
    "otel_agents.root_cause.message",
    "otel_agents.first_root_cause.type",
    "otel_agents.masked",
    "otel_agents.terminal",
    "otel_agents.quota.type",
    "otel_agents.quota.category",
    "otel_agents.quota.hint",
    "otel_agents.quota.remaining_limit",
    "http.response.status_code",
    "gen_ai.operation.name",
    "gen_ai.provider.name",
    "gen_ai.request.model",
    "server.address",
    "server.port",
    "gen_ai.conversation.id",
)


def _registered() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Every otel_agents metric in the default registry, by its exposed family name."""
    _metrics.get_metrics()
    out = {}
    for collector in set(REGISTRY._collector_to_names):
        name = getattr(collector, "_name", "")
        if not name.startswith(n.PREFIX):
            continue
        kind = collector._type
        exposed = name + "_total" if kind == "counter" else name
        out[exposed] = (kind, tuple(collector._labelnames))
    return out


def test_prometheus_metric_names_and_labels_are_frozen() -> None:
    assert _registered() == FROZEN_METRICS


def test_the_metric_table_declares_exactly_the_frozen_metrics() -> None:
    assert {m.name: (m.kind, m.label_names) for m in n.METRICS} == FROZEN_METRICS
    assert len({m.key for m in n.METRICS}) == len(n.METRICS)


def test_every_metric_of_the_table_is_built_and_has_its_handle() -> None:
    """The recorder's typed handles (``Metrics`` annotations) are exactly the table's keys: a
    metric added to the table alone cannot be forgotten by the OTel mirror or the exporters."""
    metrics = _metrics.Metrics(CollectorRegistry())
    annotated = set(_metrics.Metrics.__annotations__)
    assert annotated == {m.key for m in n.METRICS}
    assert set(metrics.by_name) == {m.name for m in n.METRICS}
    for spec in n.METRICS:
        assert getattr(metrics, spec.key) is metrics.by_name[spec.name]


def test_every_label_is_closed_or_folded_under_a_budget() -> None:
    for spec in n.METRICS:
        open_labels = {label.name for label in spec.labels if label.values is None}
        assert open_labels <= set(spec.fold), spec.name
        assert set(spec.fold) <= set(spec.label_names), spec.name


def test_session_span_and_log_names_are_frozen() -> None:
    assert n.SPAN_SESSION == "otel_agents.session"
    assert tuple(v for k, v in vars(n).items() if k.startswith("S_")) == (
        FROZEN_SESSION_SPAN_ATTRIBUTES
    )
    assert (n.LOG_SESSION_CLOSED, n.LOG_UNHANDLED_TASK_ERROR) == (
        "session_closed",
        "unhandled_task_error",
    )
    assert n.EVENT_UNHANDLED_TASK_ERROR == "otel_agents.unhandled_task_error"
    assert (n.EVENT_FALLBACK_SWITCH, n.EVENT_FALLBACK_EXHAUSTED) == (
        "otel_agents.fallback_switch",
        "otel_agents.fallback_exhausted",
    )
    assert (n.E_FALLBACK_FROM_PROVIDER, n.E_FALLBACK_TO_PROVIDER) == (
        "otel_agents.fallback.from_provider",
        "otel_agents.fallback.to_provider",
    )
    assert n.CLOSE_REASONS == (
        "error",
        "job_shutdown",
        "participant_disconnected",
        "user_initiated",
        "task_completed",
    )


def test_span_and_attribute_names_are_frozen() -> None:
    assert n.SPAN_ATTEMPT_FAILED == "otel_agents.attempt_failed"
    attrs = tuple(v for k, v in vars(n).items() if k.startswith("A_"))
    assert attrs == FROZEN_SPAN_ATTRIBUTES
    assert not any(a.startswith("lk.") for a in attrs)


def test_closed_label_sets() -> None:
    assert n.ERROR_CLASSES == (
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
    assert n.COMPONENTS == ("llm", "stt", "tts", "realtime", "interruption")
    assert n.OPEN_LABEL_LIMIT == 32


def test_otlp_names_are_the_dotted_form_without_total() -> None:
    otlp = {m.name: m.otlp_name for m in n.METRICS}
    assert otlp[n.ATTEMPT_FAILURES] == "otel_agents.attempt_failures"
    assert otlp[n.INTERNAL_ERRORS] == "otel_agents.internal_errors"
    assert otlp[n.TIME_TO_FIRST_SPEECH] == "otel_agents.time_to_first_speech_seconds"
