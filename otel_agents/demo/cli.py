"""``otel-agents demo``: the whole product on one machine, with no keys, Docker or collector.

It starts the fake LiveKit Inference gateway on 127.0.0.1, initialises otel-agents exactly as an
agent would (``otel_agents.init()`` before any model is built), runs each scenario as a real
``AgentSession`` on livekit's inference plugins, serves ``/metrics``, writes every span to an
OTLP/JSON file, and prints what was recorded. ``--serve`` loops the scenarios until interrupted,
so a Prometheus scraping it sees rates and its alerts can fire.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from .. import names as n
from .._argparse import OneLineParser
from .._config import InvalidSetting
from .options import PROG, SERVICE_NAME, Options, UsageError, add_arguments, init_environment
from .options import resolve as resolve_options
from .progress import Progress

__all__ = ["add_arguments", "main", "run"]


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Run the demo; returns the exit status (0 ok, 1 failed, 2 bad input, 130 interrupted)."""
    try:
        options = resolve_options(args)
    except UsageError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    _quiet_logs(options.verbose)
    try:
        return asyncio.run(_main(options, out))
    except UsageError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except InvalidSetting as exc:  # init() read the environment again: the same one line
        print(f"{PROG}: {exc.line()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _quiet_logs(verbose: bool) -> None:
    # The demo's output is the summary (plain text on stdout); the raw records are in the trace
    # file and /metrics. livekit logs every failed attempt with a traceback: keep that for
    # --verbose, redacted, as JSON lines (console lines on a terminal) on stderr.
    if verbose:
        from .._logs import configure_logging

        try:
            configure_logging(logging.INFO)
            return
        except ImportError as exc:
            print(f"{PROG}: --verbose: {exc}; logs are not redacted", file=sys.stderr)
    logging.basicConfig(
        level=logging.INFO if verbose else logging.CRITICAL,
        format="%(levelname)s %(name)s: %(message)s",
    )


async def _main(options: Options, out: TextIO) -> int:
    from livekit.agents import utils
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from prometheus_client import REGISTRY

    import otel_agents

    from .._sidecar.server import start_metrics_server
    from .gateway import FakeGateway
    from .summary import SpanCollector, format_report, metric_totals

    # bind first: a taken port must fail before the previous run's trace file is truncated
    try:
        server = await start_metrics_server(
            host=options.metrics_host, port=options.metrics_port, registry=REGISTRY
        )
    except OSError as exc:
        raise UsageError(
            f"cannot serve /metrics on {options.metrics_host}:{options.metrics_port}: "
            f"{exc.strerror or exc}"
        ) from None
    try:
        metrics_out = _open_for_writing(options.metrics_out, "--metrics-out")
        file_exporter = _trace_file(options.trace_file, options.trace_file_max_bytes)
    except UsageError:
        await server.aclose()
        raise

    # --- the export pipeline: the file (always), OTLP (when asked), the summary's collector ---
    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE_NAME}))
    provider.add_span_processor(BatchSpanProcessor(file_exporter, schedule_delay_millis=500))
    collector = SpanCollector()
    provider.add_span_processor(collector)
    if options.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(
            BatchSpanProcessor(
                OTLPSpanExporter(endpoint=f"{options.otlp_endpoint}/v1/traces", timeout=5)
            )
        )

    # exactly what an agent does: one call, before any model is built; the demo serves
    # /metrics itself, so init() does not bind $OTEL_AGENTS_METRICS_PORT a second time
    with _environment(init_environment(os.environ)):
        otel_agents.init(
            service_name=SERVICE_NAME,
            otlp_endpoint=options.otlp_endpoint,
            tracer_provider=provider,
            silence_timeout=options.silence_timeout,
        )
    tracer = provider.get_tracer("otel_agents.demo")
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    interrupted = False

    def stop() -> None:
        nonlocal interrupted
        interrupted = True
        stopping.set()
        if main_task is not None and not options.serve:
            main_task.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop)

    progress = Progress(out)
    status = 0
    try:
        async with utils.http_context.open(), FakeGateway() as gateway:
            total = len(options.scenarios)
            print(
                f"otel-agents demo: {total} scenario{'s' if total != 1 else ''} against a fake "
                f"LiveKit Inference gateway at {gateway.url}",
                file=out,
            )
            print(f"serving {server.url}", file=out, flush=True)
            round_no = 0
            while not stopping.is_set():
                round_no += 1
                started = time.monotonic()
                reports = await _run_round(
                    round_no, options, gateway, tracer, collector, progress, stopping
                )
                seconds = time.monotonic() - started
                if stopping.is_set():
                    progress.done("interrupted")
                    break
                done = f"done: {len(reports)} sessions in {seconds:.1f} s"
                progress.done(f"round {round_no} {done}" if options.serve else done)
                if round_no == 1:
                    # the file exporter writes on the SDK's thread: flush off the loop
                    await loop.run_in_executor(None, provider.force_flush)
                    exposition = await _scrape(server.url)
                    if metrics_out is not None:
                        metrics_out.write(exposition)
                        metrics_out.close()
                        metrics_out = None
                    where = _where(options, server.url, file_exporter.spans_written)
                    out.write(format_report(reports, metric_totals(exposition), where))
                    out.flush()
                if not options.serve:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), options.pause)
    except asyncio.CancelledError:
        status = 130
        progress.done("interrupted")
    finally:
        if metrics_out is not None:
            metrics_out.close()
        otel_agents.shutdown(timeout=2.0)
        provider.shutdown()
        await server.aclose()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signum)
    if interrupted and options.serve:
        status = 0
    return status


async def _run_round(
    round_no: int,
    options: Options,
    gateway: Any,
    tracer: Any,
    collector: Any,
    progress: Progress,
    stopping: asyncio.Event,
) -> list[Any]:
    """Every scenario once, each in a trace of its own; what otel-agents recorded of each."""
    from .scenarios import run_scenario

    reports = []
    total = len(options.scenarios)
    for i, scenario in enumerate(options.scenarios, 1):
        if stopping.is_set():
            break
        label = f"[{i}/{total}] {scenario.name}"
        if options.serve:
            label = f"round {round_no} {label}"
        if progress.tty:
            progress.show(f"{label} ...")
        started = time.monotonic()
        with tracer.start_as_current_span(
            n.SPAN_DEMO_SCENARIO, attributes={n.D_SCENARIO: scenario.name, n.D_ROUND: round_no}
        ) as span:
            # its own task: livekit leaves its session span attached to the caller's context,
            # which must not leak into the next scenario
            await asyncio.create_task(
                run_scenario(
                    scenario, gateway, on_turn=progress.per_turn(label), pace=options.drain_pace
                )
            )
        reports.append(
            collector.take(span.get_span_context().trace_id, scenario.name, scenario.summary)
        )
        if not progress.tty:
            progress.show(f"{label} ({time.monotonic() - started:.1f} s)")
    return reports


def _where(options: Options, metrics_url: str, spans_written: int) -> list[tuple[str, str]]:
    where = [
        ("metrics", metrics_url + ("" if options.serve else " (until exit)")),
        (
            "traces",
            f"{options.trace_file} ({spans_written} spans, "
            "OTLP JSON: the Collector's otlpjsonfile receiver reads it)",
        ),
    ]
    if options.otlp_endpoint:
        where.append(("otlp", options.otlp_endpoint))
    where.append(
        (
            "dashboards",
            "docker compose up, then http://localhost:3000: "
            "'LiveKit Agents / Overview' and 'LiveKit Agents / Errors and quota'",
        )
    )
    if options.serve:
        where.append(
            (
                "serving",
                "until Ctrl-C or SIGTERM; past "
                f"{options.trace_file_max_bytes / 1e6:g} MB the trace file is rotated to "
                f"{options.trace_file}.1",
            )
        )
    return where


async def _scrape(url: str) -> str:
    import aiohttp

    async with aiohttp.ClientSession() as http, http.get(url) as response:
        response.raise_for_status()
        text: str = await response.text()
        return text


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    """``os.environ`` is ``env`` inside the block, and what it was after it."""
    saved = dict(os.environ)
    try:
        for name in set(os.environ) - set(env):
            del os.environ[name]
        os.environ.update(env)
        yield
    finally:
        for name in set(os.environ) - set(saved):
            del os.environ[name]
        os.environ.update(saved)


def _trace_file(path: Path, max_bytes: int) -> Any:
    from .tracefile import OtlpJsonFileExporter

    try:
        return OtlpJsonFileExporter(path, max_bytes=max_bytes)
    except OSError as exc:
        raise UsageError(
            f"cannot write the trace file {str(path)!r}: {exc.strerror or exc}"
        ) from None


def _open_for_writing(path: Path | None, what: str) -> TextIO | None:
    """Opened at start-up, so a bad path fails before the scenarios run, not after."""
    if path is None:
        return None
    try:
        return path.open("w", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {what} {str(path)!r}: {exc.strerror or exc}") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = OneLineParser(prog=PROG, description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))
