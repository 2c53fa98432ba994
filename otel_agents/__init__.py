"""otel-agents: make the silent failures of LiveKit Agents voice agents visible.

One call, at the top of the agent module, before models and sessions are built::

    import otel_agents
    otel_agents.init()

From then on every failed provider attempt (LLM, STT, TTS, realtime, adaptive interruption,
FallbackAdapter children included) is recorded with its root cause, LiveKit Inference quota
category and terminal flag, as Prometheus metrics, an ``otel_agents.attempt_failed`` span and a
structured log record on the ``otel_agents`` logger. See ``README.md`` and ``DESIGN.md``.
"""

from ._setup import init, shutdown

__all__ = ["init", "shutdown"]
