"""Building the Prometheus families of :data:`otel_agents.names.METRICS`, and the series each
process exports at 0 from the start.

A labelled counter series is created by its first increment, so it is born at 1 (or more), and
``increase()``/``rate()`` never see that first step: a dashboard total would show 0 for an error
that happened once. For the counters whose labels are all closed sets with few combinations
(:func:`zero_at_start`: close reasons, dead-turn causes, internal-error places...), every
process creates every label set at 0 when its metrics are built (at ``init()``, and again after
:meth:`Metrics.clear <otel_agents._export.metrics.Metrics.clear>`), and in the OTel mirror when
one is set, so plain ``increase()`` and ``rate()`` are right for them. The others (a provider, a
root cause, or hundreds of combinations of closed sets) are born on their first increment; the
dashboards and alerts count their births with ``dashboards/rules.py``'s expression.

The zero series are within each metric's series budget (a test checks it), so they never fold a
real label set into ``other``; in multiprocess mode each is one entry in the process's counter
file.
"""

from __future__ import annotations

import itertools
import math
import threading
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, mmap_dict, values

from .. import names as n
from .._multiproc import liveness

if TYPE_CHECKING:
    from .metrics import Family, Histo, LiveGauge, Metrics, SetGauge


def fix_multiprocess_value_class() -> None:
    """Undo prometheus_client's import-order trap (``docs/livekit.md``).

    prometheus_client picks its value class once, at import. ``import livekit.agents`` imports it
    long before livekit's worker sets ``PROMETHEUS_MULTIPROC_DIR``, so metrics created afterwards
    would stay in process memory and never reach the multiprocess scrape. Metrics read the class
    when they (and each label child) are created, so rebinding it here is enough.
    """
    if liveness.multiproc_dir() and values.ValueClass is values.MutexValue:
        values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]


#: a counter with at most this many label sets, all from closed sets, is exported at 0 from the
#: start; more (``silent_sessions``' 65, ``quota_errors``' 280) would cost every process, and
#: every Prometheus, series that almost never count
ZERO_LIMIT: Final = 16


def label_sets(spec: n.Metric) -> int:
    """The number of label sets of a metric whose labels are all closed (else 0)."""
    if not spec.labels or any(label.values is None for label in spec.labels):
        return 0
    return math.prod(len(label.values or ()) for label in spec.labels)


def zero_at_start(spec: n.Metric) -> bool:
    """Whether every process exports every label set of ``spec`` at 0 from the start (an
    unlabelled counter always does: its one series exists from its creation)."""
    if spec.kind != "counter":
        return False
    return not spec.labels or 0 < label_sets(spec) <= min(ZERO_LIMIT, spec.budget)


#: the counters whose every series a process exports from the start, by name
ZEROED: Final = frozenset(spec.name for spec in n.METRICS if zero_at_start(spec))


def create_zero_series(metrics: Metrics) -> None:
    """Create every label set of the :data:`ZEROED` labelled counters, at 0, in Prometheus and
    in the OTel mirror when there is one (an OTLP backend sees the first increment too).

    Not in a livekit job process with a multiprocess directory: the worker's main process has
    them at 0 in its own files, which every scrape of the directory reads with the jobs', and
    writing them again would cost every job's start about half a millisecond.
    """
    if liveness.multiproc_dir() and liveness.multiprocessing_child():
        return
    for spec in n.METRICS:
        if spec.labels and spec.name in ZEROED:
            family = metrics.by_name[spec.name]
            mirror = family._mirror
            values = [label.values or () for label in spec.labels]
            for labels in itertools.product(*values):
                family._series(labels)  # type: ignore[union-attr]
                if mirror is not None:
                    mirror.add(0.0, dict(zip(spec.label_names, labels, strict=True)))


#: prometheus_client's file key of each value made by :class:`Prebuilding`, by its arguments
_keys: dict[tuple[Any, ...], str] = {}


class Prebuilding(values.MutexValue):
    """The in-memory values of families built in livekit's forkserver (``metrics.prebuild``).
    Each remembers its key in a multiprocess file, which a job process would otherwise
    json-encode again for each of its values (:func:`mmap_key`)."""

    def __init__(
        self,
        typ: str,
        metric_name: str,
        name: str,
        labelnames: Any,
        labelvalues: Any,
        help_text: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(typ, metric_name, name, labelnames, labelvalues, help_text, **kwargs)  # type: ignore[no-untyped-call]
        key = (metric_name, name, tuple(labelnames), tuple(labelvalues), help_text)
        _keys[key] = mmap_dict.mmap_key(metric_name, name, labelnames, labelvalues, help_text)


def mmap_key(metric_name: str, name: str, labelnames: Any, labelvalues: Any, help_text: str) -> str:
    """prometheus_client's ``mmap_key``, remembered for the prebuilt families' values."""
    try:
        return _keys[metric_name, name, tuple(labelnames), tuple(labelvalues), help_text]
    except (KeyError, TypeError):
        return mmap_dict.mmap_key(metric_name, name, labelnames, labelvalues, help_text)


def own_values(metrics: Metrics) -> None:
    """Give families built in another process (livekit's forkserver: ``metrics.prebuild``) this
    process's values. In multiprocess mode the unlabelled metrics get values of this process
    made at their first use (:func:`on_first_use`), as a labelled one makes each series; in
    memory, the forkserver's values, never used, are this process's already."""
    value_class = values.ValueClass
    if getattr(value_class, "_multiprocess", False):
        values.ValueClass = on_first_use(value_class)
        try:
            for family in metrics.by_name.values():
                metric = family._metric
                if not metric._labelnames:
                    metric._metric_init()
                elif metric._metrics:  # series made in memory there (no multiprocess directory)
                    family.clear()
        finally:
            values.ValueClass = value_class
    create_zero_series(metrics)


_first_use_lock = threading.Lock()


def on_first_use(value_class: Any) -> type:
    """A value class whose values are ``value_class`` values made at their first write.

    A job process's unlabelled metrics would otherwise each write an entry at 0 in its
    multiprocess files as the process starts (two histograms alone are 36 entries, and three
    files to open), though most are never used and every one is already at 0 in the worker's
    main process's files. Made at its first write, a value costs a job process what a labelled
    series' first increment costs; from then on its methods are the real value's own. Reading
    one never written is 0 and writes nothing.
    """

    class OnFirstUse:
        _multiprocess = True

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._args, self._kwargs = args, kwargs
            self._real: Any = None

        def _made(self) -> Any:
            real = self._real
            if real is None:
                with _first_use_lock:  # two values of one entry would each write their own
                    real = self._real
                    if real is None:
                        real = value_class(*self._args, **self._kwargs)
                        # from now on a call is the real value's own, with nothing in between
                        vars(self).update(inc=real.inc, set=real.set, get=real.get)
                        self._real = real
            return real

        def inc(self, amount: float) -> None:
            self._made().inc(amount)

        def set(self, value: float, timestamp: float | None = None) -> None:
            self._made().set(value, timestamp)

        def get(self) -> float:
            real = self._real
            return 0.0 if real is None else float(real.get())

        def set_exemplar(self, exemplar: Any) -> None:
            return None  # as prometheus_client's multiprocess values: no exemplars

        def get_exemplar(self) -> None:
            return None

    return OnFirstUse


def build(spec: n.Metric, registry: CollectorRegistry) -> Family | LiveGauge | SetGauge | Histo:
    """The Prometheus metric of ``spec`` in ``registry``, wrapped in its handle."""
    from .metrics import Family, Histo, LiveGauge, SetGauge, fold_positions

    if spec.kind == "counter":
        # prometheus_client appends _total itself
        counter = Counter(
            spec.name.removesuffix("_total"), spec.help, spec.label_names, registry=registry
        )
        positions = tuple(spec.label_names.index(label) for label in spec.fold)
        return Family(counter, spec.name, spec.budget, fold_positions(*positions))
    if spec.kind == "gauge" and spec.labels:
        labelled = Gauge(
            spec.name,
            spec.help,
            spec.label_names,
            registry=registry,
            multiprocess_mode=spec.multiprocess_mode,
        )
        positions = tuple(spec.label_names.index(label) for label in spec.fold)
        return SetGauge(labelled, spec.name, spec.budget, fold_positions(*positions))
    if spec.kind == "gauge":
        # summed over live processes: a dead job process's file goes with mark_process_dead
        gauge = Gauge(spec.name, spec.help, registry=registry, multiprocess_mode="livesum")
        return LiveGauge(gauge, spec.name)
    histogram = Histogram(
        spec.name, spec.help, spec.label_names, registry=registry, buckets=spec.buckets
    )
    return Histo(histogram, spec.name)
