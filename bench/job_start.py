"""What otel-agents adds to the start of a livekit job process, under livekit's real worker.

Every job process imports the agent module again, and with it otel-agents and whatever
``init()`` needs, before it can take a job. ``init()`` registers otel-agents as a livekit plugin
so that livekit's forkserver preloads those imports once, and job processes forked from it
inherit them. Three variants of one agent module, each started as a user starts it
(``python agent.py start``, livekit's default executor: forkserver job processes,
``PROMETHEUS_MULTIPROC_DIR`` and an OTLP endpoint set), with livekit keeping ``IDLE`` job
processes warm:

* ``without``: no otel-agents (the baseline);
* ``with``: ``import otel_agents; otel_agents.init()`` at the top, as the README says;
* ``no_preload``: the same, with the plugin registration disabled (what a job process would
  pay without the forkserver preload).

Two figures per variant, against the baseline of the same round:

* **job-process start**: livekit's own measurement, ``lk_agents_proc_initialize_duration_seconds``
  (from sending a new process its initialize request to its answer: the agent module's import
  included), averaged over the round's processes, scraped from the worker's ``/metrics``;
* **otel-agents' own cost in a job process**: the agent module times its ``import otel_agents``
  and ``init()`` with ``time.perf_counter`` (a direct measurement, free of livekit's noise).

Rounds alternate the variants; medians of per-round values are compared.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench import _common as c

ROUNDS = c.size("job_start_rounds", 5, 1)
IDLE = c.size("job_start_processes", 6, 3)
VARIANTS = ("without", "with", "no_preload")
TIMEOUT = 120.0
#: what the issue of record allows a job process to pay for otel-agents
ADDED_BUDGET_MS = 5.0

AGENT = """
import json, os, time
_started, _cpu = time.perf_counter(), time.process_time()
if os.environ["BENCH_VARIANT"] != "without":
    import otel_agents
    if os.environ["BENCH_VARIANT"] == "no_preload":
        from otel_agents._capture import worker as _worker
        _worker.register_preload = lambda: None
    otel_agents.init()
_cost, _cpu = time.perf_counter() - _started, time.process_time() - _cpu
if __name__ == "__mp_main__":  # a job process (the worker runs it as __main__)
    with open(os.environ["BENCH_COSTS"], "a") as f:
        f.write(json.dumps({"pid": os.getpid(), "seconds": _cost, "cpu": _cpu}) + "\\n")

from livekit.agents import AgentServer, JobContext, cli


class OfflineServer(AgentServer):
    async def run(self, *, devmode=False, unregistered=False):
        await super().run(devmode=devmode, unregistered=True)


server = OfflineServer(
    prometheus_port=int(os.environ["BENCH_PROMETHEUS_PORT"]),
    port=0,
    num_idle_processes=int(os.environ["BENCH_IDLE"]),
)


@server.rtc_session()
async def entrypoint(ctx: JobContext) -> None:
    pass


if __name__ == "__main__":
    cli.run_app(server)
"""


def _initialized(url: str) -> tuple[float, float]:
    """(sum, count) of livekit's process-initialize histogram; (0, 0) before the first."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return 0.0, 0.0
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith("lk_agents_proc_initialize_duration_seconds_sum"):
            total += float(line.split()[-1])
        elif line.startswith("lk_agents_proc_initialize_duration_seconds_count"):
            count += float(line.split()[-1])
    return total, count


def one_round(variant: str, workdir: Path) -> dict[str, float]:
    """Start the worker, wait for its ``IDLE`` processes, stop it: the mean start of a job
    process (livekit's figure) and otel-agents' mean cost in one (the module's own)."""
    run_dir = Path(tempfile.mkdtemp(dir=workdir))
    agent = run_dir / "agent.py"
    agent.write_text(AGENT)
    costs = run_dir / "costs.jsonl"
    port = c.free_port()
    env = {
        **os.environ,
        "BENCH_VARIANT": variant,
        "BENCH_COSTS": str(costs),
        "BENCH_IDLE": str(IDLE),
        "BENCH_PROMETHEUS_PORT": str(port),
        "PROMETHEUS_MULTIPROC_DIR": str(run_dir / "multiproc"),
        # an endpoint nothing listens on: init() builds the whole pipeline, nothing is sent
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{c.free_port()}",
    }
    worker = subprocess.Popen(
        [sys.executable, str(agent), "start"],
        cwd=run_dir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        url = f"http://127.0.0.1:{port}/metrics"
        while (initialized := _initialized(url))[1] < IDLE:
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the {variant} worker never started {IDLE} processes")
            time.sleep(0.05)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    total, count = initialized
    records = [json.loads(line) for line in costs.read_text().splitlines()]
    return {
        "start_s": total / count,
        "own_s": statistics.mean(r["seconds"] for r in records),
        "own_cpu_s": statistics.mean(r["cpu"] for r in records),
    }


def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        rounds = c.alternate({v: (lambda v=v: one_round(v, Path(tmp))) for v in VARIANTS}, ROUNDS)
    start = {v: [r["start_s"] * 1000 for r in rounds[v]] for v in VARIANTS}
    own = {v: [r["own_s"] * 1000 for r in rounds[v]] for v in VARIANTS}
    own_cpu = {v: [r["own_cpu_s"] * 1000 for r in rounds[v]] for v in VARIANTS}
    base = c.median(start["without"])
    figures = []
    for variant, label in (("with", "init() at the top"), ("no_preload", "no forkserver preload")):
        added = [w - b for w, b in zip(start[variant], start["without"], strict=True)]
        figures.append(
            c.Figure(
                key=f"job_start_{variant}",
                name=f"job-process start under the real worker, {label}",
                value=c.median(start[variant]),
                unit="ms",
                baseline=base,
                baseline_label="livekit's own job-process start, no otel-agents",
                ratio=c.paired_ratio(start[variant], start["without"]),
                note=(
                    f"livekit's lk_agents_proc_initialize_duration_seconds, mean of {IDLE} "
                    f"processes started together per round, {ROUNDS} rounds; added per round: "
                    f"{', '.join(f'{a:+.1f}' for a in added)} ms"
                ),
            )
        )
    figures.append(
        c.Figure(
            key="job_start_own_cpu",
            name="otel-agents' import and init() in a job process, CPU time (preloaded)",
            value=c.median(own_cpu["with"]),
            unit="ms",
            baseline=c.median(own_cpu["no_preload"]),
            baseline_label="the same without the forkserver preload",
            ratio=c.median(own_cpu["with"]) / c.median(own_cpu["no_preload"]),
            on="value",
            op="<=",
            limit=ADDED_BUDGET_MS,
            note=(
                "timed by the agent module itself (time.process_time around its two lines); "
                f"wall time {c.median(own['with']):.1f} ms preloaded, "
                f"{c.median(own['no_preload']):.1f} ms without the preload, with {IDLE} "
                "processes starting at once on the machine's cores"
            ),
        )
    )
    return {"rounds": rounds, "start_ms": start, "own_ms": own, "figures": figures}
