"""init() and shutdown(): idempotence, OTEL_SDK_DISABLED, providers, OTLP export, bounded
shutdown with the collector down or a black hole."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from livekit.agents import APIConnectionError, llm
from livekit.agents.types import APIConnectOptions
from opentelemetry import metrics as otel_metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import REGISTRY

import otel_agents
from otel_agents import _runtime
from otel_agents import names as n
from otel_agents._capture import instrument

from conftest import reset_metrics
from netfaults import BlackHole, closed_port
from otlp import OtlpReceiver
from scripted import ScriptedLLM, ssl_connection_error


@pytest.fixture
def clean() -> Iterator[None]:
    reset_metrics()
    otel_agents.shutdown()
    yield
    otel_agents.shutdown()


async def fail_once(model: ScriptedLLM) -> None:
    """One request with no retry: one failed attempt, final."""
    ctx = llm.ChatContext.empty()
    with pytest.raises(APIConnectionError):
        async for _ in model.chat(chat_ctx=ctx, conn_options=APIConnectOptions(max_retry=0)):
            pass


def failures() -> float:
    total = 0.0
    for metric in REGISTRY.collect():
        for s in metric.samples:
            if s.name == n.ATTEMPT_FAILURES:
                total += s.value
    return total


@pytest.mark.asyncio
@pytest.mark.usefixtures("clean")
async def test_second_init_warns_and_changes_nothing() -> None:
    otel_agents.init()
    assert _runtime.current is not None
    recorder = _runtime.current.recorder
    with pytest.warns(RuntimeWarning, match="already called"):
        otel_agents.init(capture_messages=False)
    assert _runtime.current.recorder is recorder
    assert recorder.capture_messages is True


@pytest.mark.asyncio
@pytest.mark.usefixtures("clean")
async def test_sdk_disabled_makes_init_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    otel_agents.init()
    assert not instrument.is_instrumented()
    await fail_once(ScriptedLLM([ssl_connection_error]))
    assert failures() == 0


@pytest.mark.usefixtures("clean")
def test_invalid_env_raises_and_instruments_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_AGENTS_SILENCE_TIMEOUT", "abc")
    with pytest.raises(ValueError, match="OTEL_AGENTS_SILENCE_TIMEOUT='abc'"):
        otel_agents.init()
    assert not instrument.is_instrumented()


@pytest.mark.asyncio
@pytest.mark.usefixtures("clean")
async def test_shutdown_uninstruments_and_init_again_works() -> None:
    otel_agents.init()
    await fail_once(ScriptedLLM([ssl_connection_error]))
    assert failures() == 1
    otel_agents.shutdown()
    # constructors restored; handlers already attached are inert
    assert llm.LLM.__init__.__name__ == "__init__"
    assert not hasattr(llm.LLM.__init__, "__wrapped__")
    await fail_once(ScriptedLLM([ssl_connection_error]))
    assert failures() == 1
    otel_agents.init()
    await fail_once(ScriptedLLM([ssl_connection_error]))
    assert failures() == 2


@pytest.mark.usefixtures("clean")
def test_livekit_gets_our_tracer_provider_until_shutdown() -> None:
    from livekit.agents.telemetry import traces
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider()
    otel_agents.init(tracer_provider=provider)
    assert traces.tracer._tracer_provider is provider
    otel_agents.shutdown()
    assert traces.tracer._tracer_provider is not provider


@pytest.mark.usefixtures("clean")
def test_meter_provider_is_used_but_never_made_global() -> None:
    before = otel_metrics.get_meter_provider()
    reader = InMemoryMetricReader()
    otel_agents.init(meter_provider=MeterProvider(metric_readers=[reader]))
    asyncio.run(fail_once(ScriptedLLM([ssl_connection_error])))
    assert otel_metrics.get_meter_provider() is before
    data = reader.get_metrics_data()
    assert data is not None
    metrics = {
        m.name: m.data.data_points
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    points = {
        name: [(dict(p.attributes or {}), p.value) for p in data_points]  # type: ignore[union-attr]
        for name, data_points in metrics.items()
        if name != "otel_agents.retry_wait_seconds"
    }
    # one request, one failed attempt and no retry: its retry wait is 0
    (wait,) = metrics["otel_agents.retry_wait_seconds"]
    assert (dict(wait.attributes or {}), wait.count, wait.sum) == ({"component": "llm"}, 1, 0)  # type: ignore[union-attr]
    assert points["otel_agents.attempt_failures"] == [
        (
            {
                "component": "llm",
                "provider": "scripted",
                "error_class": "connection",
                "root_cause": "ssl.SSLCertVerificationError",
                "final": "true",
            },
            1,
        )
    ]
    assert points["otel_agents.requests"] == [
        ({"component": "llm", "provider": "scripted", "outcome": "failed"}, 1)
    ]


@pytest.mark.asyncio
@pytest.mark.usefixtures("clean")
async def test_otlp_endpoint_exports_traces_and_metrics() -> None:
    with OtlpReceiver() as collector:
        otel_agents.init(otlp_endpoint=collector.url, service_name="otlp-test")
        assert otel_metrics.get_meter_provider().__class__.__name__.startswith(
            ("_Proxy", "NoOp", "_DefaultMeterProvider")
        )
        await fail_once(ScriptedLLM([ssl_connection_error]))
        # export runs on the SDK's threads: flush off the loop
        await asyncio.get_running_loop().run_in_executor(None, otel_agents.shutdown, 10.0)
    (span,) = collector.spans_named(n.SPAN_ATTEMPT_FAILED)
    assert span.attributes[n.A_ROOT_CAUSE_TYPE] == "ssl.SSLCertVerificationError"
    assert span.resource["service.name"] == "otlp-test"
    points = [p for export in collector.metric_exports for p in export]
    assert {p.metric for p in points} >= {"otel_agents.attempt_failures"}


@pytest.mark.parametrize("collector", ["closed_port", "black_hole"])
@pytest.mark.usefixtures("clean")
def test_shutdown_returns_within_its_timeout_when_the_collector_is_unreachable(
    collector: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Structural, not timed (bench/session_cost.py measures how long it takes): the flush
    runs on a thread of its own, which ``shutdown`` waits for until its deadline only. Against
    a black hole the exporter is stuck (its own timeout is longer than the deadline): shutdown
    returns with that thread still blocked, and says it dropped telemetry."""
    hole = BlackHole() if collector == "black_hole" else None
    port = hole.port if hole else closed_port()
    try:
        otel_agents.init(otlp_endpoint=f"http://127.0.0.1:{port}")  # never raises
        asyncio.run(fail_once(ScriptedLLM([ssl_connection_error] * 3)))
        with caplog.at_level(logging.WARNING, logger="otel_agents"):
            otel_agents.shutdown(timeout=1.0)
        still_flushing = [
            t for t in threading.enumerate() if t.name == "otel_agents.shutdown" and t.is_alive()
        ]
    finally:
        if hole:
            hole.close()
    assert _runtime.current is None
    if hole:
        assert hole.conns, "the exporter should have tried to reach the black hole"
        assert still_flushing, "shutdown waited for the exporter stuck in the black hole"
        assert any("shutdown timed out after 1.0s" in r.getMessage() for r in caplog.records)


@pytest.mark.usefixtures("clean")
def test_shutdown_rejects_a_negative_timeout() -> None:
    with pytest.raises(ValueError, match="timeout=-1"):
        otel_agents.shutdown(timeout=-1)


@pytest.mark.usefixtures("clean")
def test_metrics_port_serves_prometheus_text() -> None:
    import urllib.request

    port = closed_port()
    otel_agents.init(metrics_port=port)
    asyncio.run(fail_once(ScriptedLLM([ssl_connection_error])))
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        body = response.read().decode()
    assert (
        'otel_agents_attempt_failures_total{component="llm",error_class="connection",'
        'final="true",provider="scripted",root_cause="ssl.SSLCertVerificationError"} 1.0'
    ) in body
    otel_agents.shutdown()
    with pytest.raises(OSError, match="Connection refused"):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1)


@pytest.mark.usefixtures("clean")
def test_with_the_collector_down_queue_full_is_logged_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The SDK logs "Queue full" for every dropped span, on the thread that ends the span (the
    event loop): the pipeline init() builds lets one through per minute."""
    otel_agents.init(otlp_endpoint=f"http://127.0.0.1:{closed_port()}")
    sdk_logger = logging.getLogger("opentelemetry.sdk._shared_internal")
    try:
        with caplog.at_level(logging.WARNING, logger="opentelemetry.sdk._shared_internal"):
            for _ in range(100):
                sdk_logger.warning("Queue full, dropping %s.", "span")
            sdk_logger.warning("Exception while exporting %s.", "span")
        messages = [r.getMessage() for r in caplog.records if r.name == sdk_logger.name]
        assert messages == ["Queue full, dropping span.", "Exception while exporting span."]
    finally:
        otel_agents.shutdown(timeout=1.0)


# --- init() says where its records go, visibly with the default logging configuration --------


def _python(script: str, **env: str) -> subprocess.Popen[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "PROMETHEUS_MULTIPROC")) and k != "prometheus_multiproc_dir"
    }
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        env={**clean, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_init_warnings_reach_stderr_with_no_logging_configured(tmp_path: Path) -> None:
    """No handler anywhere (an agent module's top, before livekit's CLI configures logging):
    Python's last-resort handler prints WARNING and above, which a handler of the package's
    own (even a NullHandler) would swallow."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    cases = {
        "bare": _python("import otel_agents; otel_agents.init()"),
        "taken": _python(f"import otel_agents; otel_agents.init(metrics_port={port})"),
        "bad host": _python(
            "import otel_agents\n"
            "otel_agents.init(metrics_port=0, metrics_host='no-such-host.invalid')"
        ),
        "taken from env": _python(
            "import otel_agents; otel_agents.init()", OTEL_AGENTS_METRICS_PORT=str(port)
        ),
        "exported": _python(
            "import otel_agents; otel_agents.init()",
            PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "mp"),
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{closed_port()}",
        ),
    }
    try:
        results = {what: proc.communicate(timeout=120) for what, proc in cases.items()}
    finally:
        taken.close()
    nowhere = "otel_agents: records go nowhere"
    for what, proc in cases.items():
        assert proc.returncode == 0, (what, results[what][1])
        assert "Traceback" not in results[what][1], what
    assert results["bare"][1].count(nowhere) == 1, results["bare"][1]
    assert (
        f"cannot serve /metrics on 127.0.0.1:{port}: Address already in use"
        in (results["taken"][1])
    )
    assert f"cannot serve /metrics on 127.0.0.1:{port}" in results["taken from env"][1]
    assert "cannot serve /metrics on no-such-host.invalid:0" in results["bad host"][1]
    assert results["exported"][1] == ""


def test_init_names_where_its_records_go_in_one_info_line(tmp_path: Path) -> None:
    script = """
        import logging, sys
        logging.basicConfig(
            level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(message)s"
        )
        import otel_agents
        otel_agents.init(service_name="where-test", metrics_port=0)
        assert logging.getLogger("otel_agents").handlers == []
        """
    endpoint = f"http://127.0.0.1:{closed_port()}"
    proc = _python(
        script, PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "mp"), OTEL_EXPORTER_OTLP_ENDPOINT=endpoint
    )
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    (line,) = [x for x in out.splitlines() if "otel_agents: recording;" in x]
    assert line.startswith("INFO otel_agents: recording; service.name='where-test'"), line
    assert "metrics at http://127.0.0.1:" in line
    assert ":0/metrics" not in line
    assert f"PROMETHEUS_MULTIPROC_DIR={tmp_path / 'mp'}" in line
    assert f"OTLP traces and metrics to {endpoint}" in line
    assert "records go nowhere" not in out + err
