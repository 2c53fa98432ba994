"""Assert, in your own agent's tests, what otel-agents recorded.

Installing otel-agents registers this module as a pytest plugin. Its fixture
``otel_agents_capture`` calls ``otel_agents.init()`` with an in-memory tracer provider, and
gives the test every record, span, log record and metric sample of its run::

    async def test_a_revoked_key_is_terminal_and_not_silent_for_long(otel_agents_capture):
        await run_my_agent_once(...)          # your AgentSession, your providers
        (session,) = otel_agents_capture.session_records
        assert not session.silent
        assert [a.classification.error_class for a in otel_agents_capture.attempt_records] == [
            "auth"
        ]
        assert otel_agents_capture.value("otel_agents_terminal_errors_total",
                                         component="llm", provider="openai",
                                         error_class="auth") == 1

``init()`` arguments come from the ``otel_agents`` marker:
``@pytest.mark.otel_agents(silence_timeout=0.5, capture_messages=False)``. The fixture shuts
down an otel-agents set up before it (an agent module imported by the test calls ``init()``)
and shuts its own down at the end; metric values are reset for each test.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY

from . import _runtime, _setup
from . import names as n
from ._export import labels, metrics
from ._export.records import AttemptRecord, SessionRecord, TaskErrorRecord

__all__ = ["AttemptRecord", "Capture", "SessionRecord", "TaskErrorRecord", "otel_agents_capture"]

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class _LogRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class Capture:
    """What otel-agents recorded during one test."""

    #: the spans, otel-agents' and livekit's (``init()`` hands livekit this provider)
    exporter: InMemorySpanExporter
    provider: TracerProvider
    attempt_records: list[AttemptRecord] = field(default_factory=list)
    session_records: list[SessionRecord] = field(default_factory=list)
    task_error_records: list[TaskErrorRecord] = field(default_factory=list)
    log: _LogRecords = field(default_factory=_LogRecords)

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        """Finished spans, all or those named ``name`` (e.g. ``otel_agents.session``)."""
        return [s for s in self.exporter.get_finished_spans() if name is None or s.name == name]

    def attempt_spans(self) -> list[ReadableSpan]:
        return self.spans(n.SPAN_ATTEMPT_FAILED)

    def logs(self, message: str = n.LOG_ATTEMPT_FAILED) -> list[logging.LogRecord]:
        """The ``otel_agents`` log records with this message (``attempt_failed``,
        ``session_closed``, ``unhandled_task_error``); their fields are record attributes."""
        return [r for r in self.log.records if r.getMessage() == message]

    def silent_sessions(self) -> list[SessionRecord]:
        """Closed sessions in which the user spoke and the agent never did."""
        return [s for s in self.session_records if s.silent]

    @staticmethod
    def value(name: str, **labels: str) -> float:
        """One Prometheus sample, by its exposed name and labels (0.0 when it does not exist)."""
        got = REGISTRY.get_sample_value(name, labels)
        return 0.0 if got is None else got

    @staticmethod
    def series(prefix: str = n.PREFIX) -> Series:
        """Every non-zero ``*_total`` sample whose name starts with ``prefix`` (an unlabelled
        counter exports a 0 sample before anything happened: that records nothing)."""
        out: Series = {}
        for metric in REGISTRY.collect():
            for s in metric.samples:
                if s.name.startswith(prefix) and s.name.endswith("_total") and s.value:
                    out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    def _observe(self, record: AttemptRecord | SessionRecord | TaskErrorRecord) -> None:
        if isinstance(record, AttemptRecord):
            self.attempt_records.append(record)
        elif isinstance(record, SessionRecord):
            self.session_records.append(record)
        else:
            self.task_error_records.append(record)


def reset_metrics() -> None:
    """Zero every otel-agents metric of this process and forget the open labels' values."""
    metrics.get_metrics().clear()
    labels.reset_open_labels()


@pytest.fixture
def otel_agents_capture(request: pytest.FixtureRequest) -> Iterator[Capture]:
    """otel-agents initialised for this test, recording into a :class:`Capture`."""
    marker = request.node.get_closest_marker("otel_agents")
    kwargs: dict[str, Any] = dict(marker.kwargs) if marker is not None else {}
    if _runtime.current is not None:
        _setup.shutdown()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    reset_metrics()
    capture = Capture(exporter, provider)
    logger = logging.getLogger(n.LOGGER_NAME)
    logger.addHandler(capture.log)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    _setup.init(tracer_provider=provider, **kwargs)
    runtime = _runtime.current
    assert runtime is not None, "otel_agents.init() did nothing (OTEL_SDK_DISABLED?)"
    runtime.recorder.observer = capture._observe
    try:
        yield capture
    finally:
        _setup.shutdown()
        logger.removeHandler(capture.log)
        logger.setLevel(level)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "otel_agents(**init_kwargs): arguments for otel_agents_capture's init() call"
    )
