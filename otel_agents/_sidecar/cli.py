"""``otel-agents sidecar``: one ``/metrics`` for every process of a livekit worker.

Run it beside the worker (a sidecar container sharing ``PROMETHEUS_MULTIPROC_DIR``, or a second
process on the same host). It serves the directory with :func:`.server.start_metrics_server`
until SIGTERM or SIGINT; each scrape first reaps the files of dead job processes, then renders
the directory, plus a few self-metrics (``otel_agents_sidecar_*``).

Secrets for the optional bearer-token and basic auth on ``/metrics`` come from files or the
environment, never the command line. A bad setting prints one line,
``otel-agents sidecar: <what>: <value>: <why>``, and exits with status 2. Bound to an address
other hosts can reach without auth, it serves all the same and says so on stderr.

It raises its own soft limit of open files to the hard limit (the connection cap is sized from
it), and its event loop's own errors (a failed ``accept()``...) cost one line a minute each,
without a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import os
import resource
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from .. import names as n
from .._config import (
    ENV_OTLP_ENDPOINT,
    ENV_OTLP_METRICS,
    InvalidSetting,
    otlp_metrics_mode,
    parse_endpoint,
    parse_port,
    parse_seconds,
    writable,
)
from .._multiproc import liveness
from .render import directory_problem, why
from .server import (
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_KEEPALIVE_TIMEOUT_S,
    DEFAULT_MAX_CONNECTIONS,
    PROG,
    MetricsServer,
    start_metrics_server,
)

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 9464
ENV_BEARER_TOKEN: Final = "OTEL_AGENTS_SIDECAR_BEARER_TOKEN"
ENV_BASIC_AUTH: Final = "OTEL_AGENTS_SIDECAR_BASIC_AUTH"
#: the soft limit of open files the sidecar raises itself to, when the hard limit is unlimited
FD_LIMIT: Final = 65536
LOOP_ERROR_LOG_INTERVAL_S: Final = 60.0


class CliError(Exception):
    """A bad setting: printed as ``otel-agents sidecar: <what>: <value>: <why>``."""

    def __init__(self, what: str, value: str, why: str) -> None:
        super().__init__(f"{PROG}: {what}: {value}: {why}")


@dataclass(frozen=True)
class _Config:
    directory: str
    host: str
    port: int
    bearer_token: str | None
    basic_auth: tuple[str, str] | None
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    header_timeout: float = DEFAULT_HEADER_TIMEOUT_S
    keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT_S
    otlp_endpoint: str | None = None
    otlp_interval: float = 15.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The sidecar's options (secrets come from files or the environment only)."""
    parser.add_argument(
        "--multiproc-dir",
        metavar="DIR",
        help="the directory every worker process writes to (default: $PROMETHEUS_MULTIPROC_DIR)",
    )
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"address to bind (default: {DEFAULT_HOST}; 0.0.0.0 only if you mean it)",
    )
    # a string, validated by run(): a bad value gets our one-line error, not argparse's usage
    parser.add_argument("--port", default=str(DEFAULT_PORT), help=f"default: {DEFAULT_PORT}")
    parser.add_argument(
        "--bearer-token-file",
        metavar="PATH",
        help=f"require 'Authorization: Bearer <token>' on /metrics (else ${ENV_BEARER_TOKEN})",
    )
    parser.add_argument(
        "--basic-auth-file",
        metavar="PATH",
        help=f"file holding user:password; require basic auth on /metrics (else ${ENV_BASIC_AUTH})",
    )
    parser.add_argument(
        "--max-connections",
        metavar="N",
        default=str(DEFAULT_MAX_CONNECTIONS),
        help=f"open connections at most (default: {DEFAULT_MAX_CONNECTIONS}, fewer when the "
        "limit of open files is low)",
    )
    parser.add_argument(
        "--header-timeout",
        metavar="SECONDS",
        default=str(DEFAULT_HEADER_TIMEOUT_S),
        help="time for a request's line and headers to arrive "
        f"(default: {DEFAULT_HEADER_TIMEOUT_S:g})",
    )
    parser.add_argument(
        "--keepalive-timeout",
        metavar="SECONDS",
        default=str(DEFAULT_KEEPALIVE_TIMEOUT_S),
        help="how long an idle connection is kept for its next request "
        f"(default: {DEFAULT_KEEPALIVE_TIMEOUT_S:g})",
    )
    parser.add_argument(
        "--otlp-endpoint",
        metavar="URL",
        help="also push the merged metrics over OTLP/HTTP to URL/v1/metrics, as one resource "
        f"(default: ${ENV_OTLP_ENDPOINT} when ${ENV_OTLP_METRICS}=sidecar)",
    )
    parser.add_argument(
        "--otlp-interval",
        metavar="SECONDS",
        default="15",
        help="seconds between two OTLP pushes (default: 15)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show every log record from INFO up, redacted, as JSON lines on stderr (console "
        "lines on a terminal; needs the structlog extra)",
    )


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT. Returns the exit code; bad settings print one line."""
    try:
        config = _resolve(args)
        return asyncio.run(_serve(config, bool(getattr(args, "verbose", False))))
    except CliError as exc:
        print(exc, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


def _resolve(args: argparse.Namespace) -> _Config:
    directory = getattr(args, "multiproc_dir", None) or liveness.multiproc_dir()
    if not directory:
        raise CliError(
            "--multiproc-dir", "(unset)", "set --multiproc-dir or PROMETHEUS_MULTIPROC_DIR"
        )
    problem = directory_problem(directory)
    if problem is not None:
        raise CliError("--multiproc-dir", directory, problem.rpartition(": ")[2])
    if not writable(directory):
        raise CliError(
            "--multiproc-dir",
            directory,
            f"not writable by uid {os.getuid()} (the sidecar compacts dead processes' files "
            "there): make the user the worker and the sidecar run as its owner",
        )
    raw_port = str(getattr(args, "port", DEFAULT_PORT))
    try:
        port = parse_port("--port", raw_port, allow_zero=True)
    except ValueError:
        raise CliError("--port", raw_port, "expected an integer from 0 to 65535") from None
    bearer = _secret(
        "--bearer-token-file", getattr(args, "bearer_token_file", None), ENV_BEARER_TOKEN
    )
    basic = _secret("--basic-auth-file", getattr(args, "basic_auth_file", None), ENV_BASIC_AUTH)
    basic_auth = None
    if basic is not None:
        user, sep, password = basic.partition(":")
        if not sep or not user or not password:
            where = getattr(args, "basic_auth_file", None) or f"${ENV_BASIC_AUTH}"
            raise CliError("basic auth", where, "expected user:password")
        basic_auth = (user, password)
    raw = str(getattr(args, "max_connections", DEFAULT_MAX_CONNECTIONS))
    try:
        max_connections = int(raw.strip())
    except ValueError:
        max_connections = 0
    if not 1 <= max_connections <= 100_000:
        raise CliError("--max-connections", raw, "expected an integer from 1 to 100000")
    return _Config(
        directory,
        str(getattr(args, "host", DEFAULT_HOST)),
        port,
        bearer,
        basic_auth,
        max_connections,
        _seconds(args, "header_timeout", DEFAULT_HEADER_TIMEOUT_S),
        _seconds(args, "keepalive_timeout", DEFAULT_KEEPALIVE_TIMEOUT_S),
        _otlp_endpoint(args),
        _seconds(args, "otlp_interval", 15.0),
    )


def _otlp_endpoint(args: argparse.Namespace) -> str | None:
    """``--otlp-endpoint``, else ``$OTEL_EXPORTER_OTLP_ENDPOINT`` when the environment says the
    sidecar pushes the metrics (``OTEL_AGENTS_OTLP_METRICS=sidecar``): a sidecar sharing the
    worker's environment never pushes what the job processes already push."""
    raw = getattr(args, "otlp_endpoint", None)
    option = "--otlp-endpoint"
    if not raw:
        try:
            sidecar_pushes = otlp_metrics_mode() == "sidecar"
        except ValueError:
            raise CliError(
                ENV_OTLP_METRICS,
                os.environ.get(ENV_OTLP_METRICS, ""),
                "expected process or sidecar",
            ) from None
        raw = os.environ.get(ENV_OTLP_ENDPOINT) if sidecar_pushes else None
        option = f"${ENV_OTLP_ENDPOINT}"
    if not raw:
        return None
    try:
        return parse_endpoint(option, raw)
    except InvalidSetting as exc:
        raise CliError(option, _shown(raw), f"expected {exc.expected}") from None


def _shown(url: str) -> str:
    """A URL as an error may show it: scheme, host and port only (no credentials)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    except ValueError:
        return "(not a URL)"


def _seconds(args: argparse.Namespace, name: str, default: float) -> float:
    raw = str(getattr(args, name, default))
    option = "--" + name.replace("_", "-")
    try:
        seconds = parse_seconds(option, raw)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds <= 3600:
        raise CliError(option, raw, "expected a number of seconds above 0, at most 3600")
    return seconds


def _secret(option: str, path: str | None, env: str) -> str | None:
    """A secret from the file at ``path``, else from ``$env``; never echoed in errors."""
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                value = f.read().strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = why(exc) if isinstance(exc, OSError) else "not UTF-8 text"
            raise CliError(option, path, reason) from None
        if not value:
            raise CliError(option, path, "the file is empty")
        return value
    if env in os.environ:
        value = os.environ[env].strip()
        if not value:
            raise CliError(env, "(empty)", "set it to the secret or unset it")
        return value
    return None


async def _serve(config: _Config, verbose: bool = False) -> int:
    _raise_fd_limit()
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_loop_error_handler())
    try:
        server = await start_metrics_server(
            host=config.host,
            port=config.port,
            directory=config.directory,
            bearer_token=config.bearer_token,
            basic_auth=config.basic_auth,
            max_connections=config.max_connections,
            header_timeout=config.header_timeout,
            keepalive_timeout=config.keepalive_timeout,
        )
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise CliError("--port", str(config.port), "address already in use") from None
        known = os.strerror(exc.errno) if isinstance(exc.errno, int) and exc.errno > 0 else None
        raise CliError("--host", config.host, (known or why(exc)).lower()) from None
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    auth = " with auth" if config.bearer_token or config.basic_auth else ""
    print(f"{PROG}: serving {server.url}{auth} for {config.directory}", flush=True)
    pusher = None
    if config.otlp_endpoint is not None:
        from .otlp import OtlpPusher

        pusher = OtlpPusher(config.directory, config.otlp_endpoint, interval=config.otlp_interval)
        pusher.start()
        print(
            f"{PROG}: pushing metrics to {_shown(config.otlp_endpoint)}/v1/metrics "
            f"every {config.otlp_interval:g} s",
            flush=True,
        )
    if (warning := exposure_warning(server)) is not None:
        print(warning, file=sys.stderr, flush=True)
    # the package's logger has no handler: the sidecar's warnings (and the reaper's) would
    # reach stderr only through Python's last-resort handler, unformatted; --verbose shows
    # every record, redacted, through configure_logging
    handler: logging.Handler | None = None if verbose and _verbose_logs() else _plain_warnings()
    package_logger = logging.getLogger(n.LOGGER_NAME)
    if handler is not None:
        package_logger.addHandler(handler)
    try:
        await stop.wait()
    finally:
        if pusher is not None:
            await asyncio.to_thread(pusher.close)  # the final totals
        if handler is not None:
            package_logger.removeHandler(handler)
        await server.aclose()
    return 0


def _plain_warnings() -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.setLevel(logging.WARNING)
    return handler


def _verbose_logs() -> bool:
    """``configure_logging`` at INFO; ``False`` (plain warnings) without structlog."""
    from .._logs import configure_logging

    try:
        configure_logging(logging.INFO)
    except ImportError as exc:
        print(f"{PROG}: --verbose: {exc}; showing plain warnings", file=sys.stderr, flush=True)
        return False
    return True


def exposure_warning(server: MetricsServer) -> str | None:
    """The warning for a server other hosts can reach without auth, or ``None``."""
    exposed = server.exposed()
    if server.authenticated or not exposed:
        return None
    return (
        f"{PROG}: warning: serving on {', '.join(exposed)}, reachable beyond this host, "
        "without auth: anyone who can reach the port reads every metric; "
        "set --bearer-token-file or --basic-auth-file, or bind 127.0.0.1"
    )


def _raise_fd_limit() -> None:
    """The soft limit of open files up to the hard one: connections are capped from it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, FD_LIMIT)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _loop_error_handler() -> Callable[[asyncio.AbstractEventLoop, dict[str, Any]], None]:
    """asyncio's errors (a failed ``accept()`` is logged once per attempt, with a traceback):
    one line per kind of error a minute at most, with the exception's type and no traceback."""
    logged: dict[str, float] = {}

    def handle(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = " ".join(str(context.get("message") or "error").split())[:200]
        now = time.monotonic()
        if now - logged.get(message, -LOOP_ERROR_LOG_INTERVAL_S) < LOOP_ERROR_LOG_INTERVAL_S:
            return
        if len(logged) >= 100:
            logged.clear()
        logged[message] = now
        exc = context.get("exception")
        kind = f": {type(exc).__name__}" if isinstance(exc, BaseException) else ""
        if isinstance(exc, OSError) and exc.strerror:
            kind += f" ({exc.strerror})"
        print(f"{PROG}: event loop: {message}{kind}", file=sys.stderr, flush=True)

    return handle
