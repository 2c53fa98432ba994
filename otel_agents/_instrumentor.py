"""``LiveKitAgentsInstrumentor``: otel-agents as an OpenTelemetry instrumentor.

Zero-code: registered under the ``opentelemetry_instrumentor`` entry point, so that
``opentelemetry-instrument python agent.py start`` instruments an agent module that never imports
otel-agents. There the distro's configurator has already set the global tracer and meter
providers (``OTEL_TRACES_EXPORTER``, ``OTEL_EXPORTER_OTLP_ENDPOINT``...): otel-agents records to
those, and hands livekit the tracer provider, instead of building an OTLP pipeline of its own.

``opentelemetry-instrument`` puts its ``sitecustomize`` on ``PYTHONPATH``, which every process
livekit starts inherits: the worker's main process, the forkserver (whose job processes are forks
of it, instrumented already) and spawned job processes each run it once.

``otel_agents.init()`` is the same instrumentor, called with ``use_global_providers=False``: it
keeps its documented precedence (explicit providers, else an OTLP endpoint's own pipeline, else
the host's global tracer provider for otel-agents' spans only).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any, Final

from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)

from . import _config
from . import names as n

logger = logging.getLogger(n.LOGGER_NAME)

#: the livekit-agents range of pyproject.toml's dependencies
INSTRUMENTS: Final = ("livekit-agents >= 1.8.9, < 1.9",)

#: the keyword arguments of ``init()`` the instrumentor accepts
SETTINGS: Final = frozenset(
    {
        "service_name",
        "otlp_endpoint",
        "metrics_port",
        "metrics_host",
        "silence_timeout",
        "capture_messages",
        "exit_flush_timeout",
    }
)


class LiveKitAgentsInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Instrument LiveKit Agents: ``LiveKitAgentsInstrumentor().instrument(**kwargs)``.

    Keyword arguments: ``tracer_provider``, ``meter_provider`` and every setting of
    :func:`otel_agents.init` (``service_name``, ``otlp_endpoint``, ``metrics_port``...). Without
    explicit providers, the global SDK providers are used when they are set (as
    ``opentelemetry-instrument`` does); only when they are not, and an OTLP endpoint is
    configured, does otel-agents build its own pipeline. ``uninstrument(timeout=2.0)`` is
    :func:`otel_agents.shutdown`. ``OTEL_SDK_DISABLED=true`` makes ``instrument()`` a no-op;
    invalid settings raise ``ValueError`` (which ``opentelemetry-instrument`` logs).
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        return INSTRUMENTS

    def _instrument(self, **kwargs: Any) -> None:
        from . import _setup

        unknown = set(kwargs) - SETTINGS - {"tracer_provider", "meter_provider"}
        unknown.discard("use_global_providers")
        if unknown:  # a distro may pass arguments meant for other instrumentors
            logger.debug("otel_agents: ignoring instrument() arguments %s", sorted(unknown))
        tracer_provider = kwargs.get("tracer_provider")
        meter_provider = kwargs.get("meter_provider")
        if kwargs.get("use_global_providers", True):
            if tracer_provider is None:
                tracer_provider = _global_sdk_tracer_provider()
            if meter_provider is None:
                meter_provider = _global_sdk_meter_provider()
        settings = {k: v for k, v in kwargs.items() if k in SETTINGS}
        settings.setdefault("metrics_host", "127.0.0.1")
        if _config.sdk_disabled():
            logger.info("otel_agents disabled by %s", _config.ENV_SDK_DISABLED)
            return
        _setup._start(
            _config.resolve(**{**_NO_SETTINGS, **settings}),
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
        )

    def _uninstrument(self, **kwargs: Any) -> None:
        from . import _setup

        _setup._stop(kwargs.get("timeout", 2.0))


_NO_SETTINGS: Final[dict[str, Any]] = dict.fromkeys(SETTINGS - {"metrics_host"})


def default_settings() -> _config.Settings:
    """The settings of ``init()`` called without arguments."""
    return _config.resolve(**{**_NO_SETTINGS, "metrics_host": "127.0.0.1"})


def _global_sdk_tracer_provider() -> Any:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    provider = trace.get_tracer_provider()
    return provider if isinstance(provider, TracerProvider) else None


def _global_sdk_meter_provider() -> Any:
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider

    provider = metrics.get_meter_provider()
    return provider if isinstance(provider, MeterProvider) else None
