"""``LiveKitAgentsInstrumentor``: the OpenTelemetry instrumentor behind ``init()``, and the
zero-code path, ``opentelemetry-instrument`` running an agent that never imports otel-agents."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from livekit.agents import llm
from livekit.agents.telemetry import traces
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otel_agents
from otel_agents import LiveKitAgentsInstrumentor, _runtime
from otel_agents import names as n
from otel_agents._capture import instrument

from conftest import reset_metrics
from otlp import OtlpReceiver
from scripted import ScriptedLLM, ssl_connection_error
from test_init import fail_once

TESTS = Path(__file__).parent
BIN = Path(sys.executable).parent
ATTEMPT = {
    n.A_COMPONENT: "llm",
    n.A_PROVIDER: "scripted",
    n.A_OPERATION: "chat",
    n.A_GEN_AI_PROVIDER: "scripted",
    n.A_ATTEMPT: 0,
    n.A_FINAL: True,
    "error.type": "livekit.agents.APIConnectionError",
    n.A_ERROR_CLASS: "connection",
    n.A_ROOT_CAUSE_TYPE: "ssl.SSLCertVerificationError",
    n.A_ROOT_CAUSE_MESSAGE: "[SSL: CERTIFICATE_VERIFY_FAILED] failed",
    n.A_FIRST_ROOT_CAUSE_TYPE: "ssl.SSLCertVerificationError",
    n.A_MASKED: False,
    n.A_TERMINAL: False,
}


@pytest.fixture
def clean() -> Iterator[None]:
    reset_metrics()
    otel_agents.shutdown()
    yield
    otel_agents.shutdown()


def test_instrumentation_dependencies_are_pyprojects_livekit_range() -> None:
    assert list(LiveKitAgentsInstrumentor().instrumentation_dependencies()) == [
        "livekit-agents >= 1.8.9, < 1.9"
    ]
    assert LiveKitAgentsInstrumentor() is LiveKitAgentsInstrumentor()  # BaseInstrumentor's


def test_entry_point_is_discoverable() -> None:
    (ep,) = [
        ep for ep in entry_points(group="opentelemetry_instrumentor") if ep.name == "livekit_agents"
    ]
    assert ep.value == "otel_agents:LiveKitAgentsInstrumentor"
    assert ep.load() is LiveKitAgentsInstrumentor


@pytest.mark.usefixtures("clean")
def test_instrument_and_uninstrument_are_idempotent_with_explicit_providers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    instrumentor = LiveKitAgentsInstrumentor()

    instrumentor.instrument(
        tracer_provider=tracer_provider, meter_provider=meter_provider, silence_timeout=3.0
    )
    runtime = _runtime.current
    assert runtime is not None
    assert runtime.settings.silence_timeout == 3.0
    assert traces.tracer._tracer_provider is tracer_provider  # livekit's spans: same provider
    with caplog.at_level(logging.WARNING):
        instrumentor.instrument(tracer_provider=TracerProvider())  # a no-op
    assert "already instrumented" in caplog.text
    assert _runtime.current is runtime
    asyncio.run(fail_once(ScriptedLLM([ssl_connection_error])))

    (span,) = [s for s in spans.get_finished_spans() if s.name == n.SPAN_ATTEMPT_FAILED]
    assert dict(span.attributes or {}) == ATTEMPT
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name == "otel_agents"
    data = reader.get_metrics_data()
    assert data is not None
    names = {m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert "otel_agents.attempt_failures" in names

    instrumentor.uninstrument()
    assert not instrumentor.is_instrumented_by_opentelemetry
    assert _runtime.current is None
    assert not instrument.is_instrumented()
    assert not hasattr(llm.LLM.__init__, "__wrapped__")
    assert traces.tracer._tracer_provider is not tracer_provider
    with caplog.at_level(logging.WARNING):
        instrumentor.uninstrument()  # a no-op
    assert "already uninstrumented" in caplog.text

    spans.clear()
    asyncio.run(fail_once(ScriptedLLM([ssl_connection_error])))
    assert [s.name for s in spans.get_finished_spans()] == []

    # and again: instrument() after uninstrument() works
    instrumentor.instrument(tracer_provider=tracer_provider)
    asyncio.run(fail_once(ScriptedLLM([ssl_connection_error])))
    assert [
        dict(s.attributes or {})
        for s in spans.get_finished_spans()
        if s.name == n.SPAN_ATTEMPT_FAILED
    ] == [ATTEMPT]
    instrumentor.uninstrument()


@pytest.mark.usefixtures("clean")
def test_without_explicit_providers_the_global_sdk_providers_are_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As under opentelemetry-instrument: the distro's global providers, even with an OTLP
    endpoint configured (no second pipeline)."""
    from opentelemetry import metrics, trace

    tracer_provider = TracerProvider()
    meter_provider = MeterProvider()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: tracer_provider)
    monkeypatch.setattr(metrics, "get_meter_provider", lambda: meter_provider)
    LiveKitAgentsInstrumentor().instrument()
    runtime = _runtime.current
    assert runtime is not None
    assert runtime.owned == []
    assert runtime.tracer_provider is tracer_provider
    assert runtime.traced_provider is tracer_provider
    assert runtime.meter_provider is meter_provider
    assert traces.tracer._tracer_provider is tracer_provider
    otel_agents.shutdown()  # init()'s shutdown() uninstruments it
    assert not LiveKitAgentsInstrumentor().is_instrumented_by_opentelemetry


@pytest.mark.usefixtures("clean")
def test_init_is_the_instrumentor_and_shutdown_uninstruments_it() -> None:
    otel_agents.init()
    assert LiveKitAgentsInstrumentor().is_instrumented_by_opentelemetry
    otel_agents.shutdown()
    assert not LiveKitAgentsInstrumentor().is_instrumented_by_opentelemetry


@pytest.mark.usefixtures("clean")
def test_invalid_settings_raise_and_instrument_nothing() -> None:
    with pytest.raises(ValueError, match="silence_timeout=-1"):
        LiveKitAgentsInstrumentor().instrument(silence_timeout=-1)
    assert not LiveKitAgentsInstrumentor().is_instrumented_by_opentelemetry
    assert not instrument.is_instrumented()


def test_an_unmodified_agent_under_opentelemetry_instrument() -> None:
    """``opentelemetry-instrument python zero_code_agent.py``: the distro configures the
    providers from OTEL_* variables, the entry point instruments livekit, and the failed attempt
    and the session reach the collector through the distro's pipeline (one resource, the
    distro's: otel-agents built no pipeline of its own)."""
    agent = (TESTS / "zero_code_agent.py").read_text()
    assert "otel_agents" not in agent.replace("otel-agents", "")
    with OtlpReceiver() as collector:
        env = {
            **os.environ,
            "PYTHONPATH": str(TESTS),
            "OTEL_SERVICE_NAME": "zero-code-test",
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "otlp",
            "OTEL_LOGS_EXPORTER": "none",
        }
        env.pop("OTEL_SDK_DISABLED", None)
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        done = subprocess.run(
            [str(BIN / "opentelemetry-instrument"), sys.executable, "zero_code_agent.py"],
            cwd=TESTS,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        attempts = collector.spans_named(n.SPAN_ATTEMPT_FAILED)
        sessions = collector.spans_named(n.SPAN_SESSION)
        livekit_attempts = collector.spans_named("llm_request_run")
        resources = {tuple(sorted(s.resource.items())) for s in collector.spans}
        points = [p for export in collector.metric_exports for p in export]

    (attempt,) = attempts
    assert attempt.attributes == {**ATTEMPT, n.A_FINAL: False}  # the retry answered
    (session,) = sessions
    assert session.attributes[n.S_CLOSE_REASON] == "user_initiated"
    assert session.attributes[n.S_USER_TURNS] == 1
    assert session.attributes[n.S_ANSWERED_TURNS] == 1
    assert session.attributes[n.S_ERRORS] == 1
    assert session.attributes[n.S_SILENT] is False
    assert len(livekit_attempts) == 2  # livekit's own spans: the provider was handed to it
    (resource,) = resources
    assert dict(resource)["service.name"] == "zero-code-test"
    assert "process.pid" not in dict(resource)  # the resource otel-agents' own pipeline sets
    failures = [p for p in points if p.metric == "otel_agents.attempt_failures"]
    assert failures
    assert {p.attributes["root_cause"] for p in failures} == {"ssl.SSLCertVerificationError"}
    assert {tuple(sorted(p.resource.items())) for p in points} == {resource}


def test_an_unmodified_agent_under_the_real_worker(tmp_path: Path) -> None:
    """``opentelemetry-instrument python zero_code_worker_agent.py start``: livekit's worker and
    its forkserver job processes. ``sitecustomize`` runs in the worker and in the forkserver
    (``PYTHONPATH`` is inherited), whose forks, the job processes, are instrumented already:
    each job records its failed attempt and its session exactly once, in its own trace, and
    flushes them through the distro's pipeline before its ``os._exit``."""
    rooms = ["zc-a", "zc-b"]
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    with OtlpReceiver() as collector:
        env = {
            **os.environ,
            "PYTHONPATH": str(TESTS),
            "OTEL_SERVICE_NAME": "zero-code-worker",
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            "WORKER_TEST_ROOMS": ",".join(rooms),
            "WORKER_TEST_PID_DIR": str(pid_dir),
        }
        env.pop("OTEL_SDK_DISABLED", None)
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        log = (tmp_path / "worker.log").open("w")
        command = [str(BIN / "opentelemetry-instrument"), sys.executable]
        worker = subprocess.Popen(
            [*command, str(TESTS / "zero_code_worker_agent.py"), "start"],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=log,
        )
        try:
            deadline = time.monotonic() + 60
            while not (
                len(collector.spans_named(n.SPAN_SESSION)) >= len(rooms)
                and all((pid_dir / room).exists() for room in rooms)
            ):
                assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
                assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-3000:]
                time.sleep(0.1)
            time.sleep(0.5)  # anything recorded twice would have arrived with the rest
            worker.send_signal(signal.SIGTERM)
            worker.wait(30)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
            log.close()
        spans = list(collector.spans)

    pids = {room: int((pid_dir / room).read_text()) for room in rooms}
    assert len(set(pids.values()) | {worker.pid}) == len(rooms) + 1  # job processes
    by_trace: dict[str, list[Any]] = defaultdict(list)
    for s in spans:
        by_trace[s.trace_id].append(s)
    traces_of: dict[str, list[Any]] = {}
    for trace in by_trace.values():
        for s in trace:
            if s.name == "job_entrypoint":
                traces_of[s.attributes["lk.pii.room_name"]] = trace
    assert sorted(traces_of) == rooms
    for room, trace in traces_of.items():
        # the job's room sid, as livekit's own spans of the job carry it
        (entrypoint,) = [s for s in trace if s.name == "job_entrypoint"]
        sid = entrypoint.attributes[n.A_CONVERSATION_ID]
        assert sid.startswith(("RM_", "SRM_")), room
        (attempt,) = [s for s in trace if s.name == n.SPAN_ATTEMPT_FAILED]
        assert attempt.attributes == {**ATTEMPT, n.A_FINAL: False, n.A_CONVERSATION_ID: sid}, room
        (session,) = [s for s in trace if s.name == n.SPAN_SESSION]
        assert session.attributes[n.S_CONVERSATION_ID] == sid, room
        assert session.attributes[n.S_JOB_SHUTDOWN_REASON] == "zero-code test done", room
        assert session.attributes[n.S_ERRORS] == 1, room
        assert session.attributes[n.S_ANSWERED_TURNS] == 1, room
        assert len([s for s in trace if s.name == "llm_request_run"]) == 2, room
    # exactly once in all: no span outside the jobs' traces, none twice
    assert len([s for s in spans if s.name == n.SPAN_ATTEMPT_FAILED]) == len(rooms)
    assert len([s for s in spans if s.name == n.SPAN_SESSION]) == len(rooms)
    # the distro's pipeline, not one of otel-agents' own (which sets process.pid)
    assert {s.resource["service.name"] for s in spans} == {"zero-code-worker"}
    assert not any("process.pid" in s.resource for s in spans)
