"""Prometheus multiprocess mode, including its import-order trap: livekit imports
prometheus_client before the worker sets PROMETHEUS_MULTIPROC_DIR, so without otel-agents' fix
its metrics would stay in process memory and never reach the scrape."""

from __future__ import annotations

import json
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


# An agent process: which modules ``import otel_agents; otel_agents.init()`` loads, and which
# module first imported each (the innermost frame outside importlib's own).
AGENT = textwrap.dedent(
    """
    import importlib.abc, json, os, sys
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = sys.argv[1]
    importers = {}

    class Spy(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            frame = sys._getframe(1)
            while frame is not None and frame.f_code.co_filename.startswith("<frozen"):
                frame = frame.f_back
            importers.setdefault(name, frame.f_globals.get("__name__") if frame else None)
            return None

    sys.meta_path.insert(0, Spy())
    import otel_agents
    otel_agents.init()
    print(json.dumps({"modules": sorted(sys.modules), "importers": importers}))
    """
)


def test_an_agent_process_imports_nothing_of_the_sidecar(tmp_path: Path) -> None:
    """The reaping and rendering code is the sidecar's: ``init()`` in an agent process loads
    the agent side of the multiprocess directory (liveness, its own files) and nothing else,
    and none of our modules imports prometheus_client's ``MultiProcessCollector`` (livekit's
    own ``/metrics`` handler does)."""
    directory = tmp_path / "prom"
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    out = subprocess.run(
        [sys.executable, "-c", AGENT, str(directory)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    loaded = json.loads(out.stdout)
    ours = {m for m in loaded["modules"] if m.startswith("otel_agents.")}
    assert not {m for m in ours if m.startswith("otel_agents._sidecar")}
    assert {m for m in ours if m.startswith("otel_agents._multiproc.")} == {
        "otel_agents._multiproc.liveness",
        "otel_agents._multiproc.process_files",
    }
    importer = loaded["importers"].get("prometheus_client.multiprocess")
    assert importer is None or not importer.startswith("otel_agents"), importer
    # init() did do the agent side: the directory made, this process's liveness lock taken
    assert len(list(directory.glob("otel_agents_alive_*.lock"))) == 1
