"""OTLP metric streams at scale: how many distinct streams a worker's short jobs push.

A worker (this process, playing livekit's main process: ``PROMETHEUS_MULTIPROC_DIR`` set, a
forkserver) runs ``N`` short job processes, in batches of a few at a time. Each job process is a
forkserver child that calls ``otel_agents.init()`` with an OTLP endpoint at a local receiver
(``tests/otlp.py``), records one failed LLM attempt and runs one session (text mode, no room,
offline), and ends. A stream is what a backend keys a time series on: the resource's attributes,
the metric's name and the data point's attributes. Two variants, run in the same run:

* ``process`` (``OTEL_AGENTS_OTLP_METRICS`` unset, today's default): every job process pushes
  its own metrics, under a resource of its own (``service.instance.id``, ``process.pid``);
* ``sidecar`` (``OTEL_AGENTS_OTLP_METRICS=sidecar``): job processes push spans only, and the
  ``otel-agents sidecar``'s pusher (:mod:`otel_agents._sidecar.otlp`, run here in-process at the
  end of the run and once mid-run, as its periodic export would) pushes the merged directory
  under one resource for the worker.

The figure is the streams per worker with the sidecar pushing, against the per-process push of
the same run (the ratio is the fraction left); the target is that it does not grow with jobs:
at most the streams of one job process, whatever ``N``.

Sizes: ``BENCH_OTLP_STREAMS_JOBS`` (1000; 12 under ``BENCH_QUICK``), ``BENCH_OTLP_STREAMS_BATCH``
(job processes running at once: 8).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench import _common as c

JOBS = c.size("otlp_streams_jobs", 1000, 12)
BATCH = c.size("otlp_streams_batch", 8, 4)
VARIANTS = ("process", "sidecar")

Stream = tuple[frozenset[tuple[str, Any]], str, frozenset[tuple[str, Any]]]


def streams(exports: Iterable[Iterable[Any]]) -> set[Stream]:
    """The distinct (resource, metric, attributes) of every point received."""
    return {
        (frozenset(p.resource.items()), p.metric, frozenset(p.attributes.items()))
        for export in exports
        for p in export
    }


async def _job_work() -> None:
    from livekit.agents import Agent, AgentSession, TurnHandlingOptions, llm
    from livekit.agents.types import APIConnectOptions
    from livekit.agents.voice.agent_session import SessionConnectOptions

    from tests.scripted import ScriptedLLM, ssl_connection_error

    # one failed attempt, outside any session
    with contextlib.suppress(Exception):
        async for _ in ScriptedLLM([ssl_connection_error], provider="bench").chat(
            chat_ctx=llm.ChatContext.empty(), conn_options=APIConnectOptions(max_retry=0)
        ):
            pass
    # one session with one answered turn
    session: Any = AgentSession(
        llm=ScriptedLLM(["hello"], provider="bench"),
        vad=None,
        aec_warmup_duration=None,
        turn_handling=TurnHandlingOptions(turn_detection=None),
        user_away_timeout=None,
        conn_options=SessionConnectOptions(llm_conn_options=APIConnectOptions(max_retry=0)),
    )
    async with asyncio.timeout(30):
        await session.start(agent=Agent(instructions="bench agent"))
        with contextlib.suppress(Exception):
            await session.run(user_input="hello there")
        await session.aclose()


def job_process(endpoint: str, directory: str, variant: str) -> None:
    """A livekit job process: ``init()`` (the agent module's first line), then one job."""
    # what the worker's environment would hold (one forkserver serves both variants)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    if variant == "sidecar":
        os.environ["OTEL_AGENTS_OTLP_METRICS"] = "sidecar"
    else:
        os.environ.pop("OTEL_AGENTS_OTLP_METRICS", None)
    import otel_agents

    otel_agents.init(otlp_endpoint=endpoint, silence_timeout=5.0, exit_flush_timeout=5.0)
    asyncio.run(_job_work())


def _run_jobs(ctx: Any, args: tuple[str, str, str], count: int) -> None:
    done = 0
    while done < count:
        batch = [
            ctx.Process(target=job_process, args=args) for _ in range(min(BATCH, count - done))
        ]
        for p in batch:
            p.start()
        for p in batch:
            p.join(120)
            if p.exitcode != 0:
                raise RuntimeError(f"a job process ended with {p.exitcode}")
        done += len(batch)


def one_variant(variant: str, workdir: Path) -> dict[str, Any]:
    """Run ``JOBS`` job processes under one worker; the streams received."""
    from tests.otlp import OtlpReceiver

    directory = workdir / variant
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    started = time.monotonic()
    with OtlpReceiver() as receiver:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["livekit.agents", "otel_agents", "tests.scripted"])
        args = (receiver.url, str(directory), variant)
        pusher = None
        if variant == "sidecar":
            from otel_agents._sidecar.otlp import OtlpPusher

            pusher = OtlpPusher(str(directory), receiver.url, service_name="bench-worker")
        _run_jobs(ctx, args, JOBS // 2)
        if pusher is not None:
            pusher.push()  # a periodic export mid-run
        _run_jobs(ctx, args, JOBS - JOBS // 2)
        if pusher is not None:
            pusher.push()
            pusher.close()
        found = streams(receiver.metric_exports)
        resources = {r for r, _, _ in found}
        spans = len(receiver.spans)
        requests = dict(receiver.requests)
    return {
        "streams": len(found),
        "resources": len(resources),
        "metrics": len({m for _, m, _ in found}),
        "spans": spans,
        "requests": requests,
        "seconds": time.monotonic() - started,
    }


def run() -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    with tempfile.TemporaryDirectory() as tmp:
        results = {v: one_variant(v, Path(tmp)) for v in VARIANTS}
    before, after = results["process"], results["sidecar"]
    per_job = before["streams"] / JOBS
    figures = [
        c.Figure(
            key="otlp_streams_sidecar",
            name=f"OTLP metric streams per worker after {JOBS} short jobs, sidecar pushing",
            value=after["streams"],
            unit="",
            baseline=before["streams"],
            baseline_label="every job process pushing its own (today's default)",
            ratio=after["streams"] / before["streams"] if before["streams"] else None,
            on="value",
            op="<=",
            limit=max(1.0, per_job),
            note=(
                f"{JOBS} forkserver job processes, {BATCH} at a time, each one failed attempt and "
                f"one session; per process: {before['streams']} streams under "
                f"{before['resources']} resources ({per_job:.1f} per job, "
                f"{before['seconds']:.0f} s); sidecar: {after['streams']} streams under "
                f"{after['resources']} resource(s) ({after['seconds']:.0f} s), "
                f"{after['spans']} spans still pushed by the job processes; the target: "
                "no more than the streams of one job process, whatever the number of jobs"
            ),
        )
    ]
    return {"jobs": JOBS, "batch": BATCH, "results": results, "figures": figures}
