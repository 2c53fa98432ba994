"""Prometheus metrics (and, with an OTLP endpoint, the same measurements as OTel metrics).

* Created lazily, once per process, in the default registry: livekit's worker ``/metrics`` and
  the sidecar both serve them, in single-process and multiprocess mode alike.
* Built from the table :data:`otel_agents.names.METRICS` by :mod:`.build`, which also creates
  the series of small closed label sets at 0 from the start.
* Every series goes through a :class:`Family`, which caches label children (the hot path is a
  dict lookup and an ``inc``) and enforces a per-metric series budget on top of the per-label
  bounds of :mod:`otel_agents._export.labels`, so the total stays under 500 series per process
  whatever the input.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar, Final

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, values

from .. import names as n
from . import build

#: series each counter may create before new label sets fold into ``other``
SERIES_BUDGET: Final[dict[str, int]] = {m.name: m.budget for m in n.METRICS if m.kind == "counter"}


#: measurements sent to the OTel mirror so far: the export pipeline compares it with what its
#: collector has accepted to tell whether a flush at exit has anything to send
_mirror_generation = 0


def mirror_generation() -> int:
    return _mirror_generation


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

    #: past the budget, a folded label set that is new too becomes all-``other`` (a counter);
    #: a gauge keeps its folded series, one per value of its closed labels (``SetGauge``)
    collapse: ClassVar[bool] = True

    def __init__(
        self,
        metric: Counter | Gauge,
        name: str,
        budget: int,
        fold: Callable[[tuple[str, ...]], tuple[str, ...]],
    ) -> None:
        self._metric = metric
        self.name = name
        self._budget = budget
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

    def incrementer(self, labels: tuple[str, ...]) -> Callable[[], None]:
        """``inc(labels)`` prepared: the series and its mirror resolved once (the recorder
        replays it for every failed attempt of the same kind)."""
        value = (self._children.get(labels) or self._child(labels))._value
        mirror = self._mirror
        if mirror is None:
            return functools.partial(value.inc, 1.0)
        attributes = dict(zip(self._label_names, labels, strict=True))

        def inc() -> None:
            global _mirror_generation
            value.inc(1.0)
            mirror.add(1.0, attributes)
            _mirror_generation += 1

        return inc

    def _child(self, labels: tuple[str, ...]) -> Any:
        return self._series(labels)[1]

    def _series(self, labels: tuple[str, ...]) -> tuple[tuple[str, ...], Any]:
        """The series of ``labels`` (created; folded when the budget is spent), and the labels
        it has."""
        with self._lock:
            child = self._children.get(labels)
            if child is not None:
                return labels, child
            if len(self._children) >= self._budget:
                labels = self._fold(labels)
                child = self._children.get(labels)
                if child is not None:
                    return labels, child
                if self.collapse:
                    labels = tuple(n.OTHER for _ in labels)
                    child = self._children.get(labels)
                    if child is not None:
                        return labels, child
            child = self._metric.labels(*labels) if labels else self._metric
            self._children[labels] = child
            return labels, child

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


def fold_positions(*positions: int) -> Callable[[tuple[str, ...]], tuple[str, ...]]:
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


class PreparedSet:
    """One :class:`SetGauge` series prepared for a hot path (``quota_headers``).

    ``set(value)`` sets it, and its OTel mirror. ``held``, when not ``None``, holds in its
    ``_value`` what this process last set on the series, and setting that same value again may
    be skipped: nothing anyone reads would change. That is so without an OTel mirror (a gauge's
    export interval without a measurement can have no point), in a single process (nothing
    merges), and across processes merged by ``max`` (this process's file keeps its value). Not
    for ``mostrecent`` across processes: the skipped set would leave this process's timestamp
    old, so another process's older reading could win the merge (``held`` is ``None``).
    """

    __slots__ = ("held", "set")

    def __init__(self, setter: Callable[[float], None], held: Any) -> None:
        self.set = setter
        self.held = held


class SetGauge(Family):
    """A labelled gauge set to a value (a quota's limit or use), combined across processes by
    ``max`` or ``mostrecent``, never summed; its series cached under a budget as a
    :class:`Family`'s (``_metric`` is a ``Gauge``, ``_mirror`` an OTel Gauge)."""

    __slots__ = ()
    # a quota's dimension is never merged with another's: values of different quotas
    collapse = False

    def set(self, value: float, labels: tuple[str, ...]) -> None:
        child = self._children.get(labels)
        if child is None:
            labels, child = self._series(labels)
        child.set(value)
        mirror = self._mirror
        if mirror is not None:
            global _mirror_generation
            mirror.set(value, dict(zip(self._label_names, labels, strict=True)))
            _mirror_generation += 1

    def prepare(self, labels: tuple[str, ...]) -> PreparedSet:
        """``set(value, labels)`` for one series, resolved once (creates the series: call it
        when there is a value to set). Valid until :meth:`Metrics.clear` or
        :meth:`Metrics.mirror_to` (``Metrics.generation`` changes)."""
        labels, child = self._series(labels)
        value = child._value
        mirror = self._mirror
        multiprocess = bool(getattr(value, "_multiprocess", True))
        most_recent = bool(getattr(child, "_is_most_recent", True))
        if mirror is not None:
            attributes = dict(zip(self._label_names, labels, strict=True))
            child_set = child.set

            def set_mirrored(number: float) -> None:
                global _mirror_generation
                child_set(number)
                mirror.set(number, attributes)
                _mirror_generation += 1

            return PreparedSet(set_mirrored, None)
        if multiprocess and most_recent:
            value_set, now = value.set, time.time

            def set_most_recent(number: float) -> None:
                value_set(number, now())

            # a skipped set would leave this process's timestamp old: another process's older
            # reading could then win the mostrecent merge
            return PreparedSet(set_most_recent, None)
        # a single process (nothing merges), or max across processes (the file keeps it)
        return PreparedSet(value.set, value if hasattr(value, "_value") else None)

    def value(self, labels: tuple[str, ...]) -> float | None:
        child = self._children.get(labels)
        return None if child is None else float(child._value.get())


def count_internal_error(where: n.Where) -> None:
    """Count a contained failure of otel-agents itself in
    ``otel_agents_internal_errors_total{where}``, from anywhere. Never raises."""
    with contextlib.suppress(Exception):
        get_metrics().internal_errors.inc((where,))


class Metrics:
    """Every metric of :data:`otel_agents.names.METRICS`, by its key (``attempt_failures``...).

    The attributes below are the recorder's handles; ``tests/test_names.py`` checks that they
    are exactly the table's keys, so a metric is added in the table alone.
    """

    attempt_failures: Family
    quota_errors: Family
    terminal_errors: Family
    masked_failures: Family
    requests: Family
    internal_errors: Family
    unhandled_task_errors: Family
    sessions_started: Family
    sessions_closed: Family
    silent_sessions: Family
    user_turns: Family
    dead_turns: Family
    unheard_speech: Family
    fallback_switches: Family
    fallback_exhausted: Family
    sessions_active: LiveGauge
    unanswered_turns: LiveGauge
    quota_limit: SetGauge
    quota_used: SetGauge
    retry_wait: Histo
    time_to_first_speech: Histo
    response_latency: Histo
    session_duration: Histo

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.by_name: dict[str, Family | LiveGauge | SetGauge | Histo] = {}
        #: changes whenever series or mirrors are replaced (``clear``, ``mirror_to``): what was
        #: prepared from them (``SetGauge.prepare``) is then stale
        self.generation = 0
        #: the recorder's prepared increments, by kind of failed attempt (cleared with the
        #: series they point at, and when the OTel mirror changes)
        self.prepared: dict[tuple[Any, ...], tuple[Callable[[], None], ...]] = {}
        for spec in n.METRICS:
            built = build.build(spec, registry)
            self.by_name[spec.name] = built
            setattr(self, spec.key, built)
        build.create_zero_series(self)

    @property
    def families(self) -> tuple[Family, ...]:
        """The counters (a :class:`SetGauge` is a Family, but a gauge)."""
        return tuple(m for m in self.by_name.values() if type(m) is Family)

    @property
    def histograms(self) -> tuple[Histo, ...]:
        return tuple(m for m in self.by_name.values() if isinstance(m, Histo))

    @property
    def gauges(self) -> tuple[LiveGauge, ...]:
        return tuple(m for m in self.by_name.values() if isinstance(m, LiveGauge))

    def clear(self) -> None:
        self.generation += 1
        self.prepared.clear()
        for metric in self.by_name.values():
            metric.clear()
        build.create_zero_series(self)

    def mirror_to(self, meter: Any) -> None:
        """Also send every measurement to OTel instruments from ``meter`` (``None``: stop)."""
        self.generation += 1
        self.prepared.clear()
        for spec in n.METRICS:
            metric = self.by_name[spec.name]
            metric._mirror = None if meter is None else _Deferred(metric, meter, spec)
        build.create_zero_series(self)


def _instrument(metric: Family | LiveGauge | Histo, meter: Any, spec: n.Metric) -> Any:
    """The OTel instrument mirroring ``metric``."""
    if spec.kind == "counter":
        return meter.create_counter(spec.otlp_name, description=spec.help)
    if isinstance(metric, SetGauge):
        return meter.create_gauge(spec.otlp_name, description=spec.help)
    if spec.kind == "histogram":
        return meter.create_histogram(
            spec.otlp_name,
            unit=spec.unit,
            description=spec.help,
            explicit_bucket_boundaries_advisory=list(spec.buckets),
        )
    return meter.create_up_down_counter(spec.otlp_name, description=spec.help)


_deferred_lock = threading.Lock()


class _Deferred:
    """A metric's OTel instrument, created on its first measurement: most of a job process's
    metrics are never measured, and an instrument that was never measured exports nothing.

    The first use of a method (``add``, ``record``, ``set``) creates the instrument, puts it in
    the metric's ``_mirror`` and keeps its bound method here, for the callers that hold this
    object (a prepared increment): from then on a call costs what the instrument's own does.
    """

    def __init__(self, metric: Family | LiveGauge | Histo, meter: Any, spec: n.Metric) -> None:
        self._metric = metric
        self._meter = meter
        self._spec = spec
        self._instrument: Any = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        with _deferred_lock:
            if self._instrument is None:
                self._instrument = _instrument(self._metric, self._meter, self._spec)
                if self._metric._mirror is self:
                    self._metric._mirror = self._instrument
            method = getattr(self._instrument, name)
            setattr(self, name, method)
        return method


_metrics: Metrics | None = None
_metrics_lock = threading.Lock()
#: the families built once in livekit's forkserver (:func:`prebuild`), for its job processes
_prebuilt: Metrics | None = None


def get_metrics() -> Metrics:
    """The process-wide metrics, created on first use (after the env var can have been set)."""
    global _metrics, _prebuilt
    if _metrics is None:
        with _metrics_lock:
            if _metrics is None:
                build.fix_multiprocess_value_class()
                if _prebuilt is not None:
                    build.own_values(_prebuilt)  # when it raises, the next call tries again
                    _metrics, _prebuilt = _prebuilt, None
                else:
                    _metrics = Metrics()
    return _metrics


def prebuild() -> None:
    """Build the families in livekit's forkserver, once for every job process forked from it
    (building them costs a job process more than giving them values). The forkserver writes no
    metric file: the values made here are in memory, and each process that takes these
    families gives them values of its own (:func:`build.own_values`)."""
    global _prebuilt
    with _metrics_lock:
        if _metrics is not None or _prebuilt is not None:
            return
        value_class = values.ValueClass
        values.ValueClass = build.Prebuilding
        try:
            _prebuilt = Metrics()
        finally:
            values.ValueClass = value_class
        # where prometheus_client's multiprocess values read their keys: the remembered ones
        values.mmap_key = build.mmap_key  # type: ignore[attr-defined]
