"""Prometheus metrics (and, with an OTLP endpoint, the same measurements as OTel metrics).

* Created lazily, once per process, in the default registry: livekit's worker ``/metrics`` and
  the sidecar both serve them, in single-process and multiprocess mode alike.
* Every series goes through a :class:`Family`, which caches label children (the hot path is a
  dict lookup and an ``inc``) and enforces a per-metric series budget on top of the per-label
  bounds of :mod:`otel_agents._labels`, so the total stays under DESIGN.md's 500 per process
  whatever the input.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any, Final

from prometheus_client import REGISTRY, CollectorRegistry, Counter, values

from . import _names as n

#: series each family may create before new label sets fold into ``other``
SERIES_BUDGET: Final[dict[str, int]] = {
    n.ATTEMPT_FAILURES: 120,
    n.QUOTA_ERRORS: 40,
    n.TERMINAL_ERRORS: 40,
    n.MASKED_FAILURES: 40,
    n.REQUESTS: 60,
    n.INTERNAL_ERRORS: len(n.WHERE) + 1,
}


def fix_multiprocess_value_class() -> None:
    """Undo prometheus_client's import-order trap (livekit-internals.md section 3.2).

    prometheus_client picks its value class once, at import. ``import livekit.agents`` imports it
    long before livekit's worker sets ``PROMETHEUS_MULTIPROC_DIR``, so metrics created afterwards
    would stay in process memory and never reach the multiprocess scrape. Metrics read the class
    when they (and each label child) are created, so rebinding it here is enough.
    """
    if (
        "PROMETHEUS_MULTIPROC_DIR" in os.environ or "prometheus_multiproc_dir" in os.environ
    ) and values.ValueClass is values.MutexValue:
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
            mirror.add(amount, dict(zip(self._label_names, labels, strict=True)))

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
            child = self._metric.labels(*labels)
            self._children[labels] = child
            return child

    @property
    def series(self) -> int:
        return len(self._children)

    def clear(self) -> None:
        """Drop every series (tests; the process's metrics otherwise only grow)."""
        with self._lock:
            self._children.clear()
            self._metric.clear()


def otlp_name(prometheus_name: str) -> str:
    """``otel_agents_attempt_failures_total`` -> ``otel_agents.attempt_failures``."""
    rest = prometheus_name.removeprefix(n.PREFIX + "_").removesuffix("_total")
    return f"{n.PREFIX}.{rest}"


def _fold_positions(*positions: int) -> Callable[[tuple[str, ...]], tuple[str, ...]]:
    def fold(labels: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(n.OTHER if i in positions else v for i, v in enumerate(labels))

    return fold


class Metrics:
    """The failed-attempt metrics of DESIGN.md section 6 (sessions arrive with issue 3)."""

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

    @property
    def families(self) -> tuple[Family, ...]:
        return (
            self.attempt_failures,
            self.quota_errors,
            self.terminal_errors,
            self.masked_failures,
            self.requests,
            self.internal_errors,
        )

    def clear(self) -> None:
        for family in self.families:
            family.clear()

    def mirror_to(self, meter: Any) -> None:
        """Also send every increment to OTel counters from ``meter`` (or stop, with ``None``)."""
        for family in self.families:
            family._mirror = (
                None
                if meter is None
                else meter.create_counter(
                    otlp_name(family.name),
                    description=family._metric._documentation,
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
