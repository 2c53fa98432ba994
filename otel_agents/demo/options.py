"""``otel-agents demo``'s options: the parser, and the checked settings it runs with.

Every value is checked before anything starts, from an option or the environment alike
(including the variables ``otel_agents.init()`` reads): a bad one is :class:`UsageError`, one
line and exit status 2.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from .. import _config

__all__ = ["DEFAULT_METRICS_PORT", "Options", "UsageError", "add_arguments", "resolve"]

PROG: Final = "otel-agents demo"
SERVICE_NAME: Final = "otel-agents-demo"
DEFAULT_METRICS_PORT: Final = 9464
DEFAULT_TRACE_FILE: Final = "otel-agents-demo-traces.jsonl"
DEFAULT_PAUSE: Final = 5.0
#: the trace file's cap: past it, the file is rotated to ``PATH.1`` (one round is ~300 KB)
DEFAULT_TRACE_FILE_MAX_MB: Final = 50.0


class UsageError(Exception):
    """Bad input: printed as one line, exit status 2."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .scenarios import scenario_names

    parser.add_argument(
        "-s",
        "--scenario",
        action="append",
        metavar="NAME",
        help=f"run only this scenario (repeatable); one of: {', '.join(scenario_names())}",
    )
    parser.add_argument(
        "--metrics-port",
        metavar="PORT",
        help=f"serve /metrics on this port (0: any free port); else ${_config.ENV_METRICS_PORT}, "
        f"else {DEFAULT_METRICS_PORT}",
    )
    parser.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="HOST",
        help="the address /metrics binds (default: 127.0.0.1)",
    )
    parser.add_argument(
        "--trace-file",
        default=DEFAULT_TRACE_FILE,
        metavar="PATH",
        help=f"write spans here as OTLP JSON lines (default: ./{DEFAULT_TRACE_FILE})",
    )
    parser.add_argument(
        "--trace-file-max-mb",
        default=f"{DEFAULT_TRACE_FILE_MAX_MB:g}",
        metavar="MB",
        help="past this size the trace file is rotated to PATH.1 (the previous PATH.1 is "
        f"dropped), so --serve uses at most twice this (default: {DEFAULT_TRACE_FILE_MAX_MB:g})",
    )
    parser.add_argument(
        "--otlp-endpoint",
        metavar="URL",
        help=f"also export traces and metrics over OTLP/HTTP; else ${_config.ENV_OTLP_ENDPOINT}",
    )
    parser.add_argument(
        "--metrics-out",
        metavar="PATH",
        help="also save the final /metrics scrape to this file",
    )
    parser.add_argument(
        "--serve",
        action="store_true",
        help="keep looping the scenarios until interrupted (for Prometheus and its alerts)",
    )
    parser.add_argument(
        "--pause",
        default=f"{DEFAULT_PAUSE:g}",
        metavar="SECONDS",
        help=f"with --serve: the pause between rounds (default: {DEFAULT_PAUSE:g})",
    )
    parser.add_argument(
        "--drain-pace",
        default="0",
        metavar="SECONDS",
        help="the pause between the credits-draining scenario's turns, so a Prometheus "
        "scraping /metrics sees the credit balance burn over several scrapes (default: 0)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also show livekit's and otel-agents' logs, redacted, as JSON lines on stderr "
        "(console lines on a terminal)",
    )


@dataclass(frozen=True)
class Options:
    scenarios: tuple[Any, ...]
    metrics_host: str
    metrics_port: int
    trace_file: Path
    trace_file_max_bytes: int
    otlp_endpoint: str | None
    metrics_out: Path | None
    serve: bool
    pause: float
    drain_pace: float
    verbose: bool
    #: ``silence_timeout`` for ``init()``: the demo's short one unless the environment sets it
    silence_timeout: float | None


def init_environment(env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The environment ``init()`` runs with in the demo: the demo serves ``/metrics`` itself,
    so ``init()`` must not bind ``$OTEL_AGENTS_METRICS_PORT`` a second time."""
    return {k: v for k, v in env.items() if k != _config.ENV_METRICS_PORT}


def resolve(args: argparse.Namespace, env: Mapping[str, str] = os.environ) -> Options:
    """The options, every value checked; :class:`UsageError` names the first bad one."""
    from .scenarios import SCENARIOS, SILENCE_TIMEOUT, scenario_names

    by_name = {s.name: s for s in SCENARIOS}
    chosen = []
    for name in args.scenario or scenario_names():
        if name not in by_name:
            raise UsageError(
                f"unknown scenario {name!r} (choose from: {', '.join(scenario_names())})"
            )
        if by_name[name] not in chosen:
            chosen.append(by_name[name])

    try:
        if args.metrics_port is not None:
            port = _config.parse_port("--metrics-port", args.metrics_port, allow_zero=True)
        elif (raw_port := _config.env_value(env, _config.ENV_METRICS_PORT)) is not None:
            port = _config.parse_port(_config.ENV_METRICS_PORT, raw_port, allow_zero=True)
        else:
            port = DEFAULT_METRICS_PORT
        if not isinstance(args.metrics_host, str) or not args.metrics_host.strip():
            raise _config.InvalidSetting(
                "--metrics-host", args.metrics_host, "a host name or IP address"
            )
        endpoint = None
        if args.otlp_endpoint is not None:
            endpoint = _config.parse_endpoint("--otlp-endpoint", args.otlp_endpoint)
        max_mb = _config.parse_seconds("--trace-file-max-mb", args.trace_file_max_mb)
        if max_mb * 1e6 < 1024:
            raise _config.InvalidSetting(
                "--trace-file-max-mb", args.trace_file_max_mb, "at least 0.001 (1 KB)"
            )
        pause = _config.parse_seconds("--pause", args.pause, allow_zero=True)
        drain_pace = _config.parse_seconds("--drain-pace", args.drain_pace, allow_zero=True)
        # what init() will read from the environment, checked now: one line, not a traceback
        _config.sdk_disabled(env)
        settings = _config.resolve(
            service_name=SERVICE_NAME,
            otlp_endpoint=endpoint,
            metrics_port=None,
            metrics_host="127.0.0.1",
            silence_timeout=None,
            capture_messages=None,
            env=init_environment(env),
        )
    except _config.InvalidSetting as exc:
        raise UsageError(exc.line()) from None

    return Options(
        scenarios=tuple(chosen),
        metrics_host=args.metrics_host.strip(),
        metrics_port=port,
        trace_file=Path(args.trace_file),
        trace_file_max_bytes=int(max_mb * 1_000_000),
        otlp_endpoint=settings.otlp_endpoint,
        metrics_out=Path(args.metrics_out) if args.metrics_out else None,
        serve=bool(args.serve),
        pause=pause,
        drain_pace=drain_pace,
        verbose=bool(args.verbose),
        # short, so the stalled scenario's caller counts as unanswered within seconds
        silence_timeout=None
        if _config.env_value(env, _config.ENV_SILENCE_TIMEOUT)
        else SILENCE_TIMEOUT,
    )
