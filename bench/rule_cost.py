"""Rule evaluation cost: LiveKitAgentsCreditsExhausted before and after issue 17, at fleet size.

A real Prometheus (Debian's, fetched by ``tests/prometheus_bin.py``) on 127.0.0.1 serves a TSDB
made with ``promtool tsdb create-blocks-from openmetrics`` from generated data: ``workers``
targets (default 200), each exposing ``series`` terminal quota error series (default 20) and the
per-target witness ``otel_agents_sessions_started_total``, scraped every 15s for 75 minutes (the
hour the old birth detection looks back over, and the window). The alert's expression is queried
at the last timestamp through the HTTP API with ``stats=all``, before (``bench/_alerts_before.yml``,
the rule file before issue 17: one ``present_over_time(X[1h])`` scan per counter series) and
after (``dashboards.alerts.build_rules()``: births through the target's witness), alternating,
``rounds`` times each. Reported: the samples each evaluation touches
(``totalQueryableSamples``) and the median evaluation time (``evalTotalTime``), and their ratios
before / after. Both expressions return the same alerts here (checked): nothing has fired yet.

    make bench BENCH_ARGS=rule_cost   # BENCH_RULE_{WORKERS,SERIES,ROUNDS} set the sizes
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from . import _common as c

ROOT = Path(__file__).resolve().parent.parent
BEFORE = Path(__file__).with_name("_alerts_before.yml")
STEP_S = 15
SPAN_S = 75 * 60
CATEGORIES = ("MaxGatewayCredits", "MaxBargeInRequests", "credits_a", "credits_b", "credits_c")
COMPONENTS = ("llm", "stt", "tts", "bargein")


def _tools() -> tuple[Path, Path]:
    sys.path.insert(0, str(ROOT / "tests"))
    from prometheus_bin import prometheus, promtool

    return promtool(), prometheus()


def credits_exhausted(rule_file: dict[str, Any]) -> str:
    for group in rule_file["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == "LiveKitAgentsCreditsExhausted":
                return str(rule["expr"])
    raise LookupError("no LiveKitAgentsCreditsExhausted")


def openmetrics(path: Path, workers: int, series: int, end: int) -> None:
    """``workers`` targets x ``series`` error series, samples every 15s until ``end``: each
    error series has counted a few errors long ago and stays flat (no new error: nothing
    fires, both expressions must scan everything to decide so)."""
    start = end - SPAN_S
    labels = [(comp, cat) for comp in COMPONENTS for cat in CATEGORIES][:series]
    with path.open("w", encoding="utf-8") as out:
        out.write("# TYPE otel_agents_sessions_started counter\n")
        for w in range(workers):
            target = f'job="livekit-agents",instance="w{w}:9464"'
            for i, t in enumerate(range(start, end + 1, STEP_S)):
                out.write(f"otel_agents_sessions_started_total{{{target}}} {100 + i} {t}\n")
        out.write("# TYPE otel_agents_quota_errors counter\n")
        for w in range(workers):
            target = f'job="livekit-agents",instance="w{w}:9464"'
            for comp, cat in labels:
                name = (
                    f'otel_agents_quota_errors_total{{{target},component="{comp}",'
                    f'quota_type="{comp}",quota_category="{cat}",terminal="true"}}'
                )
                for t in range(start, end + 1, STEP_S):
                    out.write(f"{name} 3 {t}\n")
        out.write("# EOF\n")


def query(url: str, expr: str, at: int) -> dict[str, Any]:
    params = urllib.parse.urlencode({"query": expr, "time": str(at), "stats": "all"})
    with urllib.request.urlopen(f"{url}/api/v1/query?{params}", timeout=300) as response:
        body: dict[str, Any] = json.load(response)
    assert body["status"] == "success", body
    return body["data"]


def run() -> dict[str, Any]:
    workers = c.size("rule_workers", 200, 20)
    series = c.size("rule_series", 20, 20)
    rounds = c.size("rule_rounds", 11, 3)
    promtool, prometheus = _tools()
    from dashboards.alerts import build_rules

    before = credits_exhausted(yaml.safe_load(BEFORE.read_text(encoding="utf-8")))
    after = credits_exhausted(build_rules())
    end = (int(time.time()) - 3600) // STEP_S * STEP_S  # an hour back: out of the head block
    with tempfile.TemporaryDirectory(prefix="rule-cost-") as tmp:
        data, om = Path(tmp) / "data", Path(tmp) / "metrics.om"
        openmetrics(om, workers, series, end)
        subprocess.run(
            [str(promtool), "tsdb", "create-blocks-from", "openmetrics", str(om), str(data)],
            check=True,
            capture_output=True,
        )
        om.unlink()
        (Path(tmp) / "prometheus.yml").write_text("global: {}\n", encoding="utf-8")
        port = c.free_port()
        server = subprocess.Popen(
            [
                str(prometheus),
                f"--config.file={Path(tmp) / 'prometheus.yml'}",
                f"--storage.tsdb.path={data}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=30d",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(600):
                try:
                    urllib.request.urlopen(f"{url}/-/ready", timeout=2)
                    break
                except OSError:
                    time.sleep(0.1)
            witness = query(url, "count(otel_agents_sessions_started_total)", end)
            assert witness["result"][0]["value"][1] == str(workers), witness
            samples: dict[str, int] = {}
            times: dict[str, list[float]] = {"before": [], "after": []}
            results: dict[str, Any] = {}
            for _ in range(rounds):
                for name, expr in (("before", before), ("after", after)):
                    got = query(url, expr, end)
                    samples[name] = got["stats"]["samples"]["totalQueryableSamples"]
                    times[name].append(got["stats"]["timings"]["evalTotalTime"])
                    results[name] = got["result"]
            assert results["before"] == results["after"] == [], results
        finally:
            server.terminate()
            server.wait(60)
    median = {name: statistics.median(t) for name, t in times.items()}
    size = f"{workers} workers x {series} series"
    result: dict[str, Any] = {
        "workers": workers,
        "series": series,
        "rounds": rounds,
        "samples": samples,
        "median_seconds": median,
    }
    result["figures"] = [
        c.Figure(
            key="rules.credits_exhausted.samples",
            name=f"CreditsExhausted, samples per evaluation ({size})",
            value=samples["after"],
            unit="samples",
            baseline=samples["before"],
            baseline_label="the rule before births were read from a per-target witness",
            ratio=samples["before"] / samples["after"],
            note="ratio: how many times fewer samples",
        ),
        c.Figure(
            key="rules.credits_exhausted.time",
            name=f"CreditsExhausted, evaluation time ({size})",
            value=median["after"] * 1000,
            unit="ms",
            baseline=median["before"] * 1000,
            baseline_label="the rule before births were read from a per-target witness",
            ratio=median["before"] / median["after"],
            note=f"medians of {rounds} alternating evaluations; ratio: how many times faster",
        ),
    ]
    return result


def main() -> dict[str, Any]:
    result = run()
    c.print_figures(c.figures_of(result))
    c.write_result("rule_cost", c.jsonable(result))
    return result


if __name__ == "__main__":
    main()
