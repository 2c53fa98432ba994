"""``otel-agents demo``, run as a user runs it: a subprocess of ``python -m otel_agents``.

The demo's scenarios are real ``AgentSession``s on livekit's inference plugins talking to the
fake gateway; these tests read back what the demo exported (its own ``/metrics`` scrape, saved
with ``--metrics-out``, and its OTLP-JSON trace file) and compare it with what each scenario's
script must produce, derived here by hand from the script, scenario by scenario.
"""

from __future__ import annotations

import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from otel_agents import names as n
from otel_agents.demo.gateway import DEFAULT_RPM_LIMIT, DEFAULT_TPM_LIMIT
from otel_agents.demo.tracefile import read_spans

from conftest import clean_env
from otlp import OtlpReceiver

RUN_TIMEOUT = 90.0
PROVIDER = "livekit"  # the inference plugins' provider name
RPE = "httpcore2.RemoteProtocolError"  # a dropped connection, seen through openai on httpx2
OPENAI_503 = "openai.InternalServerError"
OPENAI_429 = "openai.RateLimitError"
OPENAI_401 = "openai.AuthenticationError"
TTS_WS_ERROR = "livekit.agents.APIError"
#: tts-broken: livekit's AudioEmitter, given audio before any message named a session
AUDIO_EMITTER_ERROR = "RuntimeError"
#: realtime: livekit's realtime session wraps the gateway's error event in an APIError
REALTIME_ERROR = "livekit.agents.APIError"

Labels = tuple[tuple[str, str], ...]


def demo_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "otel_agents", "demo", *args]


def scrape_samples(text: str) -> dict[tuple[str, Labels], float]:
    out: dict[tuple[str, Labels], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith(n.PREFIX) and not sample.name.endswith("_created"):
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def key(name: str, **labels: str) -> tuple[str, Labels]:
    return (name, tuple(sorted(labels.items())))


def attempt(
    component: str,
    number: int,
    final: bool,
    error_class: str,
    root: str,
    *,
    first: str | None = None,
    masked: bool = False,
    category: str | None = None,
    terminal: bool = False,
) -> tuple[Any, ...]:
    return (component, number, final, error_class, root, first or root, masked, category, terminal)


def attempt_of(attrs: dict[str, Any]) -> tuple[Any, ...]:
    return (
        attrs[n.A_COMPONENT],
        attrs[n.A_ATTEMPT],
        attrs[n.A_FINAL],
        attrs[n.A_ERROR_CLASS],
        attrs[n.A_ROOT_CAUSE_TYPE],
        attrs[n.A_FIRST_ROOT_CAUSE_TYPE],
        attrs[n.A_MASKED],
        attrs.get(n.A_QUOTA_CATEGORY),
        attrs[n.A_TERMINAL],
    )


CREDITS = [
    attempt(
        "llm", i, i == 2, "quota_exhausted", OPENAI_429, category="MaxGatewayCredits", terminal=True
    )
    for _ in range(4)
    for i in range(3)
]


def session(
    turns: int,
    answered: int,
    dead: int = 0,
    errors: int = 0,
    *,
    close_reason: str = "user_initiated",
    silent: bool = False,
    cause: str | None = None,
    terminal: bool = False,
    unanswered: int = 0,
) -> dict[str, Any]:
    """The fields of one ``otel_agents.session`` record that a scenario determines (a silent
    session's ``cause``: why the caller heard nothing)."""
    assert silent == (cause is not None)
    return {
        "close_reason": close_reason,
        "silent": silent,
        "silence_cause": cause,
        "turns": turns,
        "answered": answered,
        "dead": dead,
        "unanswered": unanswered,
        "errors": errors,
        "terminal": terminal,
    }


#: scenario -> (attempt records in emit order, its session record)
EXPECTED: dict[str, tuple[list[tuple[Any, ...]], dict[str, Any]]] = {
    "healthy": ([], session(2, 2)),
    "connection-blip": ([attempt("llm", 0, False, "connection", RPE)], session(1, 1, errors=1)),
    "masked-retry": (
        [
            attempt("llm", 0, False, "connection", RPE),
            attempt("llm", 1, False, "server_error", OPENAI_503, first=RPE),
            attempt("llm", 2, True, "server_error", OPENAI_503, first=RPE, masked=True),
        ],
        # the first turn died after 3 attempts; the second was answered
        session(2, 1, dead=1, errors=3),
    ),
    "rate-limited": (
        [
            attempt(
                "llm", i, False, "rate_limited", OPENAI_429, category="MaxConcurrentGatewayLLMRpm"
            )
            for i in range(2)
        ],
        session(1, 1, errors=2),
    ),
    "credits-exhausted": (
        CREDITS,
        # livekit closes the session on its 4th unrecoverable error; out of credits killed
        # every turn
        session(
            4,
            0,
            dead=4,
            errors=12,
            close_reason="error",
            silent=True,
            cause="quota_exhausted",
            terminal=True,
        ),
    ),
    # 100, 200, ..., 500 of 500 credits: five answers, then the sixth turn's 3 attempts get 429s
    "credits-draining": (
        CREDITS[:3],
        session(6, 5, dead=1, errors=3, terminal=True),
    ),
    # a 401 is not retried: one final, terminal attempt; the turn dies, the caller hears nothing
    "bad-key": (
        [attempt("llm", 0, True, "auth", OPENAI_401, terminal=True)],
        session(1, 0, dead=1, errors=1, silent=True, cause="auth", terminal=True),
    ),
    "tts-rate-limited": (
        [
            attempt(
                "tts", i, False, "rate_limited", TTS_WS_ERROR, category="MaxConcurrentGatewayTTS"
            )
            for i in range(2)
        ],
        session(1, 1, errors=2),
    ),
    # the LLM starts answering after 4.5 s, past the demo's 2 s silence timeout
    "stalled": ([], session(1, 1, unanswered=1)),
    # empty completions: dead turns, no error anywhere
    "silent": ([], session(2, 0, dead=2, silent=True, cause="empty_reply")),
    # the TTS breaks with a non-APIError, never retried nor emitted: each turn's synthesis is
    # one final failed attempt with its real root cause, and kills the turn; the session is
    # silent for the error's class
    "tts-broken": (
        [attempt("tts", 0, True, "internal", AUDIO_EMITTER_ERROR) for _ in range(2)],
        session(2, 0, dead=2, errors=2, silent=True, cause="internal"),
    ),
    # every reply reaches the audio output and is never played: four unheard turns, none dead
    "unheard": ([], session(4, 0, silent=True, cause="unheard")),
    # a realtime model: answered, a rate-limited reply, answered, out of credits. livekit never
    # retries a realtime reply: each failure is its reply's one and final attempt, and its
    # turn dies at once
    "realtime": (
        [
            attempt(
                "realtime",
                0,
                True,
                "rate_limited",
                REALTIME_ERROR,
                category="MaxConcurrentGatewayLLMRpm",
            ),
            attempt(
                "realtime",
                0,
                True,
                "quota_exhausted",
                REALTIME_ERROR,
                category="MaxGatewayCredits",
                terminal=True,
            ),
        ],
        session(4, 2, dead=2, errors=2, terminal=True),
    ),
}


def session_of(attrs: dict[str, Any]) -> dict[str, Any]:
    return {
        "close_reason": attrs[n.S_CLOSE_REASON],
        "silent": attrs[n.S_SILENT],
        "silence_cause": attrs.get(n.S_SILENCE_CAUSE),
        "turns": attrs[n.S_USER_TURNS],
        "answered": attrs[n.S_ANSWERED_TURNS],
        "dead": attrs[n.S_DEAD_TURNS],
        "unanswered": attrs[n.S_UNANSWERED_TURNS],
        "errors": attrs[n.S_ERRORS],
        "terminal": attrs[n.S_TERMINAL_ERROR],
    }


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One full, non-serving demo run, shared by the tests that read its output; it also
    exports over OTLP to a local receiver."""
    workdir = tmp_path_factory.mktemp("demo")
    receiver = OtlpReceiver()
    try:
        done = subprocess.run(
            demo_command(
                "--metrics-port",
                "0",
                "--metrics-out",
                "scrape.txt",
                "--otlp-endpoint",
                receiver.url,
            ),
            cwd=workdir,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
        )
    finally:
        receiver.close()
    return {
        "otlp_spans": receiver.spans,
        "otlp_metrics": {p.metric for export in receiver.metric_exports for p in export},
        "returncode": done.returncode,
        "stdout": done.stdout,
        "stderr": done.stderr,
        "scrape": (workdir / "scrape.txt").read_text() if (workdir / "scrape.txt").exists() else "",
        "spans": list(read_spans(workdir / "otel-agents-demo-traces.jsonl")),
    }


def test_demo_exits_zero_and_prints_the_summary(demo_run: dict[str, Any]) -> None:
    assert demo_run["returncode"] == 0, demo_run["stderr"]
    assert "Traceback" not in demo_run["stderr"]
    out = demo_run["stdout"]
    for name in EXPECTED:
        assert f"\n{name}: " in out
    assert "done: 13 sessions" in out
    assert "1 turn: 1 answered, 1 waited past the silence timeout" in out
    # each silent session with its cause
    for line in (
        "closed error | SILENT: the user spoke, the caller never heard the agent | cause "
        "quota_exhausted | 4 turns: 0 answered, 4 dead",
        "closed user_initiated | SILENT: the user spoke, the caller never heard the agent | "
        "cause auth | 1 turn: 0 answered, 1 dead",
        "closed user_initiated | SILENT: the user spoke, the caller never heard the agent | "
        "cause empty_reply | 2 turns: 0 answered, 2 dead",
        "closed user_initiated | SILENT: the user spoke, the caller never heard the agent | "
        "cause internal | 2 turns: 0 answered, 2 dead",
        "closed user_initiated | SILENT: the user spoke, the caller never heard the agent | "
        "cause unheard | 4 turns: 0 answered",
    ):
        assert line in out
    assert out.count("SILENT: ") == 5
    assert f"2 x tts  internal         {AUDIO_EMITTER_ERROR:<30}  <- 2 requests failed here" in out
    assert "quota MaxGatewayCredits (TERMINAL)  <- 4 requests failed here" in out
    assert f"hides the first cause: {RPE}" in out
    assert "Totals, as scraped from /metrics" in out
    assert "otel-agents-demo-traces.jsonl (" in out


def test_each_scenario_trace_holds_exactly_its_records(demo_run: dict[str, Any]) -> None:
    spans = demo_run["spans"]
    scenario_of_trace = {
        s["traceId"]: s["attrs"][n.D_SCENARIO] for s in spans if s["name"] == n.SPAN_DEMO_SCENARIO
    }
    assert sorted(scenario_of_trace.values()) == sorted(EXPECTED)
    attempts: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    sessions: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for span in sorted(spans, key=lambda s: int(s["startTimeUnixNano"])):
        scenario = scenario_of_trace[span["traceId"]]  # every span belongs to a scenario trace
        if span["name"] == n.SPAN_ATTEMPT_FAILED:
            assert span["attrs"][n.A_PROVIDER] == PROVIDER
            attempts[scenario].append(attempt_of(span["attrs"]))
        elif span["name"] == n.SPAN_SESSION:
            sessions[scenario].append(session_of(span["attrs"]))
    for name, (want_attempts, want_session) in EXPECTED.items():
        assert attempts[name] == want_attempts, name
        assert sessions[name] == [want_session], name


def test_trace_file_is_otlp_json(demo_run: dict[str, Any]) -> None:
    spans = demo_run["spans"]
    by_id = {s["spanId"]: s for s in spans}
    for span in spans:
        assert len(span["traceId"]) == 32
        assert int(span["traceId"], 16)
        assert len(span["spanId"]) == 16
        assert int(span["spanId"], 16)
        assert isinstance(span["kind"], int)
        assert int(span["endTimeUnixNano"]) >= int(span["startTimeUnixNano"]) > 0
        assert span["resource"]["service.name"] == "otel-agents-demo"
        if span.get("parentSpanId"):
            assert by_id[span["parentSpanId"]]["traceId"] == span["traceId"]
    # our session span is a child of livekit's agent_session span, itself under the scenario
    for session in (s for s in spans if s["name"] == n.SPAN_SESSION):
        parent = by_id[session["parentSpanId"]]
        assert parent["name"] == "agent_session"
        assert by_id[parent["parentSpanId"]]["name"] == n.SPAN_DEMO_SCENARIO
    # an attempt record's parent is livekit's request span of that attempt's component; a
    # realtime reply has none (a rejected reply never opened its agent_turn): the session's
    for record in (s for s in spans if s["name"] == n.SPAN_ATTEMPT_FAILED):
        component = record["attrs"][n.A_COMPONENT]
        parent = "agent_session" if component == "realtime" else f"{component}_request"
        assert by_id[record["parentSpanId"]]["name"] == parent


def test_otlp_endpoint_gets_the_same_spans_and_the_metrics(demo_run: dict[str, Any]) -> None:
    sent = Counter(span.name for span in demo_run["otlp_spans"])
    written = Counter(span["name"] for span in demo_run["spans"])
    assert sent == written
    assert sent[n.SPAN_ATTEMPT_FAILED] == sum(len(a) for a, _ in EXPECTED.values())
    assert {"otel_agents.attempt_failures", "otel_agents.sessions_closed"} <= demo_run[
        "otlp_metrics"
    ]


def test_metrics_scrape_counts_every_scenario_exactly(demo_run: dict[str, Any]) -> None:
    got = scrape_samples(demo_run["scrape"])
    llm = {"component": "llm", "provider": PROVIDER}
    tts = {"component": "tts", "provider": PROVIDER}
    realtime = {"component": "realtime", "provider": PROVIDER}

    def failures(what: dict[str, str], error_class: str, root: str, final: bool) -> Any:
        return key(
            n.ATTEMPT_FAILURES,
            **what,
            error_class=error_class,
            root_cause=root,
            final="true" if final else "false",
        )

    def quota(component: str, category: str, terminal: bool) -> Any:
        return key(
            n.QUOTA_ERRORS,
            component=component,
            quota_type=component,
            quota_category=category,
            terminal="true" if terminal else "false",
        )

    want_counters = {
        # connection-blip 1 + masked-retry's first attempt 1
        failures(llm, "connection", RPE, False): 2,
        failures(llm, "server_error", OPENAI_503, False): 1,
        failures(llm, "server_error", OPENAI_503, True): 1,
        failures(llm, "rate_limited", OPENAI_429, False): 2,
        # credits-exhausted 12 (4 requests), credits-draining 3 (1 request)
        failures(llm, "quota_exhausted", OPENAI_429, False): 10,
        failures(llm, "quota_exhausted", OPENAI_429, True): 5,
        failures(llm, "auth", OPENAI_401, True): 1,
        failures(tts, "rate_limited", TTS_WS_ERROR, False): 2,
        # tts-broken: one synthesis per turn, each failing once, not retried
        failures(tts, "internal", AUDIO_EMITTER_ERROR, True): 2,
        # realtime: each failed reply is one final attempt
        failures(realtime, "rate_limited", REALTIME_ERROR, True): 1,
        failures(realtime, "quota_exhausted", REALTIME_ERROR, True): 1,
        key(
            n.QUOTA_ERRORS,
            component="realtime",
            quota_type="llm",
            quota_category="MaxConcurrentGatewayLLMRpm",
            terminal="false",
        ): 1,
        key(
            n.QUOTA_ERRORS,
            component="realtime",
            quota_type="llm",
            quota_category="MaxGatewayCredits",
            terminal="true",
        ): 1,
        key(n.TERMINAL_ERRORS, **realtime, error_class="quota_exhausted"): 1,
        # one realtime reply, one request: two answered, two failed
        key(n.REQUESTS, **realtime, outcome="ok"): 2,
        key(n.REQUESTS, **realtime, outcome="failed"): 2,
        quota("llm", "MaxConcurrentGatewayLLMRpm", False): 2,
        quota("llm", "MaxGatewayCredits", True): 15,
        quota("tts", "MaxConcurrentGatewayTTS", False): 2,
        key(n.TERMINAL_ERRORS, **llm, error_class="quota_exhausted"): 15,
        key(n.TERMINAL_ERRORS, **llm, error_class="auth"): 1,
        key(n.MASKED_FAILURES, component="llm", first_root_cause=RPE, root_cause=OPENAI_503): 1,
        # LLM requests answered: healthy 2, blip 1, masked 1, rate 1, tts 1, stalled 1,
        # silent 2 (empty replies are answered requests), draining 5, tts-broken 2, unheard 4;
        # failed: masked 1, credits 4, bad-key 1, draining 1
        key(n.REQUESTS, **llm, outcome="ok"): 20,
        key(n.REQUESTS, **llm, outcome="failed"): 7,
        # one synthesis per reply with text: the answered turns and unheard's 4 succeed,
        # tts-broken's 2 fail
        key(n.REQUESTS, **tts, outcome="ok"): 16,
        key(n.REQUESTS, **tts, outcome="failed"): 2,
        key(n.SESSIONS_STARTED): 13,
        key(n.SESSIONS_CLOSED, reason="user_initiated", agent_spoke="true"): 8,
        key(n.SESSIONS_CLOSED, reason="user_initiated", agent_spoke="false"): 4,
        key(n.SESSIONS_CLOSED, reason="error", agent_spoke="false"): 1,
        # bad-key: its 401 killed the turn; silent: empty replies; credits-exhausted: its 429s
        key(n.SILENT_SESSIONS, reason="user_initiated", cause="auth"): 1,
        key(n.SILENT_SESSIONS, reason="user_initiated", cause="empty_reply"): 1,
        key(n.SILENT_SESSIONS, reason="error", cause="quota_exhausted"): 1,
        # tts-broken: its RuntimeError killed the turns; unheard: nothing it said was played
        key(n.SILENT_SESSIONS, reason="user_initiated", cause="internal"): 1,
        key(n.SILENT_SESSIONS, reason="user_initiated", cause="unheard"): 1,
        key(n.USER_TURNS): 31,
        # masked 1, credits-exhausted 4, draining 1, bad-key 1, tts-broken 2, realtime 2
        key(n.DEAD_TURNS, cause="error"): 11,
        key(n.DEAD_TURNS, cause="empty"): 2,
        # unheard: each of its 4 replies reached the sink, which never played it
        key(n.UNHEARD_SPEECH, cause="never_played"): 4,
    }
    counters = {k: v for k, v in got.items() if k[0].endswith("_total") and v}
    assert counters == want_counters
    assert got[key(n.SESSIONS_ACTIVE)] == 0
    assert got[key(n.UNANSWERED_TURNS)] == 0
    # eight sessions spoke; fourteen turns were answered; twelve sessions closed by the user,
    # one by error; only the stalled turn's answer took longer than 3 s (its LLM waited 4.5 s)
    assert got[key(n.TIME_TO_FIRST_SPEECH + "_count")] == 8
    assert got[key(n.RESPONSE_LATENCY + "_count")] == 14
    assert got[key(n.RESPONSE_LATENCY + "_bucket", le="3.0")] == 13
    assert got[key(n.SESSION_DURATION + "_count", reason="user_initiated")] == 12
    # the gateway's quota headers: the last scenarios ran on the healthy balance again; its
    # per-minute request and token counts on every LLM response
    assert got[key(n.QUOTA_LIMIT, dimension="credits", provider=PROVIDER)] == 1_000_000
    assert got[key(n.QUOTA_USED, dimension="credits", provider=PROVIDER)] > 0
    assert got[key(n.QUOTA_LIMIT, dimension="rpm", provider=PROVIDER)] == DEFAULT_RPM_LIMIT
    assert got[key(n.QUOTA_USED, dimension="rpm", provider=PROVIDER)] > 0
    assert got[key(n.QUOTA_LIMIT, dimension="tpm", provider=PROVIDER)] == DEFAULT_TPM_LIMIT
    assert got[key(n.QUOTA_USED, dimension="tpm", provider=PROVIDER)] > 0
    assert got[key(n.SESSION_DURATION + "_count", reason="error")] == 1


# --- --serve, and a clean exit on SIGTERM -----------------------------------------------------


def _lines(stream: Any) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)
        lines.put("")

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _wait_for(lines: queue.Queue[str], prefix: str, seen: list[str]) -> str:
    while True:
        line = lines.get(timeout=RUN_TIMEOUT)
        seen.append(line)
        if line == "":
            raise AssertionError("the demo exited early:\n" + "".join(seen))
        if line.startswith(prefix):
            return line


def test_serve_loops_until_sigterm_then_flushes(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        demo_command(
            "--serve", "--pause", "0.1", "-s", "healthy", "-s", "silent", "--metrics-port", "0"
        ),
        cwd=tmp_path,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: list[str] = []
    try:
        lines = _lines(proc.stdout)
        url = _wait_for(lines, "serving ", seen).split()[1]
        _wait_for(lines, "round 2 done", seen)
        with urllib.request.urlopen(url, timeout=10) as response:
            got = scrape_samples(response.read().decode())
        assert got[key(n.SESSIONS_STARTED)] >= 4
        assert got[key(n.SILENT_SESSIONS, reason="user_initiated", cause="empty_reply")] >= 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.stderr is not None
    assert "Traceback" not in proc.stderr.read()
    spans = list(read_spans(tmp_path / "otel-agents-demo-traces.jsonl"))
    sessions = Counter(s["attrs"][n.S_SILENT] for s in spans if s["name"] == n.SPAN_SESSION)
    # every session that closed before SIGTERM was flushed to the file (healthy and silent
    # alternate, so rounds >= 2 means at least two of each)
    assert sessions[True] >= 2
    assert sessions[False] >= 2


# --- bad input: one line, non-zero, never a traceback -----------------------------------------


def test_bad_input_gets_one_line_and_a_non_zero_exit(tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = str(taken.getsockname()[1])
    cases = {
        "unknown scenario 'nope'": (demo_command("-s", "nope"), {}),
        f"cannot serve /metrics on 127.0.0.1:{port}": (demo_command("--metrics-port", port), {}),
        "cannot write the trace file": (
            demo_command("--metrics-port", "0", "--trace-file", str(tmp_path / "no" / "t.jsonl")),
            {},
        ),
        "invalid OTEL_AGENTS_METRICS_PORT='http'": (
            demo_command(),
            {"OTEL_AGENTS_METRICS_PORT": "http"},
        ),
        "invalid --otlp-endpoint='ftp://x'": (demo_command("--otlp-endpoint", "ftp://x"), {}),
        "invalid --pause='-1'": (demo_command("--pause", "-1"), {}),
    }
    try:
        procs = {
            what: subprocess.Popen(
                command,
                cwd=tmp_path,
                env=clean_env(**env),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for what, (command, env) in cases.items()
        }
        for what, proc in procs.items():
            out, err = proc.communicate(timeout=RUN_TIMEOUT)
            assert proc.returncode == 2, (what, err)
            assert err.count("\n") == 1, (what, err)
            assert err.startswith("otel-agents demo: "), (what, err)
            assert what in err, (what, err)
            assert out == "", (what, out)
    finally:
        taken.close()


def _normalised(line: str) -> str:
    """A line of demo output, with what differs from run to run (timings, the port of a
    ``--metrics-port 0`` run) and column padding taken out."""
    line = re.sub(r"\b\d+\.\d+ s\b", "<seconds> s", line)
    line = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:<port>", line)
    return " ".join(line.split())


def test_the_readme_sample_is_what_the_demo_prints(demo_run: dict[str, Any]) -> None:
    """Every line of the README's sample output (``...`` elides) is a line of a real run,
    counts included: a scenario or a count that changes fails here until the README says so."""
    from test_readme import demo_output_sample

    printed = {_normalised(line) for line in demo_run["stdout"].splitlines()}
    sample = [line for line in demo_output_sample() if line.strip() and line.strip() != "..."]
    assert len(sample) > 10
    missing = [line for line in sample if _normalised(line) not in printed]
    assert missing == [], "update the README's sample from `make demo`:\n" + "\n".join(missing)
