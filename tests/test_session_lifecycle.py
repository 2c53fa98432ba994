"""The life of a session at scale and at its edges (docs/sessions.md, docs/architecture.md),
with real ``AgentSession``s in text mode (no room, offline).

* 1,000 sessions in one process: exact counts, gauges back to 0, nothing of a closed session
  retained by otel-agents (weak references, and tracemalloc against a run without otel-agents).
* A session constructed but never started, a ``start()`` that raises, a restarted session.
* Job shutdown (docs/livekit.md): an open session is closed ``job_shutdown``; a session
  closed by ``aclose()`` keeps its span until the job's shutdown reason arrives.
* Processes that exit with a session open, alone or as multiprocessing children (os._exit after
  the multiprocessing finalizers): no stale live gauge in the multiprocess directory.
* Never-retrieved task exceptions (the orphan task whose AttributeError masks
  the real RuntimeError), and the loop's previous exception handler left intact.
* ``otel_agents.shutdown()`` with a session still open.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import logging
import os
import select
import statistics
import subprocess
import sys
import textwrap
import time
import tracemalloc
import typing
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from livekit.agents import Agent, AgentSession, JobContext, TurnHandlingOptions, llm
from livekit.agents.testing import fake_job_context
from livekit.agents.voice.agent_activity import AgentActivity
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from prometheus_client import REGISTRY, CollectorRegistry, multiprocess

import otel_agents
from otel_agents import names as n
from otel_agents._capture import instrument, tracker
from otel_agents._capture import sessions as _session

from conftest import Series, reset_metrics, session_series
from scripted import Hang, RichScriptedLLM, ScriptedLLM

TIMEOUT = 10.0  # bound on every await: a hang fails the test instead of the suite
REQUEST_OK = (
    n.REQUESTS,
    (("component", "llm"), ("outcome", "ok"), ("provider", "scripted")),
)


def new_session(model: llm.LLM | None = None) -> AgentSession:
    # text mode: no VAD, no turn detector (the default one would only warn without a VAD)
    return AgentSession(
        llm=model if model is not None else ScriptedLLM(["hi, how can I help?"]),
        vad=None,
        aec_warmup_duration=None,
        turn_handling=TurnHandlingOptions(turn_detection=None),
        # livekit's away timer, even cancelled, keeps its context (and with it the session)
        # alive in the loop's timer heap for 15 s: out of the way of what is measured here
        user_away_timeout=None,
    )


async def start(session: AgentSession) -> None:
    await asyncio.wait_for(session.start(agent=Agent(instructions="test agent")), TIMEOUT)


async def one_session(*, turn: bool = True) -> None:
    """Open a session, answer one user turn, close it (reason ``user_initiated``)."""
    session = new_session()
    await start(session)
    if turn:
        await asyncio.wait_for(session.run(user_input="hello there"), TIMEOUT)
    await asyncio.wait_for(session.aclose(), TIMEOUT)


async def sessions(count: int) -> None:
    for _ in range(count):
        await one_session()


async def wait_until(condition: Callable[[], object], within: float = TIMEOUT) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def scaled(series: Series, factor: int) -> Series:
    return {key: value * factor for key, value in series.items()}


def gauge(name: str) -> float:
    value = REGISTRY.get_sample_value(name)
    assert value is not None, name
    return value


def histogram_count(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name + "_count", labels) or 0.0


def no_open_sessions() -> bool:
    return len(_session._open) == 0 and len(_session._by_session) == 0


def the_session_span(telemetry: Any) -> ReadableSpan:
    (span,) = telemetry.spans(n.SPAN_SESSION)
    return span


async def run_job_shutdown_callbacks(job: JobContext, reason: str) -> None:
    """What livekit's ``_shutdown_job`` (ipc/job_proc_lazy_main.py) does last: one task per
    callback registered with ``JobContext.add_shutdown_callback``, each awaited with the reason.

    A fake job has no public trigger for this (``JobContext.shutdown()`` only calls the fake's
    no-op ``on_shutdown``), so the stored callbacks are run here the same way.
    """
    tasks = [asyncio.create_task(callback(reason)) for callback in job._shutdown_callbacks]
    await asyncio.wait_for(asyncio.gather(*tasks), TIMEOUT)


# --- 1. a thousand sessions in one process ---------------------------------------------------


@pytest.mark.asyncio
async def test_a_thousand_sessions_are_counted_exactly(telemetry) -> None:
    await asyncio.wait_for(sessions(1000), 60)

    assert telemetry.series() == {**scaled(session_series(), 1000), REQUEST_OK: 1000}
    assert gauge(n.SESSIONS_ACTIVE) == 0
    assert gauge(n.UNANSWERED_TURNS) == 0
    assert histogram_count(n.TIME_TO_FIRST_SPEECH) == 1000
    assert histogram_count(n.RESPONSE_LATENCY) == 1000
    assert histogram_count(n.SESSION_DURATION, reason="user_initiated") == 1000
    spans = telemetry.spans(n.SPAN_SESSION)
    assert len(spans) == 1000
    assert {s.attributes[n.S_CLOSE_REASON] for s in spans} == {"user_initiated"}
    assert len({s.context.span_id for s in spans}) == 1000
    assert len(telemetry.logs(n.LOG_SESSION_CLOSED)) == 1000
    assert no_open_sessions()


async def _closed_session() -> tuple[weakref.ref[Any] | None, weakref.ref[AgentSession]]:
    """One session, opened, answered, closed; only weak references to it and to its tracker
    (``None`` without otel-agents) leave this frame."""
    session = new_session()
    await start(session)
    tracker = _session._by_session.get(session)
    assert tracker is None or tracker in _session._open
    refs = (weakref.ref(tracker) if tracker is not None else None, weakref.ref(session))
    del tracker
    await asyncio.wait_for(session.run(user_input="hello there"), TIMEOUT)
    await asyncio.wait_for(session.aclose(), TIMEOUT)
    return refs


@pytest.mark.asyncio
async def test_a_closed_session_leaves_nothing_behind(telemetry) -> None:
    tracker_ref, session_ref = await _closed_session()
    gc.collect()

    assert tracker_ref is not None
    assert tracker_ref() is None
    assert no_open_sessions()
    ref = _session.current.get()
    assert ref is None or ref() is None  # the context variable held a weak ref
    assert session_ref() is None  # nothing of otel-agents keeps the session alive
    assert telemetry.series() == {**session_series(), REQUEST_OK: 1}


async def _closed_behind_a_live_timer() -> weakref.ref[AgentSession]:
    """A closed session, in a loop whose timer heap starts with a live timer (as in any busy
    agent): a cancelled timer then stays in the heap until its own deadline, and with it the
    context it was scheduled in (asyncio only pops cancelled timers from the head)."""
    loop = asyncio.get_running_loop()
    blocker = loop.call_later(5.0, lambda: None, context=contextvars.Context())
    try:
        _, session_ref = await _closed_session()
        gc.collect()
        return session_ref
    finally:
        blocker.cancel()


@pytest.mark.asyncio
async def test_without_otel_agents_a_closed_session_is_collected_behind_a_live_timer() -> None:
    """The control for the next test: livekit alone lets the session go."""
    assert not instrument.is_instrumented()
    session_ref = await _closed_behind_a_live_timer()
    assert session_ref() is None


@pytest.mark.asyncio
async def test_an_answered_turn_timer_does_not_keep_the_session_alive(telemetry) -> None:
    # A timer scheduled with call_later copies the current context, where livekit's
    # AgentActivity and SpeechHandle context variables live, and cancel() drops the callback, not
    # the context: the silence timer of an answered turn kept the whole closed session alive
    # until silence_timeout passed. It is now scheduled in an empty context.
    session_ref = await _closed_behind_a_live_timer()
    assert telemetry.series() == {**session_series(), REQUEST_OK: 1}
    assert session_ref() is None


class _Discard(SpanExporter):
    """Spans are made and ended, then dropped: an exporter must not be what retains memory."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _traced_after_gc() -> int:
    # Empty the bounded caches that livekit fills on every reply before reading: typing's lru
    # caches keep up to 128 ``Chan[_SpeechSegment]`` aliases alive, each with its own dataclass
    # (defined inside AgentActivity._pipeline_reply_task_impl, ~2.5 KB), and the interpreter's
    # method cache keeps attribute-name strings alive. Their churn, not a leak, otherwise adds
    # +-50-200 B per session of noise to both runs.
    for clear in getattr(typing, "_cleanups", ()):
        clear()
    sys._clear_type_cache()
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


async def _retained_per_session(warm_up: int, rounds: int, count: int) -> list[float]:
    """Bytes retained per closed session, per round of ``count`` sessions (tracemalloc)."""
    await sessions(warm_up)
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start(1)
    try:
        await sessions(5)
        per_round = []
        before = _traced_after_gc()
        for _ in range(rounds):
            await sessions(count)
            after = _traced_after_gc()
            per_round.append((after - before) / count)
            before = after
        return per_round
    finally:
        if not tracing:
            tracemalloc.stop()


@pytest.mark.asyncio
async def test_retained_memory_per_closed_session_is_under_100_bytes() -> None:
    """Under 100 bytes retained per closed session. Measured as the
    difference between a run with otel-agents (spans made and ended) and the same run without
    it, in the same process; the median of 4 rounds ignores a round in which some table grew to
    its next size (a set; the interpreter's table of ``object``'s subclasses, 144 KB once livekit
    has defined thousands of per-reply dataclasses, see _traced_after_gc)."""
    warm_up, rounds, count = 100, 4, 45
    reset_metrics()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_Discard()))
    otel_agents.init(tracer_provider=provider)
    try:
        with_otel = await asyncio.wait_for(_retained_per_session(warm_up, rounds, count), 60)
        assert no_open_sessions()
    finally:
        otel_agents.shutdown()
    tracked = warm_up + 5 + rounds * count
    assert REGISTRY.get_sample_value(n.SESSIONS_STARTED) == tracked  # otel-agents was on

    without = await asyncio.wait_for(_retained_per_session(warm_up, rounds, count), 60)
    assert REGISTRY.get_sample_value(n.SESSIONS_STARTED) == tracked  # and then really off

    per_session = statistics.median(with_otel) - statistics.median(without)
    print(
        f"\notel-agents retained bytes per closed session: {per_session:.1f} "
        f"(with: {[round(b, 1) for b in with_otel]}, without: {[round(b, 1) for b in without]}"
        f" B/session; {rounds} rounds of {count} sessions after {warm_up} warm-up sessions)"
    )
    assert per_session < 100


# --- 2. never started, start() raising, restart ----------------------------------------------


@pytest.mark.asyncio
async def test_a_session_constructed_but_never_started_counts_nothing(telemetry) -> None:
    session = new_session()
    await asyncio.wait_for(session.aclose(), TIMEOUT)  # livekit emits no close: never started
    session_ref = weakref.ref(session)
    del session
    gc.collect()

    assert session_ref() is None
    assert telemetry.series() == {}
    assert gauge(n.SESSIONS_ACTIVE) == 0
    assert telemetry.spans(n.SPAN_SESSION) == []
    assert telemetry.logs(n.LOG_SESSION_CLOSED) == []
    assert no_open_sessions()


@pytest.mark.asyncio
async def test_a_start_that_raises_is_closed_with_reason_error(
    telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    failure = RuntimeError("the agent activity could not start")

    async def failing_start(self: AgentActivity, *args: Any, **kwargs: Any) -> None:
        raise failure

    # livekit's start runs after otel-agents' wrapper began tracking, then raises
    monkeypatch.setattr(AgentActivity, "start", failing_start)
    session = new_session()
    with pytest.raises(RuntimeError) as raised:
        await start(session)
    assert raised.value is failure  # the host sees livekit's own exception, unchanged

    assert telemetry.series() == session_series(reason="error", agent_spoke=False, turns=0)
    assert gauge(n.SESSIONS_ACTIVE) == 0
    assert histogram_count(n.SESSION_DURATION, reason="error") == 1
    (record,) = telemetry.logs(n.LOG_SESSION_CLOSED)
    assert record.close_reason == "error"
    assert no_open_sessions()

    monkeypatch.undo()
    await asyncio.wait_for(session.aclose(), TIMEOUT)  # no close event: it never started
    assert telemetry.series() == session_series(reason="error", agent_spoke=False, turns=0)


@pytest.mark.asyncio
async def test_a_restarted_session_counts_as_two_sessions(telemetry) -> None:
    session = new_session()
    for _ in range(2):
        await start(session)
        await asyncio.wait_for(session.run(user_input="hello there"), TIMEOUT)
        await asyncio.wait_for(session.aclose(), TIMEOUT)

    assert telemetry.series() == {**scaled(session_series(), 2), REQUEST_OK: 2}
    assert gauge(n.SESSIONS_ACTIVE) == 0
    first, second = telemetry.spans(n.SPAN_SESSION)
    assert first.context.span_id != second.context.span_id
    assert first.end_time is not None
    assert second.start_time is not None
    assert first.end_time <= second.start_time
    for span in (first, second):
        assert span.attributes[n.S_CLOSE_REASON] == "user_initiated"
        assert span.attributes[n.S_USER_TURNS] == 1
    assert no_open_sessions()


# --- 3. job shutdown -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_session_open_at_job_shutdown_is_closed_job_shutdown(telemetry) -> None:
    """A session the job did not close first (not the primary one, or its aclose() timed out)
    is closed by the job's shutdown callbacks."""
    with fake_job_context() as job:
        session = new_session()
        await start(session)
        await asyncio.wait_for(session.run(user_input="hello there"), TIMEOUT)

        await run_job_shutdown_callbacks(job, "room deleted")

        assert telemetry.series() == {**session_series(reason="job_shutdown"), REQUEST_OK: 1}
        assert gauge(n.SESSIONS_ACTIVE) == 0
        span = the_session_span(telemetry)
        assert span.attributes[n.S_CLOSE_REASON] == "job_shutdown"
        assert span.attributes[n.S_JOB_SHUTDOWN_REASON] == "room deleted"
        (record,) = telemetry.logs(n.LOG_SESSION_CLOSED)
        assert record.close_reason == "job_shutdown"
        assert record.job_shutdown_reason == "room deleted"

        await asyncio.wait_for(session.aclose(), TIMEOUT)  # closed already: nothing more
    assert telemetry.series() == {**session_series(reason="job_shutdown"), REQUEST_OK: 1}
    assert no_open_sessions()


@pytest.mark.asyncio
async def test_a_closed_session_span_waits_for_the_job_shutdown_reason(telemetry) -> None:
    """livekit closes the primary session with ``aclose()`` (reason ``user_initiated``) before
    it runs the shutdown callbacks: the span is held until the job's reason arrives."""
    with fake_job_context() as job:
        session = new_session()
        await start(session)
        await asyncio.wait_for(session.run(user_input="hello there"), TIMEOUT)
        await asyncio.wait_for(session.aclose(), TIMEOUT)
        closed_at = time.time_ns()

        # counted at close; the span and the log record are not written yet
        assert telemetry.series() == {**session_series(), REQUEST_OK: 1}
        assert gauge(n.SESSIONS_ACTIVE) == 0
        assert telemetry.spans(n.SPAN_SESSION) == []
        assert telemetry.logs(n.LOG_SESSION_CLOSED) == []
        assert no_open_sessions()

        await run_job_shutdown_callbacks(job, "room deleted")

    span = the_session_span(telemetry)
    assert span.attributes[n.S_CLOSE_REASON] == "user_initiated"
    assert span.attributes[n.S_JOB_SHUTDOWN_REASON] == "room deleted"
    assert span.end_time is not None
    assert span.end_time <= closed_at
    (record,) = telemetry.logs(n.LOG_SESSION_CLOSED)
    assert record.job_shutdown_reason == "room deleted"
    assert record.close_reason == "user_initiated"
    assert record.span_id == format(span.context.span_id, "016x")
    assert telemetry.series() == {**session_series(), REQUEST_OK: 1}  # nothing counted twice


@pytest.mark.asyncio
async def test_a_held_span_ends_after_the_grace_period_without_job_shutdown(
    telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tracker, "JOB_SHUTDOWN_GRACE_S", 0.05)
    with fake_job_context():
        session = new_session()
        await start(session)
        await asyncio.wait_for(session.aclose(), TIMEOUT)
        assert telemetry.spans(n.SPAN_SESSION) == []
        await wait_until(lambda: telemetry.spans(n.SPAN_SESSION))

    span = the_session_span(telemetry)
    assert span.attributes[n.S_CLOSE_REASON] == "user_initiated"
    assert n.S_JOB_SHUTDOWN_REASON not in span.attributes
    (record,) = telemetry.logs(n.LOG_SESSION_CLOSED)
    assert record.job_shutdown_reason is None


@pytest.mark.asyncio
async def test_a_held_record_is_written_at_process_exit(telemetry) -> None:
    """A session closed in a job whose shutdown reason never comes (the process ends first):
    the exit hook writes its span and record."""
    with fake_job_context():
        session = new_session()
        await start(session)
        await asyncio.wait_for(session.aclose(), TIMEOUT)
        assert telemetry.logs(n.LOG_SESSION_CLOSED) == []
        _session.finalize_all("other")  # what the exit hook does

    (record,) = telemetry.logs(n.LOG_SESSION_CLOSED)
    assert record.close_reason == "user_initiated"  # closed before, not re-closed as "other"
    assert the_session_span(telemetry).attributes[n.S_CLOSE_REASON] == "user_initiated"


# --- 4. processes that exit with a session open ----------------------------------------------

AGENT_MODULE = textwrap.dedent(
    '''
    """An agent module as a livekit worker runs it: init() at the top, so every process that
    imports the module runs it (the job processes re-import the main module)."""
    import asyncio
    import multiprocessing
    import os
    import sys

    sys.path.insert(0, {tests!r})

    import otel_agents

    otel_agents.init(silence_timeout=0.05)

    from livekit.agents import Agent, AgentSession, TurnHandlingOptions
    from otel_agents._export.metrics import get_metrics
    from scripted import Hang, RichScriptedLLM

    # livekit preloads its plugins in the forkserver; with preload_modules=[...] also yours
    PRELOAD = {{"forkserver": ["livekit.agents"], "forkserver_preloaded_agent": ["agent"]}}


    async def open_unanswered_session():
        session = AgentSession(
            llm=RichScriptedLLM([Hang(asyncio.Event(), "never said")]),
            vad=None,
            aec_warmup_duration=None,
            turn_handling=TurnHandlingOptions(turn_detection=None),
        )
        await session.start(agent=Agent(instructions="test agent"))
        session.generate_reply(user_input="hello?")
        for _ in range(1000):
            if get_metrics().unanswered_turns.value() == 1:
                return session
            await asyncio.sleep(0.01)
        raise AssertionError("the user turn never became unanswered")


    def helper():
        pass  # a helper process (a Pool worker, say), forked while the session is open


    def job(ready, release):
        loop = asyncio.new_event_loop()
        session = loop.run_until_complete(open_unanswered_session())
        ready.set()
        release.wait(60)
        # return with the session open: multiprocessing runs its finalizers, then os._exit()


    if __name__ == "__main__":
        scenario = sys.argv[1]
        if scenario in ("interpreter_exit", "fork_helper"):
            loop = asyncio.new_event_loop()
            session = loop.run_until_complete(open_unanswered_session())
            if scenario == "fork_helper":
                child = multiprocessing.get_context("fork").Process(target=helper)
                child.start()
                child.join(60)
            print("ready", flush=True)
            sys.stdin.readline()
            if scenario == "fork_helper":
                print("child exit code", child.exitcode, flush=True)
            # fall off the end: a normal interpreter exit, the session still open
        else:
            ctx = multiprocessing.get_context(scenario.split("_")[0])
            if scenario in PRELOAD:
                ctx.set_forkserver_preload(PRELOAD[scenario])
            ready, release = ctx.Event(), ctx.Event()
            child = ctx.Process(target=job, args=(ready, release))
            child.start()
            if not ready.wait(60):
                raise SystemExit("the job process never got ready")
            print("ready", flush=True)
            sys.stdin.readline()
            release.set()
            child.join(60)
            print("child exit code", child.exitcode, flush=True)
    '''
)

SCENARIOS = (
    "interpreter_exit",
    "spawn",
    "forkserver",
    "forkserver_preloaded_agent",
    "fork",
    "fork_helper",
)


@dataclass
class Exited:
    """What the multiprocess directory said while the process was waiting, and after it
    exited."""

    ready: bool
    live: dict[str, float]
    after: dict[str, float]
    directory: Path
    returncode: int | None
    stdout: str
    stderr: str


def _aggregate(directory: Path) -> dict[str, float]:
    """Every otel_agents session sample, as livekit's /metrics aggregates the directory."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    out = {}
    for metric in registry.collect():
        for s in metric.samples:
            if s.name.startswith(n.PREFIX) and not s.name.endswith(("_bucket", "_created")):
                labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
                out[f"{s.name}{{{labels}}}"] = s.value
    return out


@pytest.fixture(scope="module")
def exits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Exited]:
    """Run every scenario at once (each is a few interpreter starts): the agent opens a session
    whose user turn goes unanswered, waits for the test to read the directory, then exits
    without closing it."""
    root = tmp_path_factory.mktemp("exits")
    (root / "agent.py").write_text(AGENT_MODULE.format(tests=str(Path(__file__).parent)))
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    procs = {}
    for scenario in SCENARIOS:
        directory = root / scenario
        directory.mkdir()
        procs[scenario] = (
            subprocess.Popen(
                [sys.executable, str(root / "agent.py"), scenario],
                cwd=root,
                env={**env, "PROMETHEUS_MULTIPROC_DIR": str(directory)},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=(root / f"{scenario}.stderr").open("w"),
                text=True,
            ),
            directory,
        )
    results = {}
    try:
        deadline = time.monotonic() + 90
        ready = {}
        for scenario, (proc, _) in procs.items():
            assert proc.stdout is not None
            readable, _, _ = select.select(
                [proc.stdout], [], [], max(0, deadline - time.monotonic())
            )
            ready[scenario] = bool(readable) and proc.stdout.readline().strip() == "ready"
        live = {scenario: _aggregate(directory) for scenario, (_, directory) in procs.items()}
        for scenario, (proc, directory) in procs.items():
            try:
                stdout, _ = proc.communicate("\n", timeout=max(1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                stdout, _ = proc.communicate()
            results[scenario] = Exited(
                ready=ready[scenario],
                live=live[scenario],
                after=_aggregate(directory),
                directory=directory,
                returncode=proc.returncode,
                stdout=stdout,
                stderr=(root / f"{scenario}.stderr").read_text()[-3000:],
            )
    finally:
        for proc, _ in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return results


# The multiprocessing finalizer that init() registers is cleared in every forkserver or fork
# child by BaseProcess._after_fork, after init() ran (in the parent, in the forkserver, or while
# prepare() re-imports the main module): those children leave through os._exit() without it.
# _setup now registers it again from an after-fork hook; forkserver, forkserver_preloaded_agent
# and fork failed before that (spawn passed only because spawn_main() ends with sys.exit()).
# fork_helper: otel_agents/_setup.py _register_finalizer (the after-fork hook) should also forget
# the trackers the child inherited, e.g. _session._open.clear() and _session._by_session.clear()
# (or os.register_at_fork(after_in_child=...), which covers a bare os.fork() as well).


@pytest.mark.parametrize(
    "scenario",
    [
        "interpreter_exit",
        "spawn",
        # livekit's default on Linux: plugins preloaded in the forkserver, the agent module
        # imported by each job process
        "forkserver",
        # ServerOptions(preload_modules=["agent"]): init() already ran in the forkserver
        "forkserver_preloaded_agent",
        "fork",
        "fork_helper",
    ],
)
def test_a_process_that_exits_with_a_session_open_leaves_no_stale_gauge(
    exits: dict[str, Exited], scenario: str
) -> None:
    run = exits[scenario]
    # after it exited: the session was closed at exit ("other") and no live count remains
    after = run.after
    assert after.get(f"{n.SESSIONS_ACTIVE}{{}}", 0.0) == 0
    assert after.get(f"{n.UNANSWERED_TURNS}{{}}", 0.0) == 0
    assert after[f"{n.SESSIONS_STARTED}{{}}"] == 1
    assert after.get(f"{n.SESSIONS_CLOSED}{{agent_spoke=false,reason=other}}") == 1
    # the LLM never answered: the turn waited past the silence timeout until the exit
    assert after.get(f"{n.SILENT_SESSIONS}{{cause=stalled,reason=other}}") == 1
    assert after[f"{n.USER_TURNS}{{}}"] == 1
    assert not list(run.directory.glob("gauge_livesum_*.db"))  # mark_process_dead ran


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_exit_scenario_ran_with_a_user_waiting(
    exits: dict[str, Exited], scenario: str
) -> None:
    """What the exit test above rests on, scenario by scenario (so that its expected failures
    can only be the exit itself)."""
    run = exits[scenario]
    assert run.ready, run.stderr
    assert run.returncode == 0, run.stderr
    if scenario != "interpreter_exit":
        assert "child exit code 0" in run.stdout, run.stderr
    # while the process waited: one open session, one user waiting for an answer
    assert run.live[f"{n.SESSIONS_ACTIVE}{{}}"] == 1
    assert run.live[f"{n.UNANSWERED_TURNS}{{}}"] == 1
    assert run.live[f"{n.SESSIONS_STARTED}{{}}"] == 1
    assert run.after[f"{n.SESSIONS_STARTED}{{}}"] == 1


# --- 5. never-retrieved task exceptions (an orphan task) -------------------------------------


def _ensure_session() -> Any:
    raise RuntimeError("no http context")


class SpeechStream:
    """An orphan task livekit once had (PR #5709): the base ``__init__`` schedules
    the main task, then the subclass's ``_ensure_session()`` raises before ``self._session`` is
    set. The caller gets the real RuntimeError; the orphan task fails with an AttributeError
    that nobody awaits, reported only when the task is garbage collected."""

    def __init__(self) -> None:
        self._task = asyncio.create_task(self._main_task(), name="SpeechStream._main_task")
        self._session = _ensure_session()

    async def _main_task(self) -> None:
        await self._session.ws_connect("wss://agent-gateway.livekit.cloud/v1/stt")


async def orphan_task_error() -> None:
    with contextlib.suppress(RuntimeError):
        SpeechStream()  # the real error: the caller sees it (and usually logs it)
    for _ in range(3):
        await asyncio.sleep(0)  # the orphan task runs and fails
    gc.collect()  # the stream and its task are garbage: Task.__del__ reports the exception


@contextlib.contextmanager
def previous_handler() -> Iterator[list[dict[str, Any]]]:
    """A list-appending exception handler, installed on the loop before any session starts."""
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda loop, context: seen.append(context))
    try:
        yield seen
    finally:
        loop.set_exception_handler(None)


@pytest.fixture
def asyncio_log() -> Iterator[list[logging.LogRecord]]:
    records: list[logging.LogRecord] = []

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Handler(logging.DEBUG)
    logger = logging.getLogger("asyncio")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


@pytest.mark.asyncio
async def test_an_orphan_task_error_is_recorded_on_its_session(
    telemetry, asyncio_log: list[logging.LogRecord]
) -> None:
    with previous_handler() as seen:
        session = new_session()
        await start(session)
        await orphan_task_error()

    # the previous handler got the loop's context, once, and the default handler nothing
    (context,) = seen
    assert context["message"] == "Task exception was never retrieved"
    assert isinstance(context["exception"], AttributeError)
    assert context["future"].get_name() == "SpeechStream._main_task"
    assert set(context) == {"message", "exception", "future"}
    assert not [r for r in asyncio_log if "never retrieved" in r.getMessage()]

    assert telemetry.value(n.UNHANDLED_TASK_ERRORS, root_cause="AttributeError") == 1
    (record,) = telemetry.logs(n.LOG_UNHANDLED_TASK_ERROR)
    assert record.levelname == "ERROR"
    assert record.error_type == "AttributeError"
    assert record.root_cause_type == "AttributeError"
    assert record.root_cause_message == "'SpeechStream' object has no attribute '_session'"
    assert record.task_name == "SpeechStream._main_task"

    await asyncio.wait_for(session.aclose(), TIMEOUT)
    span = the_session_span(telemetry)
    (event,) = [e for e in span.events if e.name == n.EVENT_UNHANDLED_TASK_ERROR]
    assert dict(event.attributes or {}) == {
        n.A_ERROR_TYPE: "AttributeError",
        n.A_ROOT_CAUSE_TYPE: "AttributeError",
        n.A_ROOT_CAUSE_MESSAGE: "'SpeechStream' object has no attribute '_session'",
        n.E_TASK_NAME: "SpeechStream._main_task",
    }
    assert record.trace_id == format(span.context.trace_id, "032x")
    assert record.span_id == format(span.context.span_id, "016x")
    # the RuntimeError reached its caller: it is no unhandled task error
    assert telemetry.series(n.UNHANDLED_TASK_ERRORS) == {
        (n.UNHANDLED_TASK_ERRORS, (("root_cause", "AttributeError"),)): 1
    }


@pytest.mark.asyncio
async def test_other_loop_contexts_pass_through_untouched(telemetry) -> None:
    loop = asyncio.get_running_loop()
    with previous_handler() as seen:
        session, other = new_session(), new_session()
        await start(session)
        await start(other)  # a second session on the loop chains nothing more

        without_exception = {"message": "socket.send() raised exception."}
        other_exception = {"message": "Exception in callback f()", "exception": ValueError("x")}
        for context in (without_exception, other_exception):
            snapshot = dict(context)
            loop.call_exception_handler(context)
            assert seen[-1] is context  # the very same dict, as the loop built it
            assert context == snapshot  # and unchanged

        assert seen == [without_exception, other_exception]
        assert telemetry.series(n.UNHANDLED_TASK_ERRORS) == {}
        assert telemetry.logs(n.LOG_UNHANDLED_TASK_ERROR) == []
        await asyncio.wait_for(session.aclose(), TIMEOUT)
        await asyncio.wait_for(other.aclose(), TIMEOUT)
        assert [e.name for s in telemetry.spans(n.SPAN_SESSION) for e in s.events] == []

        # after shutdown(), the handler records nothing and still hands everything on
        otel_agents.shutdown()
        await orphan_task_error()
        assert len(seen) == 3
        assert isinstance(seen[-1]["exception"], AttributeError)
        assert telemetry.series(n.UNHANDLED_TASK_ERRORS) == {}


@pytest.mark.asyncio
async def test_without_a_previous_handler_the_default_one_still_reports(
    telemetry, asyncio_log: list[logging.LogRecord]
) -> None:
    session = new_session()
    await start(session)
    await orphan_task_error()
    await asyncio.wait_for(session.aclose(), TIMEOUT)

    assert telemetry.value(n.UNHANDLED_TASK_ERRORS, root_cause="AttributeError") == 1
    (record,) = [r for r in asyncio_log if r.msg.startswith("Task exception was never retrieved")]
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], AttributeError)


# --- 6. shutdown() with a session open -------------------------------------------------------


@pytest.mark.asyncio
async def test_shutdown_finalizes_a_session_still_open(telemetry) -> None:
    otel_agents.shutdown()
    otel_agents.init(tracer_provider=telemetry.provider, silence_timeout=0.05)
    release = asyncio.Event()
    session = new_session(RichScriptedLLM([Hang(release, "too late")]))
    await start(session)
    session.generate_reply(user_input="hello?")
    await wait_until(lambda: gauge(n.UNANSWERED_TURNS) == 1)
    assert gauge(n.SESSIONS_ACTIVE) == 1

    otel_agents.shutdown()

    # the agent was still working on the turn, which had waited past the silence timeout
    closed = session_series(reason="other", agent_spoke=False, cause="stalled")
    assert telemetry.series() == closed
    assert gauge(n.SESSIONS_ACTIVE) == 0
    assert gauge(n.UNANSWERED_TURNS) == 0
    span = the_session_span(telemetry)
    assert span.attributes[n.S_CLOSE_REASON] == "other"
    assert span.attributes[n.S_UNANSWERED_TURNS] == 1
    assert span.attributes[n.S_SILENT] is True
    assert span.attributes[n.S_SILENCE_CAUSE] == "stalled"
    assert no_open_sessions()

    # the session lives on without otel-agents: what it does next is not counted
    release.set()
    await asyncio.wait_for(session.aclose(), TIMEOUT)
    assert telemetry.series() == closed
    assert gauge(n.SESSIONS_ACTIVE) == 0
