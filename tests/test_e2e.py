"""End to end: the demo, a real Prometheus with the shipped rules, a real Alertmanager, a webhook.

Everything is real and on 127.0.0.1: ``otel-agents demo --serve`` runs its scenarios in a loop;
Debian's Prometheus (fetched once by ``prometheus_bin``) scrapes it every second with the rules
of ``dashboards/alerts.py`` (the shipped expressions; only the ``for`` durations, windows and
traffic guards are shortened here, through the generator's ``Config``, so the test takes
seconds rather than the minutes the production rules wait); Debian's Alertmanager notifies a
small webhook receiver in this process.

It proves four things. Every alert of ``dashboards/alerts.py`` reaches the webhook with the
labels it promises, in the scenario made for it (the time each took is printed, ``-s``). The
credits forecast pages before the outage: ``LiveKitAgentsCreditsRunningOut`` reaches the webhook
before ``LiveKitAgentsCreditsExhausted`` for the gateway's credits (the lead time is printed):
the demo paces its credits-draining scenario (``--drain-pace``) so the burn is scraped several
times before the balance runs out. Every query of every dashboard panel, every recording rule
and every alert expression returns data from this Prometheus, except the panels the dashboards
document as empty when healthy. And when the agent goes away, ``LiveKitAgentsTargetDown``
says so.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from .promql import queries, substitute_variables
from prometheus_bin import alertmanager, prometheus

ROOT = Path(__file__).resolve().parent.parent
JOB = "livekit-agents"
#: the whole test is bounded by this (the issue asks for well under two minutes)
DEADLINE = 100.0
#: the pause between the credits-draining scenario's turns: its 5 answers (100 of 500 credits
#: each) span ~8 s, so Prometheus (scraping every second) sees the burn before the 429s
DRAIN_PACE = 1.5
STARTUP = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Notification:
    at: float  # seconds since the demo started
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]


@dataclass
class Webhook:
    """Alertmanager's webhook receiver: keeps every alert of every notification, timestamped."""

    started: float
    received: list[Notification] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        webhook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                now = time.monotonic() - webhook.started
                with webhook.lock:
                    for alert in body.get("alerts", ()):
                        webhook.received.append(
                            Notification(
                                now, alert["status"], alert["labels"], alert["annotations"]
                            )
                        )
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def firing(self, alertname: str) -> list[Notification]:
        with self.lock:
            return [
                a
                for a in self.received
                if a.labels.get("alertname") == alertname and a.status == "firing"
            ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def http_get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body: bytes = response.read()
        return body


def wait_until(check: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {within:.0f} s waiting for {what}")


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expr: str) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode({"query": expr})
        body = json.loads(http_get(f"{self.url}/api/v1/query?{query}"))
        assert body["status"] == "success", (expr, body)
        result: list[dict[str, Any]] = body["data"]["result"]
        return result


@contextlib.contextmanager
def process(command: list[str], log: Path, **kwargs: Any) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, **kwargs)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


#: the shipped expressions, with windows, ``for`` durations and traffic guards fit for a
#: one-minute run (a demo round is 12 sessions and 28 user turns in ~17 s, the credits drain's
#: pauses included; Prometheus evaluates every second)
FAST = {
    "credits_window": "1m",
    # the drain spends 100 of its 500 credits every ~1.7 s: from its first answer on, the burn
    # over 10s (the steps from the healthy balance's 10-20 used included) runs out of the 400
    # left in well under 5m; the healthy balance (1M, 10 a completion) never comes near it
    "credits_burn_window": "10s",
    "credits_horizon": "5m",
    "credits_running_out_for": "2s",
    # used == limit from the drain's last answer through credits-exhausted: ~4 s a round
    "credits_low_for": "1s",
    # (TerminalErrors' LiveKit Inference mask looks back twice this: within the run)
    "terminal_window": "30s",
    "silent_window": "1m",
    "silent_min_sessions": 5,
    "silent_warning_for": "2s",
    "silent_critical_for": "2s",
    "unanswered_for": "1s",
    "dead_window": "1m",
    "dead_min_turns": 5,
    "dead_for": "2s",
    "rate_limited_window": "1m",
    "rate_limited_for": "2s",
    "masked_window": "1m",
    "unheard_window": "1m",
    "unheard_min_turns": 5,
    "unheard_for": "2s",
    "absent_for": "2s",
    "target_down_for": "2s",
    # Prometheus scrapes every second: a counter's gain counts from the next scrape
    "scrape_interval": "1s",
    "rate_limited_min_requests": 5,
    "masked_min_requests": 5,
}
#: alerts the demo cannot fire (no sidecar; nothing fails inside otel-agents), and the ones
#: that must stay quiet while it runs (checked when it stops)
NOT_IN_THE_DEMO = {
    "LiveKitAgentsInternalErrors",
    "LiveKitAgentsSidecarReapErrors",
    "LiveKitAgentsSidecarQuarantinedFiles",
    "LiveKitAgentsSidecarReapingStalled",
    "LiveKitAgentsSidecarRenderSlow",
    "LiveKitAgentsMetricsAbsent",
    "LiveKitAgentsTargetDown",
}
#: the counters of those alerts: nothing for the demo to record
NOT_RECORDED_IN_THE_DEMO = ("otel_agents_internal_errors:", "otel_agents_sidecar_")
#: the gateway's credit quota, as its response headers report it
GATEWAY_CREDITS = {"provider": "livekit", "dimension": "credits"}

#: what each alert must carry when the demo's scenarios fire it
EXPECTED_LABELS: dict[str, list[dict[str, str]]] = {
    "LiveKitAgentsCreditsExhausted": [
        {
            "severity": "critical",
            "component": "llm",
            "quota_type": "llm",
            "quota_category": "MaxGatewayCredits",
        }
    ],
    "LiveKitAgentsCreditsRunningOut": [{"severity": "critical", **GATEWAY_CREDITS}],
    "LiveKitAgentsCreditsLow": [{"severity": "warning", **GATEWAY_CREDITS}],
    "LiveKitAgentsTerminalErrors": [
        {"severity": "critical", "component": "llm", "provider": "livekit", "error_class": "auth"}
    ],
    "LiveKitAgentsSilentSessions": [{"severity": "warning"}, {"severity": "critical"}],
    "LiveKitAgentsUnansweredTurns": [{"severity": "warning"}],
    "LiveKitAgentsDeadTurns": [{"severity": "warning"}],
    "LiveKitAgentsUnheardSpeech": [{"severity": "warning"}],
    "LiveKitAgentsRateLimited": [
        {
            "severity": "warning",
            "component": "llm",
            "quota_type": "llm",
            "quota_category": "MaxConcurrentGatewayLLMRpm",
        },
        {
            "severity": "warning",
            "component": "tts",
            "quota_type": "tts",
            "quota_category": "MaxConcurrentGatewayTTS",
        },
    ],
    "LiveKitAgentsMaskedRetryFailures": [
        {
            "severity": "warning",
            "component": "llm",
            "first_root_cause": "httpcore2.RemoteProtocolError",
            "root_cause": "openai.InternalServerError",
        }
    ],
}


def sign(expected: dict[str, list[dict[str, str]]], alert: str) -> tuple[tuple[str, str], ...]:
    """The key of ``fired_at`` for the one set of labels expected of ``LiveKitAgents<alert>``."""
    [want] = expected[f"LiveKitAgents{alert}"]
    return tuple(sorted(want.items()))


def matches(notification: Notification, want: dict[str, str]) -> bool:
    return notification.labels.get("job") == JOB and all(
        notification.labels.get(k) == v for k, v in want.items()
    )


def prometheus_config(demo_port: int, alertmanager_port: int, rules: Path) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "alerting": {
            "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]}]
        },
        "scrape_configs": [
            {"job_name": JOB, "static_configs": [{"targets": [f"127.0.0.1:{demo_port}"]}]}
        ],
    }


def alertmanager_config(webhook_url: str) -> dict[str, Any]:
    return {
        "route": {
            "receiver": "webhook",
            "group_by": ["..."],  # one notification per alert: each is timed on its own
            "group_wait": "0s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [
            {"name": "webhook", "webhook_configs": [{"url": webhook_url, "send_resolved": True}]}
        ],
    }


def test_demo_to_prometheus_to_alertmanager(tmp_path: Path) -> None:
    from dashboards import alerts
    from dashboards import dashboards as boards
    from dashboards.panels import EMPTY_WHEN_HEALTHY

    started = time.monotonic()
    rules = alerts.write_rules(tmp_path / "rules.yml", alerts.Config(**FAST))
    demo_port, prom_port, am_port = free_port(), free_port(), free_port()
    webhook = Webhook(started)
    (tmp_path / "prometheus.yml").write_text(
        yaml.safe_dump(prometheus_config(demo_port, am_port, rules))
    )
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(alertmanager_config(webhook.url)))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PROMETHEUS_"))}
    prom = Prometheus(f"http://127.0.0.1:{prom_port}")
    try:
        with (
            process(
                [
                    str(alertmanager()),
                    f"--config.file={tmp_path / 'alertmanager.yml'}",
                    f"--storage.path={tmp_path / 'am-data'}",
                    f"--web.listen-address=127.0.0.1:{am_port}",
                    "--cluster.listen-address=",
                ],
                tmp_path / "alertmanager.log",
            ),
            process(
                [
                    str(prometheus()),
                    f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'prom-data'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                ],
                tmp_path / "prometheus.log",
            ),
            process(
                [
                    sys.executable, "-m", "otel_agents", "demo", "--serve", "--pause", "0.5",
                    "--drain-pace", str(DRAIN_PACE), "--metrics-port", str(demo_port),
                ],
                tmp_path / "demo.log",
                cwd=tmp_path,
                env=env,
            ) as demo,
        ):  # fmt: skip
            wait_until(
                lambda: http_get(f"http://127.0.0.1:{am_port}/-/ready") is not None,
                STARTUP,
                "Alertmanager",
            )
            wait_until(
                lambda: bool(prom.query(f'up{{job="{JOB}"}} == 1')), STARTUP, "the demo's scrape"
            )

            # 1. every alert the demo can fire, at the webhook
            def not_fired() -> list[str]:
                return [
                    f"{name} {want}"
                    for name, wants in EXPECTED_LABELS.items()
                    for want in wants
                    if not any(matches(a, want) for a in webhook.firing(name))
                ]

            try:
                wait_until(
                    lambda: not not_fired(), DEADLINE - (time.monotonic() - started), "every alert"
                )
            except AssertionError as e:
                raise AssertionError(f"{e}; never fired: {not_fired()}") from None
            fired_at = {
                (name, tuple(sorted(want.items()))): min(
                    a.at for a in webhook.firing(name) if matches(a, want)
                )
                for name, wants in EXPECTED_LABELS.items()
                for want in wants
            }
            # the forecast came first: the credits ran out after RunningOut paged, not before
            running_out = fired_at[
                ("LiveKitAgentsCreditsRunningOut", sign(EXPECTED_LABELS, "CreditsRunningOut"))
            ]
            exhausted = fired_at[
                ("LiveKitAgentsCreditsExhausted", sign(EXPECTED_LABELS, "CreditsExhausted"))
            ]
            assert running_out < exhausted, (running_out, exhausted)
            credits = next(a for a in webhook.firing("LiveKitAgentsCreditsExhausted"))
            assert "MaxGatewayCredits" in credits.annotations["description"]
            assert credits.annotations["runbook_url"].endswith("#livekitagentscreditsexhausted")
            for quiet in ("LiveKitAgentsMetricsAbsent", "LiveKitAgentsTargetDown"):
                assert not [a for a in webhook.firing(quiet)], f"the agent is up: {quiet} fired"

            # 2. every dashboard query, recorded series and alert expression returns data: now,
            # or at some evaluation since the demo started (the credit forecasts, panel and
            # alert, hold only while the drain burns credits: the demo's other scenarios each
            # start on a fresh healthy balance, so its used gauge does not grow steadily)
            since = f"{int(time.monotonic() - started) + 5}s"
            empty: list[str] = []
            for name in boards.DASHBOARDS:
                for title, expr in queries(boards.load(name)):
                    if title in EMPTY_WHEN_HEALTHY:
                        continue
                    expr = substitute_variables(expr)
                    if not prom.query(expr) and not prom.query(
                        f"count_over_time(({expr})[{since}:1s])"
                    ):
                        empty.append(f"{name}: {title}: {expr}")
            for group in alerts.build_rules(alerts.Config(**FAST))["groups"]:
                for rule in group["rules"]:
                    if "record" in rule:
                        if any(m in rule["record"] for m in NOT_RECORDED_IN_THE_DEMO):
                            continue
                        if not prom.query(f"count_over_time({rule['record']}[{since}])"):
                            empty.append(f"recording rule {rule['record']}")
                        continue
                    if rule["alert"] in NOT_IN_THE_DEMO:
                        continue  # empty while the agent is up (TargetDown: checked below)
                    # some hold only while it happens (a caller waiting right now): did the
                    # expression return data at any evaluation of the run?
                    if not prom.query(f"count_over_time(({rule['expr']})[{since}:1s])"):
                        empty.append(f"rule {rule['alert']} ({rule['labels']['severity']})")
            assert empty == []

            # 3. the agent goes away: TargetDown
            stopped = time.monotonic() - started
            demo.send_signal(signal.SIGTERM)
            assert demo.wait(30) == 0
            wait_until(
                lambda: any(
                    a.labels.get("instance") == f"127.0.0.1:{demo_port}"
                    for a in webhook.firing("LiveKitAgentsTargetDown")
                ),
                30,
                "LiveKitAgentsTargetDown",
            )
            absent_at = min(a.at for a in webhook.firing("LiveKitAgentsTargetDown"))
    except BaseException:
        for log in sorted(tmp_path.glob("*.log")):  # what each server said, for the failure
            sys.stdout.write(f"--- {log.name} (tail)\n{log.read_text()[-3000:]}\n")
        raise
    finally:
        webhook.close()

    print("\ntime to fire, from the start of the processes (for durations shortened):")
    for (name, labels), at in sorted(fired_at.items(), key=lambda item: item[1]):
        print(f"  {at:5.1f} s  {name} {dict(labels)}")
    print(f"  {absent_at - stopped:5.1f} s  LiveKitAgentsTargetDown, after the demo stopped")
    print(
        f"LiveKitAgentsCreditsRunningOut paged {exhausted - running_out:.1f} s before "
        "LiveKitAgentsCreditsExhausted"
    )
