"""End to end, a fleet: two workers behind one real Prometheus with the shipped rules.

Each worker is ``otel-agents demo --serve`` (one process of otel-agents, as a livekit job
process, writing to its own ``PROMETHEUS_MULTIPROC_DIR``) with its own ``otel-agents sidecar``
on its own loopback port: two targets, two ``instance``\\ s of one ``job``. Debian's Prometheus
(``prometheus_bin``) scrapes both every second and evaluates the rules of ``dashboards/alerts.py``
(the shipped expressions; only windows, ``for`` durations and traffic guards are shortened,
through the generator's ``Config``, as in ``test_e2e.py``). Three phases, on one Prometheus:

1. **A worker restart does not page.** Both workers run the demo's ``healthy`` scenario. Worker B
   is killed with its sidecar and started again on the same directory (its counters continue
   from the compacted files of the dead process); then worker A, on a fresh directory (its
   counters start over). After each, once Prometheus has scraped the restarted target for a
   while, no alert has been pending or firing at any evaluation (``ALERTS``).
2. **Every alert fires once per fleet condition.** Both workers start over on fresh directories,
   each seeded by a process that calls ``init()`` and exits (a worker's main process), and run
   every scenario: each alert of
   ``test_e2e.EXPECTED_LABELS`` fires with the labels the runbook promises, exactly one alert
   per condition (a rule that kept ``instance``, or did not aggregate the two workers, fires
   twice). The time each took is printed (``-s``).
3. **No ratio double counts; the dashboards aggregate the fleet.** The workers are frozen
   (SIGSTOP); their sidecars keep serving. Every query of both generated dashboards evaluates
   without error over both instances and returns no ``instance`` label; every count and share
   of the stat panels, over the range of phase 2, equals what is computed by hand from the two
   sidecars' own scrapes before and after it.

Readiness is polled with generous deadlines; nothing asserts on elapsed time.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from otel_agents import names as n

from . import test_e2e as e2e
from .promql import queries, substitute_variables
from prometheus_bin import prometheus

JOB = e2e.JOB
#: generous deadlines for readiness (a loaded 2-core CI host), never asserted on
STARTUP = 60.0
FIRE_DEADLINE = 240.0
#: scrapes of a restarted target that must pass, alerts quiet, before the restart counts as quiet
QUIET_SCRAPES = 20
#: the alerts about a target's own absence, which a restart makes pending for a moment
ABSENCE = frozenset({"LiveKitAgentsTargetDown", "LiveKitAgentsMetricsAbsent"})
SCRAPE_S = 1

#: ``test_e2e.FAST``, plus the fleet's: the rules know the scrape interval (a gain counts once two
#: scrapes show it), the critical alerts stop firing soon after their last error, and a restart
#: (a sidecar down for a second or two) is shorter than the absence alerts wait, as in
#: production. Only the fields the rules' Config has are used.
FLEET = {
    **e2e.FAST,
    "scrape_interval": f"{SCRAPE_S}s",
    "critical_keep_firing_for": "10s",
    "absent_for": "30s",
    "target_down_for": "30s",
    "rate_limited_min_requests": 5,
    "masked_min_requests": 5,
    "internal_window": "1m",
    "sidecar_window": "1m",
}


def fleet_config() -> Any:
    from dashboards import alerts

    known = {f.name for f in fields(alerts.Config)}
    return alerts.Config(**{k: v for k, v in FLEET.items() if k in known})


# --- the fleet -------------------------------------------------------------------------------


@dataclass
class Worker:
    """One worker: a demo process and its sidecar, on their own directory and port."""

    name: str
    port: int
    directory: Path
    logs: Path
    demo: subprocess.Popen[bytes] | None = None
    sidecar: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def instance(self) -> str:
        return f"127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PROMETHEUS_"))}
        env["PROMETHEUS_MULTIPROC_DIR"] = str(self.directory)
        return env

    def seed(self) -> None:
        """A process that calls ``init()`` and exits, as a worker's main process does before
        any job: every series that starts at 0 (the witness included) is there at 0."""
        self.directory.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-c", "import otel_agents; otel_agents.init()"],
            env=self.env(),
            check=True,
            timeout=120,
        )

    def start(self, scenarios: tuple[str, ...] = ()) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        env = self.env()
        tag = f"{self.name}{self.starts}"
        if self.sidecar is None:
            self.start_sidecar()
        selected = [arg for s in scenarios for arg in ("-s", s)]
        self.demo = _spawn(
            [
                sys.executable, "-m", "otel_agents", "demo", "--serve", "--pause", "0.5",
                "--drain-pace", str(e2e.DRAIN_PACE), "--metrics-port", "0",
                "--trace-file", str(self.logs / f"traces-{tag}.jsonl"), *selected,
            ],
            self.logs / f"demo-{tag}.log",
            env,
            cwd=self.logs,
        )  # fmt: skip

    def start_sidecar(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.sidecar = _spawn(
            [
                sys.executable, "-m", "otel_agents", "sidecar",
                "--multiproc-dir", str(self.directory), "--port", str(self.port),
            ],
            self.logs / f"sidecar-{self.name}{self.starts}.log",
            self.env(),
        )  # fmt: skip

    def kill(self, sidecar: bool) -> None:
        """The worker dies (SIGKILL: no exit handler runs), and its sidecar with it if asked."""
        if self.demo is not None:
            _stop(self.demo, signal.SIGKILL)
            self.demo = None
        if sidecar and self.sidecar is not None:
            _stop(self.sidecar, signal.SIGTERM)
            self.sidecar = None

    def freeze(self) -> None:
        assert self.demo is not None
        self.demo.send_signal(signal.SIGSTOP)

    def close(self) -> None:
        if self.demo is not None:
            with contextlib.suppress(ProcessLookupError):
                self.demo.send_signal(signal.SIGCONT)
            _stop(self.demo, signal.SIGTERM)
        if self.sidecar is not None:
            _stop(self.sidecar, signal.SIGTERM)

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """The sidecar's counters, by sample name and labels, as Prometheus would read them."""
        text = e2e.http_get(f"http://{self.instance}/metrics").decode()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name.startswith(n.PREFIX) and s.name.endswith("_total")
        }


def _spawn(
    command: list[str], log: Path, env: dict[str, str], cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)


def _stop(proc: subprocess.Popen[bytes], signum: int) -> None:
    if proc.poll() is None:
        proc.send_signal(signum)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Prom(e2e.Prometheus):
    def query_at(self, expr: str, at: float) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode({"query": expr, "time": f"{at:.3f}"})
        body = json.loads(e2e.http_get(f"{self.url}/api/v1/query?{query}", timeout=30))
        assert body["status"] == "success", (expr, body)
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def scalar(self, expr: str) -> float | None:
        result = self.query(expr)
        assert len(result) <= 1, (expr, result)
        return float(result[0]["value"][1]) if result else None

    def now(self) -> float:
        """Prometheus' own clock (the query API's evaluation time)."""
        body = json.loads(e2e.http_get(f"{self.url}/api/v1/query?query=time()"))
        return float(body["data"]["result"][0])

    def alerts(self) -> list[dict[str, Any]]:
        body = json.loads(e2e.http_get(f"{self.url}/api/v1/alerts"))
        result: list[dict[str, Any]] = body["data"]["alerts"]
        return result


def wait_until(check: Callable[[], bool], within: float, what: str) -> None:
    e2e.wait_until(check, within, what)


Counters = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def fleet_counters(workers: list[Worker]) -> Counters:
    """Both sidecars' counters, summed by series: the fleet's totals, by hand."""
    total: Counters = {}
    for worker in workers:
        for key, value in worker.scrape().items():
            total[key] = total.get(key, 0.0) + value
    return total


def prometheus_has(prom: Prom, counters: Counters, offset: str = "") -> bool:
    """Prometheus' last samples (``offset`` ago) of the job add up to ``counters``."""
    by_name: dict[str, float] = {}
    for (name, _), value in counters.items():
        by_name[name] = by_name.get(name, 0.0) + value
    for name in (n.SESSIONS_STARTED, n.SESSIONS_CLOSED, n.USER_TURNS, n.REQUESTS):
        got = prom.scalar(f'sum({name}{{job="{JOB}"}}{" offset " + offset if offset else ""})')
        if (got or 0.0) != by_name.get(name, 0.0):  # no series: none counted
            return False
    return True


@contextlib.contextmanager
def running(command: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with e2e.process(command, log) as proc:
        yield proc


# --- what the stat panels must show, by hand ---------------------------------------------------


def hand_stats(gained: Counters) -> dict[str, float | None]:
    """What each stat panel of the dashboards must show over the range, from ``gained`` (the
    fleet's counters at its end minus at its start, by series). ``None``: no value."""

    def total(name: str, **labels: str) -> float:
        return sum(
            v
            for (metric, series), v in gained.items()
            if metric == name and all(dict(series).get(k) == w for k, w in labels.items())
        )

    def share(part: float, whole: float, least: int) -> float | None:
        return None if whole < least else part / whole

    from dashboards import errors
    from dashboards.config import DEFAULTS

    not_stt = sum(
        v
        for (metric, series), v in gained.items()
        if metric == n.REQUESTS and dict(series).get(n.L_COMPONENT) != "stt"
    )
    failed_not_stt = sum(
        v
        for (metric, series), v in gained.items()
        if metric == n.REQUESTS
        and dict(series).get(n.L_COMPONENT) != "stt"
        and dict(series).get(n.L_OUTCOME) == "failed"
    )
    closed, turns = total(n.SESSIONS_CLOSED), total(n.USER_TURNS)
    return {
        "Sessions started": total(n.SESSIONS_STARTED),
        "Sessions closed": closed,
        "Silent session share": share(
            total(n.SILENT_SESSIONS), closed, DEFAULTS.silent_min_sessions
        ),
        "Dead turn share": share(total(n.DEAD_TURNS), turns, DEFAULTS.dead_min_turns),
        "Unheard reply share": share(total(n.UNHEARD_SPEECH), turns, DEFAULTS.unheard_min_turns),
        "Failed attempts": total(n.ATTEMPT_FAILURES),
        "Failed requests": total(n.REQUESTS, outcome="failed"),
        "Request failure ratio": share(failed_not_stt, not_stt, errors.FAILURE_MIN_REQUESTS),
        "Terminal quota errors": total(n.QUOTA_ERRORS, terminal="true"),
        "Terminal errors": total(n.TERMINAL_ERRORS),
        "Masked failures": total(n.MASKED_FAILURES),
    }


# --- the test --------------------------------------------------------------------------------


def test_two_workers_behind_one_prometheus(tmp_path: Path) -> None:
    from dashboards import alerts
    from dashboards import dashboards as boards
    from dashboards.panels import EMPTY_WHEN_HEALTHY

    cfg = fleet_config()
    # the alerts under test are the committed rule file's, with shorter windows
    committed = yaml.safe_load((Path(boards.HERE) / "alerts.yml").read_text())
    shipped = {r.get("alert") for g in committed["groups"] for r in g["rules"]} - {None}
    tested = {r.get("alert") for g in alerts.build_rules(cfg)["groups"] for r in g["rules"]}
    assert shipped == tested - {None}

    rules = alerts.write_rules(tmp_path / "rules.yml", cfg)
    logs = tmp_path / "logs"
    logs.mkdir()
    a = Worker("a", e2e.free_port(), tmp_path / "multiproc-a", logs)
    b = Worker("b", e2e.free_port(), tmp_path / "multiproc-b", logs)
    workers = [a, b]
    prom_port = e2e.free_port()
    config = {
        "global": {"scrape_interval": f"{SCRAPE_S}s", "evaluation_interval": f"{SCRAPE_S}s"},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {"job_name": JOB, "static_configs": [{"targets": [w.instance for w in workers]}]}
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    prom = Prom(f"http://127.0.0.1:{prom_port}")
    up = f'up{{job="{JOB}"}}'
    fired_at: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    try:
        with running(
            [
                str(prometheus()),
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'prom-data'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            logs / "prometheus.log",
        ):
            # --- 1. healthy traffic; a restart on the same directory, then on a fresh one ----
            for worker in workers:
                worker.start(("healthy",))
            wait_until(
                lambda: (
                    len(prom.query(f"{up} == 1")) == 2
                    and len(prom.query(f'{n.SESSIONS_STARTED}{{job="{JOB}"}} > 0')) == 2
                ),
                STARTUP,
                "both workers scraped, with sessions",
            )
            quiet_since = prom.now()
            for worker, fresh in ((b, False), (a, True)):
                worker.kill(sidecar=True)
                if fresh:
                    worker.directory = tmp_path / f"multiproc-{worker.name}-fresh"
                worker.start(("healthy",))
                restarted = prom.now()
                wait_until(
                    lambda w=worker, t=restarted: _scrapes_since(prom, w, t) >= QUIET_SCRAPES,
                    STARTUP + QUIET_SCRAPES * 3,
                    f"{QUIET_SCRAPES} scrapes of worker {worker.name} after its restart",
                )
            # nothing fired; only the restarted target's own absence may have been pending
            # (its sidecar was down for a moment), never a count
            since = f"{math.ceil(prom.now() - quiet_since) + 2}s"
            seen_alerts = [s["metric"] for s in prom.query(f"last_over_time(ALERTS[{since}])")]
            assert [s for s in seen_alerts if s["alertstate"] == "firing"] == []
            assert [s for s in seen_alerts if s["alertname"] not in ABSENCE] == []
            restart_pending = sorted({s["alertname"] for s in seen_alerts})

            # --- 2. every scenario: every alert, once per fleet condition ------------------------
            # On fresh directories, so that every count starts from a scraped 0: each worker's
            # main process inits first. (This test found that a dead process's quota limit
            # merged by "max" hid a later, lower balance: the limit is now the most recent.)
            for worker in workers:
                worker.kill(sidecar=True)
                worker.directory = tmp_path / f"multiproc-{worker.name}-faults"
                worker.seed()
                worker.start_sidecar()
            witness = f'{n.SESSIONS_STARTED}{{job="{JOB}"}} == 0'
            wait_until(lambda: len(prom.query(witness)) == 2, STARTUP, "both workers seeded")
            before = fleet_counters(workers)
            wait_until(lambda: prometheus_has(prom, before), STARTUP, "the counters before")
            quiet = prom.now()
            # the range of phase 2 starts inside this quiet stretch, where Prometheus' last
            # sample of every series is `before`: half a second in, and five scrapes before
            # the faulty workers start
            wait_until(
                lambda: all(_scrapes_since(prom, w, quiet) >= 5 for w in workers),
                STARTUP,
                "five scrapes of the quiet fleet",
            )
            range_start = quiet + 0.5
            started = time.monotonic()
            for worker in workers:
                worker.start()

            def seen() -> None:
                for alert in prom.alerts():
                    if alert["state"] != "firing":
                        continue
                    name = alert["labels"]["alertname"]
                    for want in e2e.EXPECTED_LABELS.get(name, ()):
                        if e2e.matches(_Labels(alert["labels"]), want):
                            fired_at.setdefault(
                                (name, tuple(sorted(want.items()))), time.monotonic() - started
                            )

            def not_fired() -> list[str]:
                seen()
                return [
                    f"{name} {want}"
                    for name, wants in e2e.EXPECTED_LABELS.items()
                    for want in wants
                    if (name, tuple(sorted(want.items()))) not in fired_at
                ]

            try:
                wait_until(lambda: not not_fired(), FIRE_DEADLINE, "every alert")
            except AssertionError as e:
                raise AssertionError(f"{e}; never fired: {not_fired()}") from None

            # once per condition: a single firing series per expected label set, no instance
            span = f"{math.ceil(time.monotonic() - started) + 2}s"
            firing = [
                s["metric"]
                for s in prom.query(f'last_over_time(ALERTS{{alertstate="firing"}}[{span}])')
            ]
            for name, wants in e2e.EXPECTED_LABELS.items():
                for want in wants:
                    same = [
                        f
                        for f in firing
                        if f["alertname"] == name and e2e.matches(_Labels(f), want)
                    ]
                    assert len(same) == 1, (name, want, same)
                    assert "instance" not in same[0], (name, same[0])

            # --- 3. frozen: the dashboards over both instances, against the sidecars' totals --
            for worker in workers:
                worker.freeze()
            after = fleet_counters(workers)
            # the last two scrapes a count reads, `scrape_interval` apart, show the frozen values
            lag = f"{int(_seconds('scrape_interval')) + 2}s"
            wait_until(
                lambda: prometheus_has(prom, after, offset=lag), STARTUP, "the frozen counters"
            )
            evaluated = prom.now()
            gained = {k: v - before.get(k, 0.0) for k, v in after.items()}
            values = {
                "job": JOB,
                "instance": ".*",
                "__rate_interval": "1m",
                "__range": f"{int((evaluated - range_start) * 1000)}ms",
                "__interval": "15s",
            }
            empty, instanced, stats = [], [], {}
            for name in boards.DASHBOARDS:
                board = boards.load(name)
                instant = {p["title"]: p["type"] for p in _panels(board) if p.get("type") == "stat"}
                for title, expr in queries(board):
                    runnable = substitute_variables(expr, values)
                    result = prom.query_at(runnable, evaluated)
                    instanced += [title for r in result if "instance" in r["metric"]]
                    if title in instant and "$__range" in expr:
                        assert len(result) <= 1, (title, result)
                        stats[title] = float(result[0]["value"][1]) if result else None
                    if result or title in EMPTY_WHEN_HEALTHY:
                        continue
                    window = f"{math.ceil(evaluated - range_start) + 5}s"
                    if not prom.query_at(f"count_over_time(({runnable})[{window}:1s])", evaluated):
                        empty.append(f"{name}: {title}")
            assert instanced == []
            assert empty == []
            expected = hand_stats(gained)
            assert set(stats) == set(expected)
            mismatched = {
                title: (stats[title], want)
                for title, want in expected.items()
                if not _same(stats[title], want)
            }
            assert mismatched == {}, (mismatched, expected)
    except BaseException:
        for log in sorted(logs.glob("*.log")):
            sys.stdout.write(f"--- {log.name} (tail)\n{log.read_text(errors='replace')[-2000:]}\n")
        raise
    finally:
        for worker in workers:
            worker.close()

    print(
        f"\nrestarts (same directory, fresh directory): nothing fired; pending: {restart_pending}"
    )
    print("fleet of 2 workers: time to fire, from the start of the faulty workers:")
    for (name, labels), at in sorted(fired_at.items(), key=lambda item: item[1]):
        print(f"  {at:5.1f} s  {name} {dict(labels)}")
    print("stat panels over the faulty phase (both instances) = the sidecars' totals by hand:")
    for title, value in stats.items():
        print(f"  {title}: {value}")


class _Labels:
    """An alert's labels, shaped like ``test_e2e.Notification`` for ``e2e.matches``."""

    def __init__(self, labels: dict[str, str]) -> None:
        self.labels = labels


def _scrapes_since(prom: Prom, worker: Worker, since: float) -> int:
    """Successful scrapes of ``worker`` since ``since`` (Prometheus' clock)."""
    window = max(1, math.ceil(prom.now() - since))
    result = prom.query(
        f'sum_over_time(up{{job="{JOB}", instance="{worker.instance}"}}[{window}s])'
    )
    return int(float(result[0]["value"][1])) if result else 0


def _seconds(name: str) -> float:
    """A duration of the dashboards' configuration (the shipped defaults), in seconds."""
    from dashboards.config import DEFAULTS, seconds

    return float(seconds(getattr(DEFAULTS, name, "15s")))


def _panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board.get("panels", []):
        yield from panel.get("panels", []) if panel.get("type") == "row" else [panel]


def _same(got: float | None, want: float | None) -> bool:
    if got is None or want is None:
        return got is want
    return math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9)
