"""Imported once by livekit's forkserver (see ``_capture.worker``): everything ``init()`` and the
hooks import, read or patch once, so that a job process forked from it pays nothing for them.
No thread left running, no files, no sockets: the forkserver forks every job process from this
state.

A job process then only builds what is its own (its liveness lock, metric values and export
pipeline; its settings too when its arguments or variables differ from the defaults resolved
here); ``bench/job_start.py`` measures what it pays. The forkserver exists only for a
worker whose main process called ``init()`` (that call registers this module), so the patches
below are what every job process would install anyway; until a job process's own ``init()``
sets the runtime, every hook does nothing.
"""

import contextlib
import importlib

from otel_agents import _instrumentor, _setup
from otel_agents._capture import instrument as _instrument
from otel_agents._export import metrics as _metrics
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
_pipeline.metric_preferences()
# a logger made in a job process clears the cache of every logger livekit and the SDK made
# (hundreds of objects, and the pages they sit on copied): make the SDK's here
_pipeline.quiet_queue_full()
_pipeline.environment_resource()
_setup._version()
# the SDK's get_tracer() compiles warning filters: leave them in re's cache
importlib.import_module("opentelemetry.sdk.trace").TracerProvider(
    shutdown_on_exit=False
).get_tracer("otel_agents", _setup._version())

# livekit's classes wrapped once here, not in every job process (instrument() is idempotent:
# the job process's init() finds them wrapped); the wraps write to class dicts, and a write in
# a forked child copies the page it touches
_instrument.instrument()
# what every instrumentor's instrument() reads from the environment first
with contextlib.suppress(Exception):
    importlib.import_module(
        "opentelemetry.instrumentation._semconv"
    )._OpenTelemetrySemanticConventionStability._initialize()
# the exit hooks too: forked children inherit atexit and at-fork registrations, and
# multiprocessing's after-fork hook registers each child's own exit finalizer and liveness lock
_setup._register_exit_hooks()
# the Prometheus families, with in-memory values: each job process gives them its own
_metrics.prebuild()
# the settings of init() without arguments, for a job process that reads the same variables
# (an invalid one is for the job process's init() to report)
with contextlib.suppress(Exception):
    _instrumentor.default_settings()
