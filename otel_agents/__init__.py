"""otel-agents: make the silent failures of LiveKit Agents voice agents visible.

One call, at the top of the agent module, before models and sessions are built::

    import otel_agents
    otel_agents.init()

From then on every failed provider attempt (LLM, STT, TTS, realtime, adaptive interruption,
FallbackAdapter children included) is recorded with its root cause, LiveKit Inference quota
category and terminal flag, and every session with its turns, silence and close reason: as
Prometheus metrics, OpenTelemetry spans and metrics, and structured log records on the
``otel_agents`` logger.

Zero-code: ``opentelemetry-instrument python agent.py start`` does the same through
:class:`LiveKitAgentsInstrumentor` (the ``opentelemetry_instrumentor`` entry point), recording to
the providers the OpenTelemetry distro configured.

Public API: :func:`init`, :func:`shutdown`, :class:`LiveKitAgentsInstrumentor`,
:func:`configure_logging` (opt-in: the host's log records, livekit's included, as redacted JSON
lines), :mod:`otel_agents.names` (every metric, label, span, attribute and log name: the contract
dashboards and alerts depend on), and :mod:`otel_agents.testing` (a pytest plugin for an agent's
own tests). The README and ``docs/`` say the rest.
"""

from . import names
from ._instrumentor import LiveKitAgentsInstrumentor
from ._logs import configure_logging
from ._setup import init, shutdown

__all__ = ["LiveKitAgentsInstrumentor", "configure_logging", "init", "names", "shutdown"]
