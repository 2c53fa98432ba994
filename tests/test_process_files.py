"""A process's files in ``PROMETHEUS_MULTIPROC_DIR`` survive livekit's worker emptying the
directory after ``init()`` ran (``AgentServer.run`` deletes every file in it), and ``init()``
works when the directory does not exist yet.

Each case runs in a subprocess of its own, as a worker's main process: ``livekit.agents`` is
imported first (so prometheus_client has picked its in-memory storage: the import-order trap),
then the variable is set, then ``init()``. The wipe here is livekit's own loop, copied; the
whole path through the real ``AgentServer`` is ``tests/test_worker.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from otel_agents import names as n
from otel_agents._sidecar import render as sidecar

SCRIPT = r"""
import asyncio, json, os, sys
sys.path.insert(0, sys.argv[1])
import livekit.agents  # prometheus_client imported before the variable is set

directory = sys.argv[2]
os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
import otel_agents
from otel_agents._multiproc import process_files
from livekit.agents import llm
from livekit.agents.types import APIConnectOptions
from scripted import ScriptedLLM, ssl_connection_error

async def fail(times):
    for _ in range(times):
        model = ScriptedLLM([ssl_connection_error])
        try:
            async for _ in model.chat(chat_ctx=llm.ChatContext.empty(),
                                      conn_options=APIConnectOptions(max_retry=0)):
                pass
        except Exception:
            pass

def wipe():  # what livekit's AgentServer.run does to the directory
    for filename in os.listdir(directory):
        file_path = os.path.join(directory, filename)
        if os.path.isfile(file_path):
            os.unlink(file_path)

otel_agents.init()
out = {"created": os.path.isdir(directory)}
asyncio.run(fail(2))
for step in sys.argv[3].split(","):
    if step == "wipe":
        wipe()
    elif step == "restore":
        out.setdefault("restored", []).append(process_files.restore())
    elif step == "fail":
        asyncio.run(fail(3))
    elif step == "hostile":  # the path of a file to restore is taken by a directory
        wipe()
        os.mkdir(os.path.join(directory, "counter_%d.db" % os.getpid()))
print(json.dumps(out), flush=True)
sys.stdin.readline()  # stay alive (and holding its lock) until the test has looked
"""


def run_main(directory: Path, steps: str) -> tuple[subprocess.Popen[str], dict[str, object]]:
    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(Path(__file__).parent), str(directory), steps],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line, f"the main process failed (exit {process.wait(10)})"
    return process, json.loads(line)


def failures(directory: Path) -> float:
    """``otel_agents_attempt_failures_total`` as a scrape of the directory sees it."""
    text = sidecar.render(str(directory)).decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(n.ATTEMPT_FAILURES + "{")
    )


def live_processes(directory: Path) -> float:
    text = sidecar.render(str(directory)).decode()
    (line,) = [x for x in text.splitlines() if x.startswith(n.SIDECAR_LIVE_PROCESSES + " ")]
    return float(line.split()[1])


def finish(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None
    process.stdin.write("\n")
    process.stdin.flush()
    assert process.wait(30) == 0


def test_init_creates_a_missing_directory(tmp_path: Path) -> None:
    directory = tmp_path / "not" / "there"
    process, out = run_main(directory, "")
    try:
        assert out["created"] is True
        assert failures(directory) == 2
        assert live_processes(directory) == 1
    finally:
        finish(process)


def test_what_was_counted_before_the_wipe_is_counted_once_after_it(tmp_path: Path) -> None:
    directory = tmp_path / "multiproc"
    process, out = run_main(directory, "wipe,restore,fail,restore")
    try:
        # the two failures before the wipe, the three after it, each once; the second restore
        # found every file in place
        assert failures(directory) == 5
        assert out["restored"][0] >= 2  # type: ignore[index]  counters and gauges at least
        assert out["restored"][1] == 0  # type: ignore[index]
        # its liveness lock is back: alive to the reaper, so its live gauges are kept
        assert live_processes(directory) == 1
    finally:
        finish(process)


def test_without_a_restore_the_wipe_loses_the_process(tmp_path: Path) -> None:
    """The failure this fixes, shown: after livekit's wipe the process writes to deleted files."""
    directory = tmp_path / "multiproc"
    process, _ = run_main(directory, "wipe,fail")
    try:
        assert failures(directory) == 0
        assert live_processes(directory) == 0
    finally:
        finish(process)


@pytest.mark.parametrize("steps", ["hostile,restore,fail"])
def test_a_file_that_cannot_be_restored_is_contained(tmp_path: Path, steps: str) -> None:
    directory = tmp_path / "multiproc"
    process, out = run_main(directory, steps)
    try:
        # the counter file could not come back (a directory holds its path); the others did,
        # the liveness lock too, and nothing raised into the host
        assert out["restored"][0] >= 1  # type: ignore[index]
        assert live_processes(directory) == 1
    finally:
        finish(process)
