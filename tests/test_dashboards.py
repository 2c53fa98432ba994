"""The Grafana dashboards (``dashboards/overview.py``, ``dashboards/errors.py``, written by
``dashboards/dashboards.py``): committed JSON up to date, the Grafana dashboard-linter rules that
matter re-implemented, every query naming only metrics that exist and parsing with the real
``promtool``, the stat colours at the alerts' thresholds, and the trace links well formed.

Whether every query returns data from a real Prometheus scraping the demo is the end-to-end
test's job; it uses ``queries`` and ``substitute_variables`` (``tests/promql.py``) and
``EMPTY_WHEN_HEALTHY`` (``dashboards/panels.py``), all tested here.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dm

from dashboards import catalogue, rules
from dashboards import dashboards as d
from dashboards.config import ALERT_PREFIX, ALERTS, DEFAULTS, seconds
from dashboards.panels import BOARD, EMPTY_WHEN_HEALTHY, RANGE
from otel_agents import names as n
from otel_agents._export.build import ZEROED

from .promql import panels, queries, substitute_variables
from prometheus_bin import promtool

# Grafana's own units these dashboards may use (seconds, counts, ratios 0..1, per-second rates)
UNITS = frozenset({"s", "short", "percentunit", "ops", "reqps"})
COUNTER_SUFFIXES = ("_total", "_bucket", "_sum", "_count")
GLOBAL_LINK_VARIABLES = frozenset({"__from", "__to", "__org", "tempo"})

DASHBOARDS = {name: d.load(name) for name in d.DASHBOARDS}


def all_panels() -> list[tuple[str, dict[str, Any]]]:
    return [(name, panel) for name, board in DASHBOARDS.items() for panel in panels(board)]


def prometheus_targets() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """``(dashboard file, panel, target)`` of every Prometheus target."""
    return [
        (name, panel, target)
        for name, panel in all_panels()
        for target in panel.get("targets", [])
        if (target.get("datasource") or {}).get("type") == "prometheus"
    ]


def exprs() -> list[tuple[str, str]]:
    return [(panel["title"], target["expr"]) for _, panel, target in prometheus_targets()]


def squeeze(text: str) -> str:
    """``text`` without its PromQL comments, its whitespace runs made one space."""
    return " ".join(re.sub(r"#[^\n]*", "", text).split())


#: a counter selector with the dashboards' filters, as the panels write it
_COUNTER_SELECTOR = re.compile(r"\b(otel_agents_\w+_total)(\{[^}]*\})")


def births_folded(expr: str) -> str:
    """``expr`` squeezed, with every birth-aware count of the rules (``rules.new_in`` over the
    time range, with the dashboards' filters) replaced by the ``increase()`` it stands for, so
    the checks below read it as a total. A count that is not exactly the rules' own expression
    stays as it is, and fails them."""
    text = squeeze(expr)
    for selector in {m.group(0) for m in _COUNTER_SELECTOR.finditer(text)}:
        total = f"increase({selector}[{RANGE}])"
        block = squeeze(rules.new_in(BOARD, selector, RANGE))
        text = text.replace(f"{block} or {total}", total)  # with the panels' fallback
    return text


def folded_exprs() -> list[tuple[str, str, bool]]:
    """``(title, births_folded(expr), instant)`` of every Prometheus target."""
    return [
        (panel["title"], births_folded(target["expr"]), bool(target.get("instant")))
        for _, panel, target in prometheus_targets()
    ]


def blank_strings(expr: str) -> str:
    """``expr`` with the contents of its string literals blanked (same length), so that
    parentheses and braces inside label values do not confuse the scans below."""
    return re.sub(r'"[^"]*"', lambda m: '"' + "_" * (len(m.group()) - 2) + '"', expr)


def enclosing_function(expr: str, pos: int) -> str | None:
    """The name of the function call whose parentheses enclose ``expr[pos]``."""
    text = blank_strings(expr)
    depth = 0
    for i in range(pos - 1, -1, -1):
        if text[i] == ")":
            depth += 1
        elif text[i] == "(":
            if depth == 0:
                match = re.search(r"([A-Za-z_][A-Za-z0-9_]*)\s*$", text[:i])
                return match.group(1) if match else None
            depth -= 1
    return None


def selectors(expr: str) -> list[tuple[str, str, int]]:
    """``(metric name, matchers text, position)`` of every vector selector naming a metric."""
    text = blank_strings(expr)
    found = []
    for match in re.finditer(r"\b([A-Za-z_:][A-Za-z0-9_:]*)\s*(\{[^}]*\})?", text):
        name = match.group(1)
        after = text[match.end() :].lstrip()
        if after.startswith("(") or name in {"by", "without", "ignoring", "on", "group_left"}:
            continue  # a function call or a modifier, not a metric
        if name in {"and", "or", "unless", "bool", "offset"} or name.startswith("__"):
            continue
        if not match.group(2) and not name.startswith(n.PREFIX) and name not in {"ALERTS"}:
            continue  # a label name inside by (...) and the like
        start, end = match.span(2) if match.group(2) else (match.end(), match.end())
        found.append((name, expr[start:end], match.start()))
    return found


def by_labels(expr: str) -> set[str]:
    labels: set[str] = set()
    for group in re.findall(r"\bby\s*\(([^)]*)\)", blank_strings(expr)):
        labels.update(label.strip() for label in group.split(",") if label.strip())
    return labels - {"le"}


# --- generated and committed --------------------------------------------------------------------


def test_committed_json_is_current() -> None:
    for path, text in d.generated().items():
        assert path.is_file(), f"{path.name} is missing: run python -m dashboards.dashboards"
        assert path.read_text(encoding="utf-8") == text, (
            f"{path.name} is stale: run python -m dashboards.dashboards"
        )


def test_generation_is_deterministic_and_formatted() -> None:
    first, second = d.generated(), d.generated()
    assert first == second
    for path, text in first.items():
        assert text.endswith("}\n")
        assert not text.endswith("\n\n")
        assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n", path.name


def test_main_writes_the_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(d, "HERE", tmp_path)
    assert d.main([]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(d.DASHBOARDS)


# --- uids, titles, variables ---------------------------------------------------------------------


def test_titles_uids_tags_time() -> None:
    assert {board["uid"]: board["title"] for board in DASHBOARDS.values()} == {
        "livekit-agents-overview": "LiveKit Agents / Overview",
        "livekit-agents-errors": "LiveKit Agents / Errors and quota",
    }
    assert DASHBOARDS["overview.json"]["uid"] == "livekit-agents-overview"
    assert DASHBOARDS["errors.json"]["uid"] == "livekit-agents-errors"
    for name, board in DASHBOARDS.items():
        assert re.fullmatch(r"[a-z0-9-]{1,40}", board["uid"]), name
        assert {"livekit-agents", "otel-agents"} <= set(board["tags"]), name
        assert board["time"] == {"from": "now-1h", "to": "now"}, name
        assert board["refresh"] == "30s", name
        assert board.get("description"), name


def test_panel_ids_unique_and_layout_fits() -> None:
    for name, board in DASHBOARDS.items():
        ids = [panel["id"] for panel in board["panels"]]
        ids += [p["id"] for panel in board["panels"] for p in panel.get("panels", [])]
        assert len(ids) == len(set(ids)), name
        assert 0 not in ids, name
        cells: set[tuple[int, int]] = set()
        for panel in board["panels"]:
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= 24, (name, panel["title"])
            mine = {
                (x, y)
                for x in range(pos["x"], pos["x"] + pos["w"])
                for y in range(pos["y"], pos["y"] + pos["h"])
            }
            assert not mine & cells, f"{name}: {panel['title']} overlaps another panel"
            cells |= mine


def test_titles_unique() -> None:
    titles = [panel["title"] for _, panel in all_panels()]
    assert len(titles) == len(set(titles)), "panel titles are the e2e test's keys: keep unique"
    for name, board in DASHBOARDS.items():
        rows = [p["title"] for p in board["panels"] if p["type"] == "row"]
        assert len(rows) == len(set(rows)), name
        assert not set(rows) & set(titles), f"{name}: a row and a panel share a title"


def variables(board: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in board["templating"]["list"]}


def test_datasource_variable_used_by_every_panel_and_target() -> None:
    for name, board in DASHBOARDS.items():
        ds = variables(board)["datasource"]
        assert (ds["type"], ds["query"]) == ("datasource", "prometheus"), name
        uses_tempo = False
        for panel in panels(board):
            ref = panel.get("datasource")
            assert ref, f"{name}: {panel['title']} has no datasource"
            assert ref in (
                {"type": "prometheus", "uid": "${datasource}"},
                {"type": "tempo", "uid": "${tempo}"},
            ), (name, panel["title"], ref)
            uses_tempo |= ref["type"] == "tempo"
            assert panel["targets"], (name, panel["title"])
            for target in panel["targets"]:
                assert target.get("datasource") == ref, (name, panel["title"], target)
        if uses_tempo:
            tempo = variables(board)["tempo"]
            assert (tempo["type"], tempo["query"]) == ("datasource", "tempo"), name


def test_no_hard_coded_datasource_uid() -> None:
    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            ref = node.get("datasource")
            if isinstance(ref, dict) and "uid" in ref:
                assert re.fullmatch(r"\$\{\w+\}", ref["uid"]), f"{where}: {ref}"
            elif ref is not None:
                assert str(ref).startswith("${"), f"{where}: {ref}"
            for value in node.values():
                walk(value, where)
        elif isinstance(node, list):
            for value in node:
                walk(value, where)

    for name, board in DASHBOARDS.items():
        walk(board["panels"], name)
        walk(board["templating"], name)


def test_job_and_instance_variables() -> None:
    queries = {
        "job": f"label_values({n.SESSIONS_STARTED}, job)",
        "instance": f'label_values({n.SESSIONS_STARTED}{{job=~"$job"}}, instance)',
    }
    for name, board in DASHBOARDS.items():
        found = variables(board)
        for var, query in queries.items():
            v = found[var]
            assert v["type"] == "query", (name, var)
            assert v["query"] == query, (name, var)
            assert v["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, (name, var)
            assert (v["multi"], v["includeAll"]) == (True, True), (name, var)
            assert v["refresh"] in (1, 2), (name, var)


# --- PromQL rules --------------------------------------------------------------------------------


def test_queries_returns_every_prometheus_target() -> None:
    for name, board in DASHBOARDS.items():
        listed = queries(board)
        targets = [
            (panel["title"], target["expr"])
            for dn, panel, target in prometheus_targets()
            if dn == name
        ]
        assert listed, name
        assert listed == targets, name
    # the Tempo panel is not a Prometheus query
    assert all("otel_agents.attempt_failed" not in expr for _, expr in exprs())


def test_every_query_filters_on_job_and_instance() -> None:
    for title, expr in exprs():
        found = selectors(expr)
        assert found, (title, expr)
        for metric, matchers, _ in found:
            if metric in catalogue.PROMETHEUS_SERIES:
                continue  # ALERTS: alerts carry their rule's labels, not the target's
            assert 'job=~"$job"' in matchers, (title, metric, expr)
            assert 'instance=~"$instance"' in matchers, (title, metric, expr)


def test_every_metric_exists() -> None:
    exported = catalogue.exported_series()
    for title, expr in exprs():
        assert catalogue.metrics_in(expr) <= exported, (title, catalogue.metrics_in(expr))
        for metric, _, _ in selectors(expr):
            assert metric in exported or metric in catalogue.PROMETHEUS_SERIES, (title, metric)


def test_range_functions_use_grafana_intervals() -> None:
    for title, expr, is_instant in folded_exprs():
        text = blank_strings(expr)
        windows = re.findall(r"\[([^\]]*)\]", text)
        calls = re.findall(r"\b(rate|irate|increase|deriv)\s*\(\s*[^\[]*\[([^\]]*)\]", text)
        assert len(calls) == len(windows), f"{title}: a range outside rate/increase: {expr}"
        for function, window in calls:
            assert function != "irate", f"{title}: use rate, not irate"
            if function == "deriv":
                # a gauge's slope, over the window LiveKitAgentsCreditsRunningOut projects from
                assert window == DEFAULTS.credits_burn_window, (title, window)
            elif window == "$__range":
                assert (function, is_instant) == ("increase", True), (
                    f"{title}: $__range only for totals: increase() in an instant query"
                )
            else:
                assert window == "$__rate_interval", (title, window)


def test_counters_only_inside_rate_or_increase() -> None:
    """... or inside the rules' birth-aware count (``births_folded``)."""
    for title, expr, _ in folded_exprs():
        for metric, _, pos in selectors(expr):
            if metric.endswith(COUNTER_SUFFIXES):
                assert enclosing_function(expr, pos) in ("rate", "increase"), (title, metric)
            else:  # a gauge, used raw (or in deriv)
                assert metric in {
                    n.SESSIONS_ACTIVE,
                    n.UNANSWERED_TURNS,
                    n.QUOTA_USED,
                    n.QUOTA_LIMIT,
                    "ALERTS",
                }, metric


def test_histograms_through_histogram_quantile() -> None:
    for title, expr in exprs():
        if "_bucket{" in expr:
            assert expr.startswith("histogram_quantile("), title
            assert "sum by (le) (rate(" in expr, title


def test_legends_name_their_labels() -> None:
    for _, panel, target in prometheus_targets():
        if target.get("format") == "table":
            continue  # tables show label columns, not legends
        legend = target.get("legendFormat", "")
        assert legend, panel["title"]
        placeholders = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend))
        assert placeholders == by_labels(target["expr"]), (panel["title"], legend)


def test_promtool_parses_every_query(tmp_path: Path) -> None:
    rules = [
        {"record": f"dashboard:query_{i}:check", "expr": substitute_variables(expr)}
        for i, (_, expr) in enumerate(exprs())
    ]
    path = tmp_path / "dashboard-queries.yml"
    # JSON is YAML: no YAML library needed
    path.write_text(json.dumps({"groups": [{"name": "dashboards", "rules": rules}]}))
    proc = subprocess.run(
        [str(promtool()), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(rules)} rules found" in proc.stdout


# --- what the e2e test uses ----------------------------------------------------------------------


def test_substitute_variables() -> None:
    expr = 'sum(rate(x{job=~"$job", instance=~"${instance}"}[$__rate_interval])) [$__range]'
    assert substitute_variables(expr) == 'sum(rate(x{job=~".*", instance=~".*"}[1m])) [5m]'
    assert substitute_variables("$__interval") == "15s"
    with pytest.raises(KeyError, match=r"\$unknown"):
        substitute_variables("up{a=~'$unknown'}")
    for title, expr in exprs():
        assert "$" not in substitute_variables(expr), title


def test_empty_when_healthy() -> None:
    titles = {panel["title"]: panel for _, panel in all_panels()}
    assert set(titles) >= EMPTY_WHEN_HEALTHY
    for title, panel in titles.items():
        says_so = "Empty when healthy" in panel["description"]
        assert says_so == (title in EMPTY_WHEN_HEALTHY), title


# --- panels ------------------------------------------------------------------------------------


def test_every_panel_has_title_description_unit() -> None:
    for name, panel in all_panels():
        assert panel.get("title"), (name, panel)
        description = panel.get("description", "")
        assert len(description) >= 40, (name, panel["title"])
        assert description.endswith("."), (name, panel["title"])
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
        assert unit in UNITS, (name, panel["title"], unit)


def test_units_match_the_queries() -> None:
    for _, panel, target in prometheus_targets():
        unit = panel["fieldConfig"]["defaults"]["unit"]
        expr = births_folded(target["expr"])
        if expr.startswith("histogram_quantile("):
            assert unit == "s", panel["title"]
        elif "deriv(" in expr:
            # credits left / credits per second: seconds; else a burn rate per hour: a count
            assert unit == ("s" if " / " in expr else "short"), panel["title"]
        elif " / " in expr:
            assert unit == "percentunit", panel["title"]
        elif "(rate(" in expr:
            assert unit in ("ops", "reqps"), panel["title"]
        else:
            assert unit == "short", panel["title"]


def test_overview_covers_the_session_metrics() -> None:
    used = set().union(*(catalogue.metrics_in(e) for _, e in queries(DASHBOARDS["overview.json"])))
    for metric in (
        n.SESSIONS_ACTIVE,
        n.SESSIONS_STARTED,
        n.SESSIONS_CLOSED,
        n.SILENT_SESSIONS,
        n.USER_TURNS,
        n.DEAD_TURNS,
        n.UNANSWERED_TURNS,
        n.UNHEARD_SPEECH,
    ):
        assert metric in used, metric
    for histogram in (n.TIME_TO_FIRST_SPEECH, n.RESPONSE_LATENCY, n.SESSION_DURATION):
        assert histogram + "_bucket" in used, histogram
    alerts = [e for _, e in queries(DASHBOARDS["overview.json"]) if e.startswith("ALERTS")]
    assert alerts == ['ALERTS{alertname=~"LiveKitAgents.*", alertstate="firing"}']


def test_errors_dashboard_covers_the_error_metrics() -> None:
    used = set().union(*(catalogue.metrics_in(e) for _, e in queries(DASHBOARDS["errors.json"])))
    for metric in (
        n.ATTEMPT_FAILURES,
        n.QUOTA_ERRORS,
        n.TERMINAL_ERRORS,
        n.MASKED_FAILURES,
        n.REQUESTS,
        n.UNHANDLED_TASK_ERRORS,
        n.INTERNAL_ERRORS,
        n.QUOTA_USED,
        n.QUOTA_LIMIT,
        n.FALLBACK_SWITCHES,
        n.FALLBACK_EXHAUSTED,
    ):
        assert metric in used, metric
    assert n.RETRY_WAIT + "_bucket" in used


# --- trace links -----------------------------------------------------------------------------


def decode_explore(url: str) -> tuple[dict[str, Any], set[str]]:
    """The Explore panes of a link, with its ``${...}`` placeholders replaced by their names."""
    placeholders = set(re.findall(r"\$\{([^}]+)\}", url))
    filled = re.sub(r"\$\{([^}]+)\}", lambda m: f"<{m.group(1)}>", url)
    parts = urlsplit(filled)
    assert parts.path == "/explore", url
    params = parse_qs(parts.query)
    assert params["schemaVersion"] == ["1"], url
    panes = json.loads(unquote(params["panes"][0]))
    return panes, placeholders


ATTRIBUTES = {getattr(n, a) for a in dir(n) if a.startswith("A_")}


def check_traceql(query: str) -> None:
    assert query.startswith(f'{{name="{n.SPAN_ATTEMPT_FAILED}"'), query
    for attribute in re.findall(r"\bspan\.([\w.]+)", query):
        assert attribute in ATTRIBUTES, (attribute, query)


def test_error_panels_link_to_their_traces() -> None:
    board = DASHBOARDS["errors.json"]
    assert "tempo" in variables(board)
    linked = 0
    for panel in panels(board):
        exprs_ = [t.get("expr", "") for t in panel["targets"]]
        shows_attempts = any(
            m in e
            for e in exprs_
            for m in (
                n.ATTEMPT_FAILURES,
                n.QUOTA_ERRORS,
                n.TERMINAL_ERRORS,
                n.MASKED_FAILURES,
                f'{n.REQUESTS}{{job=~"$job", instance=~"$instance", outcome="failed"}}',
            )
        )
        links = panel["fieldConfig"]["defaults"].get("links", [])
        if panel["type"] == "stat":
            continue  # totals: the panels below them carry the links
        if shows_attempts:
            assert links, f"{panel['title']} shows failed attempts but links to no trace"
        labels = set().union(*(by_labels(e) for e in exprs_))
        for link in links:
            linked += 1
            panes, placeholders = decode_explore(link["url"])
            (pane,) = panes.values()
            assert pane["datasource"] == "<tempo>", panel["title"]
            (query,) = pane["queries"]
            assert query["datasource"] == {"type": "tempo", "uid": "<tempo>"}
            assert query["queryType"] == "traceql"
            check_traceql(query["query"])
            fields = {
                p.rsplit(".", 1)[1]
                for p in placeholders
                if p.startswith(("__field.labels.", "__data.fields."))
            }
            assert fields == labels, (panel["title"], fields, labels)
            assert placeholders - {f for f in placeholders if "." in f} <= GLOBAL_LINK_VARIABLES
    assert linked >= 8


def test_tempo_panel_lists_failed_attempt_spans() -> None:
    board = DASHBOARDS["errors.json"]
    tempo_panels = [p for p in panels(board) if p["datasource"]["type"] == "tempo"]
    assert len(tempo_panels) == 1
    (target,) = tempo_panels[0]["targets"]
    assert target["queryType"] == "traceql"
    assert target["query"].startswith(f'{{name="{n.SPAN_ATTEMPT_FAILED}"}}')
    selected = re.search(r"\| select\(([^)]*)\)", target["query"])
    assert selected, target["query"]
    for attribute in selected.group(1).split(","):
        assert attribute.strip().removeprefix("span.") in ATTRIBUTES, attribute
    (link,) = tempo_panels[0]["links"]
    panes, _ = decode_explore(link["url"])
    (pane,) = panes.values()
    assert pane["queries"][0]["query"] == f'{{name="{n.SPAN_ATTEMPT_FAILED}"}}'


def contained(small: Any, big: Any, where: str = "") -> None:
    """Every key and value of ``small`` is in ``big`` (``big`` may add defaults)."""
    if isinstance(small, dict):
        assert isinstance(big, dict), where
        for key, value in small.items():
            assert key in big, f"{where}.{key} lost"
            contained(value, big[key], f"{where}.{key}")
    elif isinstance(small, list):
        assert isinstance(big, list), where
        assert len(small) == len(big), where
        for i, (a, b) in enumerate(zip(small, big, strict=True)):
            contained(a, b, f"{where}[{i}]")
    else:
        assert small == big, where


def test_json_is_a_valid_sdk_dashboard() -> None:
    """The committed JSON parses as the SDK's Grafana dashboard model and loses nothing."""
    for name, board in DASHBOARDS.items():
        parsed = dm.Dashboard.from_json(board)
        contained(board, json.loads(json.dumps(parsed, cls=JSONEncoder)), name)


def test_stat_thresholds_match_the_alerts() -> None:
    """The stat colours turn at the shipped alerts' thresholds (``config.DEFAULTS``)."""
    steps = {
        panel["title"]: [
            (s["value"], s["color"])
            for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        ]
        for _, panel in all_panels()
        if panel["type"] == "stat"
    }
    assert steps["Silent session share"] == [
        (None, "green"),
        (DEFAULTS.silent_warning_ratio, "orange"),
        (DEFAULTS.silent_critical_ratio, "red"),
    ]
    assert steps["Dead turn share"] == [(None, "green"), (DEFAULTS.dead_ratio, "orange")]
    # the alert fires above the threshold: the first count above it is orange
    assert steps["Unanswered turns now"] == [
        (None, "green"),
        (DEFAULTS.unanswered_turns_threshold + 1, "orange"),
    ]
    assert steps["Unheard reply share"] == [(None, "green"), (DEFAULTS.unheard_ratio, "orange")]
    assert steps["Credits used share"] == [
        (None, "green"),
        (DEFAULTS.credits_low_ratio, "orange"),
        (1.0, "red"),
    ]
    # LiveKitAgentsCreditsRunningOut fires under the horizon: red below it
    assert steps["Time to credit exhaustion"] == [
        (None, "red"),
        (seconds(DEFAULTS.credits_horizon), "green"),
    ]
    descriptions = {panel["title"]: panel["description"] for _, panel in all_panels()}
    assert "Orange from 10%, red from 30%" in descriptions["Silent session share"]
    assert "Orange from 20%" in descriptions["Dead turn share"]
    assert "Orange from 1: LiveKitAgentsUnansweredTurns" in descriptions["Unanswered turns now"]
    assert "Orange from 10%" in descriptions["Unheard reply share"]
    assert "Orange from 90%: LiveKitAgentsCreditsLow" in descriptions["Credits used share"]
    assert (
        "Red under 6h: LiveKitAgentsCreditsRunningOut" in descriptions["Time to credit exhaustion"]
    )


def test_panels_compute_what_the_credit_alerts_read() -> None:
    """The quota panels read the same gauges, dimension and window as the credit alerts."""
    (share,) = [e for t, e in exprs() if t == "Credits used share"]
    (left,) = [e for t, e in exprs() if t == "Time to credit exhaustion"]
    for expr in (share, left):
        assert f'{n.L_DIMENSION}="credits"' in expr
    assert f"[{DEFAULTS.credits_burn_window}])" in left
    assert " > 0) / (deriv(" in left


def test_alerts_firing_panel_selects_every_alert() -> None:
    assert all(name.startswith(ALERT_PREFIX) for name in ALERTS)
    (expr,) = [e for t, e in queries(DASHBOARDS["overview.json"]) if t == "Alerts firing"]
    assert f'alertname=~"{ALERT_PREFIX}.*"' in expr


# --- counts, shares and their values when healthy (issue: dashboards must agree with alerts) ----


def test_totals_count_what_the_alerts_count() -> None:
    """Every count over the time range is the rules' own expression (``rules.new_in``, which
    ``births_folded`` recognises): a series' first increment included, no extrapolation, a dip
    never counted as a reset. A plain ``increase()`` would show 0 for the terminal quota error
    that pages."""
    totals = 0
    for title, expr in exprs():
        # increase() only as the fallback of the rules' count, for a target first scraped inside
        # the range (what births_folded folds); anything else stays and fails below
        totals += squeeze(expr).count(" or increase(")
        assert squeeze(expr).count("increase(") == squeeze(expr).count(" or increase("), title
    assert totals >= 12  # every stat and table of counts
    for title, expr, instant in folded_exprs():
        if f"[{RANGE}]" in expr:
            assert instant, title
            # folded: nothing of the rules' expression is left, only whole increase() totals
            assert "offset" not in expr, title


def test_rates_of_counters_born_at_their_first_increment_say_so() -> None:
    """Only the counters every process exports at 0 from the start have every increment in
    their ``rate()``; a panel rating another says its totals count the first increment."""
    assert {n.SESSIONS_CLOSED, n.DEAD_TURNS, n.UNHEARD_SPEECH, n.USER_TURNS} <= ZEROED
    assert n.SILENT_SESSIONS not in ZEROED  # 65 label sets: each born at its first increment
    noted = 0
    for _, panel in all_panels():
        rated = set()
        for target in panel.get("targets", []):
            rated |= set(re.findall(r"\brate\((otel_agents_\w+_total)\{", target.get("expr", "")))
        says = "the totals count it" in panel["description"]
        assert says == bool(rated - ZEROED), panel["title"]
        noted += says
    assert noted >= 5


def stat_panels() -> dict[str, dict[str, Any]]:
    return {panel["title"]: panel for _, panel in all_panels() if panel["type"] == "stat"}


def test_every_stat_says_what_no_value_means() -> None:
    for title, panel in stat_panels().items():
        no_value = panel["fieldConfig"]["defaults"].get("noValue")
        assert no_value, title
        assert no_value != "No data", title


SHARES = {
    "Silent session share": DEFAULTS.silent_min_sessions,
    "Dead turn share": DEFAULTS.dead_min_turns,
    "Unheard reply share": DEFAULTS.unheard_min_turns,
    "Request failure ratio": 20,
}


def test_shares_read_0_when_healthy_and_keep_their_alerts_minimum_traffic() -> None:
    """A share's numerator has no series until the first bad event: ``or on () vector(0)``
    makes a healthy share 0, not "No data"; its denominator keeps the alert's minimum-traffic
    guard, below which the stat shows "Not enough traffic" rather than a colour (1 silent
    session of 2 at night is not red)."""
    stats = stat_panels()
    for title, least in SHARES.items():
        panel = stats[title]
        [target] = panel["targets"]
        expr = squeeze(target["expr"])
        numerator, _, denominator = expr.partition(" or on () vector(0)) / (")
        assert numerator, (title, expr)
        assert denominator, (title, expr)
        assert denominator.endswith(f" >= {least})"), (title, expr)
        assert panel["fieldConfig"]["defaults"]["noValue"] == "Not enough traffic", title
        assert f"fewer than {least} " in panel["description"], title


def test_failure_ratios_leave_out_stt() -> None:
    """STT's ``outcome="ok"`` counts transcript usage reports, several per stream, not requests:
    a ratio counting them would understate STT's failures."""
    ratios = [
        (t, e)
        for t, e in exprs()
        if t in ("Request failure ratio", "Request failure ratio by provider")
    ]
    assert len(ratios) == 2
    for title, expr in ratios:
        for metric, matchers, _ in selectors(expr):
            if metric == n.REQUESTS:
                assert 'component!="stt"' in matchers, title
        assert (
            "transcript"
            in {t: p for _, p in all_panels() for t in [p["title"]]}[title]["description"]
        )


def test_quantile_panels_say_they_cap_at_the_top_bucket() -> None:
    for _, panel, target in prometheus_targets():
        if not target["expr"].startswith("histogram_quantile("):
            continue
        (metric,) = {m.removesuffix("_bucket") for m in catalogue.metrics_in(target["expr"])}
        (spec,) = [m for m in n.METRICS if m.name == metric]
        top = f"{spec.buckets[-1]:g} s"
        assert f"cap at the top bucket, {top}" in panel["description"], panel["title"]


def test_every_query_aggregates_away_the_instance() -> None:
    """A fleet is many instances: every panel sums (or takes the max or min) across them, and
    none keeps ``instance`` or ``job`` in its grouping. (That the sums are right across two real
    instances is ``tests/test_fleet.py``'s.)"""
    for title, expr in exprs():
        if expr.startswith("ALERTS"):
            continue
        assert re.match(r"^\(*(sum|max|min|histogram_quantile)\b", squeeze(expr)), (title, expr)
        assert not by_labels(expr) & {"instance", "job"}, title
