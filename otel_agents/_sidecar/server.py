"""The ``/metrics`` and ``/healthz`` server of the sidecar (and of the demo).

It serves one source: a multiprocess directory (each scrape first reaps the files of dead job
processes, then renders the directory, plus a few self-metrics ``otel_agents_sidecar_*``:
:mod:`.render`), or an in-process registry.

* Rendering runs off the event loop, on one dedicated thread, so reap and render never overlap.
* Single flight: concurrent scrapes asking for the same format share the render in flight; a
  scrape that arrives after it finished starts a new one (nothing is cached).
* Prometheus text, or OpenMetrics when ``Accept`` asks; gzip when ``Accept-Encoding`` allows.
* Optional bearer-token and/or basic auth on ``/metrics``. ``/healthz`` is always open, and
  says ``ok``, ``degraded: <why>`` (200) or ``unavailable: <why>`` (503), never a path.

Whoever can reach the port is a client: what one can hold (connections, time, the size of a
request) and what a bad request costs are bounded in :mod:`.connections`.

The command line around it (``otel-agents sidecar``) is :mod:`.cli`; the demo serves its own
in-process registry with :func:`start_metrics_server`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import gzip
import hmac
import ipaddress
import logging
from collections.abc import Callable, Iterable
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

from .connections import (
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_KEEPALIVE_TIMEOUT_S,
    DEFAULT_MAX_CONNECTIONS,
    PROG,
    SERVER_HEADER,
    _Connection,
    _Gate,
    _plain,
    _Server,
    connection_limit,
)
from .render import Collector, Encoder, Unavailable
from .render import source as directory_source

#: what the command line imports from here (the connection defaults and ``PROG`` live in
#: :mod:`.connections`)
__all__ = [
    "DEFAULT_HEADER_TIMEOUT_S",
    "DEFAULT_KEEPALIVE_TIMEOUT_S",
    "DEFAULT_MAX_CONNECTIONS",
    "PROG",
    "MetricsServer",
    "start_metrics_server",
]

logger = logging.getLogger("otel_agents.sidecar")

REALM: Final = 'realm="otel-agents"'


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address as a socket reports it) is a loopback address."""
    try:
        ip = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


class _Source(Protocol):
    def health(self) -> tuple[bool, str]: ...

    def render(self, encoder: Encoder, extra: Iterable[Collector] = ()) -> bytes: ...


class _RegistrySource:
    """An in-process registry (the demo's, or the default one)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def health(self) -> tuple[bool, str]:
        return True, "ok"

    def render(self, encoder: Encoder, extra: Iterable[Collector] = ()) -> bytes:
        return encoder(self.registry)


# --- the server ----------------------------------------------------------------------------------


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
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        header_timeout: float = DEFAULT_HEADER_TIMEOUT_S,
        keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT_S,
    ) -> None:
        self.host = host
        self.port = port
        self.renders = 0  # renders performed (tests)
        self._source = source
        self._bearer = bearer_token.encode() if bearer_token else None
        self._basic = f"{basic_auth[0]}:{basic_auth[1]}".encode() if basic_auth else None
        self._gate = _Gate(connection_limit(max_connections), header_timeout, keepalive_timeout)
        # one thread: renders (and the reaps inside them) never overlap
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="otel-agents-render")
        self._inflight: dict[tuple[str, bool], asyncio.Future[bytes]] = {}
        self._runner: web.BaseRunner | None = None
        self._last_problem: str | None = None
        self.addresses: list[str] = []
        # test seams: wraps each render on the render thread; called as a scrape joins a render
        self._render_wrapper: Callable[[Callable[[], bytes]], bytes] | None = None
        self._on_join: Callable[[], None] | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    @property
    def max_connections(self) -> int:
        """The connection cap in force (lowered to fit the descriptor limit)."""
        return self._gate.limit

    @property
    def authenticated(self) -> bool:
        return self._bearer is not None or self._basic is not None

    def exposed(self) -> list[str]:
        """The bound addresses that are not loopback: reachable from other hosts."""
        return [address for address in self.addresses if not is_loopback(address)]

    async def _start(self) -> None:
        server = _Server(
            self._handle,
            gate=self._gate,
            access_log=None,
            # the gate's timers decide; aiohttp's own (armed at the same moments) only backs
            # them up: equal, it would close a connection dripping its next request as idle
            keepalive_timeout=self._gate.keepalive_timeout + self._gate.header_timeout + 1,
            lingering_time=0.0,  # a request body is refused: do not wait to read it
            max_line_size=8190,
            max_field_size=8190,
        )
        runner = web.ServerRunner(server, handle_signals=False)
        await runner.setup()
        try:
            backlog = max(8, min(128, self._gate.limit // 2))
            site = web.TCPSite(runner, self.host, self.port, backlog=backlog)
            await site.start()
        except BaseException:
            await runner.cleanup()
            self._executor.shutdown(wait=False)
            raise
        self._runner = runner
        self.addresses = [str(address[0]) for address in runner.addresses]
        self.port = int(runner.addresses[0][1])

    async def aclose(self) -> None:
        """Stop serving. Renders in flight finish on their thread; nobody waits for them."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        self._executor.shutdown(wait=False, cancel_futures=True)

    # --- requests -----------------------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        conn = request.protocol
        if isinstance(conn, _Connection):
            conn.busy()
        try:
            return await self._route(request, conn)
        finally:
            if isinstance(conn, _Connection):
                conn.idle()

    async def _route(self, request: web.BaseRequest, conn: object) -> web.StreamResponse:
        if request.body_exists:
            self._gate.bad_request(conn.peer if isinstance(conn, _Connection) else "unknown", 413)
            response = _plain(413, "a request body is not accepted")
            response.force_close()
            return response
        path = request.raw_path.partition("?")[0]
        if path not in ("/metrics", "/healthz"):
            return _plain(404, "not found")
        if request.method not in ("GET", "HEAD"):
            return _plain(405, "method not allowed", {"Allow": "GET, HEAD"})
        if path == "/healthz":
            return await self._healthz()
        return await self._metrics(request)

    # --- /metrics ------------------------------------------------------------------------------

    async def _metrics(self, request: web.BaseRequest) -> web.StreamResponse:
        if not self._authorized(request.headers.get("Authorization", "")):
            challenges: CIMultiDict[str] = CIMultiDict({"Server": SERVER_HEADER})
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
        headers = {"Content-Type": content_type, "Server": SERVER_HEADER}
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
            body = self._source.render(encoder, (self._gate,))
            return gzip.compress(body, compresslevel=6) if compress else body

        wrapper = self._render_wrapper
        return wrapper(render) if wrapper is not None else render()

    def _unavailable(self, exc: Exception) -> web.Response:
        """503 with a reason fit for anyone (no path, no exception text); the log has it all."""
        if isinstance(exc, Unavailable):
            public, detail = str(exc), exc.detail
        else:
            public, detail = "render failed", f"render failed: {type(exc).__name__}: {exc}"
        detail = " ".join(detail.split())[:500]  # one line, bounded
        if detail != self._last_problem:  # one log line per distinct problem, not per scrape
            logger.warning("%s: /metrics unavailable: %s", PROG, detail)
            self._last_problem = detail
        return _plain(503, "unavailable: " + " ".join(public.split())[:200])

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

    async def _healthz(self) -> web.StreamResponse:
        try:
            serving, text = await asyncio.to_thread(self._source.health)
        except Exception as exc:
            serving, text = False, "unavailable: health check failed"
            self._gate.error("health check failed", exc)
        return _plain(200 if serving else 503, text)


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
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    header_timeout: float = DEFAULT_HEADER_TIMEOUT_S,
    keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT_S,
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
        source,
        host=host,
        port=port,
        bearer_token=bearer_token,
        basic_auth=basic_auth,
        max_connections=max_connections,
        header_timeout=header_timeout,
        keepalive_timeout=keepalive_timeout,
    )
    await server._start()
    return server
