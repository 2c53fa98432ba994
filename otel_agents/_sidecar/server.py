"""The ``/metrics`` and ``/healthz`` server of the sidecar (and of the demo).

It serves one source: a multiprocess directory (each scrape first reaps the files of dead job
processes, then renders the directory with prometheus_client's ``MultiProcessCollector``, plus
a few self-metrics ``otel_agents_sidecar_*``: :mod:`.render`), or an in-process registry.

* Rendering runs off the event loop, on one dedicated thread, so reap and render never overlap.
* Single flight: concurrent scrapes asking for the same format share the render in flight; a
  scrape that arrives after it finished starts a new one (nothing is cached).
* Prometheus text, or OpenMetrics when ``Accept`` asks; gzip when ``Accept-Encoding`` allows.
* Optional bearer-token and/or basic auth on ``/metrics``. ``/healthz`` is always open.

The command line around it (``otel-agents sidecar``) is :mod:`.cli`; the demo serves its own
in-process registry with :func:`start_metrics_server`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import gzip
import hmac
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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

from .render import Encoder, Unavailable
from .render import source as directory_source

logger = logging.getLogger("otel_agents.sidecar")

#: how the server names itself in its log lines
PROG: Final = "otel-agents sidecar"
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
        _RegistrySource(registry) if registry is not None else directory_source(str(directory))
    )
    server = MetricsServer(
        source, host=host, port=port, bearer_token=bearer_token, basic_auth=basic_auth
    )
    await server._start()
    return server
