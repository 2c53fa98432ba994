"""``init()`` and ``shutdown()``: the one-call setup, and what every process does at its exit."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import time
import warnings
from typing import Any

from opentelemetry import trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from . import _config, _runtime, _where
from . import names as n
from ._capture import instrument as _instrument
from ._capture import sessions as _sessions
from ._export import pipeline as _pipeline
from ._export import span_redaction as _span_redaction
from ._export.metrics import get_metrics
from ._export.recorder import Recorder
from ._multiproc import liveness, process_files

logger = logging.getLogger(n.LOGGER_NAME)

# reentrant: init() holds it while the instrumentor calls _start()
_lock = threading.RLock()


@functools.cache
def _version() -> str:
    # reads the installed metadata (a few ms): once per process, in livekit's forkserver
    try:
        from importlib.metadata import version

        return version("otel-agents")
    except Exception:
        return "0"


def init(
    *,
    service_name: str | None = None,
    otlp_endpoint: str | None = None,
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
    silence_timeout: float | None = None,
    capture_messages: bool | None = None,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    exit_flush_timeout: float | None = None,
) -> None:
    """Start recording every failed provider attempt of LiveKit Agents.

    Call it once, at the top of the agent module, before models and sessions are built (livekit
    re-imports that module in every job process, so each process runs it).

    Args:
        service_name: ``service.name`` of the traces; else ``OTEL_SERVICE_NAME``, else
            ``"livekit-agent"``.
        otlp_endpoint: OTLP/HTTP base URL (``http://collector:4318``); else
            ``OTEL_EXPORTER_OTLP_ENDPOINT``. When set, traces (batched) and metrics go there.
        metrics_port: serve Prometheus ``/metrics`` on this port (main process only; ``0``:
            any free port); else ``OTEL_AGENTS_METRICS_PORT``; unset, no server is started
            (livekit's own ``prometheus_port`` or the ``otel-agents sidecar`` serve the
            metrics). A taken port or a host that does not resolve is a WARNING, not an error.
        metrics_host: the address that server binds; loopback unless asked.
        silence_timeout: seconds a user turn may wait before it counts as unanswered; else
            ``OTEL_AGENTS_SILENCE_TIMEOUT``, else 8.
        capture_messages: put redacted, truncated error messages on spans and logs; else
            ``OTEL_AGENTS_CAPTURE_MESSAGES``, else true.
        tracer_provider: send spans (ours and livekit's) to this provider instead.
        meter_provider: also send the metrics, as OTel metrics, to this provider. Never set as
            the global provider: livekit owns that one.
        exit_flush_timeout: the most a process's exit may wait for its spans, OTLP metrics and
            log records to be flushed (livekit's job processes end through ``os._exit``, which
            skips the SDK's own exit hooks); else ``OTEL_AGENTS_EXIT_FLUSH_TIMEOUT``, else 2.
            A process with nothing pending exits without waiting.

    It is :class:`otel_agents.LiveKitAgentsInstrumentor` (the zero-code path of
    ``opentelemetry-instrument``), with the precedence above; an empty variable counts as
    unset. A second call warns and does nothing. ``OTEL_SDK_DISABLED=true`` makes it a no-op.
    It logs one INFO line naming where its records go (and a WARNING when they go nowhere). It
    never raises because a backend is unreachable; it raises ``ValueError`` naming the
    argument or variable for an invalid setting, an unwritable ``PROMETHEUS_MULTIPROC_DIR``
    included.
    """
    from ._instrumentor import LiveKitAgentsInstrumentor

    with _lock:
        if _runtime.current is not None:
            warnings.warn(
                "otel_agents.init() was already called; this call does nothing",
                RuntimeWarning,
                stacklevel=2,
            )
            return
        if _config.sdk_disabled():
            logger.info("otel_agents disabled by %s", _config.ENV_SDK_DISABLED)
            return
        instrumentor = LiveKitAgentsInstrumentor()
        if instrumentor.is_instrumented_by_opentelemetry:
            # instrumented while OTEL_SDK_DISABLED was set: nothing was started
            instrumentor.uninstrument()
        # the instrumentor's path, with init()'s precedence: explicit providers, else an OTLP
        # endpoint's own pipeline, else the host's global tracer provider for our spans only
        instrumentor.instrument(
            skip_dep_check=True,
            use_global_providers=False,
            service_name=service_name,
            otlp_endpoint=otlp_endpoint,
            metrics_port=metrics_port,
            metrics_host=metrics_host,
            silence_timeout=silence_timeout,
            capture_messages=capture_messages,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            exit_flush_timeout=exit_flush_timeout,
        )


def _start(
    settings: _config.Settings,
    *,
    tracer_provider: TracerProvider | None,
    meter_provider: MeterProvider | None,
) -> None:
    """What ``init()`` and ``LiveKitAgentsInstrumentor().instrument()`` start, once settings are
    resolved and validated."""
    with _lock:
        if _runtime.current is not None:
            logger.warning("otel_agents: already instrumented; this call does nothing")
            return
        # livekit's worker creates the directory only later, and a metric cannot be created in
        # a missing one
        process_files.ensure_directory()
        # hold this process's liveness lock, so the sidecar can tell when it has died
        liveness.register_process()
        metrics = get_metrics()
        owned: list[Any] = []
        given_tracer = tracer_provider is not None
        if settings.otlp_endpoint and None in (tracer_provider, meter_provider):
            resource = _pipeline.resource(settings.service_name)
            if tracer_provider is None:
                tracer_provider = _pipeline.otlp_tracer_provider(settings.otlp_endpoint, resource)
                owned.append(tracer_provider)
            if meter_provider is None and settings.otlp_metrics == "process":
                meter_provider = _pipeline.otlp_meter_provider(settings.otlp_endpoint, resource)
                owned.append(meter_provider)

        traced_provider: Any = tracer_provider
        if traced_provider is None and not isinstance(
            trace.get_tracer_provider(), trace.ProxyTracerProvider | trace.NoOpTracerProvider
        ):
            traced_provider = trace.get_tracer_provider()  # the host set a global SDK provider
        tracer = None
        if traced_provider is not None:
            tracer = traced_provider.get_tracer("otel_agents", _version())
            # livekit's spans reach the host's global provider too: clean them there as well
            _span_redaction.install(traced_provider, capture_messages=settings.capture_messages)
        if tracer_provider is not None:
            from livekit.agents.telemetry import set_tracer_provider

            # livekit records raw exception messages on its spans: clean them before any
            # exporter of the provider we hand it sees them
            _span_redaction.install(tracer_provider, capture_messages=settings.capture_messages)
            # livekit captured the global provider at import: hand it ours explicitly
            set_tracer_provider(tracer_provider)
        if meter_provider is not None:
            metrics.mirror_to(meter_provider.get_meter("otel_agents", _version()))

        runtime = _runtime.Runtime(
            settings,
            Recorder(metrics, tracer, settings.capture_messages),
            tracer_provider=tracer_provider,
            traced_provider=traced_provider,
            meter_provider=meter_provider,
            owned=owned,
        )
        _runtime.current = runtime
        _instrument.instrument()
        _register_exit_hooks()
        if settings.metrics_port is not None:
            runtime.server = _where.start_metrics_server(settings)
        _where.say_where_records_go(
            runtime, given_tracer=given_tracer, given_meter=meter_provider not in owned
        )


def shutdown(timeout: float = 2.0) -> None:
    """Flush and stop. Returns within ``timeout`` seconds even when the collector is down.

    Providers passed to ``init()`` are flushed but left running (they belong to the caller);
    the ones ``init()`` created are shut down. ``init()`` may be called again afterwards.
    """
    from ._instrumentor import LiveKitAgentsInstrumentor

    timeout = _config.parse_seconds("timeout", timeout, allow_zero=True)
    instrumentor = LiveKitAgentsInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument(timeout=timeout)
    else:
        _stop(timeout)


def _stop(timeout: float) -> None:
    """What ``shutdown()`` and ``LiveKitAgentsInstrumentor().uninstrument()`` do."""
    timeout = _config.parse_seconds("timeout", timeout, allow_zero=True)
    deadline = time.monotonic() + timeout
    with _lock:
        runtime = _runtime.current
        if runtime is None:
            return
        _sessions.finalize_all("other")
        _runtime.current = None
        _instrument.uninstrument()
        get_metrics().mirror_to(None)
        if runtime.tracer_provider is not None:
            _give_livekit_back_the_global_tracer()
        if runtime.server is not None:
            _where.stop_metrics_server(runtime.server)
    # the providers init() built are shut down, which flushes them; the others only flushed
    providers = (runtime.traced_provider, runtime.meter_provider)
    if not _pipeline.flush(
        [p for p in providers if p not in runtime.owned],
        deadline=deadline,
        close=runtime.owned,
        name="otel_agents.shutdown",
    ):
        logger.warning("otel_agents: shutdown timed out after %.1fs; telemetry dropped", timeout)


_exit_hooks_registered = False


def _register_exit_hooks() -> None:
    """At process exit (:func:`_at_exit`): close the books of sessions still open, remove this
    process's live-gauge files so that a dead job process leaves no stale count behind, and
    flush its records within ``exit_flush_timeout``."""
    global _exit_hooks_registered
    if _exit_hooks_registered:
        return
    _exit_hooks_registered = True
    import atexit
    from multiprocessing import util

    atexit.register(_at_exit)
    # livekit's job processes are multiprocessing children: they leave through os._exit,
    # which skips atexit but runs multiprocessing's own finalizers. A child (fork, forkserver,
    # spawn) clears that registry after importing the agent module, then runs the after-fork
    # hooks: register the finalizer again there.
    _register_finalizer()
    util.register_after_fork(_EXIT_HOOKS, _in_forked_child)
    # a bare os.fork() child too: its atexit must not close the parent's sessions
    os.register_at_fork(after_in_child=_sessions.forget_inherited)
    # a forked child has a new pid and no lock: register its own liveness lock
    os.register_at_fork(after_in_child=liveness.after_fork_in_child)


class _ExitHooksOwner:
    """A weakref-able owner for multiprocessing's after-fork registry."""


_EXIT_HOOKS = _ExitHooksOwner()


def _in_forked_child(_: object) -> None:
    # the parent's open sessions are not this process's to close
    _sessions.forget_inherited()
    _register_finalizer()
    liveness.register_process()


def _register_finalizer(_: object = None) -> None:
    from multiprocessing import util

    util.Finalize(None, _at_exit, exitpriority=10)


def _at_exit() -> None:
    """Close the books of open sessions, then flush every record of this process, within
    ``exit_flush_timeout``: a job process ends through ``os._exit`` right after this."""
    if getattr(_at_exit, "done_in", None) == os.getpid():
        return
    _at_exit.done_in = os.getpid()  # type: ignore[attr-defined]
    with contextlib.suppress(Exception):
        _sessions.finalize_all("other")
    if liveness.multiproc_dir():
        try:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
        except Exception:
            pass
    runtime = _runtime.current
    if runtime is None:
        return
    started = time.monotonic()
    complete = _pipeline.flush(
        (runtime.traced_provider, runtime.meter_provider),
        deadline=started + runtime.settings.exit_flush_timeout,
        logs=True,
        name="otel_agents.exit_flush",
    )
    seconds = time.monotonic() - started
    if not complete:
        logger.warning(
            "otel_agents: exit flush timed out after %.1fs; telemetry dropped",
            runtime.settings.exit_flush_timeout,
            extra={"exit_flush_seconds": seconds},
        )
    else:
        logger.debug(
            "otel_agents: exit flush took %.3fs", seconds, extra={"exit_flush_seconds": seconds}
        )


def _give_livekit_back_the_global_tracer() -> None:
    # undo init()'s hand-off: livekit must not keep exporting to a provider we shut down
    try:
        from livekit.agents.telemetry import set_tracer_provider

        set_tracer_provider(trace.get_tracer_provider())
    except Exception:
        logger.debug("otel_agents: could not restore livekit's tracer provider", exc_info=False)
