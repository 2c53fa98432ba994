"""What livekit's forkserver prepares once (``otel_agents._preload``) and a job process forked
from it takes: the Prometheus families (each job process's values in its own files, none in
the forkserver's), the default settings, and OTel instruments made on first measurement."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    sys.orig_argv = [sys.executable, "-c", "from multiprocessing.forkserver import main"]
    import otel_agents._preload  # what the forkserver imports
    from otel_agents._config import Settings
    forkserver_files = sorted(os.listdir(os.environ["PROMETHEUS_MULTIPROC_DIR"]))
    pid = os.fork()
    if pid == 0:
        import otel_agents
        from otel_agents import _runtime
        from otel_agents._export.metrics import get_metrics
        otel_agents.init()
        m = get_metrics()
        directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
        mine = lambda: sorted(f for f in os.listdir(directory) if f.endswith(f"_{os.getpid()}.db"))
        before = mine()
        unwritten = m.unanswered_turns.value()
        after_read = mine()
        mirror = m.sessions_started._mirror
        m.sessions_started.inc(())
        m.sessions_started.inc(())
        m.response_latency.observe(0.3)
        m.sessions_active.add(1)
        print(json.dumps({
            "pid": os.getpid(),
            "files_before": before,
            "files_after_read": after_read,
            "unwritten": unwritten,
            "settings": isinstance(_runtime.current.settings, Settings),
            "mirror": type(mirror).__name__,
            "mirror_after": type(m.sessions_started._mirror).__name__,
        }), flush=True)
        os._exit(0)
    os.waitpid(pid, 0)
    print(json.dumps({"forkserver_files": forkserver_files}), flush=True)
    """
)


def test_a_forked_job_process_writes_its_own_values(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry, mmap_dict, multiprocess

    directory = tmp_path / "prom"
    directory.mkdir()
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(directory),
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
        "OTEL_AGENTS_EXIT_FLUSH_TIMEOUT": "0",
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    child, parent = (json.loads(line) for line in done.stdout.splitlines())
    # the forkserver made no metric file; the job process made its own
    assert not [f for f in parent["forkserver_files"] if f.endswith(".db")]
    assert (directory / f"counter_{child['pid']}.db").exists()
    assert (directory / f"histogram_{child['pid']}.db").exists()
    # its unlabelled metrics' entries are made by their first write: none at start, none for a
    # read, and only the written histogram's in its file (the main process has them all at 0)
    assert child["files_before"] == child["files_after_read"] == []
    assert child["unwritten"] == 0.0
    written = {
        json.loads(key)[0]
        for key, *_ in mmap_dict.MmapedDict.read_all_values_from_file(  # type: ignore[no-untyped-call]
            str(directory / f"histogram_{child['pid']}.db")
        )
    }
    assert written == {"otel_agents_response_latency_seconds"}
    assert child["settings"]
    # the OTel instrument was made by the first measurement, and replaced its stand-in
    assert child["mirror"] == "_Deferred"
    assert child["mirror_after"] != "_Deferred"

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    samples = {
        s.name: s.value for metric in registry.collect() for s in metric.samples if not s.labels
    }
    assert samples["otel_agents_sessions_started_total"] == 2
    assert samples["otel_agents_response_latency_seconds_count"] == 1
    assert samples["otel_agents_response_latency_seconds_sum"] == 0.3
