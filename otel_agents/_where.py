"""Where ``init()``'s records go: the ``/metrics`` server it may start, and the one line that
names every destination (a WARNING when there is none).

The ``otel_agents`` logger has no handler of its own: a WARNING reaches the host's logging, or,
before any logging is configured (an agent module's top), stderr through Python's last-resort
handler.
"""

from __future__ import annotations

import logging
from typing import Any

from . import _config, _runtime
from . import names as n
from ._multiproc import liveness
from ._multiproc.liveness import multiprocessing_child

logger = logging.getLogger(n.LOGGER_NAME)


def start_metrics_server(settings: _config.Settings) -> Any:
    # A job process (a forkserver child), or the forkserver itself, must not bind: the worker's
    # main process serves every process's metrics.
    if multiprocessing_child():
        return None
    from prometheus_client import REGISTRY, CollectorRegistry, start_http_server

    registry: Any = REGISTRY
    if liveness.multiproc_dir():
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    assert settings.metrics_port is not None
    try:
        return start_http_server(settings.metrics_port, settings.metrics_host, registry)
    except OSError as exc:
        # a taken port or a bad host must not take the agent down with it; a WARNING reaches
        # the host's logging, or stderr when it has none (the logger has no handler of its own)
        logger.warning(
            "otel_agents: cannot serve /metrics on %s:%d: %s; no /metrics from this process",
            settings.metrics_host,
            settings.metrics_port,
            exc.strerror or exc,
        )
        return None


def _metrics_url(server: Any, host: str) -> str:
    httpd, _thread = server
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{httpd.server_port}/metrics"


def say_where_records_go(
    runtime: _runtime.Runtime, *, given_tracer: bool, given_meter: bool
) -> None:
    """One INFO line naming where the records go; a WARNING when they go nowhere at all. In a
    job process (a multiprocessing child) both are DEBUG: the worker's main process said it.
    Never raises: saying it must not cost the agent its telemetry."""
    try:
        _say(runtime, given_tracer=given_tracer, given_meter=given_meter)
    except Exception as exc:  # pragma: no cover - a bug here must not reach the host
        logger.debug("otel_agents: cannot say where records go: %r", exc)


def _say(runtime: _runtime.Runtime, *, given_tracer: bool, given_meter: bool) -> None:
    level = logging.DEBUG if multiprocessing_child() else logging.INFO
    if level == logging.DEBUG and not logger.isEnabledFor(level):
        return  # a job process's start: not worth composing a line nobody reads
    settings = runtime.settings
    parts = [f"service.name={settings.service_name!r}"]
    exported = False
    if runtime.server is not None:
        parts.append(f"metrics at {_metrics_url(runtime.server, settings.metrics_host)}")
        exported = True
    elif settings.metrics_port is not None and not multiprocessing_child():
        parts.append("metrics: no /metrics (see the warning above)")
    if settings.multiproc_dir:
        parts.append(
            f"metric files in {_config.ENV_MULTIPROC_DIR}={settings.multiproc_dir} (served by "
            "livekit's prometheus_port or otel-agents sidecar)"
        )
        exported = True
    elif runtime.server is None:
        parts.append(f"metrics: this process's registry only ({_config.ENV_METRICS_PORT} unset)")
    if runtime.owned and settings.otlp_endpoint:
        signals = "traces" + (" and metrics" if runtime.meter_provider in runtime.owned else "")
        parts.append(f"OTLP {signals} to {_config.shown_url(settings.otlp_endpoint)}")
        exported = True
    elif settings.otlp_endpoint:
        shown = _config.shown_url(settings.otlp_endpoint)
        parts.append(f"OTLP endpoint {shown} (the providers given are used)")
    if given_tracer:
        parts.append("traces to the tracer provider given")
        exported = True
    elif runtime.traced_provider is not None and runtime.tracer_provider is None:
        parts.append("traces to the global tracer provider")
        exported = True
    elif runtime.traced_provider is None:
        parts.append(f"no traces ({_config.ENV_OTLP_ENDPOINT} unset)")
    if runtime.meter_provider is not None and given_meter:
        parts.append("metrics to the meter provider given")
        exported = True
    handled = logger.hasHandlers()
    logger.log(level, "otel_agents: recording; %s", "; ".join(parts))
    if not exported and not handled:
        logger.log(
            logging.DEBUG if level == logging.DEBUG else logging.WARNING,
            "otel_agents: records go nowhere: no /metrics (%s), no %s, no OTLP endpoint (%s), "
            "no tracer or meter provider, no log handler; set one of them (see the README's "
            "init() options)",
            _config.ENV_METRICS_PORT,
            _config.ENV_MULTIPROC_DIR,
            _config.ENV_OTLP_ENDPOINT,
        )


def stop_metrics_server(server: Any) -> None:
    try:
        httpd, thread = server
        httpd.shutdown()
        httpd.server_close()
        thread.join(1.0)
    except Exception:
        pass
