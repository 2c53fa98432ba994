"""The sidecar server's connections: aiohttp's connection handler, under a cap and timeouts.

Whoever can reach the port is a client, so the server bounds what one can hold:

* **Connections**: at most ``max_connections`` open (fewer when the descriptor limit is low:
  :func:`connection_limit`). At the cap a new connection displaces the one that has waited
  longest without a request in progress (a client dripping its headers, an idle keep-alive);
  when every connection has a request in progress, the new one gets a 503 and is closed.
* **Time**: a request's head (request line and headers) must arrive within
  ``header_timeout`` of the connection's opening, or of its first byte on a kept-alive
  connection; a connection waits at most ``keepalive_timeout`` for its next request.
* **Size**: a request head of at most :data:`MAX_HEAD_BYTES`; no request body.
* **Errors**: a malformed, oversized or bodied request gets a bare 4xx and costs a count
  (``otel_agents_sidecar_bad_requests_total``) and at most one log line a minute, which never
  quotes the request. Responses to clients carry no path, version or exception text.

:class:`_Gate` keeps the count, the timeouts and what they cost (its own metrics, appended to
each scrape); :class:`_Connection` is aiohttp's connection, driven through its states by the
server's request handler (:mod:`.server`).
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any, Final

from aiohttp import web
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from .. import names as n

logger = logging.getLogger("otel_agents.sidecar")

#: how the server names itself in its log lines
PROG: Final = "otel-agents sidecar"
#: the ``Server`` header of every response (aiohttp's would name its and Python's versions)
SERVER_HEADER: Final = "otel-agents"

DEFAULT_MAX_CONNECTIONS: Final = 100
DEFAULT_HEADER_TIMEOUT_S: Final = 5.0
#: above a 60 s scrape interval, so a scraper's kept-alive connection is still there
DEFAULT_KEEPALIVE_TIMEOUT_S: Final = 75.0
#: a request line and headers; Prometheus sends a few hundred bytes
MAX_HEAD_BYTES: Final = 16 << 10
#: descriptors kept for everything but connections (the render reads files, holds locks...)
FD_RESERVE: Final = 64
BAD_REQUEST_LOG_INTERVAL_S: Final = 60.0


def connection_limit(wanted: int) -> int:
    """``wanted``, lowered so that connections use at most half of the descriptors left
    beyond :data:`FD_RESERVE`: past the limit, accepting fails and the event loop logs a
    traceback for every failed accept."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, (soft - FD_RESERVE) // 2))


def _raw_response(status: int) -> bytes:
    """A complete response with no body, for a connection aiohttp never parses."""
    return (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nServer: {SERVER_HEADER}\r\n"
        "Content-Length: 0\r\nConnection: close\r\n\r\n"
    ).encode()


class _Gate:
    """The connections of one server: the cap, the timeouts, and what they cost."""

    def __init__(self, limit: int, header_timeout: float, keepalive_timeout: float) -> None:
        self.limit = limit
        self.header_timeout = header_timeout
        self.keepalive_timeout = keepalive_timeout
        self.open: dict[_Connection, None] = {}
        #: connections without a request in progress, the longest waiting first
        self.waiting: dict[_Connection, None] = {}
        self.header_timeouts = 0
        self.rejected = 0
        self.bad_requests = 0
        self._bad_logged_at = -BAD_REQUEST_LOG_INTERVAL_S
        self._errors_logged_at = -BAD_REQUEST_LOG_INTERVAL_S

    def admit(self, conn: _Connection) -> bool:
        if len(self.open) >= self.limit:
            self.rejected += 1
            victim = next(iter(self.waiting), None)
            if victim is None:
                return False  # every connection has a request in progress
            victim.drop()
        self.open[conn] = None
        return True

    def release(self, conn: _Connection) -> None:
        self.open.pop(conn, None)
        self.waiting.pop(conn, None)

    def wait(self, conn: _Connection) -> None:
        if conn in self.open:
            self.waiting.pop(conn, None)
            self.waiting[conn] = None

    def busy(self, conn: _Connection) -> None:
        self.waiting.pop(conn, None)

    def bad_request(self, peer: str, status: int) -> None:
        """Count a refused request; one log line at most per interval, never its content."""
        self.bad_requests += 1
        now = time.monotonic()
        if now - self._bad_logged_at >= BAD_REQUEST_LOG_INTERVAL_S:
            self._bad_logged_at = now
            logger.warning(
                "%s: refused a malformed request from %s (%d %s); %d so far, counted in %s, "
                "logged at most once a minute",
                PROG,
                peer,
                status,
                HTTPStatus(status).phrase,
                self.bad_requests,
                n.SIDECAR_BAD_REQUESTS,
            )

    def error(self, what: str, exc: BaseException | None) -> None:
        """An unexpected error handling a request: its type only, at most once a minute."""
        now = time.monotonic()
        if now - self._errors_logged_at >= BAD_REQUEST_LOG_INTERVAL_S:
            self._errors_logged_at = now
            kind = type(exc).__name__ if exc is not None else "unknown"
            logger.warning("%s: %s: %s (logged at most once a minute)", PROG, what, kind)

    # a collector, for the render
    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            n.SIDECAR_CONNECTIONS,
            "HTTP connections open to the sidecar.",
            value=len(self.open),
        )
        yield CounterMetricFamily(
            n.SIDECAR_HEADER_TIMEOUTS,
            "Connections the sidecar closed because a request's head did not arrive in time.",
            value=self.header_timeouts,
        )
        yield CounterMetricFamily(
            n.SIDECAR_REJECTED_CONNECTIONS,
            "Connections the sidecar closed at its connection cap (a waiting one displaced "
            "by a new one, or a new one refused).",
            value=self.rejected,
        )
        yield CounterMetricFamily(
            n.SIDECAR_BAD_REQUESTS,
            "Requests the sidecar refused as malformed, too large or carrying a body.",
            value=self.bad_requests,
        )


_PENDING, _BUSY, _IDLE = "pending", "busy", "idle"


class _Connection(web.RequestHandler):
    """aiohttp's connection, under the gate's cap and timeouts.

    ``pending``: waiting for a request's head (within ``header_timeout``); ``busy``: a request
    in progress; ``idle``: between requests (within ``keepalive_timeout``, then ``pending``
    again from the next request's first byte).
    """

    def __init__(self, manager: web.Server, *, gate: _Gate, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._gate = gate
        self._refused = False
        self._closed = False
        self._state = _PENDING
        self._head_bytes = 0
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._gate.admit(self):
            self._refused = True
            assert isinstance(transport, asyncio.Transport)
            transport.write(_raw_response(503))
            transport.close()
            return
        super().connection_made(transport)
        self._await_head()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._refused:
            return
        self._closed = True
        self._cancel_timer()
        self._gate.release(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused or self._closed:
            return
        if self._state == _IDLE:
            self._await_head()  # the next request's first bytes
        if self._state == _PENDING:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._gate.bad_request(self.peer, 431)
                transport = self.transport
                if transport is not None:
                    transport.write(_raw_response(431))
                self.force_close()
                return
        super().data_received(data)

    @property
    def peer(self) -> str:
        transport = self.transport
        address = transport.get_extra_info("peername") if transport is not None else None
        return str(address[0]) if isinstance(address, tuple) and address else "unknown"

    # --- states, driven by the request handler -------------------------------------------------

    def busy(self) -> None:
        self._state = _BUSY
        self._cancel_timer()
        self._gate.busy(self)

    def idle(self) -> None:
        if self._closed:
            return
        self._state = _IDLE
        self._arm(self._gate.keepalive_timeout)
        self._gate.wait(self)

    def _await_head(self) -> None:
        self._state = _PENDING
        self._head_bytes = 0
        self._arm(self._gate.header_timeout)
        self._gate.wait(self)

    def _arm(self, delay: float) -> None:
        self._cancel_timer()
        self._timer = asyncio.get_running_loop().call_later(delay, self._expire)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        if self._state == _PENDING:
            self._gate.header_timeouts += 1
        self.drop()

    def drop(self) -> None:
        """Close now, whatever is buffered (a client that does not read cannot hold it)."""
        self._gate.release(self)
        self._cancel_timer()
        transport = self.transport
        if transport is not None:
            transport.abort()
        self.force_close()

    # --- aiohttp's error paths: no traceback, no request content -------------------------------

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            raise ConnectionError("response already started")
        if status >= 500:
            self._gate.error("error handling a request", exc)
        else:
            self._gate.bad_request(self.peer, status)
        response = _plain(status, HTTPStatus(status).phrase.lower())
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info")
        if not isinstance(exc, BaseException):
            exc = None
        self._gate.error("error handling a request", exc)


class _Server(web.Server):
    """aiohttp's low-level server, making :class:`_Connection` s."""

    def __init__(self, handler: Any, *, gate: _Gate, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._gate = gate
        self._connection_kwargs = kwargs

    def __call__(self) -> web.RequestHandler:
        return _Connection(
            self, gate=self._gate, loop=asyncio.get_running_loop(), **self._connection_kwargs
        )


def _plain(status: int, text: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, text=text + "\n", headers={"Server": SERVER_HEADER, **(headers or {})}
    )
