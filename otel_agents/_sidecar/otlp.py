"""The sidecar's OTLP push: the merged multiprocess directory as OTLP metrics, one resource.

With ``OTEL_AGENTS_OTLP_METRICS=sidecar`` job processes push no metrics of their own (spans
still go out per process), so a worker that runs a thousand short jobs does not create a
thousand resources' worth of streams at the backend. Instead the sidecar (``otel-agents sidecar
--otlp-endpoint URL``) reaps and merges the directory (:meth:`.render.DirectorySource.families`,
the same totals ``/metrics`` serves) every ``--otlp-interval`` seconds and pushes them to
``{endpoint}/v1/metrics`` under one resource: ``service.name`` and ``service.instance.id`` (the
host name: the worker's pod), plus ``OTEL_RESOURCE_ATTRIBUTES``.

The merged Prometheus samples become cumulative OTLP data, starting when the pusher started:

* otel-agents' own metrics (:data:`otel_agents.names.METRICS`) keep the names, units and kinds
  a job process gives them (``otel_agents.attempt_failures``...): counters are monotonic sums,
  the live gauges non-monotonic sums, the labelled gauges gauges, histograms histograms;
* any other family of the directory (livekit's ``lk_agents_*``) keeps its Prometheus name:
  counters are monotonic sums, gauges gauges, histograms histograms (summaries are left out).

The exporter is the SDK's ``OTLPMetricExporter`` (protobuf over HTTP, 5 s timeout per request).
A failed push is logged (once a minute at most) and the next one sends the totals again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections import defaultdict
from typing import Any, Final

from prometheus_client.metrics_core import Metric as PromMetric

from .. import names as n
from .._config import DEFAULT_SERVICE_NAME, ENV_SERVICE_NAME
from .render import DirectorySource, source

logger = logging.getLogger("otel_agents.sidecar")

DEFAULT_INTERVAL_S: Final = 15.0
EXPORT_TIMEOUT_S: Final = 5.0
FAILURE_LOG_INTERVAL_S: Final = 60.0
SCOPE: Final = "otel_agents"

#: otel-agents' own metrics by their Prometheus family name (a counter's without ``_total``)
_SPECS: Final[dict[str, n.Metric]] = {
    (m.name.removesuffix("_total") if m.kind == "counter" else m.name): m for m in n.METRICS
}


def sidecar_resource(service_name: str | None = None) -> Any:
    """The worker as one instance: ``service.name`` (else ``OTEL_SERVICE_NAME``, else
    otel-agents' default) and ``service.instance.id`` (else the host name: in Kubernetes, the
    pod's), over what ``OTEL_RESOURCE_ATTRIBUTES`` says."""
    from opentelemetry.sdk.resources import SERVICE_INSTANCE_ID, SERVICE_NAME, Resource

    detected = Resource.create()
    name = service_name or os.environ.get(ENV_SERVICE_NAME) or DEFAULT_SERVICE_NAME
    instance = detected.attributes.get(SERVICE_INSTANCE_ID) or socket.gethostname()
    return detected.merge(Resource({SERVICE_NAME: name, SERVICE_INSTANCE_ID: str(instance)}))


def metrics_data(
    families: list[PromMetric], resource: Any, start_ns: int, now_ns: int | None = None
) -> Any:
    """The merged families as one OTLP ``MetricsData`` (cumulative since ``start_ns``)."""
    from opentelemetry.sdk.metrics.export import MetricsData, ResourceMetrics, ScopeMetrics
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    now = time.time_ns() if now_ns is None else now_ns
    out = [m for family in families if (m := _convert(family, start_ns, now)) is not None]
    scope = ScopeMetrics(InstrumentationScope(SCOPE, _version()), out, "")
    return MetricsData([ResourceMetrics(resource, [scope], "")])


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("otel-agents")
    except Exception:
        return "0"


def _convert(family: PromMetric, start: int, now: int) -> Any:
    from opentelemetry.sdk.metrics.export import (
        AggregationTemporality,
        Gauge,
        Metric,
        NumberDataPoint,
        Sum,
    )

    cumulative = AggregationTemporality.CUMULATIVE
    spec = _SPECS.get(family.name)
    name = spec.otlp_name if spec is not None else family.name
    description = spec.help if spec is not None else family.documentation
    unit = (spec.unit or "") if spec is not None else ""
    if family.type == "histogram":
        histogram = _histogram(family, start, now)
        return None if histogram is None else Metric(name, description, unit, histogram)
    if family.type not in ("counter", "gauge"):
        return None  # summaries, untyped: nothing of ours
    points = []
    for sample in family.samples:
        if family.type == "counter" and not sample.name.endswith("_total"):
            continue  # _created: not in multiprocess files, but never a value
        points.append(NumberDataPoint(dict(sample.labels), start, now, float(sample.value)))
    if not points:
        return None
    if family.type == "counter":
        return Metric(name, description, unit, Sum(points, cumulative, True))
    if spec is not None and not spec.labels:
        # a live gauge: an up-down counter in a job process's own push
        return Metric(name, description, unit, Sum(points, cumulative, False))
    return Metric(name, description, unit, Gauge(points))


def _histogram(family: PromMetric, start: int, now: int) -> Any:
    from opentelemetry.sdk.metrics.export import (
        AggregationTemporality,
        Histogram,
        HistogramDataPoint,
    )

    Labels = tuple[tuple[str, str], ...]
    buckets: defaultdict[Labels, dict[float, float]] = defaultdict(dict)
    sums: dict[Labels, float] = {}
    counts: dict[Labels, float] = {}
    for sample in family.samples:
        labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le"))
        if sample.name.endswith("_bucket"):
            buckets[labels][float(sample.labels["le"])] = sample.value
        elif sample.name.endswith("_sum"):
            sums[labels] = sample.value
        elif sample.name.endswith("_count"):
            counts[labels] = sample.value
    points = []
    for labels, by_bound in buckets.items():
        bounds = sorted(by_bound)
        cumulative = [by_bound[b] for b in bounds]
        if bounds and bounds[-1] == float("inf"):
            bounds = bounds[:-1]
        else:
            cumulative.append(counts.get(labels, cumulative[-1] if cumulative else 0.0))
        per_bucket = [int(c - (cumulative[i - 1] if i else 0.0)) for i, c in enumerate(cumulative)]
        points.append(
            HistogramDataPoint(
                attributes=dict(labels),
                start_time_unix_nano=start,
                time_unix_nano=now,
                count=int(counts.get(labels, cumulative[-1])),
                sum=sums.get(labels, 0.0),
                bucket_counts=per_bucket,
                explicit_bounds=bounds,
                min=None,  # type: ignore[arg-type]  # Prometheus keeps no min or max
                max=None,  # type: ignore[arg-type]
            )
        )
    if not points:
        return None
    return Histogram(points, AggregationTemporality.CUMULATIVE)


class OtlpPusher:
    """Pushes the merged directory to ``{endpoint}/v1/metrics``: every ``interval`` seconds on
    a daemon thread once :meth:`start`-ed, on :meth:`push`, and a last time on :meth:`close`."""

    def __init__(
        self,
        directory: str,
        endpoint: str,
        *,
        interval: float = DEFAULT_INTERVAL_S,
        service_name: str | None = None,
        directory_source: DirectorySource | None = None,
    ) -> None:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        self.endpoint = endpoint.rstrip("/")
        self.interval = interval
        self.resource = sidecar_resource(service_name)
        self.start_ns = time.time_ns()
        self.pushes = 0  # pushes the collector accepted (tests)
        self.failures = 0
        self._source = directory_source or source(directory)
        self._exporter = OTLPMetricExporter(
            endpoint=f"{self.endpoint}/v1/metrics", timeout=EXPORT_TIMEOUT_S
        )
        self._lock = threading.Lock()  # one push at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failure_logged_at = -FAILURE_LOG_INTERVAL_S

    def push(self) -> bool:
        """Reap, merge and push once. Whether the collector accepted it. Never raises."""
        from opentelemetry.sdk.metrics.export import MetricExportResult

        with self._lock:
            try:
                data = metrics_data(self._source.families(), self.resource, self.start_ns)
                result = self._exporter.export(data, timeout_millis=EXPORT_TIMEOUT_S * 1000)
                ok = result is MetricExportResult.SUCCESS
                reason = "the collector refused it or could not be reached"
            except Exception as exc:
                ok, reason = False, type(exc).__name__
            if ok:
                self.pushes += 1
                return True
            self.failures += 1
            now = time.monotonic()
            if now - self._failure_logged_at >= FAILURE_LOG_INTERVAL_S:
                self._failure_logged_at = now
                logger.warning("otel-agents sidecar: OTLP metrics push failed: %s", reason)
            return False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="otel-agents-otlp", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.push()

    def close(self) -> None:
        """Stop the periodic push, push the final totals, shut the exporter down."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(EXPORT_TIMEOUT_S * 2)
        self.push()
        with contextlib.suppress(Exception):
            self._exporter.shutdown()
