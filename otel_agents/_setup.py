"""``init()`` and ``shutdown()``: the one-call setup of DESIGN.md section 3."""

from __future__ import annotations

import contextlib
import functools
import logging
import multiprocessing
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from . import _config, _multiproc, _process_files
from . import names as n
from ._capture import attempts as _hooks
from ._capture import sessions as _session
from ._export import pipeline as _pipeline
from ._export import span_redaction as _span_redaction
from ._export.metrics import get_metrics
from ._export.recorder import Recorder

logger = logging.getLogger(n.LOGGER_NAME)


@dataclass
class _State:
    settings: _config.Settings
    tracer_provider: TracerProvider | None
    meter_provider: MeterProvider | None
    owned: list[Any] = field(default_factory=list)  # providers we created and must shut down
    server: Any = None
    #: the tracer provider our spans go to (given, built, or the host's global one)
    flushed_provider: Any = None


_state: _State | None = None
_lock = threading.Lock()


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
        metrics_port: serve Prometheus ``/metrics`` on this port (main process only); else
            ``OTEL_AGENTS_METRICS_PORT``; unset, no server is started (livekit's own
            ``prometheus_port`` or the ``otel-agents sidecar`` serve the metrics).
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

    A second call warns and does nothing. ``OTEL_SDK_DISABLED=true`` makes it a no-op. It never
    raises because a backend is unreachable; it raises ``ValueError`` for invalid settings.
    """
    global _state
    with _lock:
        if _state is not None:
            warnings.warn(
                "otel_agents.init() was already called; this call does nothing",
                RuntimeWarning,
                stacklevel=2,
            )
            return
        if _config.sdk_disabled():
            logger.info("otel_agents disabled by %s", _config.ENV_SDK_DISABLED)
            return
        settings = _config.resolve(
            service_name=service_name,
            otlp_endpoint=otlp_endpoint,
            metrics_port=metrics_port,
            metrics_host=metrics_host,
            silence_timeout=silence_timeout,
            capture_messages=capture_messages,
            exit_flush_timeout=exit_flush_timeout,
        )
        state = _State(settings, tracer_provider, meter_provider)
        # livekit's worker creates the directory only later, and a metric cannot be created in
        # a missing one
        _process_files.ensure_directory()
        # hold this process's liveness lock, so the sidecar can tell when it has died
        _multiproc.register_process()
        metrics = get_metrics()
        if settings.otlp_endpoint and None in (state.tracer_provider, state.meter_provider):
            resource = _pipeline.resource(settings.service_name)
            if state.tracer_provider is None:
                state.tracer_provider = _pipeline.otlp_tracer_provider(
                    settings.otlp_endpoint, resource
                )
                state.owned.append(state.tracer_provider)
            if state.meter_provider is None:
                state.meter_provider = _pipeline.otlp_meter_provider(
                    settings.otlp_endpoint, resource
                )
                state.owned.append(state.meter_provider)

        tracer = None
        provider = state.tracer_provider
        if provider is None and not isinstance(
            trace.get_tracer_provider(), trace.ProxyTracerProvider | trace.NoOpTracerProvider
        ):
            provider = trace.get_tracer_provider()  # the host configured a global SDK provider
        if provider is not None:
            state.flushed_provider = provider
            tracer = provider.get_tracer("otel_agents", _version())
            if state.tracer_provider is not None:
                from livekit.agents.telemetry import set_tracer_provider

                # livekit records raw exception messages on its spans: clean them before any
                # exporter of the provider we hand it sees them
                _span_redaction.install(
                    state.tracer_provider, capture_messages=settings.capture_messages
                )
                # livekit captured the global provider at import: hand it ours explicitly
                set_tracer_provider(state.tracer_provider)
        if state.meter_provider is not None:
            metrics.mirror_to(state.meter_provider.get_meter("otel_agents", _version()))

        _hooks.instrument(
            Recorder(metrics, tracer, settings.capture_messages), settings.silence_timeout
        )
        _register_exit_hooks()
        if settings.metrics_port is not None:
            state.server = _start_metrics_server(settings)
        _state = state


def shutdown(timeout: float = 2.0) -> None:
    """Flush and stop. Returns within ``timeout`` seconds even when the collector is down.

    Providers passed to ``init()`` are flushed but left running (they belong to the caller);
    the ones ``init()`` created are shut down. ``init()`` may be called again afterwards.
    """
    global _state
    timeout = _config.parse_seconds("timeout", timeout, allow_zero=True)
    deadline = time.monotonic() + timeout
    with _lock:
        state, _state = _state, None
        if state is None:
            return
        _session.finalize_all("other")
        _hooks.uninstrument()
        get_metrics().mirror_to(None)
        if state.tracer_provider is not None:
            _give_livekit_back_the_global_tracer()
        if state.server is not None:
            _stop_metrics_server(state.server)
    # the providers init() built are shut down, which flushes them; the others only flushed
    if not _pipeline.flush(
        [p for p in (state.flushed_provider, state.meter_provider) if p not in state.owned],
        deadline=deadline,
        close=state.owned,
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
    import os
    from multiprocessing import util

    atexit.register(_at_exit)
    # livekit's job processes are multiprocessing children: they leave through os._exit,
    # which skips atexit but runs multiprocessing's own finalizers. A child (fork, forkserver,
    # spawn) clears that registry after importing the agent module, then runs the after-fork
    # hooks: register the finalizer again there.
    _register_finalizer()
    util.register_after_fork(_EXIT_HOOKS, _in_forked_child)
    # a bare os.fork() child too: its atexit must not close the parent's sessions
    os.register_at_fork(after_in_child=_session.forget_inherited)
    # a forked child has a new pid and no lock: register its own liveness lock
    os.register_at_fork(after_in_child=_multiproc.after_fork_in_child)


class _ExitHooksOwner:
    """A weakref-able owner for multiprocessing's after-fork registry."""


_EXIT_HOOKS = _ExitHooksOwner()


def _in_forked_child(_: object) -> None:
    # the parent's open sessions are not this process's to close
    _session.forget_inherited()
    _register_finalizer()
    _multiproc.register_process()


def _register_finalizer(_: object = None) -> None:
    from multiprocessing import util

    util.Finalize(None, _at_exit, exitpriority=10)


def _at_exit() -> None:
    """Close the books of open sessions, then flush every record of this process, within
    ``exit_flush_timeout``: a job process ends through ``os._exit`` right after this."""
    import os

    if getattr(_at_exit, "done_in", None) == os.getpid():
        return
    _at_exit.done_in = os.getpid()  # type: ignore[attr-defined]
    with contextlib.suppress(Exception):
        _session.finalize_all("other")
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        try:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
        except Exception:
            pass
    state = _state
    if state is None:
        return
    started = time.monotonic()
    complete = _pipeline.flush(
        (state.flushed_provider, state.meter_provider),
        deadline=started + state.settings.exit_flush_timeout,
        logs=True,
        name="otel_agents.exit_flush",
    )
    seconds = time.monotonic() - started
    if not complete:
        logger.warning(
            "otel_agents: exit flush timed out after %.1fs; telemetry dropped",
            state.settings.exit_flush_timeout,
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


def settings() -> _config.Settings | None:
    """The settings in force, or ``None`` before ``init()``."""
    return _state.settings if _state is not None else None


def _start_metrics_server(settings: _config.Settings) -> Any:
    # Job processes (forkserver children) must not bind: the worker's main process serves
    # every process's metrics (livekit-internals.md section 3.3).
    if multiprocessing.parent_process() is not None:
        return None
    import os

    from prometheus_client import REGISTRY, CollectorRegistry, start_http_server

    registry: Any = REGISTRY
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    assert settings.metrics_port is not None
    try:
        return start_http_server(settings.metrics_port, settings.metrics_host, registry)
    except OSError as exc:
        # a taken port must not take the agent down with it
        logger.error(
            "otel_agents: cannot serve /metrics on %s:%d: %s",
            settings.metrics_host,
            settings.metrics_port,
            exc,
        )
        return None


def _stop_metrics_server(server: Any) -> None:
    try:
        httpd, thread = server
        httpd.shutdown()
        httpd.server_close()
        thread.join(1.0)
    except Exception:
        pass
