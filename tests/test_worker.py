"""The test of record for running under livekit's real worker (the README's deploy section).

An agent module (``tests/worker_agent.py``: ``otel_agents.init()`` on its first line) is started
as a user starts it, ``python worker_agent.py start``, in a subprocess: livekit's own CLI,
``AgentServer`` and job executors, once with livekit's default executor (forkserver job
processes, which end through ``os._exit``) and once with its thread executor (every job in the
worker's main process). Nothing of livekit's process model is re-implemented here.

The deployment is the README's: ``PROMETHEUS_MULTIPROC_DIR`` set in the environment but missing
at start (livekit creates it, then empties it after the agent module ran), a
``prometheus_port``, ``OTEL_EXPORTER_OTLP_ENDPOINT`` pointing at an OTLP/HTTP receiver on
127.0.0.1, and the ``otel-agents sidecar`` serving the same directory. Jobs come from livekit's
``simulate_job(room, fake_job=True)`` (no LiveKit server); each room's LLM is livekit's
``inference.LLM`` against a fake LiveKit Inference gateway of its own, scripted with the room's
faults: a healthy room, credits exhausted until livekit closes the session, a transient rate
limit, a timeout on every attempt, and (process executor) a job SIGKILLed mid-request.

Every expected number is derived from the scripts and livekit's retry settings
(``worker_scenarios``): Prometheus totals in livekit's ``/metrics`` and in the sidecar, every
span (the session spans with their close reason and the job's shutdown reason, every failed
attempt, livekit's own job and request spans), the OTLP metrics of every process, the
``session_closed`` log records, and the worker's exit time after SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from otel_agents import names as n
from otel_agents.demo.gateway import QUOTA_CREDITS_BODY, FakeGateway, Fault, http_error, ok
from otel_agents.demo.gateway import quota_body as gateway_quota_body

from netfaults import BlackHole, closed_port
from otlp import OtlpReceiver, Point, Span
from worker_scenarios import (
    CLOSES_ITSELF,
    LLM_TIMEOUT,
    MAX_RETRY,
    MAX_UNRECOVERABLE_ERRORS,
    TURNS,
    shutdown_reason,
)

TESTS = Path(__file__).parent
AGENT = TESTS / "worker_agent.py"
STEP_TIMEOUT = 60.0  # bound on every wait for the worker (a job start is 0.3-1 s of livekit's)
EXIT_FLUSH_TIMEOUT = 1.5
#: the worker's SIGTERM drain plus every job process's bounded exit flush
EXIT_BOUND = 15.0
PROVIDER = "livekit"  # inference.LLM's provider label
RPM_BODY = gateway_quota_body("llm", "MaxConcurrentGatewayLLMRpm")


@dataclass(frozen=True)
class Failure:
    """A failing LLM attempt: the gateway's fault, and how otel-agents classifies it."""

    fault: Fault
    error_class: str
    root_cause: str
    quota: tuple[str, str, str] | None = None  # quota_type, quota_category, terminal

    @property
    def terminal(self) -> bool:
        return self.quota is not None and self.quota[2] == "true"


FAILURES = {
    "credits": Failure(
        http_error(429, QUOTA_CREDITS_BODY),
        "quota_exhausted",
        "openai.RateLimitError",
        ("llm", "MaxGatewayCredits", "true"),
    ),
    "rpm": Failure(
        http_error(429, RPM_BODY),
        "rate_limited",
        "openai.RateLimitError",
        ("llm", "MaxConcurrentGatewayLLMRpm", "false"),
    ),
    # the gateway answers after livekit's timeout: the openai SDK's deadline (anyio's cancel
    # scope) raises TimeoutError from CancelledError; livekit wraps it in APITimeoutError
    "slow": Failure(ok("too late", delay=LLM_TIMEOUT + 2), "timeout", "TimeoutError"),
}
#: each room's gateway faults, one per LLM attempt in order (then healthy answers)
SCRIPTS: dict[str, tuple[str, ...]] = {
    "healthy": (),
    "credits": ("credits",) * ((MAX_RETRY + 1) * len(TURNS["credits"])),
    "rate": ("rpm", "rpm"),
    "timeout": ("slow",) * (MAX_RETRY + 1),
}
KILLED = "killed"  # its one request hangs until the test SIGKILLs the job process
ATTEMPT_KEYS = (
    n.A_ATTEMPT,
    n.A_FINAL,
    n.A_ERROR_CLASS,
    n.A_ROOT_CAUSE_TYPE,
    n.A_TERMINAL,
    n.A_MASKED,
    n.A_QUOTA_CATEGORY,
)

Key = tuple[str, tuple[tuple[str, str], ...]]


def key(name: str, **labels: str) -> Key:
    return (name, tuple(sorted(labels.items())))


@dataclass
class Expected:
    """What one room records, derived from its script and livekit's retry loop."""

    counters: Counter[Key] = field(default_factory=Counter)
    histograms: Counter[Key] = field(default_factory=Counter)  # ``_count`` samples
    attempts: list[dict[str, Any]] = field(default_factory=list)  # attempt span attributes
    session: dict[str, Any] = field(default_factory=dict)  # session span attributes
    requests: int = 0
    attempt_runs: int = 0  # livekit's llm_request_run spans: failed and successful attempts


def expected(room: str) -> Expected:
    """livekit's retry loop over the room's script: each user turn is one request of at most
    ``MAX_RETRY + 1`` attempts; every failure here is retryable, so only the last attempt of
    an exhausted request is final. A failed request kills its turn (``dead_error``); livekit
    closes the session on its ``MAX_UNRECOVERABLE_ERRORS + 1``-th failed request."""
    out = Expected()
    c = out.counters
    c[key(n.SESSIONS_STARTED)] += 1
    turns = TURNS[room]
    c[key(n.USER_TURNS)] += len(turns)
    if room == KILLED:
        return out
    script = list(SCRIPTS[room])
    answered = failed_requests = errors = 0
    terminal = False
    # what a silence is blamed on: the first dead turn killed by a terminal failure (its first
    # terminal one), else the last dead turn's last failure
    killed_by: str | None = None
    killed_terminal = False
    for _ in turns:
        out.requests += 1
        failures: list[Failure] = []
        while len(failures) <= MAX_RETRY and script:
            failures.append(FAILURES[script.pop(0)])
        reply = len(failures) <= MAX_RETRY  # an attempt left: the gateway answers it
        out.attempt_runs += len(failures) + reply
        for attempt, f in enumerate(failures):
            final = not reply and attempt == len(failures) - 1
            labels = {"component": "llm", "provider": PROVIDER, "error_class": f.error_class}
            c[
                key(n.ATTEMPT_FAILURES, **labels, root_cause=f.root_cause, final=str(final).lower())
            ] += 1
            if f.quota is not None:
                quota_type, category, is_terminal = f.quota
                c[
                    key(
                        n.QUOTA_ERRORS,
                        component="llm",
                        quota_type=quota_type,
                        quota_category=category,
                        terminal=is_terminal,
                    )
                ] += 1
            if f.terminal:
                c[key(n.TERMINAL_ERRORS, **labels)] += 1
                terminal = True
            errors += 1
            out.attempts.append(
                {
                    n.A_ATTEMPT: attempt,
                    n.A_FINAL: final,
                    n.A_ERROR_CLASS: f.error_class,
                    n.A_ROOT_CAUSE_TYPE: f.root_cause,
                    n.A_TERMINAL: f.terminal,
                    n.A_MASKED: False,
                    n.A_QUOTA_CATEGORY: f.quota[1] if f.quota else None,
                }
            )
        outcome = "ok" if reply else "failed"
        c[key(n.REQUESTS, component="llm", provider=PROVIDER, outcome=outcome)] += 1
        if failures:
            # a request with a failed attempt: its retry wait is observed once, when it ends
            out.histograms[key(n.RETRY_WAIT + "_count", component="llm")] += 1
        if reply:
            answered += 1
        else:
            failed_requests += 1
            c[key(n.DEAD_TURNS, cause="error")] += 1
            terminals = [f for f in failures if f.terminal]
            if not killed_terminal:
                killed_by = (terminals or failures[-1:])[0].error_class
                killed_terminal = bool(terminals)
    reason = "error" if failed_requests > MAX_UNRECOVERABLE_ERRORS else "user_initiated"
    assert (reason == "error") == (room in CLOSES_ITSELF), room
    spoke = answered > 0
    c[key(n.SESSIONS_CLOSED, reason=reason, agent_spoke=str(spoke).lower())] += 1
    if not spoke:
        assert killed_by is not None
        c[key(n.SILENT_SESSIONS, reason=reason, cause=killed_by)] += 1
    h = out.histograms
    h[key(n.SESSION_DURATION + "_count", reason=reason)] += 1
    if spoke:
        h[key(n.TIME_TO_FIRST_SPEECH + "_count")] += 1
    h[key(n.RESPONSE_LATENCY + "_count")] += answered
    out.session = {
        n.S_CLOSE_REASON: reason,
        n.S_SILENT: not spoke,
        n.S_SILENCE_CAUSE: None if spoke else killed_by,
        n.S_AGENT_SPOKE: spoke,
        n.S_USER_TURNS: len(turns),
        n.S_ANSWERED_TURNS: answered,
        n.S_DEAD_TURNS: failed_requests,
        n.S_ERRORS: errors,
        n.S_TERMINAL_ERROR: terminal,
        n.S_JOB_SHUTDOWN_REASON: shutdown_reason(room),
    }
    return out


def rooms_of(executor: str) -> list[str]:
    # a job of the thread executor runs in the worker's own process: it cannot be SIGKILLed
    return [*SCRIPTS, KILLED] if executor == "default" else list(SCRIPTS)


def totals(rooms: list[str]) -> tuple[Counter[Key], Counter[Key]]:
    counters: Counter[Key] = Counter()
    histograms: Counter[Key] = Counter()
    for room in rooms:
        e = expected(room)
        counters += e.counters
        histograms += e.histograms
    return counters, histograms


# --- reading what the worker exported -----------------------------------------------------------


def scrape(url: str, prefix: str = n.PREFIX + "_") -> dict[Key, float]:
    """otel-agents' samples (the sidecar's own left out unless ``prefix`` asks for them)."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    out: dict[Key, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            own = s.name.startswith(n.PREFIX + "_sidecar")
            if s.name.startswith(prefix) and (not own or prefix.startswith(n.PREFIX + "_sidecar")):
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def counters_of(samples: dict[Key, float]) -> Counter[Key]:
    """The non-zero ``*_total`` samples (an unlabelled counter shows 0 before anything)."""
    return Counter({k: int(v) for k, v in samples.items() if k[0].endswith("_total") and v})


def histogram_counts_of(samples: dict[Key, float]) -> Counter[Key]:
    return Counter({k: int(v) for k, v in samples.items() if k[0].endswith("_count") and v})


def traces_by_room(spans: list[Span]) -> dict[str, list[Span]]:
    """Each job's spans share one trace; its ``job_entrypoint`` span names the room."""
    by_trace: dict[str, list[Span]] = defaultdict(list)
    for s in spans:
        by_trace[s.trace_id].append(s)
    rooms: dict[str, list[Span]] = {}
    for trace in by_trace.values():
        entry = [s for s in trace if s.name == "job_entrypoint"]
        if entry:
            rooms[entry[0].attributes["lk.pii.room_name"]] = trace
    return rooms


def otlp_totals(exports: list[list[Point]]) -> tuple[Counter[Key], set[int]]:
    """The sum over processes of each process's last cumulative value of every counter, in
    Prometheus form; and the pids that exported."""
    last: dict[tuple[str, str, tuple[tuple[str, str], ...]], float] = {}
    pids = set()
    for export in exports:
        for p in export:
            instance = str(p.resource["service.instance.id"])
            pids.add(int(p.resource["process.pid"]))
            labels = tuple(sorted((k, str(v)) for k, v in p.attributes.items()))
            last[(instance, p.metric, labels)] = p.value
    out: Counter[Key] = Counter()
    for (_, metric, labels), value in last.items():
        name = metric.replace(".", "_", 1)
        if value and name + "_total" in COUNTER_NAMES:
            out[(name + "_total", labels)] += int(value)
    return out, pids


COUNTER_NAMES = {
    n.ATTEMPT_FAILURES,
    n.QUOTA_ERRORS,
    n.TERMINAL_ERRORS,
    n.MASKED_FAILURES,
    n.REQUESTS,
    n.SESSIONS_STARTED,
    n.SESSIONS_CLOSED,
    n.SILENT_SESSIONS,
    n.USER_TURNS,
    n.DEAD_TURNS,
}


def log_records(output: str, message: str) -> list[dict[str, Any]]:
    """livekit's JSON log lines (job processes' records forwarded by the worker) of one kind."""
    out = []
    for line in output.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if record.get("message") == message:
                    out.append(record)
    return out


# --- running the worker -------------------------------------------------------------------------


@dataclass
class Run:
    """One worker run: what it exported and how it ended."""

    executor: str
    rooms: list[str]
    pids: dict[str, int]
    livekit: dict[Key, float]
    sidecar: dict[Key, float]
    receiver: OtlpReceiver
    output: str
    exit_code: int | None
    exit_seconds: float
    #: how long each process's exit flush took, by pid (from otel-agents' own log records)
    #: pid -> whether its exit flush completed (else it gave up at exit_flush_timeout)
    flushes: dict[int, bool]
    #: processes holding a liveness lock, as the sidecar saw them
    live_processes: float

    def job_pids(self) -> set[int]:
        return {pid for room, pid in self.pids.items() if room != KILLED}


@contextlib.contextmanager
def sidecar(directory: Path, port: int) -> Iterator[str]:
    args = ["--multiproc-dir", str(directory), "--port", str(port)]
    process = subprocess.Popen(
        [sys.executable, "-m", "otel_agents", "sidecar", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STEP_TIMEOUT
        while True:
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"the sidecar did not start: {process.stderr}") from None
                time.sleep(0.05)
        yield url + "/metrics"
    finally:
        process.terminate()
        process.wait(10)


@contextlib.asynccontextmanager
async def gateways(rooms: list[str]) -> AsyncIterator[dict[str, FakeGateway]]:
    started: dict[str, FakeGateway] = {}
    try:
        for room in rooms:
            gateway = started[room] = FakeGateway()
            await gateway.start()
            if room == KILLED:
                gateway.llm.push(ok("never", delay=STEP_TIMEOUT))
            else:
                gateway.llm.push(*(FAILURES[step].fault for step in SCRIPTS[room]))
        yield started
    finally:
        for gateway in started.values():
            await gateway.aclose()


async def wait_for(what: str, predicate: Any, within: float = STEP_TIMEOUT) -> None:
    deadline = time.monotonic() + within
    while not await asyncio.to_thread(predicate):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def run_worker(
    executor: str, tmp: Path, receiver: OtlpReceiver, *, endpoint: str | None = None
) -> Run:
    rooms = rooms_of(executor)
    directory = tmp / "multiproc"  # missing: the README's recipe lets livekit create it
    pid_dir = tmp / "pids"
    pid_dir.mkdir()
    flush_log = tmp / "flushes.jsonl"
    prometheus_port = closed_port()
    async with gateways(rooms) as gws:
        env = {
            **os.environ,
            "PROMETHEUS_MULTIPROC_DIR": str(directory),
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint or receiver.url,
            "OTEL_SERVICE_NAME": "worker-test",
            "OTEL_AGENTS_EXIT_FLUSH_TIMEOUT": str(EXIT_FLUSH_TIMEOUT),
            "WORKER_TEST_EXECUTOR": executor,
            "WORKER_TEST_ROOMS": ",".join(rooms),
            "WORKER_TEST_GATEWAYS": json.dumps({room: g.url for room, g in gws.items()}),
            "WORKER_TEST_PROMETHEUS_PORT": str(prometheus_port),
            "WORKER_TEST_PID_DIR": str(pid_dir),
            "WORKER_TEST_FLUSH_LOG": str(flush_log),
        }
        log = (tmp / "worker.log").open("w")
        worker = await asyncio.create_subprocess_exec(
            sys.executable, str(AGENT), "start", cwd=tmp, env=env, stdout=log, stderr=log
        )
        try:
            pids: dict[str, int] = {}

            def pid_of(room: str) -> bool:
                path = pid_dir / room
                if path.exists() and path.read_text():
                    pids[room] = int(path.read_text())
                    return True
                return False

            if KILLED in rooms:
                await wait_for("the request to kill", lambda: gws[KILLED].requests["llm"] >= 1)
                assert pid_of(KILLED)
                os.kill(pids[KILLED], signal.SIGKILL)
            for room in rooms:
                await wait_for(f"the job of {room}", lambda room=room: pid_of(room))
            # every job has run to its end (shutdown callbacks included) and, with job
            # processes, its process has exited
            closed = sum(1 for room in rooms if room != KILLED)
            livekit_url = f"http://127.0.0.1:{prometheus_port}/metrics"
            await wait_for(
                "every session closed",
                lambda: (
                    sum(v for k, v in scrape(livekit_url).items() if k[0] == n.SESSIONS_CLOSED)
                    == closed
                ),
            )
            if executor == "default":
                await wait_for(
                    "the job processes' exit",
                    lambda: not any(alive(pid) for pid in pids.values()),
                )
            else:
                await wait_for(
                    "the jobs' shutdown",
                    lambda: (
                        len(log_records((tmp / "worker.log").read_text(), "session_closed"))
                        == closed
                    ),
                )
            livekit = await asyncio.to_thread(scrape, livekit_url)
            with sidecar(directory, closed_port()) as sidecar_url:
                sidecar_samples = await asyncio.to_thread(scrape, sidecar_url)
                live = await asyncio.to_thread(scrape, sidecar_url, n.SIDECAR_LIVE_PROCESSES)
            worker.send_signal(signal.SIGTERM)
            started = time.monotonic()
            await asyncio.wait_for(worker.wait(), EXIT_BOUND)
            exit_seconds = time.monotonic() - started
        finally:
            if worker.returncode is None:
                worker.kill()
                await worker.wait()
            log.close()
    flushes = {}
    if flush_log.exists():
        for line in flush_log.read_text().splitlines():
            record = json.loads(line)
            flushes[record["pid"]] = record["complete"]
    return Run(
        executor,
        rooms,
        pids,
        livekit,
        sidecar_samples,
        receiver,
        (tmp / "worker.log").read_text(),
        worker.returncode,
        exit_seconds,
        flushes,
        live[(n.SIDECAR_LIVE_PROCESSES, ())],
    )


# --- the tests ----------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["default", "thread"])
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    executor = request.param
    with OtlpReceiver() as receiver:
        result = asyncio.run(run_worker(executor, tmp_path_factory.mktemp(executor), receiver))
        time.sleep(0.2)  # the receiver's last requests are answered on its own threads
        yield result


def test_the_worker_exits_on_sigterm_within_its_bound(run: Run) -> None:
    assert run.exit_code == 0, run.output[-3000:]
    # the worker's exit is awaited within EXIT_BOUND (a hang guard, not a timing: the bound on
    # how long a job's exit flush may wait is the product's own, asserted by the next tests)
    print(f"\nworker exit after SIGTERM: {run.exit_seconds:.2f} s; exit flushes: {run.flushes}")


def test_prometheus_totals_are_exact_in_livekits_endpoint_and_in_the_sidecar(run: Run) -> None:
    counters, histograms = totals(run.rooms)
    for name, samples in (("livekit", run.livekit), ("sidecar", run.sidecar)):
        assert counters_of(samples) == counters, name
        assert histogram_counts_of(samples) == histograms, name
    # a job process SIGKILLed with its session open: livekit's endpoint keeps its live gauge
    # (nobody marks it dead); the sidecar reaps it
    killed = KILLED in run.rooms
    assert run.livekit[key(n.SESSIONS_ACTIVE)] == (1.0 if killed else 0.0)
    assert run.sidecar[key(n.SESSIONS_ACTIVE)] == 0.0
    assert run.sidecar[key(n.UNANSWERED_TURNS)] == 0.0


def test_the_workers_own_process_is_alive_to_the_sidecar_after_livekit_emptied_the_directory(
    run: Run,
) -> None:
    # livekit deleted the liveness lock init() took; otel-agents took it again. With the thread
    # executor the worker is the only process; with job processes, livekit keeps idle ones too
    if run.executor == "thread":
        assert run.live_processes == 1
    else:
        assert run.live_processes >= 1


def test_every_span_arrives(run: Run) -> None:
    traces = traces_by_room(run.receiver.spans)
    for room in run.rooms:
        if room == KILLED:
            continue  # SIGKILLed: what it had not exported is lost, by definition
        e = expected(room)
        spans = traces[room]
        names = Counter(s.name for s in spans)
        # livekit's own spans of the job, on the provider init() handed it
        assert names["job_entrypoint"] == names["agent_session"] == 1, room
        assert names["llm_request"] == e.requests, room
        assert names["llm_request_run"] == e.attempt_runs, room
        (session,) = [s for s in spans if s.name == n.SPAN_SESSION]
        assert {k: session.attributes.get(k) for k in e.session} == e.session, room
        attempts = [s for s in spans if s.name == n.SPAN_ATTEMPT_FAILED]
        got = [{k: a.attributes.get(k) for k in ATTEMPT_KEYS} for a in attempts]
        assert sorted(got, key=repr) == sorted(e.attempts, key=repr), room
        assert all(a.attributes[n.A_PROVIDER] == PROVIDER for a in attempts)
    expected_attempts = sum(len(expected(r).attempts) for r in run.rooms)
    assert len(run.receiver.spans_named(n.SPAN_ATTEMPT_FAILED)) == expected_attempts
    print(
        f"\nspans received: {len(run.receiver.spans)}; session spans "
        f"{len(run.receiver.spans_named(n.SPAN_SESSION))}, attempt spans {expected_attempts}"
    )


def test_every_process_exports_its_otlp_metrics(run: Run) -> None:
    counters, _ = totals([r for r in run.rooms if r != KILLED])
    got, pids = otlp_totals(run.receiver.metric_exports)
    assert got == counters
    worker_pid = {p for r, p in run.pids.items() if r != KILLED}
    # each job process (or, with the thread executor, the worker) exported its own stream
    assert pids == worker_pid
    print(f"\nOTLP metric exports: {len(run.receiver.metric_exports)} from {len(pids)} processes")


def test_session_closed_records_carry_the_jobs_shutdown_reason(run: Run) -> None:
    records = log_records(run.output, n.LOG_SESSION_CLOSED)
    by_reason = Counter(r["job_shutdown_reason"] for r in records)
    assert by_reason == Counter(shutdown_reason(r) for r in run.rooms if r != KILLED)
    attempts = log_records(run.output, n.LOG_ATTEMPT_FAILED)
    assert len(attempts) == sum(len(expected(r).attempts) for r in run.rooms)


def test_exit_flushes_stay_within_their_timeout(run: Run) -> None:
    # every process that ran a job flushed at its exit (the worker's own process too), and
    # every flush completed: none gave up at its exit_flush_timeout
    assert run.job_pids() <= run.flushes.keys()
    assert all(run.flushes.values()), run.flushes
    print(f"\n{len(run.flushes)} processes flushed at their exit")


def test_a_black_holed_collector_never_holds_a_job_past_its_exit_flush_timeout(
    tmp_path: Path,
) -> None:
    hole = BlackHole()
    try:
        with OtlpReceiver() as receiver:
            result = asyncio.run(
                run_worker("default", tmp_path, receiver, endpoint=f"http://127.0.0.1:{hole.port}")
            )
    finally:
        hole.close()
    assert result.exit_code == 0
    counters, _ = totals(result.rooms)
    assert counters_of(result.sidecar) == counters  # Prometheus does not depend on the collector
    assert hole.conns, "the exporters never tried the black hole"
    # every job process gave up at its bound (the warning "exit flush timed out"); a process
    # with nothing pending (the worker's own, livekit's idle job processes) did not wait for
    # the black hole at all: its flush completed
    jobs = [result.flushes[pid] for pid in result.job_pids()]
    assert jobs
    assert not any(jobs), result.flushes
    others = [done for pid, done in result.flushes.items() if pid not in result.job_pids()]
    assert others
    assert all(others), result.flushes
    print(
        f"\nexit flush, collector black-holed: {len(jobs)} job processes gave up at their "
        f"bound, {len(others)} with nothing pending completed"
    )
