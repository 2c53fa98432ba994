"""Imported once by livekit's forkserver (see ``_worker``): everything ``init()`` and the hooks
import or read once, so that a job process forked from it pays nothing for them. No thread
left running, no files, no sockets: the forkserver forks every job process from this state."""

import importlib

from otel_agents import _setup
from otel_agents._export import pipeline as _pipeline

#: what init() imports lazily (an OTLP endpoint's pipeline) besides otel_agents itself
MODULES = (
    "opentelemetry.exporter.otlp.proto.http.metric_exporter",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.sdk.metrics",
    "opentelemetry.sdk.metrics.export",
    "opentelemetry.sdk.resources",
    "opentelemetry.sdk.trace",
    "opentelemetry.sdk.trace.export",
    "prometheus_client.multiprocess",
)
for _name in MODULES:
    importlib.import_module(_name)

# built or read on first use: do it here, once (the resource detectors' thread pool is joined
# before Resource.create() returns: no thread is left running when the forkserver forks)
_pipeline._exporter_class()
_pipeline.environment_resource()
_setup._version()
# the SDK's get_tracer() compiles warning filters: leave them in re's cache
importlib.import_module("opentelemetry.sdk.trace").TracerProvider(
    shutdown_on_exit=False
).get_tracer("otel_agents", _setup._version())
