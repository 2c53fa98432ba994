"""Pushing metrics over OTLP at scale: the sidecar pushes the merged multiprocess directory under
one resource (``otel-agents sidecar --otlp-endpoint``), and job processes with
``OTEL_AGENTS_OTLP_METRICS=sidecar`` push spans only, so the streams a backend sees are bounded
by workers, not by the jobs they ran."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_agents import _config
from otel_agents import names as n
from otel_agents._sidecar import cli
from otel_agents._sidecar.otlp import OtlpPusher, metrics_data

from otlp import OtlpReceiver

TESTS = str(Path(__file__).parent)

#: a job process: init(), one failed attempt, then exact values through the metric handles
CHILD = textwrap.dedent(
    """
    import asyncio, sys
    sys.path.insert(0, {tests!r})
    import otel_agents
    otel_agents.init(otlp_endpoint={endpoint!r})
    from otel_agents._export.metrics import get_metrics
    from test_init import fail_once
    from scripted import ScriptedLLM, ssl_connection_error
    asyncio.run(fail_once(ScriptedLLM([ssl_connection_error], provider="child")))
    m = get_metrics()
    index = {index}
    m.retry_wait.observe(0.07 * (index + 1), ("llm",))  # 0.07, 0.14, 0.21
    # one account, so one limit; the most recent process's value is the merged one
    m.quota_limit.set(300.0, ("child", "requests"))
    """
)


def run_children(directory: Path, endpoint: str, count: int, mode: str | None) -> None:
    env = {k: v for k, v in os.environ.items() if k != _config.ENV_OTLP_METRICS}
    env["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    if mode is not None:
        env[_config.ENV_OTLP_METRICS] = mode
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                CHILD.format(tests=TESTS, endpoint=endpoint, index=i),
            ],
            env=env,
        )
        for i in range(count)
    ]
    assert [c.wait(120) for c in children] == [0] * count


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as r:
        yield r


def test_the_sidecar_pushes_the_merged_totals_as_one_resource(
    receiver: OtlpReceiver, tmp_path: Path
) -> None:
    directory = tmp_path / "prom"
    directory.mkdir()
    run_children(directory, receiver.url, 3, "sidecar")
    assert receiver.requests["/v1/metrics"] == 0  # the job processes pushed no metrics
    assert len(receiver.spans_named(n.SPAN_ATTEMPT_FAILED)) == 3  # but their spans

    pusher = OtlpPusher(str(directory), receiver.url, service_name="worker-a")
    assert pusher.push()
    pusher.close()  # a final push
    assert receiver.requests["/v1/metrics"] == 2
    points = receiver.metric_exports[-1]
    assert {tuple(sorted(p.resource.items())) for p in points} == {
        tuple(sorted(pusher.resource.attributes.items()))
    }
    resource = points[0].resource
    assert resource["service.name"] == "worker-a"
    assert resource["service.instance.id"]
    assert "process.pid" not in resource

    by_metric: dict[str, list[tuple[dict[str, object], float]]] = {}
    for p in points:
        by_metric.setdefault(p.metric, []).append((p.attributes, p.value))
    assert by_metric["otel_agents.attempt_failures"] == [
        (
            {
                "component": "llm",
                "provider": "child",
                "error_class": "connection",
                "root_cause": "ssl.SSLCertVerificationError",
                "final": "true",
            },
            3.0,
        )
    ]
    assert by_metric["otel_agents.requests"] == [
        ({"component": "llm", "provider": "child", "outcome": "failed"}, 3.0)
    ]
    # each process: its failed attempt's wait (0 s, no retry) and the one observed above
    assert by_metric["otel_agents.retry_wait_seconds"] == [({"component": "llm"}, 6.0)]
    assert by_metric["otel_agents.quota_limit"] == [
        ({"provider": "child", "dimension": "requests"}, 300.0)
    ]
    # the processes are gone: their live gauges with them
    assert by_metric.get("otel_agents.sessions_active", [({}, 0.0)]) == [({}, 0.0)]

    # the histogram in full: per-bucket counts, bounds and sum
    data = metrics_data(pusher._source.families(), pusher.resource, pusher.start_ns)
    (scope,) = data.resource_metrics[0].scope_metrics
    (histogram,) = [m for m in scope.metrics if m.name == "otel_agents.retry_wait_seconds"]
    assert histogram.unit == "s"
    (point,) = histogram.data.data_points
    spec = next(m for m in n.METRICS if m.name == "otel_agents_retry_wait_seconds")
    assert list(point.explicit_bounds) == list(spec.buckets)
    assert point.count == 6
    assert point.sum == pytest.approx(0.42)
    expected = [0] * (len(spec.buckets) + 1)
    for value in (0.0, 0.0, 0.0, 0.07, 0.14, 0.21):
        expected[next(i for i, b in enumerate(spec.buckets) if value <= b)] += 1
    assert list(point.bucket_counts) == expected
    (counter,) = [m for m in scope.metrics if m.name == "otel_agents.attempt_failures"]
    assert counter.data.is_monotonic
    assert counter.data.data_points[0].start_time_unix_nano == pusher.start_ns


def test_job_processes_push_their_own_metrics_by_default(
    receiver: OtlpReceiver, tmp_path: Path
) -> None:
    directory = tmp_path / "prom"
    directory.mkdir()
    run_children(directory, receiver.url, 2, None)
    resources = {
        p.resource["service.instance.id"] for export in receiver.metric_exports for p in export
    }
    assert len(resources) == 2


def test_bounded_streams_with_many_job_processes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from bench import otlp_streams

    monkeypatch.setattr(otlp_streams, "JOBS", 6)
    monkeypatch.setattr(otlp_streams, "BATCH", 3)
    before = otlp_streams.one_variant("process", tmp_path)
    after = otlp_streams.one_variant("sidecar", tmp_path)
    assert before["resources"] == 6
    assert after["resources"] == 1
    assert after["streams"] <= before["streams"] / 6
    assert after["spans"] == before["spans"] > 0  # spans still go out per process


def test_the_switch_is_validated() -> None:
    assert _config.otlp_metrics_mode({}) == "process"
    assert _config.otlp_metrics_mode({_config.ENV_OTLP_METRICS: " Sidecar "}) == "sidecar"
    with pytest.raises(ValueError, match="OTEL_AGENTS_OTLP_METRICS"):
        _config.otlp_metrics_mode({_config.ENV_OTLP_METRICS: "both"})
    settings = _config.resolve(
        service_name=None,
        otlp_endpoint=None,
        metrics_port=None,
        metrics_host="127.0.0.1",
        silence_timeout=None,
        capture_messages=None,
        env={_config.ENV_OTLP_METRICS: "sidecar"},
    )
    assert settings.otlp_metrics == "sidecar"


def _args(tmp_path: Path, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(["--multiproc-dir", str(tmp_path), *extra])


def test_the_sidecar_pushes_only_when_asked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(_config.ENV_OTLP_ENDPOINT, "http://collector:4318")
    monkeypatch.delenv(_config.ENV_OTLP_METRICS, raising=False)
    # the worker's environment, without the switch: the job processes push, the sidecar not
    assert cli._resolve(_args(tmp_path)).otlp_endpoint is None
    monkeypatch.setenv(_config.ENV_OTLP_METRICS, "sidecar")
    config = cli._resolve(_args(tmp_path, "--otlp-interval", "2"))
    assert (config.otlp_endpoint, config.otlp_interval) == ("http://collector:4318", 2.0)
    monkeypatch.delenv(_config.ENV_OTLP_METRICS)
    config = cli._resolve(_args(tmp_path, "--otlp-endpoint", "http://other:4318/"))
    assert config.otlp_endpoint == "http://other:4318"
    with pytest.raises(cli.CliError, match="--otlp-endpoint"):
        cli._resolve(_args(tmp_path, "--otlp-endpoint", "ftp://user:secret@x"))


def test_the_sidecar_command_pushes_periodically_and_at_sigterm(
    receiver: OtlpReceiver, tmp_path: Path
) -> None:
    directory = tmp_path / "prom"
    directory.mkdir()
    run_children(directory, receiver.url, 2, "sidecar")
    env = {k: v for k, v in os.environ.items() if k != _config.ENV_OTLP_METRICS}
    env.update({_config.ENV_OTLP_METRICS: "sidecar", _config.ENV_OTLP_ENDPOINT: receiver.url})
    command = [sys.executable, "-m", "otel_agents", "sidecar", "--multiproc-dir", str(directory)]
    process = subprocess.Popen(
        [*command, "--port", "0", "--otlp-interval", "0.2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while receiver.requests["/v1/metrics"] < 2:  # two periodic pushes
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        out, _err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0
    assert "pushing metrics to http://127.0.0.1:" in out
    pushes = receiver.requests["/v1/metrics"]
    assert pushes >= 3  # the periodic ones and the last one at SIGTERM
    for export in receiver.metric_exports[-2:]:
        assert len({p.resource["service.instance.id"] for p in export}) == 1
        failures = [p.value for p in export if p.metric == "otel_agents.attempt_failures"]
        assert failures == [2.0]
