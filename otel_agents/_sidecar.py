"""``otel-agents sidecar``: one ``/metrics`` for every process of a livekit worker.

Run it beside the worker (a sidecar container sharing ``PROMETHEUS_MULTIPROC_DIR``, or a second
process on the same host). Each scrape first reaps the files of dead job processes
(:mod:`otel_agents._multiproc`), then renders the directory with prometheus_client's
``MultiProcessCollector``, plus a few self-metrics (``otel_agents_sidecar_*``).

* Rendering runs off the event loop, on one dedicated thread, so reap and render never overlap.
* Single flight: concurrent scrapes asking for the same format share the render in flight; a
  scrape that arrives after it finished starts a new one (nothing is cached).
* Prometheus text, or OpenMetrics when ``Accept`` asks; gzip when ``Accept-Encoding`` allows.
* Optional bearer-token and/or basic auth on ``/metrics`` (secrets from files or the
  environment, never the command line). ``/healthz`` is always open.

:func:`start_metrics_server` is the reusable part: the demo serves its own in-process registry
with it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import errno
import gzip
import hmac
import logging
import os
import signal
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final, Protocol

from aiohttp import web
from multidict import CIMultiDict
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import (
    CONTENT_TYPE_PLAIN_0_0_4,
    choose_encoder,
    generate_latest,
    gzip_accepted,
)

from . import _multiproc
from ._multiproc import Encoder, Unavailable

logger = logging.getLogger("otel_agents.sidecar")

PROG: Final = "otel-agents sidecar"
DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 9464
ENV_BEARER_TOKEN: Final = "OTEL_AGENTS_SIDECAR_BEARER_TOKEN"
ENV_BASIC_AUTH: Final = "OTEL_AGENTS_SIDECAR_BASIC_AUTH"
REALM: Final = 'realm="otel-agents"'


class _Source(Protocol):
    def problem(self) -> str | None: ...

    def render(self, encoder: Encoder) -> bytes: ...


class _RegistrySource:
    """An in-process registry (the demo's, or the default one)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def problem(self) -> str | None:
        return None

    def render(self, encoder: Encoder) -> bytes:
        return encoder(self.registry)


class MetricsServer:
    """A running ``/metrics`` + ``/healthz`` server. Build it with :func:`start_metrics_server`."""

    def __init__(
        self,
        source: _Source,
        *,
        host: str,
        port: int,
        bearer_token: str | None,
        basic_auth: tuple[str, str] | None,
    ) -> None:
        self.host = host
        self.port = port
        self.renders = 0  # renders performed (tests)
        self._source = source
        self._bearer = bearer_token.encode() if bearer_token else None
        self._basic = f"{basic_auth[0]}:{basic_auth[1]}".encode() if basic_auth else None
        # one thread: renders (and the reaps inside them) never overlap
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="otel-agents-render")
        self._inflight: dict[tuple[str, bool], asyncio.Future[bytes]] = {}
        self._runner: web.AppRunner | None = None
        self._last_problem: str | None = None
        # test seams: wraps each render on the render thread; called as a scrape joins a render
        self._render_wrapper: Callable[[Callable[[], bytes]], bytes] | None = None
        self._on_join: Callable[[], None] | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            self._executor.shutdown(wait=False)
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])

    async def aclose(self) -> None:
        """Stop serving. Renders in flight finish on their thread; nobody waits for them."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        self._executor.shutdown(wait=False, cancel_futures=True)

    # --- /metrics ------------------------------------------------------------------------------

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request.headers.get("Authorization", "")):
            challenges: CIMultiDict[str] = CIMultiDict()
            if self._bearer is not None:
                challenges.add("WWW-Authenticate", f"Bearer {REALM}")
            if self._basic is not None:
                challenges.add("WWW-Authenticate", f"Basic {REALM}")
            return web.Response(status=401, text="unauthorized\n", headers=challenges)
        encoder, content_type = _negotiate(request.headers.get("Accept", ""))
        compress = gzip_accepted(request.headers.get("Accept-Encoding", ""))
        try:
            body = await self._render((content_type, compress), encoder)
        except Exception as exc:
            return self._unavailable(exc)
        self._last_problem = None
        headers = {"Content-Type": content_type}
        if compress:
            headers["Content-Encoding"] = "gzip"
        return web.Response(body=body, headers=headers)

    def _render(self, key: tuple[str, bool], encoder: Encoder) -> asyncio.Future[bytes]:
        """The render in flight for ``key``, or a new one: concurrent scrapes share it."""
        flight = self._inflight.get(key)
        if flight is None or flight.done():
            loop = asyncio.get_running_loop()
            flight = loop.run_in_executor(self._executor, self._render_sync, encoder, key[1])
            self._inflight[key] = flight
            flight.add_done_callback(lambda f: self._land(key, f))
        if self._on_join is not None:
            self._on_join()
        # shield: a scraper that hangs up must not cancel the render the others wait for
        return asyncio.shield(flight)

    def _land(self, key: tuple[str, bool], flight: asyncio.Future[bytes]) -> None:
        if self._inflight.get(key) is flight:
            del self._inflight[key]
        if not flight.cancelled():
            flight.exception()  # retrieved: the waiters (if any) have it

    def _render_sync(self, encoder: Encoder, compress: bool) -> bytes:
        self.renders += 1

        def render() -> bytes:
            body = self._source.render(encoder)
            return gzip.compress(body, compresslevel=6) if compress else body

        wrapper = self._render_wrapper
        return wrapper(render) if wrapper is not None else render()

    def _unavailable(self, exc: Exception) -> web.Response:
        if isinstance(exc, Unavailable):
            reason = str(exc)
        else:
            reason = f"render failed: {type(exc).__name__}: {exc}"
        reason = " ".join(reason.split())[:500]  # one line, bounded
        if reason != self._last_problem:  # one log line per distinct problem, not per scrape
            logger.warning("%s: /metrics unavailable: %s", PROG, reason)
            self._last_problem = reason
        return web.Response(status=503, text=reason + "\n")

    def _authorized(self, header: str) -> bool:
        if self._bearer is None and self._basic is None:
            return True
        try:
            return self._check_credentials(header)
        except Exception:  # a header that does not even encode: not authorized
            return False

    def _check_credentials(self, header: str) -> bool:
        scheme, _, credentials = header.partition(" ")
        scheme, credentials = scheme.lower(), credentials.strip()
        if self._bearer is not None and scheme == "bearer":
            return hmac.compare_digest(credentials.encode(), self._bearer)
        if self._basic is not None and scheme == "basic":
            try:
                decoded = base64.b64decode(credentials, validate=True)
            except (binascii.Error, ValueError):
                return False
            return hmac.compare_digest(decoded, self._basic)
        return False

    # --- /healthz ------------------------------------------------------------------------------

    async def _healthz(self, _request: web.Request) -> web.StreamResponse:
        try:
            problem = await asyncio.to_thread(self._source.problem)
        except Exception as exc:
            problem = f"health check failed: {type(exc).__name__}"
        if problem is not None:
            return web.Response(status=503, text=" ".join(problem.split()) + "\n")
        return web.Response(text="ok\n")


def _negotiate(accept: str) -> tuple[Encoder, str]:
    """prometheus_client's content negotiation; a malformed ``Accept`` gets plain text."""
    try:
        return choose_encoder(accept)
    except Exception:  # e.g. "version=abc": prometheus_client compares str with int
        return generate_latest, CONTENT_TYPE_PLAIN_0_0_4


async def start_metrics_server(
    *,
    host: str,
    port: int,
    registry: CollectorRegistry | None = None,
    directory: str | None = None,
    bearer_token: str | None = None,
    basic_auth: tuple[str, str] | None = None,
) -> MetricsServer:
    """Serve ``/metrics`` and ``/healthz`` on ``host:port`` (``0``: a free port).

    Exactly one source: ``registry`` (an in-process registry) or ``directory`` (a multiprocess
    directory, reaped before each render). Raises ``OSError`` when the address is taken.
    """
    if (registry is None) == (directory is None):
        raise ValueError("start_metrics_server: pass exactly one of registry or directory")
    source: _Source = (
        _RegistrySource(registry) if registry is not None else _multiproc.source(str(directory))
    )
    server = MetricsServer(
        source, host=host, port=port, bearer_token=bearer_token, basic_auth=basic_auth
    )
    await server._start()
    return server


# --- the CLI -----------------------------------------------------------------------------------


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
    directory = getattr(args, "multiproc_dir", None) or _multiproc.multiproc_dir()
    if not directory:
        raise CliError(
            "--multiproc-dir", "(unset)", "set --multiproc-dir or PROMETHEUS_MULTIPROC_DIR"
        )
    problem = _multiproc.directory_problem(directory)
    if problem is not None:
        raise CliError("--multiproc-dir", directory, problem.rpartition(": ")[2])
    raw_port = str(getattr(args, "port", DEFAULT_PORT))
    try:
        port = int(raw_port)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise CliError("--port", raw_port, "expected an integer from 0 to 65535")
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
            why = _multiproc._why(exc) if isinstance(exc, OSError) else "not UTF-8 text"
            raise CliError(option, path, why) from None
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
        why = os.strerror(exc.errno) if isinstance(exc.errno, int) and exc.errno > 0 else None
        raise CliError("--host", config.host, (why or _multiproc._why(exc)).lower()) from None
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
