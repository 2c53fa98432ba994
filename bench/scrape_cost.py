"""What one ``/metrics`` render of a multiprocess directory costs, what dead processes add, and
what 20 concurrent scrapes cost.

Three cases, each against a baseline measured in the same run:

* **At the series budget**: one live process's file holding 500 series (docs/architecture.md:
  at most 500 per process). ``_sidecar.render.render`` (reap, then render, as the sidecar does) is
  compared with prometheus_client's bare ``MultiProcessCollector`` render of the same directory.
* **500 dead processes**: the files 500 finished job processes leave behind (counters,
  histograms, a live gauge; their liveness locks released). The bare collector reads every
  file on every scrape; the sidecar's first render reaps them into compacted files, and every
  render after that reads a handful of files. The dead processes' content is synthetic but
  shaped like a real job process's: otel-agents' own metric families and label sets.
* **20 concurrent scrapes** (several Prometheus replicas, a federation, a human with curl) of
  the sidecar's server (:func:`otel_agents._sidecar.server.start_metrics_server`, on an event
  loop and thread of its own) over the directory at the series budget, from a scraper in another
  process (as Prometheus is: in this one it would compete for the GIL): the wall time of a batch
  of 20 GETs sent at once on 20 keep-alive connections against one GET alone, alternating, and
  the number of renders each batch caused (``MetricsServer.renders``). Single flight means one
  render per batch of overlapping scrapes, where 20 renders in a row on the render thread would
  cost ~20x.

Wall-clock medians over repeated renders; the files are in the page cache, as on a busy host.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from bench import _common as c
from otel_agents import names as n
from otel_agents._sidecar import dbfile, render
from otel_agents._sidecar.server import MetricsServer, start_metrics_server

BUDGET = 500
DEAD = c.size("scrape_dead", 500, 100)
REPEAT = c.size("scrape_repeat", 30, 8)
CONCURRENT = 20
BATCHES = c.size("scrape_batches", 20, 5)
FIRST_PID = 4_000_000  # above any real pid_max: these processes never existed


def _key(family: str, sample: str, labels: dict[str, str], help_text: str) -> str:
    return json.dumps([family, sample, labels, help_text])


def _counter(name: str, labels: dict[str, str]) -> str:
    return _key(name.removesuffix("_total"), name, labels, "bench")


def budget_entries() -> list[tuple[str, float, float]]:
    """500 counter series of otel-agents' attempt-failure family, distinct label sets."""
    entries = []
    for i in range(BUDGET):
        labels = {
            n.L_COMPONENT: n.COMPONENTS[i % len(n.COMPONENTS)],
            n.L_PROVIDER: f"provider-{i % 32}",
            n.L_ERROR_CLASS: n.ERROR_CLASSES[i % len(n.ERROR_CLASSES)],
            n.L_ROOT_CAUSE: f"pkg.Error{i}",
            n.L_FINAL: "true" if i % 2 else "false",
        }
        entries.append((_counter(n.ATTEMPT_FAILURES, labels), float(i + 1), 0.0))
    return entries


def dead_process_files(directory: Path, pid: int) -> None:
    """The files of one finished job process: a few counters, three histograms, live gauges."""
    llm = {n.L_COMPONENT: "llm", n.L_PROVIDER: "livekit"}
    rate_limited = {n.L_ERROR_CLASS: "rate_limited", n.L_ROOT_CAUSE: "openai.RateLimitError"}
    counters = [
        (_counter(n.SESSIONS_STARTED, {}), 1.0, 0.0),
        (_counter(n.USER_TURNS, {}), 3.0, 0.0),
        (_counter(n.SESSIONS_CLOSED, {n.L_REASON: "error", n.L_AGENT_SPOKE: "true"}), 1.0, 0.0),
        (_counter(n.REQUESTS, {**llm, n.L_OUTCOME: "ok"}), 3.0, 0.0),
        (_counter(n.ATTEMPT_FAILURES, {**llm, **rate_limited, n.L_FINAL: "false"}), 2.0, 0.0),
    ]
    histograms = []
    for name in (n.TIME_TO_FIRST_SPEECH, n.RESPONSE_LATENCY):
        for bound in (*n.VOICE_BUCKETS, float("inf")):
            le = "+Inf" if bound == float("inf") else str(bound)
            histograms.append((_key(name, name + "_bucket", {"le": le}, "bench"), 1.0, 0.0))
        histograms.append((_key(name, name + "_count", {}, "bench"), 1.0, 0.0))
        histograms.append((_key(name, name + "_sum", {}, "bench"), 0.4, 0.0))
    gauges = [
        (_key(n.SESSIONS_ACTIVE, n.SESSIONS_ACTIVE, {}, "bench"), 0.0, 0.0),
        (_key(n.UNANSWERED_TURNS, n.UNANSWERED_TURNS, {}, "bench"), 0.0, 0.0),
    ]
    dbfile.write_db(str(directory / f"counter_{pid}.db"), counters)
    dbfile.write_db(str(directory / f"histogram_{pid}.db"), histograms)
    dbfile.write_db(str(directory / f"gauge_livesum_{pid}.db"), gauges)
    # its liveness lock file, released when it exited: the reaper may lock it
    (directory / f"otel_agents_alive_{pid}.lock").touch()


def bare_render(directory: Path) -> bytes:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    return generate_latest(registry)


def median_ms(run: Callable[[], Any], repeat: int = REPEAT) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def once_ms(run: Callable[[], Any]) -> float:
    start = time.perf_counter()
    run()
    return (time.perf_counter() - start) * 1e3


REQUEST = (
    b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/plain;version=0.0.4\r\n"
    b"Accept-Encoding: gzip\r\nUser-Agent: bench\r\n\r\n"
)


def _read_response(sock: socket.socket) -> int:
    """Read one HTTP/1.1 response (Content-Length framed); returns its status."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        body += chunk
    return int(lines[0].split()[1])


def client(port: int) -> None:
    """The scraper, in a process of its own (as Prometheus is): on ``one`` a single GET, on
    ``batch`` 20 GETs sent at once on 20 keep-alive connections; prints each wall time."""
    conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(CONCURRENT)]
    for sock in conns:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for line in sys.stdin:
        use = conns[:1] if line.strip() == "one" else conns
        start = time.perf_counter()
        for sock in use:
            sock.sendall(REQUEST)
        statuses = [_read_response(sock) for sock in use]
        elapsed = time.perf_counter() - start
        assert set(statuses) == {200}, statuses
        print(f"{elapsed:.9f}", flush=True)


def _scrapes(server: MetricsServer) -> dict[str, Any]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.scrape_cost", "--client", str(server.port)],
        cwd=Path(__file__).resolve().parent.parent,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    stdin, stdout = proc.stdin, proc.stdout
    assert stdin is not None
    assert stdout is not None

    def ask(what: str) -> float:
        stdin.write(what + "\n")
        stdin.flush()
        return float(stdout.readline())

    try:
        ask("batch")  # warm: every connection served once
        singles, batches, renders = [], [], []
        for _ in range(BATCHES):
            singles.append(ask("one"))
            before = server.renders
            batches.append(ask("batch"))
            renders.append(server.renders - before)
    finally:
        stdin.close()
        proc.wait(30)
    return {
        "concurrent": CONCURRENT,
        "batches": BATCHES,
        "one_scrape_ms": statistics.median(singles) * 1e3,
        "batch_ms": statistics.median(batches) * 1e3,
        "batch_ratio": c.paired_ratio(batches, singles),
        "renders_per_batch": renders,
    }


def concurrent_scrapes(directory: Path) -> dict[str, Any]:
    """The sidecar's server on its own loop and thread; 20 concurrent GETs from this one."""
    loop = asyncio.new_event_loop()
    started: dict[str, Any] = {}
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)

        async def start() -> None:
            try:
                started["server"] = await start_metrics_server(
                    host="127.0.0.1", port=0, directory=str(directory)
                )
            except BaseException as exc:
                started["error"] = exc
            finally:
                ready.set()

        loop.run_until_complete(start())
        if "server" in started:
            loop.run_forever()

    thread = threading.Thread(target=serve, name="bench-sidecar", daemon=True)
    thread.start()
    ready.wait(30)
    if "error" in started:
        raise started["error"]
    server: MetricsServer = started["server"]
    try:
        return _scrapes(server)
    finally:
        asyncio.run_coroutine_threadsafe(server.aclose(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


def measure() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        budget = Path(tmp, "budget")
        budget.mkdir()
        dbfile.write_db(str(budget / f"counter_{os.getpid()}.db"), budget_entries())
        bare, sidecar = [], []
        for _ in range(REPEAT):  # alternating
            bare.append(once_ms(lambda: bare_render(budget)))
            sidecar.append(once_ms(lambda: render.render(str(budget))))
        scrapes = concurrent_scrapes(budget)

        dead = Path(tmp, "dead")
        dead.mkdir()
        dbfile.write_db(str(dead / f"counter_{os.getpid()}.db"), budget_entries())
        for pid in range(FIRST_PID, FIRST_PID + DEAD):
            dead_process_files(dead, pid)
        files_before = len(list(dead.glob("*.db")))
        bare_dead = median_ms(lambda: bare_render(dead), repeat=5)
        first = once_ms(lambda: render.render(str(dead)))
        files_after = len(list(dead.glob("*.db")))
        after = median_ms(lambda: render.render(str(dead)))
    return {
        "budget_series": BUDGET,
        "budget_bare_ms": statistics.median(bare),
        "budget_sidecar_ms": statistics.median(sidecar),
        "budget_ratio": c.paired_ratio(sidecar, bare),
        "dead_processes": DEAD,
        "dead_files_before": files_before,
        "dead_files_after": files_after,
        "dead_bare_ms": bare_dead,
        "dead_first_render_ms": first,
        "dead_after_reap_ms": after,
        "scrapes": scrapes,
    }


def run() -> dict[str, Any]:
    r = measure()
    s = r["scrapes"]
    renders = s["renders_per_batch"]
    figures = [
        c.Figure(
            key="scrape.budget",
            name=f"/metrics render at the series budget ({r['budget_series']} series)",
            value=r["budget_sidecar_ms"],
            unit="ms",
            baseline=r["budget_bare_ms"],
            baseline_label="prometheus_client's bare MultiProcessCollector",
            ratio=r["budget_ratio"],
        ),
        c.Figure(
            key="scrape.dead",
            name=f"/metrics render after reaping {r['dead_processes']} dead processes' files",
            value=r["dead_after_reap_ms"],
            unit="ms",
            baseline=r["dead_bare_ms"],
            baseline_label=f"bare collector reading all {r['dead_files_before']:,} files",
            ratio=r["dead_after_reap_ms"] / r["dead_bare_ms"],
            note=f"the first render reaps them in {r['dead_first_render_ms']:.0f} ms; "
            f"{r['dead_files_after']} files remain",
        ),
        c.Figure(
            key="scrape.concurrent",
            name=f"{s['concurrent']} concurrent scrapes at the budget, wall time of the batch",
            value=s["batch_ms"],
            unit="ms",
            baseline=s["one_scrape_ms"],
            baseline_label="one scrape alone",
            ratio=s["batch_ratio"],
            note=f"renders per batch: {_counts(renders)}",
        ),
        c.Figure(
            key="scrape.single_flight",
            name=f"{s['concurrent']} concurrent scrapes: renders per batch (single flight)",
            value=float(max(renders)),
            unit="",
            baseline=float(s["concurrent"]),
            baseline_label="scrapes per batch",
            ratio=max(renders) / s["concurrent"],
            on="value",
            op="==",
            limit=1.0,
            note=f"over {s['batches']} batches: {_counts(renders)}",
        ),
    ]
    r["figures"] = figures
    return r


def _counts(renders: list[int]) -> str:
    counts: dict[int, int] = {}
    for x in renders:
        counts[x] = counts.get(x, 0) + 1
    return ", ".join(f"{k} in {v} batches" for k, v in sorted(counts.items()))


def main() -> dict[str, Any]:
    result = run()
    print("scrape_cost: wall-clock medians")
    c.print_figures(c.figures_of(result))
    c.write_result("scrape_cost", c.jsonable(result))
    return result


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--client":
        client(int(sys.argv[2]))
    else:
        main()
