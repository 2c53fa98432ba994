"""``otel-agents sidecar``: one ``/metrics`` for every process of a livekit worker.

Run it beside the worker (a sidecar container sharing ``PROMETHEUS_MULTIPROC_DIR``, or a second
process on the same host). It serves the directory with :func:`.server.start_metrics_server`
until SIGTERM or SIGINT; each scrape first reaps the files of dead job processes, then renders
the directory, plus a few self-metrics (``otel_agents_sidecar_*``).

Secrets for the optional bearer-token and basic auth on ``/metrics`` come from files or the
environment, never the command line. A bad setting prints one line,
``otel-agents sidecar: <what>: <value>: <why>``, and exits with status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import signal
import sys
from dataclasses import dataclass
from typing import Final

from .._config import parse_port
from .._multiproc import liveness
from .render import directory_problem, why
from .server import PROG, start_metrics_server

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 9464
ENV_BEARER_TOKEN: Final = "OTEL_AGENTS_SIDECAR_BEARER_TOKEN"
ENV_BASIC_AUTH: Final = "OTEL_AGENTS_SIDECAR_BASIC_AUTH"


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


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT. Returns the exit code; bad settings print one line."""
    try:
        config = _resolve(args)
        return asyncio.run(_serve(config))
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
    return _Config(directory, str(getattr(args, "host", DEFAULT_HOST)), port, bearer, basic_auth)


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


async def _serve(config: _Config) -> int:
    try:
        server = await start_metrics_server(
            host=config.host,
            port=config.port,
            directory=config.directory,
            bearer_token=config.bearer_token,
            basic_auth=config.basic_auth,
        )
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise CliError("--port", str(config.port), "address already in use") from None
        known = os.strerror(exc.errno) if isinstance(exc.errno, int) and exc.errno > 0 else None
        raise CliError("--host", config.host, (known or why(exc)).lower()) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    auth = " with auth" if config.bearer_token or config.basic_auth else ""
    print(f"{PROG}: serving {server.url}{auth} for {config.directory}", flush=True)
    try:
        await stop.wait()
    finally:
        await server.aclose()
    return 0
