"""Prometheus metrics (and, with an OTLP endpoint, the same measurements as OTel metrics).

* Created lazily, once per process, in the default registry: livekit's worker ``/metrics`` and
  the sidecar both serve them, in single-process and multiprocess mode alike.
* Every series goes through a :class:`Family`, which caches label children (the hot path is a
  dict lookup and an ``inc``) and enforces a per-metric series budget on top of the per-label
  bounds of :mod:`otel_agents._export.labels`, so the total stays under DESIGN.md's 500 per process
  whatever the input.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Final

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, values

from .. import names as n
from .._multiproc import liveness

#: series each family may create before new label sets fold into ``other``
SERIES_BUDGET: Final[dict[str, int]] = {
    n.ATTEMPT_FAILURES: 100,
    n.QUOTA_ERRORS: 40,
    n.TERMINAL_ERRORS: 40,
    n.MASKED_FAILURES: 40,
    n.REQUESTS: 40,
    n.INTERNAL_ERRORS: len(n.WHERE) + 1,
    n.UNHANDLED_TASK_ERRORS: n.OPEN_LABEL_LIMIT + 1,
    # closed label sets: these budgets are never the binding limit
    n.SESSIONS_STARTED: 1,
    n.SESSIONS_CLOSED: 2 * (len(n.CLOSE_REASONS) + 1),
    n.SILENT_SESSIONS: len(n.CLOSE_REASONS) + 1,
    n.USER_TURNS: 1,
    n.DEAD_TURNS: len(n.DEAD_TURN_CAUSES),
}


#: measurements sent to the OTel mirror so far: the export pipeline compares it with what its
#: collector has accepted to tell whether a flush at exit has anything to send
_mirror_generation = 0


def mirror_generation() -> int:
    return _mirror_generation


def fix_multiprocess_value_class() -> None:
    """Undo prometheus_client's import-order trap (livekit-internals.md section 3.2).

    prometheus_client picks its value class once, at import. ``import livekit.agents`` imports it
    long before livekit's worker sets ``PROMETHEUS_MULTIPROC_DIR``, so metrics created afterwards
    would stay in process memory and never reach the multiprocess scrape. Metrics read the class
    when they (and each label child) are created, so rebinding it here is enough.
    """
    if liveness.multiproc_dir() and values.ValueClass is values.MutexValue:
        values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]


class Family:
    """One metric: cached children, a series budget, and an optional OTel mirror.

    ``inc(labels)`` takes the label values as a tuple in the metric's label order. Open labels
    are already bounded by the caller; when the budget is spent a new label set is replaced by
    ``fold(labels)`` (open labels set to ``other``), and when that is new too, by all-``other``.
    """

    __slots__ = (
        "_budget",
        "_children",
        "_fold",
        "_label_names",
        "_lock",
        "_metric",
        "_mirror",
        "name",
    )

    def __init__(
        self,
        metric: Counter,
        name: str,
        fold: Callable[[tuple[str, ...]], tuple[str, ...]],
    ) -> None:
        self._metric = metric
        self.name = name
        self._budget = SERIES_BUDGET[name]
        self._fold = fold
        self._children: dict[tuple[str, ...], Any] = {}
        self._lock = threading.Lock()
        self._mirror: Any = None  # an OTel Counter, when an OTLP endpoint is set
        self._label_names: tuple[str, ...] = tuple(metric._labelnames)

    def inc(self, labels: tuple[str, ...], amount: float = 1.0) -> None:
        child = self._children.get(labels)
        if child is None:
            child = self._child(labels)
        child.inc(amount)
        mirror = self._mirror
        if mirror is not None:
            global _mirror_generation
            mirror.add(amount, dict(zip(self._label_names, labels, strict=True)))
            _mirror_generation += 1

    def _child(self, labels: tuple[str, ...]) -> Any:
        with self._lock:
            child = self._children.get(labels)
            if child is not None:
                return child
            if len(self._children) >= self._budget:
                folded = self._fold(labels)
                child = self._children.get(folded)
                if child is not None:
                    return child
                labels = tuple(n.OTHER for _ in labels)
                child = self._children.get(labels)
                if child is not None:
                    return child
            child = self._metric.labels(*labels) if labels else self._metric
            self._children[labels] = child
            return child

    @property
    def series(self) -> int:
        return len(self._children)

    def clear(self) -> None:
        """Drop every series (tests; the process's metrics otherwise only grow)."""
        with self._lock:
            self._children.clear()
            if self._label_names:
                self._metric.clear()
            else:
                self._metric._value.set(0)


def otlp_name(prometheus_name: str) -> str:
    """``otel_agents_attempt_failures_total`` -> ``otel_agents.attempt_failures``."""
    rest = prometheus_name.removeprefix(n.PREFIX + "_").removesuffix("_total")
    return f"{n.PREFIX}.{rest}"


def _fold_positions(*positions: int) -> Callable[[tuple[str, ...]], tuple[str, ...]]:
    def fold(labels: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(n.OTHER if i in positions else v for i, v in enumerate(labels))

    return fold


class Histo:
    """A histogram with a closed label set (or none), its children cached, and an OTel mirror."""

    __slots__ = ("_children", "_label_names", "_metric", "_mirror", "name")

    def __init__(self, metric: Histogram, name: str) -> None:
        self._metric = metric
        self.name = name
        self._children: dict[tuple[str, ...], Any] = {}
        self._label_names: tuple[str, ...] = tuple(metric._labelnames)
        self._mirror: Any = None

    def observe(self, value: float, labels: tuple[str, ...] = ()) -> None:
        child = self._children.get(labels)
        if child is None:
            child = self._metric.labels(*labels) if labels else self._metric
            self._children[labels] = child
        child.observe(value)
        mirror = self._mirror
        if mirror is not None:
            global _mirror_generation
            mirror.record(value, dict(zip(self._label_names, labels, strict=True)))
            _mirror_generation += 1

    def clear(self) -> None:
        self._children.clear()
        if self._label_names:
            self._metric.clear()
        else:
            self._metric._metric_init()  # fresh buckets, sum and count

    @property
    def series(self) -> int:
        return len(self._children)


class LiveGauge:
    """A gauge summed over live processes (``multiprocess_mode="livesum"``): its value file
    goes away with ``mark_process_dead``, so a dead job process leaves no stale count."""

    __slots__ = ("_metric", "_mirror", "name")

    def __init__(self, metric: Gauge, name: str) -> None:
        self._metric = metric
        self.name = name
        self._mirror: Any = None

    def add(self, amount: float) -> None:
        self._metric.inc(amount)
        mirror = self._mirror
        if mirror is not None:
            global _mirror_generation
            mirror.add(amount)
            _mirror_generation += 1

    def value(self) -> float:
        return float(self._metric._value.get())

    def clear(self) -> None:
        self._metric.set(0)


class Metrics:
    """The metrics of DESIGN.md section 6."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        def counter(name: str, doc: str, labels: tuple[str, ...], fold: tuple[int, ...]) -> Family:
            # prometheus_client appends _total itself
            metric = Counter(name.removesuffix("_total"), doc, labels, registry=registry)
            return Family(metric, name, _fold_positions(*fold))

        self.attempt_failures = counter(
            n.ATTEMPT_FAILURES,
            "Failed provider attempts (one per livekit 'error' event, retries included).",
            (n.L_COMPONENT, n.L_PROVIDER, n.L_ERROR_CLASS, n.L_ROOT_CAUSE, n.L_FINAL),
            (1, 3),
        )
        self.quota_errors = counter(
            n.QUOTA_ERRORS,
            "Failed attempts that carried a LiveKit Inference quota body.",
            (n.L_COMPONENT, n.L_QUOTA_TYPE, n.L_QUOTA_CATEGORY, n.L_TERMINAL),
            (2,),
        )
        self.terminal_errors = counter(
            n.TERMINAL_ERRORS,
            "Failed attempts that will not recover without operator action.",
            (n.L_COMPONENT, n.L_PROVIDER, n.L_ERROR_CLASS),
            (1,),
        )
        self.masked_failures = counter(
            n.MASKED_FAILURES,
            "Requests whose final root cause differs from their first attempt's.",
            (n.L_COMPONENT, n.L_FIRST_ROOT_CAUSE, n.L_ROOT_CAUSE),
            (1, 2),
        )
        self.requests = counter(
            n.REQUESTS,
            "Provider requests by outcome: ok (metrics reported) or failed (retries exhausted).",
            (n.L_COMPONENT, n.L_PROVIDER, n.L_OUTCOME),
            (1,),
        )
        self.internal_errors = counter(
            n.INTERNAL_ERRORS,
            "Failures inside otel-agents' own hooks, contained so the agent carries on.",
            (n.L_WHERE,),
            (),
        )
        self.unhandled_task_errors = counter(
            n.UNHANDLED_TASK_ERRORS,
            "asyncio task and future exceptions that were never retrieved, by root cause.",
            (n.L_ROOT_CAUSE,),
            (0,),
        )
        self.sessions_started = counter(n.SESSIONS_STARTED, "AgentSession.start() calls.", (), ())
        self.sessions_closed = counter(
            n.SESSIONS_CLOSED,
            "Sessions closed, by close reason and whether the agent ever spoke.",
            (n.L_REASON, n.L_AGENT_SPOKE),
            (),
        )
        self.silent_sessions = counter(
            n.SILENT_SESSIONS,
            "Closed sessions in which the user spoke and the agent never did.",
            (n.L_REASON,),
            (),
        )
        self.user_turns = counter(n.USER_TURNS, "User turns (user messages committed).", (), ())
        self.dead_turns = counter(
            n.DEAD_TURNS,
            "User turns the agent went back to listening on without speaking.",
            (n.L_CAUSE,),
            (),
        )

        def live_gauge(name: str, doc: str) -> LiveGauge:
            return LiveGauge(Gauge(name, doc, registry=registry, multiprocess_mode="livesum"), name)

        self.sessions_active = live_gauge(n.SESSIONS_ACTIVE, "Sessions started and not closed.")
        self.unanswered_turns = live_gauge(
            n.UNANSWERED_TURNS,
            "User turns waiting longer than the silence timeout for the agent to speak, now.",
        )

        def histogram(
            name: str, doc: str, labels: tuple[str, ...], buckets: tuple[float, ...]
        ) -> Histo:
            return Histo(
                Histogram(
                    name.removesuffix("_seconds") + "_seconds",
                    doc,
                    labels,
                    registry=registry,
                    buckets=buckets,
                ),
                name,
            )

        self.time_to_first_speech = histogram(
            n.TIME_TO_FIRST_SPEECH,
            "From AgentSession.start() to the agent's first speech.",
            (),
            n.VOICE_BUCKETS,
        )
        self.response_latency = histogram(
            n.RESPONSE_LATENCY,
            "From a user turn opening to the agent speaking, for answered turns.",
            (),
            n.VOICE_BUCKETS,
        )
        self.session_duration = histogram(
            n.SESSION_DURATION,
            "From AgentSession.start() to close, by close reason.",
            (n.L_REASON,),
            n.DURATION_BUCKETS,
        )

    @property
    def families(self) -> tuple[Family, ...]:
        """The counters."""
        return (
            self.attempt_failures,
            self.quota_errors,
            self.terminal_errors,
            self.masked_failures,
            self.requests,
            self.internal_errors,
            self.unhandled_task_errors,
            self.sessions_started,
            self.sessions_closed,
            self.silent_sessions,
            self.user_turns,
            self.dead_turns,
        )

    @property
    def histograms(self) -> tuple[Histo, ...]:
        return (self.time_to_first_speech, self.response_latency, self.session_duration)

    @property
    def gauges(self) -> tuple[LiveGauge, ...]:
        return (self.sessions_active, self.unanswered_turns)

    def clear(self) -> None:
        for family in self.families:
            family.clear()
        for histogram in self.histograms:
            histogram.clear()
        for gauge in self.gauges:
            gauge.clear()

    def mirror_to(self, meter: Any) -> None:
        """Also send every measurement to OTel instruments from ``meter`` (``None``: stop)."""
        for family in self.families:
            family._mirror = (
                None
                if meter is None
                else meter.create_counter(
                    otlp_name(family.name), description=family._metric._documentation
                )
            )
        for histogram in self.histograms:
            histogram._mirror = (
                None
                if meter is None
                else meter.create_histogram(
                    otlp_name(histogram.name),
                    unit="s",
                    description=histogram._metric._documentation,
                    explicit_bucket_boundaries_advisory=list(histogram._metric._upper_bounds[:-1]),
                )
            )
        for gauge in self.gauges:
            gauge._mirror = (
                None
                if meter is None
                else meter.create_up_down_counter(
                    otlp_name(gauge.name), description=gauge._metric._documentation
                )
            )


_metrics: Metrics | None = None
_metrics_lock = threading.Lock()


def get_metrics() -> Metrics:
    """The process-wide metrics, created on first use (after the env var can have been set)."""
    global _metrics
    if _metrics is None:
        with _metrics_lock:
            if _metrics is None:
                fix_multiprocess_value_class()
                _metrics = Metrics()
    return _metrics
