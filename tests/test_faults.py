"""Fault injection (docs/architecture.md): otel-agents never crashes, blocks or changes
the host agent, whatever fails around it, and loses nothing it could record.

Real ``AgentSession``s in text mode (no room, offline) with scripted, failing providers
(``tests/scripted.py``), and otel-agents' real hooks:

1. The OTLP collector down (closed port), slow (answers after longer than the exporter's
   timeout) or a black hole (accepts, never answers), while sessions run and the exporter really
   is talking to it: a heartbeat task measures the event loop's worst stall, every attempt and
   session is still counted, and ``otel_agents.shutdown(timeout)`` returns within its timeout.
2. Thousands of sessions, concurrently on one loop: counts exact, every failed attempt counted in
   its own session, and nothing of them retained.
3. Hostile exceptions (cyclic and 2,000-deep chains, raising ``__str__``/``__repr__``, attributes
   that raise, 10 MB bodies, bodies of every JSON type) through the real hook path: emitted as
   livekit emits them, and raised in a real session turn. The agent carries on, the host sees
   its own exception, the attempt is recorded, each emit is quick.
4. A hook that fails internally (an internal function of otel-agents monkeypatched to raise
   ``TypeError``, the one exception livekit's emitter re-raises into the retry loop): the turn is
   still answered, livekit's retry loop still runs, the host sees its own exception, and
   ``otel_agents_internal_errors_total{where}`` counts the failure under the right label.
5. ``init()``: twice (no double counting), after models were built (the contract: those models
   are not instrumented, their sessions are), and with ``OTEL_SDK_DISABLED=true`` (nothing
   changes, nothing is contacted).

Covered elsewhere, referenced rather than duplicated:

* A job process SIGKILLed mid-session loses nothing of its completed work, and its live gauges
  go: ``tests/test_jobs.py::test_every_job_process_is_counted`` (forkserver job processes as
  livekit runs them, one killed mid-session, then hundreds of short-lived ones, a third of them
  SIGKILLed, scraped throughout).
* ``shutdown()`` bounded with the collector down or a black hole (no sessions running), init
  twice keeps the first settings, ``OTEL_SDK_DISABLED`` with a bare model:
  ``tests/test_init.py``.
* 1,000 sequential sessions counted exactly, under 100 bytes retained per closed session
  (tracemalloc against a run without otel-agents): ``tests/test_session_lifecycle.py``.
* ``_classify`` alone on cycles, 2,000-deep chains, 10 MB bodies and hostile classes:
  ``tests/test_classify.py``; 100,000 random errors within the series bound and 1,000 hostile
  exceptions emitted directly: ``tests/test_bounds.py``; the hypothesis fuzz of the
  classification and hook path: ``tests/test_fuzz.py``.

Found here:

* fixed, kept as ``test_a_10_mb_body_is_never_rendered_by_the_hook``: the record's root-cause
  message was built with ``str()`` of the whole exception, and livekit's
  ``APIStatusError.__str__`` renders its body, so a 10 MB body cost up to ~150 ms per failed
  attempt on the event loop (with a tracer, or WARNING logging, on);
* livekit's, not otel-agents': with a recording tracer provider (which ``init()`` hands to
  livekit), livekit's own span code formats tracebacks on the event loop and calls ``str()`` on
  a failed attempt's exception unguarded, so an exception whose ``__str__`` raises reaches the
  host as that error (``test_with_a_recording_tracer_livekit_itself_replaces_an_unprintable_
  exception`` shows it is the same without otel-agents). The tests that check the host's own
  exception therefore run with no tracer provider, unless the path is otel-agents' alone.

Nothing here sleeps to synchronise: every wait is on a real event (a turn's answer, a session's
close), bounded by a timeout. The heartbeat's sleep is the instrument, not a synchronisation.
The time bounds are generous stall detectors, not benchmarks (``bench/`` measures overhead).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import math
import ssl
import sys
import threading
import time
import traceback
import tracemalloc
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from livekit.agents import (
    Agent,
    AgentSession,
    APIConnectionError,
    APIError,
    APIStatusError,
    TurnHandlingOptions,
    llm,
)
from livekit.agents.types import APIConnectOptions
from livekit.agents.voice.agent_session import SessionConnectOptions
from livekit.agents.voice.run_result import ChatMessageEvent
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import REGISTRY

import otel_agents
from otel_agents import names as n
from otel_agents._capture import attempts as _hooks
from otel_agents._capture import instrument
from otel_agents._capture import sessions as _session
from otel_agents._export import metrics as _metrics
from otel_agents._export import pipeline as _pipeline
from otel_agents._export.recorder import Recorder

from conftest import reset_metrics
from netfaults import BlackHole, closed_port
from scripted import ScriptedLLM, gateway_status_error, raising, ssl_connection_error

TIMEOUT = 10.0  # bound on every await: a hang fails the test instead of the suite
#: a heartbeat this late has the watchdog sample where the loop's thread is, for the printed
#: report (no stall is asserted: a timing; what is asserted is that no export runs on the loop)
STALL_S = 0.5
#: the most memory one emit of one hostile error may hold at once, tracer, metrics and logs
#: on: a bounded prefix of any text is read, cut and redacted, never the whole (a 10 MB body
#: rendered or copied would hold 10 MB); bench/hook_cost.py measures its time
EMIT_PEAK_BYTES = 1024 * 1024
SERIES_BOUND = sum(b + 1 for b in _metrics.SERIES_BUDGET.values())

RATE_LIMIT_BODY = {
    "type": "inference_quota_exceeded",
    "error": "LLM request rate exceeded, category: MaxConcurrentGatewayLLMRpm",
    "quota_type": "llm",
    "category": "MaxConcurrentGatewayLLMRpm",
    "hint": "Reduce request rate or upgrade your plan.",
    "remaining_limit": "0",
}
CREDITS_BODY = {
    "type": "inference_quota_exceeded",
    "error": "LLM token credit quota exceeded, category: MaxGatewayCredits, remaining: 0",
    "quota_type": "llm",
    "category": "MaxGatewayCredits",
    "hint": "Wait for the next billing cycle or upgrade your plan.",
    "remaining_limit": "0",
}


# --- helpers -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class NoWaitRetries(APIConnectOptions):
    """livekit's retry loop, without its fixed 0.1 s wait before the first retry: the loop, its
    attempts and its emits are unchanged, the test just does not sit through the waits."""

    def _interval_for_retry(self, num_retries: int) -> float:
        return 0.0


def new_session(model: llm.LLM, *, max_retry: int = 2, **options: Any) -> AgentSession:
    """A text-mode session (no room, no VAD, no turn detector) whose LLM retries at once."""
    return AgentSession(
        llm=model,
        vad=None,
        aec_warmup_duration=None,
        turn_handling=TurnHandlingOptions(turn_detection=None),
        user_away_timeout=None,
        conn_options=SessionConnectOptions(
            llm_conn_options=NoWaitRetries(max_retry=max_retry), **options
        ),
    )


async def start(session: AgentSession) -> None:
    # in the caller's task (not wait_for's own on 3.11): the session's context variable must
    # reach the caller's later run() calls
    async with asyncio.timeout(TIMEOUT):
        await session.start(agent=Agent(instructions="test agent"))


async def answered(session: AgentSession, text: str = "hello there") -> bool:
    """Run one user turn; whether the agent answered it."""
    result = await asyncio.wait_for(session.run(user_input=text), TIMEOUT)
    return any(isinstance(ev, ChatMessageEvent) for ev in result.events)


async def fails_with(session: AgentSession, text: str = "hello?") -> BaseException:
    """Run one user turn that must fail; the exception the host sees."""
    try:
        await asyncio.wait_for(session.run(user_input=text), TIMEOUT)
    except Exception as e:
        return e
    raise AssertionError("the turn did not fail")


async def close(session: AgentSession) -> None:
    await asyncio.wait_for(session.aclose(), TIMEOUT)


def total(name: str, **labels: str) -> float:
    """The sum of every sample of ``name`` whose labels include ``labels``."""
    return sum(
        s.value
        for metric in REGISTRY.collect()
        for s in metric.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def internal_errors() -> dict[str, float]:
    return {
        s.labels["where"]: s.value
        for metric in REGISTRY.collect()
        for s in metric.samples
        if s.name == n.INTERNAL_ERRORS and s.value
    }


def otel_agents_samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of every otel_agents_* metric (histograms and gauges included)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for metric in REGISTRY.collect()
        for s in metric.samples
        if s.name.startswith(n.PREFIX) and not s.name.endswith("_created")
    }


def series_count() -> int:
    return sum(
        1
        for metric in REGISTRY.collect()
        for s in metric.samples
        if s.name.startswith(n.PREFIX) and s.name.endswith("_total")
    )


class _Records(logging.Handler):
    """Keeps the otel_agents records with these messages (and drops the rest)."""

    def __init__(self, *messages: str) -> None:
        super().__init__(logging.DEBUG)
        self.messages = set(messages)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg in self.messages:
            self.records.append(record)


class _EmitFailures(logging.Handler):
    """livekit's emitter logs ``failed to emit event`` for any non-TypeError a handler raises
    (and re-raises TypeError): a record here means a hook let an exception escape."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if str(record.msg).startswith("failed to emit event"):
            self.records.append(record)


@pytest.fixture
def clean() -> Iterator[None]:
    reset_metrics()
    otel_agents.shutdown()
    yield
    otel_agents.shutdown()


@pytest.fixture
def emit_failures() -> Iterator[_EmitFailures]:
    handler = _EmitFailures()
    logger = logging.getLogger("livekit")  # livekit.rtc's emitter logs here
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


@pytest.fixture
def quiet_livekit() -> Iterator[None]:
    """livekit.agents logs each failed turn with its traceback (and a 10 MB body's str): not
    what is measured here."""
    logger = logging.getLogger("livekit.agents")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(level)


@pytest.fixture
def recording(clean: None, quiet_livekit: None) -> Iterator[_Records]:
    """otel-agents on, with its log records kept (so the record's fields, messages included,
    are built) and no tracer provider: livekit's own tracing stays off, so what the host sees is
    what livekit alone would show it (see
    ``test_with_a_recording_tracer_livekit_itself_replaces_an_unprintable_exception``)."""
    handler = _Records(n.LOG_ATTEMPT_FAILED, n.LOG_SESSION_CLOSED)
    logger = logging.getLogger(n.LOGGER_NAME)
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False  # thousands of records: not into pytest's capture
    otel_agents.init()
    yield handler
    otel_agents.shutdown()
    logger.removeHandler(handler)
    logger.setLevel(level)
    logger.propagate = propagate


class Heartbeat:
    """A task that wakes every ``period`` seconds and records how late it woke: the worst stall
    of the event loop while it ran.

    The interpreter's own garbage collection is kept out of the measurement: the objects alive
    when the heartbeat starts (the test process's whole heap: livekit, every test module,
    hypothesis) are frozen, so a full collection only walks what was allocated since. For the
    failure message, a watchdog thread samples where the loop's thread is while a beat is
    overdue (a stall in an exporter, in otel-agents' hooks or in livekit's own span code then
    names itself).
    """

    def __init__(self, period: float = 0.005, overdue: float = STALL_S / 2) -> None:
        self.period = period
        self.overdue = overdue
        self.beats = 0
        self.worst = 0.0
        self.stalled_in: Counter[str] = Counter()
        self._task: asyncio.Task[None] | None = None
        self._stop = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, daemon=True)
        self._loop_thread = threading.get_ident()

    async def _beat(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.period
            await asyncio.sleep(self.period)
            self.worst = max(self.worst, loop.time() - due)
            self.beats += 1

    def _watch(self) -> None:
        seen, since = -1, time.monotonic()
        while not self._stop.wait(self.overdue / 4):
            if self.beats != seen:
                seen, since = self.beats, time.monotonic()
            elif time.monotonic() - since > self.overdue:
                frame = sys._current_frames().get(self._loop_thread)
                if frame is not None:
                    where = traceback.extract_stack(frame)[-6:]
                    self.stalled_in[
                        " < ".join(f"{f.name} ({f.filename}:{f.lineno})" for f in reversed(where))
                    ] += 1

    def __str__(self) -> str:
        places = "; ".join(
            f"{count}x in {place}" for place, count in self.stalled_in.most_common(3)
        )
        return (
            f"the event loop stalled {self.worst * 1e3:.0f} ms (over {self.beats} beats); "
            f"sampled while overdue: {places or 'nothing'}"
        )

    async def __aenter__(self) -> Heartbeat:
        gc.collect()
        gc.freeze()
        self._loop_thread = threading.get_ident()
        self._watchdog.start()
        self._task = asyncio.create_task(self._beat())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._stop.set()
        self._watchdog.join()
        gc.unfreeze()


# --- 1. the collector down, slow or a black hole ------------------------------------------------


class SlowCollector:
    """An OTLP/HTTP receiver on its own threads that reads each request and answers it only
    after ``delay`` seconds (longer than the exporter's timeout), or when closed."""

    def __init__(self, delay: float) -> None:
        self.requests = 0
        self.release = threading.Event()
        lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    collector.requests += 1
                collector.release.wait(delay)
                with contextlib.suppress(OSError):
                    self.send_response(200)
                    self.send_header("Content-Type", "application/x-protobuf")
                    self.send_header("Content-Length", "0")
                    self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def collector_that_is(kind: str) -> Iterator[tuple[str, Callable[[], int]]]:
    """The collector's URL, and how many connections or requests it has seen (-1: unknowable,
    nothing listens)."""
    if kind == "down":
        yield f"http://127.0.0.1:{closed_port()}", lambda: -1
    elif kind == "slow":
        slow = SlowCollector(delay=_pipeline.EXPORT_TIMEOUT_S + 2)
        try:
            yield f"http://127.0.0.1:{slow.port}", lambda: slow.requests
        finally:
            slow.close()
    else:
        hole = BlackHole()
        try:
            yield f"http://127.0.0.1:{hole.port}", lambda: len(hole.conns)
        finally:
            hole.close()


def spy_on_exports(monkeypatch: pytest.MonkeyPatch) -> set[int]:
    """The threads every OTLP span and metric export runs on, from now on."""
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    threads: set[int] = set()
    for cls in (OTLPSpanExporter, OTLPMetricExporter):
        real = cls.export

        def export(self: Any, *args: Any, _real: Any = real, **kwargs: Any) -> Any:
            threads.add(threading.get_ident())
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(cls, "export", export)
    return threads


SESSIONS, CONCURRENT = 64, 1


async def failing_then_answered_sessions(count: int, concurrent: int) -> None:
    """``count`` sessions, ``concurrent`` at a time: each one turn whose first two attempts fail
    (TLS, then a gateway rate limit) and whose third is answered, then a second turn answered
    at once."""

    async def one() -> None:
        model = ScriptedLLM(
            [
                ssl_connection_error,
                gateway_status_error(429, RATE_LIMIT_BODY),
                "hi, how can I help?",
            ]
        )
        session = new_session(model, max_retry=2)
        try:
            await start(session)
            assert await answered(session)
            assert await answered(session, "and again")
        finally:
            await close(session)
        assert model.calls == 4

    for _ in range(0, count, concurrent):
        await asyncio.gather(*(one() for _ in range(concurrent)))


@pytest.mark.parametrize("kind", ["down", "slow", "black_hole"])
@pytest.mark.usefixtures("clean", "quiet_livekit")
def test_a_failing_collector_never_stalls_the_loop_and_shutdown_is_bounded(
    kind: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """64 sessions one after the other (the 2,000-session test below runs them concurrently),
    each with two failed attempts, all recorded (spans, metrics, logs), while the batch exporter
    keeps posting to the failing collector from its own thread. On a busy 2-core machine the
    worst stall is 10-40 ms, and what there is of it is livekit's own span code formatting
    tracebacks on the loop for the failed attempts (its ``telemetry/utils.py``
    ``record_exception``, twice per attempt), whatever the collector does: with 2 and 4 sessions
    failing at once it grew to 65 and 100 ms. An exporter that blocked the loop would stall it
    for its timeout (5 s) or its retry backoff (about 1 s)."""
    # export every 20 ms rather than every 5 s: the exporter is talking to the failing collector
    # while the sessions run, not only at shutdown
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "20")
    exporting_threads = spy_on_exports(monkeypatch)
    with collector_that_is(kind) as (url, contacts):
        otel_agents.init(otlp_endpoint=url)  # never raises

        async def main() -> Heartbeat:
            await failing_then_answered_sessions(1, 1)  # warm-up: livekit's first-use costs
            async with Heartbeat() as heartbeat:
                await failing_then_answered_sessions(SESSIONS, CONCURRENT)
            return heartbeat

        heartbeat = asyncio.run(main())
        seen = contacts()
        with caplog.at_level(logging.WARNING, logger="otel_agents"):
            otel_agents.shutdown(timeout=1.0)

    # the heartbeat's worst stall is printed, not asserted: on a loaded machine any bound on
    # it is flaky (bench/session_cost.py measures the lag against a baseline). What is
    # asserted is why the loop cannot stall: no export ever ran on the loop's thread.
    print(f"\ncollector {kind}: {heartbeat}")
    assert heartbeat.beats > 0
    assert exporting_threads, "nothing was exported while the sessions ran"
    assert threading.main_thread().ident not in exporting_threads
    gave_up = [r for r in caplog.records if "shutdown timed out after 1.0s" in r.getMessage()]
    if kind != "down":
        # the exporter is stuck in the collector (longer than the timeout): shutdown gave up
        # at its bound instead of waiting for it
        assert len(gave_up) == 1, [r.getMessage() for r in caplog.records]
    if kind != "down":
        assert seen > 0, "the exporter never reached the collector while the sessions ran"
    # nothing recorded was lost to the collector's failure
    sessions = SESSIONS + 1
    assert total(n.SESSIONS_STARTED) == sessions
    assert total(n.SESSIONS_CLOSED, reason="user_initiated", agent_spoke="true") == sessions
    assert total(n.USER_TURNS) == 2 * sessions
    assert total(n.ATTEMPT_FAILURES, root_cause="ssl.SSLCertVerificationError") == sessions
    assert total(n.QUOTA_ERRORS, quota_category="MaxConcurrentGatewayLLMRpm") == sessions
    assert total(n.REQUESTS, outcome="ok") == 2 * sessions
    assert total(n.SESSIONS_ACTIVE) == 0
    assert internal_errors() == {}


# --- 2. thousands of sessions --------------------------------------------------------------------

MANY, WAVE = 2000, 100


@pytest.mark.asyncio
async def test_2000_concurrent_sessions_are_counted_exactly_each_attempt_in_its_own_session(
    recording: _Records,
) -> None:
    """Sessions 100 at a time on one loop, their LLMs failing differently: each session's
    failed attempts land in that session (a context variable per session), counts are exact,
    and nothing of a closed session or its model stays behind."""
    refs: list[weakref.ref[Any]] = []

    async def one(i: int) -> None:
        # every 10th session: a terminal credit error, no retry (a dead turn); the others: a
        # TLS failure, then the answer (i % 3 extra TLS failures: 1 to 3 failed attempts)
        if i % 10 == 0:
            script: list[Any] = [gateway_status_error(429, CREDITS_BODY), "sorry"]
            model = ScriptedLLM(script, provider="credits")
            session = new_session(model, max_retry=0)
        else:
            script = [ssl_connection_error] * (1 + i % 3) + ["hi, how can I help?"]
            model = ScriptedLLM(script, provider="tls")
            session = new_session(model, max_retry=3)
        refs.extend((weakref.ref(model), weakref.ref(session)))
        try:
            await start(session)
            if i % 10 == 0:
                assert isinstance(await fails_with(session), APIStatusError)
            else:
                assert await answered(session)
        finally:
            await close(session)

    async def waves(first: int, last: int) -> None:
        for wave in range(first, last, WAVE):
            await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(wave, wave + WAVE))), 60)

    await waves(0, WAVE)
    series_after_one_wave = series_count()
    await waves(WAVE, MANY)

    dead = MANY // 10
    tls_attempts = sum(1 + i % 3 for i in range(MANY) if i % 10)
    assert total(n.SESSIONS_STARTED) == MANY
    assert total(n.SESSIONS_CLOSED, reason="user_initiated", agent_spoke="true") == MANY - dead
    assert total(n.SESSIONS_CLOSED, reason="user_initiated", agent_spoke="false") == dead
    assert total(n.SILENT_SESSIONS) == dead
    assert total(n.USER_TURNS) == MANY
    assert total(n.DEAD_TURNS, cause="error") == dead
    assert total(n.ATTEMPT_FAILURES, provider="tls") == tls_attempts
    assert total(n.ATTEMPT_FAILURES, provider="credits", final="true") == dead
    assert total(n.TERMINAL_ERRORS, provider="credits") == dead
    assert total(n.REQUESTS, provider="tls", outcome="ok") == MANY - dead
    assert total(n.REQUESTS, provider="credits", outcome="failed") == dead
    assert total(n.SESSIONS_ACTIVE) == 0
    assert total(n.UNANSWERED_TURNS) == 0
    assert internal_errors() == {}
    # bounded: the series do not grow with the number of sessions
    assert series_count() == series_after_one_wave <= SERIES_BOUND

    # each session counted its own attempts (none of a concurrent session's)
    closed = [r for r in recording.records if r.msg == n.LOG_SESSION_CLOSED]
    assert len(closed) == MANY
    per_session = Counter(
        (r.errors, r.dead_turns, r.answered_turns, r.terminal_error) for r in closed
    )
    assert per_session == {
        (1, 1, 0, True): dead,
        **{
            (k, 0, 1, False): sum(1 for i in range(MANY) if i % 10 and 1 + i % 3 == k)
            for k in (1, 2, 3)
        },
    }
    attempts = [r for r in recording.records if r.msg == n.LOG_ATTEMPT_FAILED]
    assert len(attempts) == tls_attempts + dead

    # nothing retained: no open session, no tracker, no model or session kept alive
    recording.records.clear()
    del closed, attempts
    gc.collect()
    assert not _session._open
    assert not _session._by_session
    assert [r for r in refs if r() is not None] == []
    assert not [o for o in gc.get_objects() if type(o) is _session.SessionTracker]


# --- 3. hostile exceptions through the real hook path --------------------------------------------

TEN_MB = 10 * 1024 * 1024


class Unprintable(APIError):
    def __str__(self) -> str:
        raise RuntimeError("no str for you")

    def __repr__(self) -> str:
        raise RuntimeError("no repr either")


class Opaque(Exception):
    """Every attribute read raises, ``__cause__`` and ``__context__`` included (Python's own
    machinery reads them through C slots and is unaffected)."""

    def __getattribute__(self, name: str) -> Any:
        raise RuntimeError(f"no {name}")

    @property  # type: ignore[override]
    def __cause__(self) -> BaseException | None:
        raise RuntimeError("no cause")

    @property  # type: ignore[override]
    def __context__(self) -> BaseException | None:
        raise RuntimeError("no context")


def cyclic() -> BaseException:
    top = APIStatusError("gateway error", status_code=503, retryable=False)
    middle = ConnectionResetError("reset")
    bottom = ssl.SSLError("bad record mac")
    top.__cause__, middle.__context__, bottom.__context__ = middle, bottom, top
    return top


def self_caused() -> BaseException:
    exc = APIError("I caused myself", retryable=False)
    exc.__cause__ = exc
    exc.__context__ = exc
    return exc


def deep(depth: int = 2000) -> BaseException:
    exc: BaseException = TimeoutError("the bottom")
    for i in range(depth):
        outer = APIError(f"wrapper {i}", retryable=False)
        outer.__cause__ = exc
        exc = outer
    return exc


def status(body: object, code: int = 500) -> Callable[[], BaseException]:
    return lambda: APIStatusError("provider error", status_code=code, body=body, retryable=False)


#: every JSON type, and what JSON parsing can give (nan, infinities, huge ints, nesting)
JSON_BODIES: dict[str, object] = {
    "null": None,
    "true": True,
    "false": False,
    "zero": 0,
    "negative": -1,
    "huge_int": 10**400,
    "float": 1.5,
    "nan": math.nan,
    "inf": math.inf,
    "-inf": -math.inf,
    "empty_str": "",
    "str": "upstream exploded",
    "json_in_str": '{"type": "inference_quota_exceeded", "category": "MaxGatewayCredits"}',
    "empty_list": [],
    "list": [1, "two", None, {"three": 3.0}],
    "empty_dict": {},
    "dict": {"error": {"code": "server_error", "message": "try again"}},
    "nested": {"a": [{"b": [{"c": [None, True, {"d": math.nan}]}]}] * 3},
    "deeply_nested": {"error": [[[[[[[[{"error": {"type": "inference_quota_exceeded"}}]]]]]]]]},
}

HOSTILE: dict[str, Callable[[], BaseException]] = {
    "cyclic_cause_context_loop": cyclic,
    "self_caused": self_caused,
    "2000_deep_chain": deep,
    "raising_str_and_repr": lambda: Unprintable("x", retryable=False),
    "attributes_raise_on_access": lambda: Opaque("opaque"),
    "10_mb_str_body": status("x" * TEN_MB, 429),
    "10_mb_dict_body": status({**CREDITS_BODY, "pad": "p" * TEN_MB}, 429),
    **{f"body_{name}": status(body) for name, body in JSON_BODIES.items()},
}


def emit_error(model: llm.LLM, error: BaseException, recoverable: bool) -> int:
    """Emit an LLM error exactly as livekit's retry loop does (``LLMStream._emit_error``); the
    most memory the emit held at once (its cost in time is bench/hook_cost.py's)."""
    event = llm.LLMError(
        timestamp=time.time(), label=model.label, error=error, recoverable=recoverable
    )
    tracemalloc.start()
    try:
        model.emit("error", event)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_error_emitted_as_livekit_does_is_recorded_quickly(
    case: str, telemetry: Any, emit_failures: _EmitFailures
) -> None:
    """Tracer, metrics and logs all on: the record's every field is built and exported."""
    model = ScriptedLLM(["unused"])
    for recoverable in (True, False):
        held = emit_error(model, HOSTILE[case](), recoverable)
        assert held < EMIT_PEAK_BYTES, f"one emit held {held / 1e6:.1f} MB"
    assert emit_failures.records == []  # nothing escaped a hook
    assert internal_errors() == {}
    assert total(n.ATTEMPT_FAILURES, provider="scripted") == 2
    assert total(n.ATTEMPT_FAILURES, final="true") == 1
    assert len(telemetry.attempt_spans()) == 2
    assert len(telemetry.logs()) == 2


@pytest.mark.asyncio
@pytest.mark.parametrize("case", list(HOSTILE))
async def test_a_hostile_error_in_a_real_turn_is_recorded_and_the_agent_carries_on(
    case: str, recording: _Records, emit_failures: _EmitFailures
) -> None:
    error = HOSTILE[case]()
    model = ScriptedLLM([raising(error), "still here"])
    session = new_session(model, max_retry=0)
    try:
        await start(session)
        assert await fails_with(session) is error  # the host sees its own exception
        assert await answered(session, "are you there?")  # and the agent carries on
    finally:
        await close(session)

    assert emit_failures.records == []
    assert internal_errors() == {}
    assert total(n.ATTEMPT_FAILURES, provider="scripted", final="true") == 1
    assert total(n.DEAD_TURNS, cause="error") == 1
    assert total(n.SESSIONS_CLOSED, reason="user_initiated", agent_spoke="true") == 1
    (closed,) = [r for r in recording.records if r.msg == n.LOG_SESSION_CLOSED]
    assert (closed.user_turns, closed.answered_turns, closed.dead_turns) == (2, 1, 1)
    assert closed.errors == 1


class RenderSpy(dict):  # type: ignore[type-arg]
    """A 10 MB JSON body that counts how often it is rendered to text."""

    renders = 0

    def __repr__(self) -> str:
        RenderSpy.renders += 1
        return dict.__repr__(self)


def test_a_10_mb_body_is_never_rendered_by_the_hook(telemetry: Any) -> None:
    body = RenderSpy({**CREDITS_BODY, **{f"k{i}": i for i in range(TEN_MB // 16)}})
    RenderSpy.renders = 0
    took = emit_error(ScriptedLLM(["unused"]), status(body, 429)(), recoverable=False)
    assert total(n.QUOTA_ERRORS, quota_category="MaxGatewayCredits", terminal="true") == 1
    assert RenderSpy.renders == 0, f"the body was rendered; the emit took {took * 1e3:.0f} ms"


@pytest.mark.asyncio
async def test_with_a_recording_tracer_livekit_itself_replaces_an_unprintable_exception(
    clean: None, quiet_livekit: None
) -> None:
    """Known, and livekit's: with a recording tracer provider, livekit's own span code calls
    ``str()`` on a failed attempt's exception unguarded (``livekit/agents/telemetry/utils.py``
    ``record_exception``), so an exception whose ``__str__`` raises reaches the host as that
    ``RuntimeError``. otel-agents hands livekit its tracer provider, so this is what the host
    sees with ``init(tracer_provider=...)`` or an OTLP endpoint, and exactly what it sees with
    livekit's tracing on and no otel-agents at all."""
    from livekit.agents.telemetry import set_tracer_provider

    async def host_sees() -> type[BaseException]:
        session = new_session(ScriptedLLM([raising(Unprintable("x", retryable=False)), "ok"]))
        try:
            await start(session)
            return type(await fails_with(session))
        finally:
            await close(session)

    otel_agents.init(tracer_provider=TracerProvider())
    with_otel_agents = await host_sees()
    otel_agents.shutdown()
    assert not instrument.is_instrumented()
    set_tracer_provider(TracerProvider())  # livekit's tracing alone
    try:
        without = await host_sees()
    finally:
        from opentelemetry import trace

        set_tracer_provider(trace.get_tracer_provider())
    assert with_otel_agents is without is RuntimeError


# --- 4. a hook that fails internally -------------------------------------------------------------


class HostError(APIError):
    """The host's own, non-retryable provider error."""


def _breaks(target: object, name: str) -> Callable[[pytest.MonkeyPatch], None]:
    def apply(monkeypatch: pytest.MonkeyPatch) -> None:
        def broken(*args: object, **kwargs: object) -> Any:
            # the one exception livekit's emitter re-raises into the retry loop
            raise TypeError(f"otel-agents' {name} is broken")

        monkeypatch.setattr(target, name, broken)

    return apply


@dataclasses.dataclass(frozen=True)
class Broken:
    """An internal function of otel-agents made to raise, and what must then be counted."""

    apply: Callable[[pytest.MonkeyPatch], None]
    where: str  # the internal_errors label its failures go to
    per: str  # one failure per: "attempt", "request" (succeeded), "model", "session", "item"
    attempts_still_counted: bool  # the failed attempts still reach the metrics


BROKEN: dict[str, Broken] = {
    "classifier": Broken(_breaks(_hooks, "classify"), "classify", "attempt", False),
    "attempt_recorder": Broken(
        _breaks(Recorder, "attempt_failed"), "attempt_hook", "attempt", False
    ),
    "session_attribution": Broken(
        _breaks(_session, "attribute_attempt"), "attempt_hook", "attempt", True
    ),
    "metrics_export": Broken(_breaks(Recorder, "_metrics"), "export_metrics", "attempt", False),
    "span_export": Broken(_breaks(Recorder, "_span"), "export_span", "attempt", True),
    "log_export": Broken(_breaks(Recorder, "_log"), "export_log", "attempt", True),
    "request_recorder": Broken(_breaks(Recorder, "request_ok"), "request_hook", "request", True),
    # the model's own hooks are missing, but both failures reach the session's error event,
    # which records what no provider hook counted
    "instrumentation": Broken(_breaks(_hooks, "attach"), "instrument", "model", True),
    "session_tracker_start": Broken(
        _breaks(_session.SessionTracker, "begin"), "session_hook", "session", True
    ),
    "session_tracker_events": Broken(
        _breaks(_session.SessionTracker, "on_conversation_item_added"),
        "session_hook",
        "item",
        True,
    ),
}


@pytest.mark.asyncio
@pytest.mark.parametrize("broken", list(BROKEN))
async def test_a_hook_that_fails_internally_changes_nothing_for_the_agent(
    broken: str, telemetry: Any, monkeypatch: pytest.MonkeyPatch, emit_failures: _EmitFailures
) -> None:
    """Turn 1: the host's own non-retryable error, which the host must get back unchanged.
    Turn 2: a TLS failure, retried by livekit's loop, then answered. Every other export step
    still runs: a failing tracer does not lose the metrics, and so on."""
    case = BROKEN[broken]
    case.apply(monkeypatch)
    host_error = HostError("the host's own error", retryable=False)
    model = ScriptedLLM([raising(host_error), ssl_connection_error, "hi, how can I help?"])
    session = new_session(model, max_retry=1)
    items: list[object] = []
    session.on("conversation_item_added", items.append)
    try:
        await start(session)
        assert await fails_with(session) is host_error
        assert await answered(session)
    finally:
        await close(session)

    assert model.calls == 3  # livekit's retry loop ran: one attempt, then one failed and a retry
    assert emit_failures.records == []
    failures = {"attempt": 2, "request": 1, "model": 1, "session": 1, "item": len(items)}
    assert internal_errors() == {case.where: failures[case.per]}
    assert total(n.ATTEMPT_FAILURES) == (2 if case.attempts_still_counted else 0)


# --- 5. init(): twice, after models were built, disabled ----------------------------------------


async def fail_once(model: llm.LLM) -> None:
    """One request with no retry: one failed attempt, final."""
    with pytest.raises(APIConnectionError):
        async for _ in model.chat(chat_ctx=llm.ChatContext.empty(), conn_options=NoWaitRetries(0)):
            pass


def error_handlers(model: llm.LLM) -> int:
    return len(model._events.get("error", {}))


@pytest.mark.asyncio
@pytest.mark.usefixtures("clean", "quiet_livekit")
async def test_init_twice_and_init_again_after_shutdown_never_double_count() -> None:
    otel_agents.init()
    with pytest.warns(RuntimeWarning, match="already called"):
        otel_agents.init()
    model = ScriptedLLM([ssl_connection_error, "ok"])
    assert error_handlers(model) == 1
    await fail_once(model)
    session = new_session(model)
    await start(session)
    assert await answered(session)
    await close(session)
    assert total(n.ATTEMPT_FAILURES) == 1
    assert total(n.REQUESTS, outcome="ok") == 1
    assert total(n.SESSIONS_STARTED) == total(n.USER_TURNS) == 1

    # shutdown, then init again: the constructors are wrapped once more, and a model built
    # under the first init() keeps its one set of handlers, live again
    otel_agents.shutdown()
    otel_agents.init()
    assert error_handlers(model) == 1
    model.calls = 0
    await fail_once(model)
    newer = ScriptedLLM([ssl_connection_error])
    assert error_handlers(newer) == 1
    await fail_once(newer)
    assert total(n.ATTEMPT_FAILURES) == 3


@pytest.mark.asyncio
@pytest.mark.usefixtures("clean", "quiet_livekit")
async def test_models_built_before_init_are_not_instrumented_but_their_sessions_are() -> None:
    """The contract (init() runs before models are built): hooks attach
    when a provider instance is constructed, so a model built before ``init()`` records none of
    its own attempts and requests. ``AgentSession.start`` is wrapped at the class, so a session
    started after ``init()`` is tracked whatever its models: an error that reaches the session's
    own ``error`` event is still recorded (a final failed attempt of a failed request, which no
    provider hook counted) and counts in its turns."""
    early = ScriptedLLM([ssl_connection_error])
    early_session = new_session(early, max_retry=0)  # built before init(), started after
    otel_agents.init()
    assert error_handlers(early) == 0
    await fail_once(early)
    assert total(n.ATTEMPT_FAILURES) == 0

    try:
        await start(early_session)
        assert isinstance(await fails_with(early_session), APIError)
    finally:
        await close(early_session)
    # the one failure the session saw: recorded once, final, from the session's error event
    assert total(n.ATTEMPT_FAILURES) == total(n.ATTEMPT_FAILURES, final="true") == 1
    assert total(n.REQUESTS) == total(n.REQUESTS, outcome="failed") == 1
    assert total(n.SESSIONS_STARTED) == total(n.USER_TURNS) == 1
    assert total(n.DEAD_TURNS, cause="error") == 1  # counted from the session's error event
    assert total(n.SESSIONS_CLOSED, reason="user_initiated", agent_spoke="false") == 1

    late = ScriptedLLM([ssl_connection_error])  # built after init(): instrumented
    await fail_once(late)
    assert total(n.ATTEMPT_FAILURES) == 2


@pytest.mark.asyncio
@pytest.mark.usefixtures("clean", "quiet_livekit")
async def test_sdk_disabled_wraps_nothing_contacts_nothing_and_counts_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from livekit.agents.telemetry import traces

    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    livekit_provider = traces.tracer._tracer_provider
    originals = (llm.LLM.__init__, AgentSession.start)
    before = otel_agents_samples()
    port = closed_port()
    hole = BlackHole()
    try:
        otel_agents.init(otlp_endpoint=f"http://127.0.0.1:{hole.port}", metrics_port=port)
        assert (llm.LLM.__init__, AgentSession.start) == originals
        model = ScriptedLLM([ssl_connection_error, "ok"])
        assert error_handlers(model) == 0
        session = new_session(model, max_retry=0)
        try:
            await start(session)
            assert isinstance(await fails_with(session), APIError)
            assert await answered(session)
        finally:
            await close(session)
        otel_agents.shutdown(timeout=1.0)
        contacted = len(hole.conns)
    finally:
        hole.close()

    assert otel_agents_samples() == before
    assert traces.tracer._tracer_provider is livekit_provider
    assert contacted == 0
    with pytest.raises(ConnectionRefusedError):  # no /metrics server was started
        await asyncio.open_connection("127.0.0.1", port)
