"""Shared fixtures: otel-agents initialised with an in-memory span exporter, fresh metrics and
captured ``otel_agents`` log records for every test that asks for them."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY

sys.path.insert(0, os.path.dirname(__file__))

import otel_agents
from otel_agents import names as n
from otel_agents._export import labels as _labels
from otel_agents._export import metrics as _metrics


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class Telemetry:
    """What one test's otel-agents exported."""

    exporter: InMemorySpanExporter
    provider: TracerProvider
    log: _ListHandler = field(default_factory=_ListHandler)

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if name is None or s.name == name]

    def attempts(self) -> list[ReadableSpan]:
        return self.spans(n.SPAN_ATTEMPT_FAILED)

    def logs(self, message: str = n.LOG_ATTEMPT_FAILED) -> list[logging.LogRecord]:
        return [r for r in self.log.records if r.getMessage() == message]

    @staticmethod
    def value(name: str, **labels: str) -> float:
        """A sample of the default registry (0.0 when the series does not exist)."""
        got = REGISTRY.get_sample_value(name, labels)
        return 0.0 if got is None else got

    @staticmethod
    def series(prefix: str = n.PREFIX) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every non-zero ``*_total`` sample whose name starts with ``prefix`` (an unlabeled
        counter exports a 0 sample before anything happened: that records nothing)."""
        out = {}
        for metric in REGISTRY.collect():
            for s in metric.samples:
                if s.name.startswith(prefix) and s.name.endswith("_total") and s.value:
                    out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out


Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def session_series(
    *,
    reason: str = "user_initiated",
    agent_spoke: bool = True,
    turns: int = 1,
    dead: dict[str, int] | None = None,
) -> Series:
    """The ``*_total`` series one closed session adds (silent when the user spoke and the agent
    never did), in the form of ``Telemetry.series()``."""
    spoke = "true" if agent_spoke else "false"
    out: Series = {
        (n.SESSIONS_STARTED, ()): 1,
        (n.SESSIONS_CLOSED, (("agent_spoke", spoke), ("reason", reason))): 1,
    }
    if turns:
        out[(n.USER_TURNS, ())] = turns
        if not agent_spoke:
            out[(n.SILENT_SESSIONS, (("reason", reason),))] = 1
    for cause, count in (dead or {}).items():
        out[(n.DEAD_TURNS, (("cause", cause),))] = count
    return out


def reset_metrics() -> None:
    _metrics.get_metrics().clear()
    _labels.reset_open_labels()


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    """otel-agents initialised with an explicit in-memory tracer provider and fresh metrics."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    reset_metrics()
    tel = Telemetry(exporter, provider)
    log = logging.getLogger(n.LOGGER_NAME)
    log.addHandler(tel.log)
    old_level = log.level
    log.setLevel(logging.DEBUG)
    otel_agents.init(tracer_provider=provider)
    try:
        yield tel
    finally:
        otel_agents.shutdown()
        log.removeHandler(tel.log)
        log.setLevel(old_level)
