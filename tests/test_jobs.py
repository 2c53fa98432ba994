"""Every job process counted: every attempt and session of every job process, in one scrape.

livekit runs each job in a forkserver child of the worker's main process. This module does the
same: a main process and several forkserver children, each running real ``AgentSession``s (text
mode, no room, offline) whose scripted LLMs fail and recover, one child SIGKILLed mid-session,
then hundreds of short-lived job processes coming and going. The aggregate scrape
(``otel_agents._sidecar.render``) must count every attempt and session exactly, nothing lost
from the killed child's completed work, without the dead processes' live gauges, and the
multiprocess directory must stay bounded whatever the number of processes that came and went.

How the processes are laid out, and why:

* The **main process** is a subprocess of its own (``python -c "import test_jobs; ..."``), not
  the pytest process: pytest has imported livekit, and with it prometheus_client, and created
  otel-agents' metrics in process memory (``tests/conftest.py``); ``otel_agents.init()`` state,
  the forkserver and the directory would all be shared with the other tests. The subprocess
  replays what livekit's ``Worker.run`` does, in its order: ``livekit.agents`` imported first
  (prometheus_client picks its in-memory value class then, before the variable below is set:
  the import-order trap), then ``PROMETHEUS_MULTIPROC_DIR`` set in ``os.environ`` and the
  directory wiped, then ``otel_agents.init()``, then the forkserver started (it inherits the
  variable), preloading ``livekit.agents`` as livekit preloads its plugins, and this module (it
  holds the job functions and imports the heavy test providers, which each job would otherwise
  import again).
* Each **job process** is a ``multiprocessing.get_context("forkserver")`` child that calls
  ``otel_agents.init()`` and runs its sessions, reporting to the main process over a pipe.
* The **pytest process** plays Prometheus' scraper beside the worker (the ``otel-agents
  sidecar``'s role): it only reads the directory, through ``_sidecar.render``, and compares
  the result with what it derives from the scripts (``llm_request`` and ``session_totals``
  below: livekit's retry loop applied to each script). It also checks that livekit's own
  ``/metrics`` view of the directory (``MultiProcessCollector``) agrees once the scrape has
  reaped it, and the main process renders once itself (as a ``/metrics`` served from the
  worker's main process would) to show the reaper does not reap its own process.

While the short-lived processes come and go, a thread keeps scraping (as Prometheus does,
whatever the worker is doing): no counter may go down between two scrapes, none may count a
process twice, and the live gauges stay within what can be alive. The scraper's own metrics
(``otel_agents_sidecar_*``) must account for every process it reaped.

Nothing here asserts a wall-clock time (noisy VMs): the bound on scrape cost is the number of
files the scrape reads, which must not grow with the processes that came and went. Render
times are printed (``-s``) for the record.

A scrape that meets a new process's still-empty metric file (prometheus_client creates it,
then sizes it) serves every other file: ``test_a_scrape_survives_a_metric_file_being_created``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from livekit.agents import Agent, AgentSession, TurnHandlingOptions, llm
from livekit.agents.types import APIConnectOptions
from livekit.agents.voice.agent_session import SessionConnectOptions
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.parser import text_string_to_metric_families

import otel_agents
from otel_agents import names as n

from scripted import Hang, RichScriptedLLM, ScriptedLLM, gateway_status_error, ssl_connection_error

TIMEOUT = 20.0  # bound on every wait for one step of one process
SILENCE = 0.05  # silence_timeout of every process: a hanging turn is unanswered at once
REPLY = "hi, how can I help?"

# --- the scripts, and what livekit's retry loop makes of them ------------------------------------

# The gateway's rate-limit 429 (the body it sends, as in test_session_turns.py)
RATE_LIMIT_BODY = {
    "type": "inference_quota_exceeded",
    "error": "LLM request rate exceeded, category: MaxConcurrentGatewayLLMRpm",
    "quota_type": "llm",
    "category": "MaxConcurrentGatewayLLMRpm",
    "hint": "Reduce request rate or upgrade your plan.",
    "remaining_limit": "0",
}


@dataclass(frozen=True)
class Failure:
    """A failing LLM step: how the test provider raises it, and how otel-agents classifies it
    (both retryable, so only the last attempt of an exhausted request is final)."""

    raise_it: Callable[[], Callable[[], None]]
    error_class: str
    root_cause: str
    quota: tuple[str, str, str] | None = None  # quota_type, quota_category, terminal


FAILURES: dict[str, Failure] = {
    # the inference plugin's TLS chain: ssl -> httpx -> openai -> livekit APIConnectionError
    "ssl": Failure(lambda: ssl_connection_error, "connection", "ssl.SSLCertVerificationError"),
    # a gateway 429 whose quota body is a transient rate limit
    "rate": Failure(
        lambda: gateway_status_error(429, RATE_LIMIT_BODY),
        "rate_limited",
        "openai.RateLimitError",
        ("llm", "MaxConcurrentGatewayLLMRpm", "false"),
    ),
}

#: a script step: a key of FAILURES, or the reply text ("" is an empty completion)
Script = tuple[str, ...]


@dataclass(frozen=True)
class Session:
    """One session: start, one user turn (``session.run``), close (``aclose``)."""

    script: Script
    max_retry: int


RECOVERED = Session(("ssl", REPLY), 2)  # a TLS blip, then the answer
RATE_LIMITED = Session(("rate",), 1)  # 429 twice: retries exhausted, a dead turn
MASKED = Session(("ssl", "rate"), 2)  # TLS blip then 429s: the retry loop masks the TLS error
EMPTY = Session(("",), 2)  # an empty completion: a dead turn without error


@dataclass(frozen=True)
class Job:
    """A job process: its sessions, then what it does (``exit``; ``hang`` in one more session
    until the main process releases it; ``hang_until_killed``)."""

    name: str
    sessions: tuple[Session, ...]
    then: str = "exit"


JOBS = (
    Job("job-a", (RECOVERED, RATE_LIMITED, RECOVERED)),
    Job("job-b", (MASKED, EMPTY, RECOVERED)),
    Job("job-survivor", (RECOVERED, RATE_LIMITED), then="hang"),
    Job("job-killed", (RECOVERED, MASKED, EMPTY), then="hang_until_killed"),
)
KILLED = "job-killed"
SURVIVOR = "job-survivor"
HANGING = Session((REPLY,), 0)  # the hanging session's reply, once released

# churn: short-lived job processes, one failed request each; every third one is SIGKILLed with a
# session open and its user waiting (live gauges at 1)
CHURN_ROUNDS = 4
CHURN_PER_ROUND = 60
CHURN_BATCH = 6  # processes alive at once
CHURN_REQUEST = Session(("ssl",), 0)


def churn_killed(index: int) -> bool:
    return index % 3 == 2


Key = tuple[str, tuple[tuple[str, str], ...]]


def key(name: str, **labels: str) -> Key:
    return (name, tuple(sorted(labels.items())))


def silence_cause(session: Session) -> str:
    """Why the caller of a session whose one turn was not answered heard nothing: the failure
    that killed the turn (none of these is terminal: the request's last), or an empty reply."""
    failed: list[Failure] = []
    for attempt in range(session.max_retry + 1):
        step = session.script[min(attempt, len(session.script) - 1)]
        if step not in FAILURES:
            assert not step, "an answered turn: the session was not silent"
            return "empty_reply"
        failed.append(FAILURES[step])
    assert all(f.quota is None or f.quota[2] == "false" for f in failed)
    return failed[-1].error_class


def llm_request(provider: str, session: Session) -> tuple[Counter[Key], str]:
    """What one LLM request of ``session``'s script records, and the turn's outcome.

    livekit's retry loop: attempt k runs step k (the last step repeats), at most
    ``max_retry + 1`` attempts; each failed attempt is one ``error`` event, final only when the
    retries are exhausted (every step here is retryable). A request that fails is ``failed``
    (and masked when its final root cause differs from its first); a reply is ``ok``, except
    that livekit reports no metrics for a request that yielded no chunk (an empty completion),
    so that one counts no request at all.
    """
    totals: Counter[Key] = Counter()
    failed: list[Failure] = []
    reply: str | None = None
    for attempt in range(session.max_retry + 1):
        step = session.script[min(attempt, len(session.script) - 1)]
        if step not in FAILURES:
            reply = step
            break
        failed.append(FAILURES[step])
    base = {"component": "llm", "provider": provider}
    for i, failure in enumerate(failed):
        final = reply is None and i == len(failed) - 1
        labels = {"error_class": failure.error_class, "root_cause": failure.root_cause}
        totals[key(n.ATTEMPT_FAILURES, **base, **labels, final=str(final).lower())] += 1
        if failure.quota is not None:
            quota_type, category, terminal = failure.quota
            totals[
                key(
                    n.QUOTA_ERRORS,
                    component="llm",
                    quota_type=quota_type,
                    quota_category=category,
                    terminal=terminal,
                )
            ] += 1
    if reply is None:
        totals[key(n.REQUESTS, **base, outcome="failed")] += 1
        first, last = failed[0].root_cause, failed[-1].root_cause
        if first != last:
            totals[
                key(n.MASKED_FAILURES, component="llm", first_root_cause=first, root_cause=last)
            ] += 1
        return totals, "dead_error"
    if reply:
        totals[key(n.REQUESTS, **base, outcome="ok")] += 1
        return totals, "answered"
    return totals, "dead_empty"


def opened_totals() -> Counter[Key]:
    """A session started whose one user turn is open (counted at start and at the turn)."""
    return Counter({key(n.SESSIONS_STARTED): 1, key(n.USER_TURNS): 1})


def request_counts(session: Session) -> Counter[Key]:
    """The histogram counts of one LLM request of ``session``'s script: a request with a failed
    attempt observes its retry wait once, when it ends."""
    counts: Counter[Key] = Counter()
    if session.script and session.script[0] in FAILURES:
        counts[key(n.RETRY_WAIT + "_count", component="llm")] += 1
    return counts


def session_totals(provider: str, session: Session) -> tuple[Counter[Key], Counter[Key]]:
    """The counters and the histogram counts one closed session adds."""
    totals, outcome = llm_request(provider, session)
    totals += opened_totals()
    reason = "user_initiated"  # closed by aclose()
    spoke = outcome == "answered"
    totals[key(n.SESSIONS_CLOSED, reason=reason, agent_spoke=str(spoke).lower())] += 1
    if not spoke:
        totals[key(n.SILENT_SESSIONS, reason=reason, cause=silence_cause(session))] += 1
    if outcome.startswith("dead_"):
        totals[key(n.DEAD_TURNS, cause=outcome.removeprefix("dead_"))] += 1
    counts = request_counts(session)
    counts[key(n.SESSION_DURATION + "_count", reason=reason)] += 1
    if spoke:
        counts[key(n.TIME_TO_FIRST_SPEECH + "_count")] += 1
        counts[key(n.RESPONSE_LATENCY + "_count")] += 1
    return totals, counts


# --- job processes (forkserver children of the main process) -------------------------------------


def new_model(provider: str, script: Sequence[str]) -> ScriptedLLM:
    steps = [FAILURES[s].raise_it() if s in FAILURES else s for s in script]
    return ScriptedLLM(steps, provider=provider)


def new_session(model: llm.LLM, max_retry: int) -> AgentSession:
    return AgentSession(
        llm=model,
        vad=None,
        aec_warmup_duration=None,
        turn_handling=TurnHandlingOptions(turn_detection=None),
        user_away_timeout=None,
        conn_options=SessionConnectOptions(
            llm_conn_options=APIConnectOptions(max_retry=max_retry, retry_interval=0.01)
        ),
    )


async def run_session(provider: str, spec: Session) -> None:
    session = new_session(new_model(provider, spec.script), spec.max_retry)
    async with asyncio.timeout(TIMEOUT):
        await session.start(agent=Agent(instructions="test agent"))
        # a failed request raises to the host, as without otel-agents: counted, not our concern
        with contextlib.suppress(Exception):
            await session.run(user_input="hello there")
        await session.aclose()


async def one_request(provider: str, spec: Session) -> None:
    """One LLM request through a model's hooks, outside any session (cheap)."""
    model = new_model(provider, spec.script)
    options = APIConnectOptions(max_retry=spec.max_retry, retry_interval=0.01)
    async with asyncio.timeout(TIMEOUT):
        with contextlib.suppress(Exception):  # it fails: that is what it is for
            async for _ in model.chat(chat_ctx=llm.ChatContext.empty(), conn_options=options):
                pass


def live_values() -> tuple[float, float]:
    from otel_agents._export.metrics import get_metrics

    m = get_metrics()
    return m.sessions_active.value(), m.unanswered_turns.value()


async def open_waiting_session(provider: str, release: asyncio.Event) -> tuple[Any, Any]:
    """A session whose user turn hangs: active 1, unanswered 1 (after SILENCE)."""
    session = new_session(RichScriptedLLM([Hang(release, REPLY)], provider=provider), 0)
    async with asyncio.timeout(TIMEOUT):
        await session.start(agent=Agent(instructions="test agent"))
        run = asyncio.ensure_future(session.run(user_input="hello?"))
        while live_values() != (1.0, 1.0):  # noqa: ASYNC110  a metric: no event to wait on
            await asyncio.sleep(0.005)
    return session, run


async def recv(conn: Any, within: float = 60.0) -> Any:
    deadline = time.monotonic() + within
    while not conn.poll():
        if time.monotonic() > deadline:
            raise TimeoutError("the main process never answered")
        await asyncio.sleep(0.01)
    return conn.recv()


async def job_main(job: Job, conn: Any) -> None:
    for spec in job.sessions:
        await run_session(job.name, spec)
    if job.then == "exit":
        conn.send(("done", os.getpid()))
        return
    release = asyncio.Event()
    session, run = await open_waiting_session(job.name, release)
    conn.send(("waiting", os.getpid()))
    if job.then == "hang_until_killed":
        await asyncio.sleep(60)  # bounded: the main process SIGKILLs it long before
        raise SystemExit("never killed")
    assert await recv(conn) == "release"
    release.set()
    async with asyncio.timeout(TIMEOUT):
        await run  # answered
        await session.aclose()
    conn.send(("closed", os.getpid()))


def job_process(job: Job, conn: Any) -> None:
    """A livekit job process: init() (the agent module's first line), then the job."""
    otel_agents.init(silence_timeout=SILENCE)
    asyncio.run(job_main(job, conn))


async def churn_main(index: int, conn: Any) -> None:
    await one_request("churn", CHURN_REQUEST)
    if not churn_killed(index):
        conn.send(("done", os.getpid()))
        return
    _still_open = await open_waiting_session("churn", asyncio.Event())
    conn.send(("waiting", os.getpid()))
    await asyncio.sleep(60)  # bounded: SIGKILLed long before


def churn_process(index: int, conn: Any) -> None:
    otel_agents.init(silence_timeout=SILENCE)
    asyncio.run(churn_main(index, conn))


# --- the main process (a subprocess of the test) -------------------------------------------------

PROTOCOL = "@@ "  # prefix of the main process's replies on stdout


def reply(**fields: Any) -> None:
    print(PROTOCOL + json.dumps(fields), flush=True)


def wait_message(conn: Any, expected: str, within: float = 60.0) -> int:
    if not conn.poll(within):
        raise TimeoutError(f"no {expected!r} from the job process")
    message, pid = conn.recv()
    assert message == expected, (message, expected)
    return int(pid)


class MainProcess:
    """The worker's main process: starts the job processes the test asks for."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.ctx = multiprocessing.get_context("forkserver")
        # livekit preloads its plugins; the job functions and the test providers here
        self.ctx.set_forkserver_preload(["livekit.agents", "test_jobs"])
        self.running: dict[str, tuple[Any, Any]] = {}

    def start(self, target: Callable[..., None], arg: Any) -> tuple[Any, Any]:
        parent, child = self.ctx.Pipe()
        process = self.ctx.Process(target=target, args=(arg, child), daemon=True)
        process.start()
        child.close()
        return process, parent

    def jobs(self) -> dict[str, Any]:
        started = {job.name: (job, *self.start(job_process, job)) for job in JOBS}
        pids, exitcodes = {}, {}
        for name, (job, process, conn) in started.items():
            pids[name] = wait_message(conn, "done" if job.then == "exit" else "waiting")
            if job.then == "exit":
                process.join(TIMEOUT)
                exitcodes[name] = process.exitcode
            else:
                self.running[name] = (process, conn)
        return {"pids": pids, "exitcodes": exitcodes}

    def kill(self) -> dict[str, Any]:
        process, _ = self.running.pop(KILLED)
        os.kill(process.pid, signal.SIGKILL)
        process.join(TIMEOUT)
        return {"exitcode": process.exitcode}

    def render(self) -> dict[str, Any]:
        """A scrape served by the main process itself, then one more failed request here."""
        from otel_agents._sidecar import render as sidecar

        text = sidecar.render(self.directory).decode()
        asyncio.run(one_request("main", CHURN_REQUEST))
        return {"text": text}

    def release(self) -> dict[str, Any]:
        process, conn = self.running.pop(SURVIVOR)
        conn.send("release")
        wait_message(conn, "closed")
        process.join(TIMEOUT)
        return {"exitcode": process.exitcode}

    def churn(self, first: str, count: str) -> dict[str, Any]:
        indexes = list(range(int(first), int(first) + int(count)))
        exitcodes: Counter[str] = Counter()
        pids = []
        for i in range(0, len(indexes), CHURN_BATCH):
            batch = [
                (index, *self.start(churn_process, index)) for index in indexes[i : i + CHURN_BATCH]
            ]
            for index, process, conn in batch:
                pids.append(wait_message(conn, "waiting" if churn_killed(index) else "done"))
                if churn_killed(index):
                    os.kill(process.pid, signal.SIGKILL)
            for index, process, _ in batch:
                process.join(TIMEOUT)
                exitcodes[f"{'killed' if churn_killed(index) else 'clean'}:{process.exitcode}"] += 1
        return {"pids": pids, "exitcodes": dict(exitcodes)}

    def close(self) -> None:
        for process, _ in self.running.values():
            process.kill()
            process.join(TIMEOUT)


def main_process(directory: str) -> None:
    """What livekit's Worker.run does, in its order (livekit imported, the variable set, the
    directory emptied, then the agent module's init()), then commands from the test on stdin."""
    from prometheus_client import values

    trapped = values.ValueClass is values.MutexValue  # livekit imported prometheus_client
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    for name in os.listdir(directory):
        os.remove(os.path.join(directory, name))
    otel_agents.init(silence_timeout=SILENCE)
    asyncio.run(one_request("main", CHURN_REQUEST))  # the main process records too
    main = MainProcess(directory)
    reply(pid=os.getpid(), trapped=trapped)
    try:
        for line in sys.stdin:
            command, *args = line.split()
            if command == "exit":
                break
            reply(**getattr(main, command)(*args))
    finally:
        main.close()


# --- the scraper (the pytest process) ------------------------------------------------------------


SIDECAR_PREFIX = "otel_agents_sidecar_"


@dataclass
class Scrape:
    totals: Counter[Key]  # every non-zero otel_agents *_total sample
    counts: Counter[Key]  # every non-zero otel_agents histogram _count sample
    gauges: dict[str, float]
    sidecar: dict[str, float] = field(default_factory=dict)  # the scraper's own metrics
    seconds: float = 0.0


def parse(text: str) -> Scrape:
    scrape = Scrape(Counter(), Counter(), {n.SESSIONS_ACTIVE: 0.0, n.UNANSWERED_TURNS: 0.0})
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith(SIDECAR_PREFIX):
                scrape.sidecar[s.name] = s.value
                continue
            if not s.name.startswith(n.PREFIX + "_") or not s.value:
                continue
            k = (s.name, tuple(sorted(s.labels.items())))
            if s.name.endswith("_total"):
                scrape.totals[k] += s.value
            elif s.name.endswith("_count"):
                scrape.counts[k] += s.value
            elif s.name in scrape.gauges:
                scrape.gauges[s.name] += s.value
    return scrape


def render(directory: Path) -> Scrape:
    """The aggregate scrape: reap the dead processes, then every process's metrics."""
    from otel_agents._sidecar import render as sidecar

    started = time.perf_counter()
    text = sidecar.render(str(directory)).decode()
    scrape = parse(text)
    scrape.seconds = time.perf_counter() - started
    return scrape


def livekit_view(directory: Path) -> Scrape:
    """What livekit's own /metrics handler serves from the same directory."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    return parse(generate_latest(registry).decode())


def pid_files(directory: Path) -> dict[int, list[str]]:
    """The directory's files by the pid in their name (``counter_123.db``, ``..._123.lock``)."""
    out: dict[int, list[str]] = {}
    for path in directory.iterdir():
        match = re.search(r"_(\d+)\.[a-z]+$", path.name)
        if match:
            out.setdefault(int(match.group(1)), []).append(path.name)
    return out


@dataclass
class Expected:
    totals: Counter[Key] = field(default_factory=Counter)
    counts: Counter[Key] = field(default_factory=Counter)
    active: int = 0
    unanswered: int = 0

    def request(self, provider: str, spec: Session) -> None:
        self.totals += llm_request(provider, spec)[0]
        self.counts += request_counts(spec)

    def session(self, provider: str, spec: Session) -> None:
        totals, counts = session_totals(provider, spec)
        self.totals += totals
        self.counts += counts

    def open_waiting(self) -> None:
        self.totals += opened_totals()
        self.active += 1
        self.unanswered += 1

    def check(self, scrape: Scrape) -> None:
        assert dict(scrape.totals) == dict(self.totals)
        assert dict(scrape.counts) == dict(self.counts)
        assert scrape.gauges == {
            n.SESSIONS_ACTIVE: self.active,
            n.UNANSWERED_TURNS: self.unanswered,
        }


class Worker:
    """The main process, driven over stdin/stdout."""

    def __init__(self, directory: Path, log: Path) -> None:
        tests = str(Path(__file__).parent)
        env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (tests, env.get("PYTHONPATH")) if p)
        self.log = log
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                f"import test_jobs; test_jobs.main_process({str(directory)!r})",
            ],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log.open("w"),
            text=True,
            start_new_session=True,  # its own process group: the forkserver and every job
        )

    def read(self, within: float = 60.0) -> dict[str, Any]:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + within
        while True:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self.proc.stdout], [], [], max(0.0, remaining))
            if not ready:
                raise AssertionError(f"no reply from the main process\n{self.stderr()}")
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError(f"the main process ended\n{self.stderr()}")
            if line.startswith(PROTOCOL):
                return dict(json.loads(line.removeprefix(PROTOCOL)))

    def ask(self, *command: object, within: float = 60.0) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(" ".join(map(str, command)) + "\n")
        self.proc.stdin.flush()
        return self.read(within)

    def exit(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.write("exit\n")
        self.proc.stdin.flush()
        return self.proc.wait(TIMEOUT)

    def stderr(self) -> str:
        return self.log.read_text()[-4000:]

    def kill(self) -> None:
        """Whatever is left of the main process, its forkserver and its jobs."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(TIMEOUT)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[tuple[Worker, Path]]:
    directory = tmp_path / "prometheus"
    directory.mkdir()
    worker = Worker(directory, tmp_path / "main.stderr")
    try:
        yield worker, directory
    finally:
        worker.kill()


def check_reaper(scrape: Scrape, directory: Path, *, live: int, reaped: int) -> None:
    """The scraper's own account of its reaps (cumulative over this test's scrapes)."""
    assert scrape.sidecar[n.SIDECAR_LIVE_PROCESSES] == live
    assert scrape.sidecar[n.SIDECAR_REAPED_PROCESSES] == reaped
    assert scrape.sidecar[n.SIDECAR_REAP_ERRORS] == 0
    assert scrape.sidecar[n.SIDECAR_DB_FILES] == len(list(directory.glob("*.db")))


class Watcher:
    """Prometheus scraping while job processes come and go: a thread rendering the directory
    over and over. Whatever the interleaving with processes starting, exiting, being killed
    and being reaped, no counter and no histogram count may ever go down (a reap that lost or
    double-counted a process for one scrape would), and the live gauges stay within what can
    be alive at once. A render that fails is a problem."""

    def __init__(self, directory: Path, live_at_most: int) -> None:
        self.directory = directory
        self.live_at_most = live_at_most
        self.renders = 0
        self.last: Scrape | None = None
        self.problems: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, name="scraper", daemon=True)

    def run(self) -> None:
        while not self.stop.wait(0.01):
            try:
                self.scrape_once()
            except Exception as exc:
                self.problems.append(f"render failed: {exc!r}")

    def scrape_once(self) -> None:
        scrape = render(self.directory)
        self.renders += 1
        for name, value in scrape.gauges.items():
            if not 0 <= value <= self.live_at_most:
                self.problems.append(f"{name} = {value}")
        if self.last is not None:
            for previous, current in (
                (self.last.totals, scrape.totals),
                (self.last.counts, scrape.counts),
            ):
                for k, value in previous.items():
                    if current[k] < value:
                        self.problems.append(f"{k} went from {value} to {current[k]}")
        self.last = scrape

    def __enter__(self) -> Watcher:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(TIMEOUT)

    def check(self, expected: Expected) -> None:
        assert not self.thread.is_alive()
        assert self.problems == []
        assert self.renders > 0
        assert self.last is not None
        # nothing counted twice, even for one scrape, at the end of the round
        assert not self.last.totals - expected.totals
        assert not self.last.counts - expected.counts


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_every_job_process_is_counted(worker: tuple[Worker, Path]) -> None:
    main, directory = worker
    ready = main.read(within=60)
    assert ready["trapped"] is True  # livekit's import-order trap was really there
    main_pid = ready["pid"]
    expected = Expected()
    expected.request("main", CHURN_REQUEST)

    # --- four job processes: two finish, one waits mid-session, one waits to be killed
    jobs = main.ask("jobs")
    pids = jobs["pids"]
    assert jobs["exitcodes"] == {"job-a": 0, "job-b": 0}
    assert len({main_pid, *pids.values()}) == 5
    for job in JOBS:
        for spec in job.sessions:
            expected.session(job.name, spec)
        if job.then != "exit":
            expected.open_waiting()
    both_waiting = render(directory)
    expected.check(both_waiting)  # active 2, unanswered 2: two users are waiting right now
    check_reaper(both_waiting, directory, live=3, reaped=2)  # job-a and job-b have exited

    # --- SIGKILL the job process mid-session: its completed work stays, its live values go
    assert main.ask("kill")["exitcode"] == -signal.SIGKILL
    expected.active -= 1
    expected.unanswered -= 1
    after_kill = render(directory)
    expected.check(after_kill)
    check_reaper(after_kill, directory, live=2, reaped=3)
    files = pid_files(directory)
    assert pids[KILLED] not in files, files  # reaped: merged, its live gauge gone
    assert pids["job-a"] not in files, files  # exited cleanly: merged too
    assert main_pid in files  # live processes keep their own files
    assert pids[SURVIVOR] in files
    # livekit's own /metrics reads the same directory: it agrees once the scrape reaped it
    expected.check(livekit_view(directory))

    # --- a scrape served by the main process itself must not reap that live process
    served = parse(main.ask("render")["text"])
    expected.check(served)
    assert served.sidecar[n.SIDECAR_LIVE_PROCESSES] == 2
    assert served.sidecar[n.SIDECAR_REAPED_PROCESSES] == 0  # nothing had died since
    expected.request("main", CHURN_REQUEST)  # recorded by the main process after it rendered
    served_then = render(directory)
    expected.check(served_then)
    check_reaper(served_then, directory, live=2, reaped=3)

    # --- the surviving user gets the answer; that job closes its session and exits
    assert main.ask("release")["exitcode"] == 0
    expected.session(SURVIVOR, HANGING)
    expected.totals -= opened_totals()  # counted already, while it was open
    expected.active = expected.unanswered = 0
    settled = render(directory)
    expected.check(settled)
    check_reaper(settled, directory, live=1, reaped=4)
    expected.check(livekit_view(directory))
    before_churn = [render(directory).seconds for _ in range(5)]
    files_before = listing(directory)
    main_kinds = {name.rsplit("_", 1)[0] for name in pid_files(directory)[main_pid]}

    # --- hundreds of short-lived job processes come and go, a third of them SIGKILLed
    churn_pids: set[int] = set()
    watchers: list[Watcher] = []
    for round_ in range(CHURN_ROUNDS):
        first = round_ * CHURN_PER_ROUND
        with Watcher(directory, live_at_most=CHURN_BATCH) as watcher:
            churned = main.ask("churn", first, CHURN_PER_ROUND, within=120)
        watchers.append(watcher)
        indexes = range(first, first + CHURN_PER_ROUND)
        killed = sum(churn_killed(i) for i in indexes)
        assert churned["exitcodes"] == {
            "clean:0": CHURN_PER_ROUND - killed,
            f"killed:{-signal.SIGKILL}": killed,
        }
        churn_pids.update(churned["pids"])
        for i in indexes:
            expected.request("churn", CHURN_REQUEST)
            if churn_killed(i):
                expected.totals += opened_totals()  # started, its user waiting, then killed
        watcher.check(expected)
        scrape = render(directory)
        expected.check(scrape)  # exact, and no killed process's live gauge
        check_reaper(scrape, directory, live=1, reaped=4 + len(churn_pids))
        # bounded: the live main process's files, and at most one compacted file per kind
        files = pid_files(directory)
        assert set(files) == {main_pid}, files
        others = [p for p in directory.glob("*.db") if p.name not in files[main_pid]]
        assert len(others) <= len(main_kinds), others
        assert listing(directory) == files_before
    assert len(churn_pids) == CHURN_ROUNDS * CHURN_PER_ROUND
    after_churn = [render(directory).seconds for _ in range(5)]
    expected.check(livekit_view(directory))

    # --- the main process exits: everything it and its jobs counted is still there
    assert main.exit() == 0, main.stderr()
    final = render(directory)
    expected.check(final)
    check_reaper(final, directory, live=0, reaped=5 + len(churn_pids))
    assert not pid_files(directory), listing(directory)
    expected.check(livekit_view(directory))

    total = 1 + len(JOBS) + len(churn_pids)
    print(
        f"\n_sidecar.render of the directory (median of 5): {median_ms(before_churn)} "
        f"after {1 + len(JOBS)} processes, {median_ms(after_churn)} after {total}; "
        f"files: {len(files_before)} then {len(listing(directory))} after the main process "
        f"exited: {listing(directory)}; scrapes during the churn: "
        f"{sum(w.renders for w in watchers)}, all ok"
    )


def median_ms(seconds: list[float]) -> str:
    return f"{sorted(seconds)[len(seconds) // 2] * 1e3:.2f} ms"


def test_a_scrape_survives_a_metric_file_being_created(tmp_path: Path) -> None:
    """A live process's metric file between its creation and its sizing: empty, no samples
    yet. The scrape must serve every other process's metrics as usual."""
    from otel_agents._sidecar import render as sidecar
    from otel_agents._sidecar.dbfile import write_db

    # another live process's counter file, with one sample written
    sample = json.dumps([n.USER_TURNS.removesuffix("_total"), n.USER_TURNS, {}, "User turns."])
    write_db(str(tmp_path / f"counter_{os.getppid()}.db"), [(sample, 3.0, 0.0)])
    (tmp_path / f"counter_{os.getpid()}.db").touch()  # this one is being created

    scrape = parse(sidecar.render(str(tmp_path)).decode())

    assert dict(scrape.totals) == {key(n.USER_TURNS): 3.0}
