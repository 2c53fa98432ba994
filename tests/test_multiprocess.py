"""Prometheus multiprocess mode, including the import-order trap of livekit-internals.md 3.2:
livekit imports prometheus_client before the worker sets PROMETHEUS_MULTIPROC_DIR, so without
otel-agents' fix its metrics would stay in process memory and never reach the scrape."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest, multiprocess

CHILD = textwrap.dedent(
    """
    import asyncio, os, sys
    sys.path.insert(0, {tests!r})
    import livekit.agents  # imports prometheus_client first, as a livekit worker does
    from prometheus_client import values
    trapped = values.ValueClass is values.MutexValue
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = {directory!r}  # what Worker.run does later
    import otel_agents
    otel_agents.init()
    from test_init import fail_once
    from scripted import ScriptedLLM, ssl_connection_error
    asyncio.run(fail_once(ScriptedLLM([ssl_connection_error], provider="child")))
    print("trapped" if trapped else "not-trapped")
    """
)


def test_job_processes_write_to_the_multiprocess_directory(tmp_path: Path) -> None:
    directory = tmp_path / "prom"
    directory.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    script = CHILD.format(tests=str(Path(__file__).parent), directory=str(directory))
    children = [
        subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outputs = [c.communicate(timeout=120)[0].strip() for c in children]
    assert [c.returncode for c in children] == [0, 0, 0]
    assert outputs == ["trapped"] * 3  # the trap was really there, in every child
    assert len(list(directory.glob("counter_*.db"))) == 3  # one file per process

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    text = generate_latest(registry).decode()
    assert (
        'otel_agents_attempt_failures_total{component="llm",error_class="connection",'
        'final="true",provider="child",root_cause="ssl.SSLCertVerificationError"} 3.0'
    ) in text
    assert 'otel_agents_requests_total{component="llm",outcome="failed",provider="child"} 3.0' in (
        text
    )
