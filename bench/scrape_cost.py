"""What one ``/metrics`` render of a multiprocess directory costs, and what dead processes add.

Two cases, each against a baseline measured in the same run:

* **At the series budget**: one live process's file holding 500 series (DESIGN.md section 9:
  at most 500 per process). ``_multiproc.render`` (reap, then render, as the sidecar does) is
  compared with prometheus_client's bare ``MultiProcessCollector`` render of the same directory.
* **500 dead processes**: the files 500 finished job processes leave behind (counters,
  histograms, a live gauge; their liveness locks released). The bare collector reads every
  file on every scrape; the sidecar's first render reaps them into compacted files, and every
  render after that reads a handful of files. The dead processes' content is synthetic but
  shaped like a real job process's: otel-agents' own metric families and label sets.

Wall-clock medians over repeated renders; the files are in the page cache, as on a busy host.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from otel_agents import _multiproc
from otel_agents import _names as n

RESULTS = Path(__file__).parent / "results"
BUDGET = 500
DEAD = 500
REPEAT = 30
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
    _multiproc.write_db(str(directory / f"counter_{pid}.db"), counters)
    _multiproc.write_db(str(directory / f"histogram_{pid}.db"), histograms)
    _multiproc.write_db(str(directory / f"gauge_livesum_{pid}.db"), gauges)
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


def measure() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        budget = Path(tmp, "budget")
        budget.mkdir()
        _multiproc.write_db(str(budget / f"counter_{os.getpid()}.db"), budget_entries())
        bare_budget = median_ms(lambda: bare_render(budget))
        sidecar_budget = median_ms(lambda: _multiproc.render(str(budget)))

        dead = Path(tmp, "dead")
        dead.mkdir()
        _multiproc.write_db(str(dead / f"counter_{os.getpid()}.db"), budget_entries())
        for pid in range(FIRST_PID, FIRST_PID + DEAD):
            dead_process_files(dead, pid)
        files_before = len(list(dead.glob("*.db")))
        bare_dead = median_ms(lambda: bare_render(dead), repeat=5)
        first = once_ms(lambda: _multiproc.render(str(dead)))
        files_after = len(list(dead.glob("*.db")))
        after = median_ms(lambda: _multiproc.render(str(dead)))
    return {
        "budget_series": BUDGET,
        "budget_bare_ms": bare_budget,
        "budget_sidecar_ms": sidecar_budget,
        "budget_ratio": sidecar_budget / bare_budget,
        "dead_processes": DEAD,
        "dead_files_before": files_before,
        "dead_files_after": files_after,
        "dead_bare_ms": bare_dead,
        "dead_first_render_ms": first,
        "dead_after_reap_ms": after,
    }


def main() -> None:
    result = measure()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scrape_cost.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"scrape_cost  render of {result['budget_series']} series: "
        f"{result['budget_sidecar_ms']:.1f} ms "
        f"(bare MultiProcessCollector {result['budget_bare_ms']:.1f} ms, "
        f"ratio {result['budget_ratio']:.2f}x)\n"
        f"scrape_cost  + {result['dead_processes']} dead processes "
        f"({result['dead_files_before']} files): bare collector "
        f"{result['dead_bare_ms']:.0f} ms every scrape; sidecar's first render (reaps them) "
        f"{result['dead_first_render_ms']:.0f} ms, then {result['dead_after_reap_ms']:.1f} ms "
        f"({result['dead_files_after']} files)"
    )


if __name__ == "__main__":
    main()
