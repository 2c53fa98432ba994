"""Nothing recorded in a process is lost at its exit, however it ends, within
``exit_flush_timeout`` (docs/architecture.md).

livekit's job processes are multiprocessing children: forkserver on Linux, spawn elsewhere, and
they end through ``os._exit``, which skips ``atexit`` (the SDK's own flush); the worker itself
ends through a normal interpreter exit. Each kind of child here calls ``otel_agents.init()`` with
an OTLP endpoint, records one failed LLM attempt through a scripted provider, and ends: its span
and its metrics must reach a local receiver. With the collector a black hole, a process with
records gives up at its bound, and one with nothing pending does not wait at all. (The real
worker's job processes and SIGTERM drain are ``tests/test_worker.py``.)

Each child reports how long its exit flush took through otel-agents' own debug record (the
host's logging: a handler that appends it to a file), by pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_agents import names as n

from netfaults import BlackHole
from otlp import OtlpReceiver

EXIT_FLUSH_TIMEOUT = 1.0
KINDS = ("spawn", "forkserver", "fork", "interpreter_exit")


class _FlushRecords(logging.Handler):
    """Appends ``{"pid", "seconds", "complete"}`` of the exit flush record to a file."""

    def __init__(self, path: str) -> None:
        super().__init__(logging.DEBUG)
        self.path = path

    def emit(self, record: logging.LogRecord) -> None:
        if hasattr(record, "exit_flush_seconds"):
            line = {
                "pid": os.getpid(),
                "seconds": record.exit_flush_seconds,
                "complete": record.levelno < logging.WARNING,
            }
            with open(self.path, "a") as f:
                f.write(json.dumps(line) + "\n")


def child(endpoint: str, flush_log: str, record: bool) -> None:
    """A process as livekit's job processes are: init() first, then the agent's work."""
    import otel_agents

    logger = logging.getLogger(n.LOGGER_NAME)
    logger.addHandler(_FlushRecords(flush_log))
    logger.setLevel(logging.DEBUG)
    otel_agents.init(otlp_endpoint=endpoint, exit_flush_timeout=EXIT_FLUSH_TIMEOUT)
    if record:
        asyncio.run(_one_failed_attempt())


async def _one_failed_attempt() -> None:
    from livekit.agents import llm
    from livekit.agents.types import APIConnectOptions

    from scripted import ScriptedLLM, ssl_connection_error

    model = ScriptedLLM([ssl_connection_error])
    with contextlib.suppress(Exception):
        async for _ in model.chat(
            chat_ctx=llm.ChatContext.empty(), conn_options=APIConnectOptions(max_retry=0)
        ):
            pass


def run_child(kind: str, endpoint: str, flush_log: Path, *, record: bool = True) -> int:
    """Run one child of ``kind`` to its end; its pid."""
    if kind == "interpreter_exit":
        script = (
            "import sys; sys.path.insert(0, sys.argv[1]); import test_exit_flush as t; "
            "t.child(sys.argv[2], sys.argv[3], sys.argv[4] == 'record')"
        )
        tests = str(Path(__file__).parent)
        args = [tests, endpoint, str(flush_log), "record" if record else "idle"]
        process = subprocess.Popen([sys.executable, "-c", script, *args])
        assert process.wait(60) == 0
        return process.pid
    ctx = multiprocessing.get_context(kind)
    proc = ctx.Process(target=child, args=(endpoint, str(flush_log), record))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0
    assert proc.pid is not None
    return proc.pid


def flushes(flush_log: Path) -> dict[int, dict[str, object]]:
    if not flush_log.exists():
        return {}
    records = (json.loads(line) for line in flush_log.read_text().splitlines())
    return {int(r["pid"]): r for r in records}


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as r:
        yield r


@pytest.mark.parametrize("kind", KINDS)
def test_a_processs_records_arrive_however_it_ends(
    kind: str, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    flush_log = tmp_path / "flushes.jsonl"
    pid = run_child(kind, receiver.url, flush_log)
    attempts = [
        s for s in receiver.spans_named(n.SPAN_ATTEMPT_FAILED) if s.resource["process.pid"] == pid
    ]
    assert [s.attributes[n.A_ROOT_CAUSE_TYPE] for s in attempts] == ["ssl.SSLCertVerificationError"]
    points = [
        p
        for export in receiver.metric_exports
        for p in export
        if p.resource["process.pid"] == pid and p.metric == "otel_agents.attempt_failures"
    ]
    assert [(p.attributes["error_class"], p.value) for p in points] == [("connection", 1.0)]
    flush = flushes(flush_log)[pid]
    assert flush["complete"] is True


@pytest.mark.parametrize("kind", ["forkserver", "interpreter_exit"])
def test_a_black_hole_holds_an_exit_no_longer_than_its_timeout(kind: str, tmp_path: Path) -> None:
    hole = BlackHole()
    flush_log = tmp_path / "flushes.jsonl"
    try:
        endpoint = f"http://127.0.0.1:{hole.port}"
        busy = run_child(kind, endpoint, flush_log)
        idle = run_child(kind, endpoint, flush_log, record=False)
    finally:
        hole.close()
    records = flushes(flush_log)
    # records pending, and a collector that never answers: it gives up at its bound
    assert records[busy]["complete"] is False
    assert EXIT_FLUSH_TIMEOUT - 0.05 <= float(records[busy]["seconds"]) < EXIT_FLUSH_TIMEOUT + 0.5  # type: ignore[arg-type]
    # nothing recorded: no export is attempted and nothing waits
    assert records[idle]["complete"] is True
    assert float(records[idle]["seconds"]) < EXIT_FLUSH_TIMEOUT / 2  # type: ignore[arg-type]
