"""The export pipeline ``init()`` builds for an OTLP endpoint, and the bounded flush that runs at
``shutdown()`` and at process exit.

livekit ends its job processes through ``os._exit`` (multiprocessing's forkserver and spawn
children), which skips ``atexit``: the SDK's own exit hooks never run there, and the batch span
processor (5 s delay) and the periodic metric reader (15 s interval) rarely get a turn before a
short job ends. So otel-agents flushes at exit itself (see ``_setup``), and the providers it
builds are made with ``shutdown_on_exit=False``: the SDK's unbounded exit hook would otherwise
hold the process for a whole export timeout when the collector is a black hole.

Every flush runs on a daemon thread and is waited for until a deadline, never longer: an
exporter stuck on an unreachable collector is abandoned, and the process ends on time. A flush
with nothing to send returns at once (an empty span queue exports nothing; the metric reader
built here is skipped when no measurement was recorded since its last delivered export).
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable
from typing import Any, Final

from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from .. import names as n
from . import metrics as _metrics

logger = logging.getLogger(n.LOGGER_NAME)

#: the OTLP exporters' own per-request timeout: export runs on the SDK's worker threads, never
#: on the event loop, and a black-hole collector costs at most this per batch
EXPORT_TIMEOUT_S: Final = 5.0
SPAN_QUEUE_SIZE: Final = 2048
METRIC_EXPORT_INTERVAL_MS: Final = 15_000


def resource(service_name: str) -> Any:
    """The service, and this process as its own instance: every job process exports its own
    cumulative metrics, and two processes must never look like one stream to a backend."""
    from opentelemetry.sdk.resources import (
        PROCESS_PID,
        SERVICE_INSTANCE_ID,
        SERVICE_NAME,
        Resource,
    )

    environment = environment_resource()
    # what environment.merge(Resource(own)) makes, validated once instead of twice
    return Resource(
        {
            **environment.attributes,
            SERVICE_NAME: service_name,
            SERVICE_INSTANCE_ID: uuid.uuid4().hex,
            PROCESS_PID: os.getpid(),
        },
        environment.schema_url,
    )


@functools.cache
def environment_resource() -> Any:
    """What ``Resource.create()`` reads from the environment (``OTEL_RESOURCE_ATTRIBUTES``, the
    SDK's attributes, resource detectors). It runs its detectors on a thread pool: once per
    process image, in livekit's forkserver (where the environment is the job processes')."""
    from opentelemetry.sdk.resources import Resource

    return Resource.create()


def otlp_tracer_provider(endpoint: str, resource: Any) -> TracerProvider:
    """An SDK provider exporting spans in batches to ``{endpoint}/v1/traces``."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = SdkTracerProvider(resource=resource, shutdown_on_exit=False)
    quiet_queue_full()
    exporter: Any = _BuiltOnFirstExport(  # a SpanExporter by duck typing
        functools.partial(OTLPSpanExporter, f"{endpoint}/v1/traces", timeout=EXPORT_TIMEOUT_S)
    )
    # bounded queue: with the collector down, spans are dropped rather than piling up
    provider.add_span_processor(
        BatchSpanProcessor(exporter, max_queue_size=SPAN_QUEUE_SIZE, export_timeout_millis=5000)
    )
    return provider


class _BuiltOnFirstExport:
    """An exporter built by its processor's or reader's thread, on its first export.

    Building an OTLP exporter (its HTTP session) costs about a millisecond of CPU in a freshly
    forked job process, mostly in pages copied on first touch: it is paid off the job's start,
    on the export thread (``bench/job_start.py`` measures the start). ``attributes`` are what
    the SDK reads from an exporter when it is handed one (a metric reader's preferences).
    """

    def __init__(self, build: Callable[[], Any], **attributes: Any) -> None:
        self._build = build
        self._exporter: Any = None
        self._lock = threading.Lock()
        self.__dict__.update(attributes)

    def _get(self) -> Any:
        if self._exporter is None:
            with self._lock:
                if self._exporter is None:
                    self._exporter = self._build()
        return self._exporter

    def export(self, batch: Any, *args: Any, **kwargs: Any) -> Any:
        return self._get().export(batch, *args, **kwargs)

    def force_flush(self, *args: Any, **kwargs: Any) -> bool:
        exporter = self._exporter
        return True if exporter is None else bool(exporter.force_flush(*args, **kwargs))

    def shutdown(self, *args: Any, **kwargs: Any) -> None:
        exporter = self._exporter
        if exporter is not None:
            exporter.shutdown(*args, **kwargs)

    @property
    def delivered(self) -> int:
        """See :func:`_exporter_class` (nothing delivered before the first export)."""
        exporter = self._exporter
        return 0 if exporter is None else int(exporter.delivered)


@functools.cache
def metric_preferences() -> dict[str, Any]:
    """The temporality and aggregation an OTLP metric exporter reads from the environment,
    which a metric reader takes from its exporter when built: read once per process image (in
    livekit's forkserver, for every job process), from an exporter that never exports."""
    exporter = _exporter_class()(endpoint="http://127.0.0.1/v1/metrics")
    preferences = {
        "_preferred_temporality": exporter._preferred_temporality,
        "_preferred_aggregation": exporter._preferred_aggregation,
    }
    exporter.shutdown()
    return preferences


def otlp_meter_provider(endpoint: str, resource: Any) -> MeterProvider:
    """An SDK meter provider exporting to ``{endpoint}/v1/metrics`` every 15 s and at flush."""
    from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    exporter: Any = _BuiltOnFirstExport(  # a MetricExporter by duck typing
        functools.partial(_exporter_class(), f"{endpoint}/v1/metrics", timeout=EXPORT_TIMEOUT_S),
        **metric_preferences(),
    )
    reader = PeriodicExportingMetricReader(
        exporter, export_interval_millis=METRIC_EXPORT_INTERVAL_MS, export_timeout_millis=5_000
    )
    provider = SdkMeterProvider(resource=resource, metric_readers=[reader], shutdown_on_exit=False)
    _exporters[provider] = exporter
    return provider


#: the metric exporter of each meter provider built here
_exporters: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_exporter_classes: list[type] = []


def _exporter_class() -> type:
    """``OTLPMetricExporter`` that remembers how many measurements its collector has accepted.

    The count is read when an export starts, just after the reader's collection: a measurement
    made in the microseconds between the two may be taken as delivered.
    """
    if not _exporter_classes:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics.export import MetricExportResult

        class DeliveryTrackingExporter(OTLPMetricExporter):
            delivered = 0

            def export(self, metrics_data: Any, timeout_millis: Any = None, **kw: Any) -> Any:
                generation = _metrics.mirror_generation()
                result = super().export(metrics_data, timeout_millis=timeout_millis, **kw)
                if result is MetricExportResult.SUCCESS:
                    self.delivered = max(self.delivered, generation)
                return result

        _exporter_classes.append(DeliveryTrackingExporter)
    return _exporter_classes[0]


def _nothing_pending(provider: Any) -> bool:
    """A meter provider built here whose collector has every measurement already."""
    exporter = _exporters.get(provider)
    return exporter is not None and exporter.delivered >= _metrics.mirror_generation()


class _OncePerInterval(logging.Filter):
    """Lets one "Queue full" warning through per interval: with the collector down, the SDK
    logs one for every dropped span, on the thread that ends the span (the event loop)."""

    def __init__(self, interval_s: float = 60.0) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._next = 0.0

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("Queue full"):
            return True
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + self.interval_s
        return True


def quiet_queue_full() -> None:
    sdk_logger = logging.getLogger("opentelemetry.sdk._shared_internal")
    if not any(isinstance(f, _OncePerInterval) for f in sdk_logger.filters):
        sdk_logger.addFilter(_OncePerInterval())


def _log_handlers() -> list[logging.Handler]:
    """The handlers an ``otel_agents`` record reaches: its logger's and its ancestors'."""
    handlers: list[logging.Handler] = []
    current: logging.Logger | None = logging.getLogger(n.LOGGER_NAME)
    while current is not None:
        handlers.extend(current.handlers)
        current = current.parent if current.propagate else None
    return handlers


def flush(
    providers: Iterable[Any],
    *,
    deadline: float,
    close: Iterable[Any] = (),
    logs: bool = False,
    name: str = "otel_agents.flush",
) -> bool:
    """Flush ``providers`` (and, with ``logs``, the log handlers of ``otel_agents`` records),
    then shut down ``close``, on a daemon thread; wait until ``deadline`` (``time.monotonic()``)
    at most. Returns whether everything finished in time. Never raises."""
    work: list[tuple[str, Callable[[float], object]]] = []
    for provider in providers:
        if provider is None or _nothing_pending(provider):
            continue
        work.append(("flush", _flush_provider(provider)))
    if logs:
        for handler in _log_handlers():
            work.append(("flush log handler", _call(handler.flush)))
    for provider in close:
        work.append(("shut down", _call(provider.shutdown)))
    if not work:
        return True

    def run() -> None:
        for what, step in work:
            remaining_ms = max(0, int((deadline - time.monotonic()) * 1000))
            try:
                step(remaining_ms)
            except Exception as exc:
                logger.debug("otel_agents: %s failed: %r", what, exc)

    worker = threading.Thread(target=run, name=name, daemon=True)
    try:
        worker.start()
    except RuntimeError:  # no new threads at interpreter shutdown (3.12+): flush here
        run()
        return True
    worker.join(max(0.0, deadline - time.monotonic()))
    return not worker.is_alive()


def _flush_provider(provider: Any) -> Callable[[float], object]:
    return lambda remaining_ms: provider.force_flush(timeout_millis=remaining_ms)


def _call(method: Callable[[], object]) -> Callable[[float], object]:
    return lambda _remaining_ms: method()
