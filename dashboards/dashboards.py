"""The Grafana dashboards of otel-agents, built with grafana-foundation-sdk.

``python -m dashboards.dashboards`` writes ``dashboards/overview.json`` and
``dashboards/errors.json`` (deterministic: sorted keys, 2-space indent, trailing newline); the
JSON is committed and ``tests/test_dashboards.py`` fails when it is stale.

Conventions (DESIGN.md section 8): stable uids; a ``datasource`` variable (Prometheus) used by
every panel and target, never a hard-coded datasource uid; ``job`` and ``instance`` variables
filtering every query; counters only inside ``rate()``/``increase()`` over ``$__rate_interval``
(``$__range`` for the totals of the stat and table panels); every panel with a title, a
description and a unit.

For the end-to-end test: :func:`queries` lists a dashboard's PromQL, :func:`substitute_variables`
makes one runnable on a plain Prometheus, and :data:`EMPTY_WHEN_HEALTHY` names the panels that
may legitimately return no series.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, stat, table, tempo, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models.prometheus import PromQueryFormat
from grafana_foundation_sdk.models.tempo import SearchTableType

from otel_agents import names as n

HERE: Final = Path(__file__).resolve().parent
TAGS: Final = ("livekit-agents", "otel-agents")

OVERVIEW_UID: Final = "livekit-agents-overview"
OVERVIEW_TITLE: Final = "LiveKit Agents / Overview"
ERRORS_UID: Final = "livekit-agents-errors"
ERRORS_TITLE: Final = "LiveKit Agents / Errors and quota"

PROMETHEUS: Final = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
TEMPO: Final = dm.DataSourceRef(type_val="tempo", uid="${tempo}")

#: the matchers every otel-agents selector carries
SCOPE: Final = 'job=~"$job", instance=~"$instance"'
RATE: Final = "$__rate_interval"
RANGE: Final = "$__range"

#: values that make a dashboard query runnable on a plain Prometheus (``substitute_variables``)
TEST_VALUES: Final = {
    "job": ".*",
    "instance": ".*",
    "__rate_interval": "1m",
    "__range": "5m",
    "__interval": "15s",
}

#: Titles of the panels whose queries may legitimately return no series at all: failures of
#: otel-agents itself, never-retrieved task exceptions, terminal errors other than quota, and
#: firing alerts, none of which a healthy system produces. "May", not "must": the demo's
#: ``bad-key`` scenario does produce a terminal auth error, and its faults can fire alerts. Each
#: panel says so in its description. Every other panel returns data against the demo.
EMPTY_WHEN_HEALTHY: Final = frozenset(
    {
        "Alerts firing",
        "Terminal errors other than quota",
        "Unhandled task errors by root cause",
        "otel-agents internal errors",
    }
)
EMPTY_NOTE: Final = " Empty when healthy: no series at all means none happened in the time range."

#: Prometheus label -> attribute of the ``otel_agents.attempt_failed`` span, for trace links.
#: Quoted: string attributes; unquoted: boolean ones.
SPAN_ATTRIBUTES: Final = {
    n.L_COMPONENT: (n.A_COMPONENT, True),
    n.L_PROVIDER: (n.A_PROVIDER, True),
    n.L_ERROR_CLASS: (n.A_ERROR_CLASS, True),
    n.L_ROOT_CAUSE: (n.A_ROOT_CAUSE_TYPE, True),
    n.L_FIRST_ROOT_CAUSE: (n.A_FIRST_ROOT_CAUSE_TYPE, True),
    n.L_QUOTA_TYPE: (n.A_QUOTA_TYPE, True),
    n.L_QUOTA_CATEGORY: (n.A_QUOTA_CATEGORY, True),
    n.L_TERMINAL: (n.A_TERMINAL, False),
    n.L_FINAL: (n.A_FINAL, False),
}
ATTEMPT_SPANS: Final = f'{{name="{n.SPAN_ATTEMPT_FAILED}"}}'
TRACES_LIMIT: Final = 50


# --- PromQL -------------------------------------------------------------------------------------


def sel(metric: str, *matchers: str) -> str:
    """``metric{job=~"$job", instance=~"$instance", matchers...}``."""
    return f"{metric}{{{', '.join((SCOPE, *matchers))}}}"


def _sum(labels: Sequence[str]) -> str:
    return f"sum by ({', '.join(labels)}) " if labels else "sum"


def rate(metric: str, *matchers: str, by: Sequence[str] = ()) -> str:
    """``sum by (labels) (rate(metric{...}[$__rate_interval]))``: events per second."""
    return f"{_sum(by)}(rate({sel(metric, *matchers)}[{RATE}]))"


def total(metric: str, *matchers: str, by: Sequence[str] = ()) -> str:
    """``sum by (labels) (increase(metric{...}[$__range]))``: events in the time range."""
    return f"{_sum(by)}(increase({sel(metric, *matchers)}[{RANGE}]))"


def quantile(q: float, histogram: str) -> str:
    bucket = sel(f"{histogram}_bucket")
    return f"histogram_quantile({q}, sum by (le) (rate({bucket}[{RATE}])))"


def legend(*labels: str, prefix: str = "") -> str:
    return (prefix + " ".join(f"{{{{{label}}}}}" for label in labels)).strip()


@dataclass(frozen=True)
class Q:
    """One Prometheus target."""

    expr: str
    legend: str
    instant: bool = False
    table: bool = False

    def build(self, ref_id: str) -> prometheus.Dataquery:
        query = (
            prometheus.Dataquery()
            .datasource(PROMETHEUS)
            .ref_id(ref_id)
            .expr(self.expr)
            .legend_format(self.legend)
        )
        if self.table:
            query = query.format(PromQueryFormat.TABLE)
        return query.instant() if self.instant or self.table else query.range()


# --- trace links --------------------------------------------------------------------------------


def traceql(*conditions: str) -> str:
    return "{" + " && ".join((f'name="{n.SPAN_ATTEMPT_FAILED}"', *conditions)) + "}"


def label_conditions(labels: Sequence[str], ref: str = "__field.labels") -> list[str]:
    """TraceQL conditions matching the span attributes of a series' labels (``${...}`` filled
    in by Grafana when the link is followed)."""
    conditions = []
    for label in labels:
        attribute, quoted = SPAN_ATTRIBUTES[label]
        value = f"${{{ref}.{label}}}"
        conditions.append(f'span.{attribute}="{value}"' if quoted else f"span.{attribute}={value}")
    return conditions


def explore_url(query: str) -> str:
    """A link to Grafana Explore running TraceQL ``query`` on the ``$tempo`` datasource over the
    dashboard's time range. Everything but the ``${...}`` placeholders is percent-encoded here;
    Grafana fills in (and percent-encodes) the placeholders when the link is followed."""
    pane = {
        "traces": {
            "datasource": "${tempo}",
            "queries": [
                {
                    "datasource": {"type": "tempo", "uid": "${tempo}"},
                    "limit": TRACES_LIMIT,
                    "query": query,
                    "queryType": "traceql",
                    "refId": "A",
                    "tableType": "spans",
                }
            ],
            "range": {"from": "${__from}", "to": "${__to}"},
        }
    }
    text = json.dumps(pane, separators=(",", ":"), sort_keys=True)
    parts = re.split(r"(\$\{[^}]+\})", text)
    encoded = "".join(p if p.startswith("${") else quote(p, safe="") for p in parts)
    return f"/explore?schemaVersion=1&orgId=${{__org}}&panes={encoded}"


def trace_link(
    query: str, title: str = "Failed attempts of this series in Tempo"
) -> db.DashboardLink:
    return (
        db.DashboardLink(title)
        .type(dm.DashboardLinkType.LINK)
        .url(explore_url(query))
        .target_blank(True)
    )


# --- panels -------------------------------------------------------------------------------------


class _Ids:
    """Panel ids, in build order: stable as long as the layout is."""

    def __init__(self) -> None:
        self.last = 0

    def next(self) -> int:
        self.last += 1
        return self.last


def _description(title: str, text: str) -> str:
    return text + (EMPTY_NOTE if title in EMPTY_WHEN_HEALTHY else "")


def _thresholds(steps: Sequence[tuple[float | None, str]]) -> db.ThresholdsConfig:
    return (
        db.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=value, color=color) for value, color in steps])
    )


# Stat colours follow the alerts' severities (orange: warning, red: critical) at the default
# thresholds of ``dashboards/alerts.py`` (``Config``); tests/test_dashboards.py keeps them equal.
SILENT_WARNING: Final = 0.10
SILENT_CRITICAL: Final = 0.30
DEAD_WARNING: Final = 0.20

GREEN_ONLY: Final = ((None, "green"),)
RED_FROM_ONE: Final = ((None, "green"), (1.0, "red"))
ORANGE_FROM_ONE: Final = ((None, "green"), (1.0, "orange"))
SILENT_STEPS: Final = ((None, "green"), (SILENT_WARNING, "orange"), (SILENT_CRITICAL, "red"))
DEAD_STEPS: Final = ((None, "green"), (DEAD_WARNING, "orange"))
FAILURE_STEPS: Final = ((None, "green"), (0.05, "orange"), (0.2, "red"))


def _pct(ratio: float) -> str:
    return f"{ratio * 100:g}%"


def ts(
    title: str,
    description: str,
    unit: str,
    targets: Sequence[Q],
    *,
    links: Sequence[db.DashboardLink] = (),
    span: int = 12,
    height: int = 8,
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(_description(title, description))
        .datasource(PROMETHEUS)
        .unit(unit)
        .min(0)
        .span(span)
        .height(height)
        .line_width(1)
        .fill_opacity(10)
        .show_points(cm.VisibilityMode.NEVER)
        .legend(
            common_builders.VizLegendOptions()
            .display_mode(cm.LegendDisplayMode.LIST)
            .placement(cm.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .tooltip(
            common_builders.VizTooltipOptions()
            .mode(cm.TooltipDisplayMode.MULTI)
            .sort(cm.SortOrder.DESCENDING)
        )
        .thresholds(_thresholds(GREEN_ONLY))
    )
    if unit == "percentunit":
        panel = panel.max(1)
    if title in EMPTY_WHEN_HEALTHY:
        panel = panel.no_value("0")
    if links:
        panel = panel.data_links(list(links))
    return panel.targets([q.build(chr(ord("A") + i)) for i, q in enumerate(targets)])


def single_stat(
    title: str,
    description: str,
    unit: str,
    targets: Sequence[Q],
    *,
    steps: Sequence[tuple[float | None, str]] = GREEN_ONLY,
    graph: bool = False,
    span: int = 6,
    height: int = 8,
) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(_description(title, description))
        .datasource(PROMETHEUS)
        .unit(unit)
        .span(span)
        .height(height)
        .thresholds(_thresholds(steps))
        .color_mode(cm.BigValueColorMode.VALUE)
        .graph_mode(cm.BigValueGraphMode.AREA if graph else cm.BigValueGraphMode.NONE)
        .text_mode(cm.BigValueTextMode.AUTO)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .targets([q.build(chr(ord("A") + i)) for i, q in enumerate(targets)])
    )


def instant_table(
    title: str,
    description: str,
    unit: str,
    target: Q,
    *,
    exclude: Sequence[str],
    rename: dict[str, str],
    links: Sequence[db.DashboardLink] = (),
    span: int = 12,
    height: int = 8,
) -> table.Panel:
    panel = (
        table.Panel()
        .title(title)
        .description(_description(title, description))
        .datasource(PROMETHEUS)
        .unit(unit)
        .span(span)
        .height(height)
        .thresholds(_thresholds(GREEN_ONLY))
        .with_transformation(
            dm.DataTransformerConfig(
                id_val="organize",
                options={
                    "excludeByName": dict.fromkeys(exclude, True),
                    "renameByName": dict(rename),
                },
            )
        )
        .targets([target.build("A")])
    )
    if title in EMPTY_WHEN_HEALTHY:
        panel = panel.no_value("none")
    if links:
        panel = panel.data_links(list(links))
    return panel


def _with(
    builder: db.Dashboard, ids: _Ids, rows: Sequence[tuple[str, Sequence[Any]]]
) -> db.Dashboard:
    for title, panels in rows:
        builder = builder.with_row(db.Row(title).id(ids.next()))
        for panel in panels:
            builder = builder.with_panel(panel.id(ids.next()))
    return builder


def _base(uid: str, title: str, description: str, *, tempo_variable: bool = False) -> db.Dashboard:
    all_option = dm.VariableOption(selected=True, text="All", value="$__all")
    variables: list[Any] = [
        db.DatasourceVariable("datasource")
        .label("Prometheus")
        .type("prometheus")
        .description("The Prometheus that scrapes the otel-agents metrics."),
    ]
    if tempo_variable:
        variables.append(
            db.DatasourceVariable("tempo")
            .label("Tempo")
            .type("tempo")
            .description("The Tempo that receives otel-agents' traces: the trace links use it.")
        )
    for name, query in (
        ("job", f"label_values({n.SESSIONS_STARTED}, job)"),
        ("instance", f'label_values({n.SESSIONS_STARTED}{{job=~"$job"}}, instance)'),
    ):
        variables.append(
            db.QueryVariable(name)
            .label(name)
            .description(f"Prometheus {name} label of the scraped otel-agents endpoints.")
            .datasource(PROMETHEUS)
            .query(query)
            .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(dm.VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
            .all_value(".*")
            .current(all_option)
        )
    return (
        db.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(list(TAGS))
        .time("now-1h", "now")
        .refresh("30s")
        .timezone("browser")
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .annotation(
            db.AnnotationQuery()
            .name("Annotations & Alerts")
            .datasource(dm.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
            .built_in(1)
            .enable(True)
            .hide(True)
            .icon_color("rgba(0, 211, 255, 1)")
            .type("dashboard")
        )
        .link(
            db.DashboardLink("LiveKit Agents")
            .type(dm.DashboardLinkType.DASHBOARDS)
            .tags([TAGS[0]])
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
        .variables(variables)
    )


# --- LiveKit Agents / Overview ------------------------------------------------------------------


def overview() -> db.Dashboard:
    closed = n.SESSIONS_CLOSED
    silent = n.SILENT_SESSIONS
    turns = n.USER_TURNS
    dead = n.DEAD_TURNS
    percentiles = (0.5, 0.9, 0.99)

    def latency(title: str, histogram: str, text: str) -> timeseries.Panel:
        targets = [Q(quantile(q, histogram), f"p{round(q * 100)}") for q in percentiles]
        return ts(title, text, "s", targets, span=8)

    sessions = [
        single_stat(
            "Active sessions",
            "AgentSessions started and not yet closed, right now, summed over every live job "
            "process (the gauge drops a dead process's sessions when the sidecar reaps it).",
            "short",
            [Q(f"sum({sel(n.SESSIONS_ACTIVE)})", "active")],
            graph=True,
            span=4,
        ),
        single_stat(
            "Sessions started",
            "AgentSession.start() calls in the dashboard's time range.",
            "short",
            [Q(total(n.SESSIONS_STARTED), "started", instant=True)],
            span=4,
        ),
        single_stat(
            "Sessions closed",
            "Sessions closed in the dashboard's time range, whatever the reason (a session "
            "that ends with its job is still closed and counted).",
            "short",
            [Q(total(closed), "closed", instant=True)],
            span=4,
        ),
        instant_table(
            "Alerts firing",
            "The otel-agents alerts (alertname LiveKitAgents*) firing right now, one row each "
            "with its labels; see the runbook for each alert. Alerts are not filtered by job "
            "or instance.",
            "short",
            Q('ALERTS{alertname=~"LiveKitAgents.*", alertstate="firing"}', "", table=True),
            exclude=("Time", "Value", "__name__", "alertstate"),
            rename={},
            span=12,
        ),
        ts(
            "Sessions started and closed",
            "Sessions started and closed per second. Over a long range the two lines match; "
            "a gap that persists means sessions that never close.",
            "ops",
            [
                Q(rate(n.SESSIONS_STARTED), "started"),
                Q(rate(closed), "closed"),
            ],
        ),
        ts(
            "Sessions closed by reason",
            "Sessions closed per second by livekit's close reason (error, job_shutdown, "
            "participant_disconnected, user_initiated, task_completed; other: still open at "
            "process exit) and whether the agent ever spoke. agent_spoke=false on a session "
            "the user spoke in is a silent session.",
            "ops",
            [
                Q(
                    rate(closed, by=(n.L_REASON, n.L_AGENT_SPOKE)),
                    "{{reason}}, agent spoke: {{agent_spoke}}",
                )
            ],
        ),
    ]
    silent_sessions = [
        single_stat(
            "Silent session share",
            "Share of the sessions closed in the time range that were silent: the user spoke "
            "and the agent never reached speaking. The caller heard nothing. Orange from "
            f"{_pct(SILENT_WARNING)}, red from {_pct(SILENT_CRITICAL)}: the default thresholds "
            "of the LiveKitAgentsSilentSessions alert (warning, critical).",
            "percentunit",
            [Q(f"{total(silent)} / {total(closed)}", "silent", instant=True)],
            steps=SILENT_STEPS,
        ),
        ts(
            "Silent sessions by close reason",
            "Silent sessions per second, by how they closed: error usually means a terminal "
            "provider error (credits exhausted, bad key); user_initiated means the caller gave "
            "up on an agent that never answered.",
            "ops",
            [Q(rate(silent, by=(n.L_REASON,)), legend(n.L_REASON))],
            span=9,
        ),
        ts(
            "Silent session share over time",
            "Silent sessions divided by closed sessions, per rate interval.",
            "percentunit",
            [Q(f"{rate(silent)} / {rate(closed)}", "silent share")],
            span=9,
        ),
    ]
    dead_share = f"{total(dead)} / {total(turns)}"
    dead_share_rate = (
        f"{rate(dead, by=(n.L_CAUSE,))} / ignoring({n.L_CAUSE}) group_left {rate(turns)}"
    )
    turn_panels = [
        single_stat(
            "Unanswered turns now",
            "User turns waiting longer than silence_timeout (default 8 s) with no agent speech, "
            "right now: callers waiting in silence. Falls when the turn is answered, dies or "
            "its session closes. Orange from 1: LiveKitAgentsUnansweredTurns fires when it "
            "stays above 0.",
            "short",
            [Q(f"sum({sel(n.UNANSWERED_TURNS)})", "unanswered")],
            steps=ORANGE_FROM_ONE,
            graph=True,
        ),
        single_stat(
            "Dead turn share",
            "Share of the user turns in the time range that died: the agent went from "
            "thinking back to listening without speaking (both causes; the panel on the right "
            f"splits them). Orange from {_pct(DEAD_WARNING)}: the default threshold of the "
            "LiveKitAgentsDeadTurns alert.",
            "percentunit",
            [Q(dead_share, "dead", instant=True)],
            steps=DEAD_STEPS,
        ),
        ts(
            "Dead turn share by cause",
            "Dead turns divided by user turns per rate interval, by cause. error: a provider "
            "attempt failed since the previous turn (see the Errors and quota dashboard); "
            "empty: no error at all (an empty completion).",
            "percentunit",
            [Q(dead_share_rate, legend(n.L_CAUSE))],
        ),
        ts(
            "User turns and dead turns",
            "User turns (a user message committed to the conversation) and dead turns by "
            "cause, per second.",
            "ops",
            [
                Q(rate(turns), "user turns"),
                Q(rate(dead, by=(n.L_CAUSE,)), legend(n.L_CAUSE, prefix="dead: ")),
            ],
            span=24,
        ),
    ]
    latency_panels = [
        latency(
            "Time to first speech",
            n.TIME_TO_FIRST_SPEECH,
            "From the AgentSession.start() call to the agent's first speaking state: what a "
            "caller waits for a greeting. p50, p90 and p99 over the rate interval.",
        ),
        latency(
            "Response latency",
            n.RESPONSE_LATENCY,
            "From a user turn opening to the agent speaking, for answered turns. p50, p90 and "
            "p99 over the rate interval. Turns that are never answered are not in it: see "
            "dead turns and unanswered turns.",
        ),
        latency(
            "Session duration",
            n.SESSION_DURATION,
            "From the start() call to close, for sessions closed in the rate interval. p50, "
            "p90 and p99.",
        ),
    ]
    ids = _Ids()
    return _with(
        _base(
            OVERVIEW_UID,
            OVERVIEW_TITLE,
            "LiveKit Agents voice sessions as otel-agents sees them: sessions, silent "
            "sessions, dead and unanswered turns, latency, and the otel-agents alerts firing.",
        ),
        ids,
        [
            ("Sessions", sessions),
            ("Silent sessions", silent_sessions),
            ("Turns", turn_panels),
            ("Latency", latency_panels),
        ],
    )


# --- LiveKit Agents / Errors and quota ----------------------------------------------------------


def errors() -> db.Dashboard:
    failures = n.ATTEMPT_FAILURES
    quota = n.QUOTA_ERRORS
    terminal = n.TERMINAL_ERRORS
    masked = n.MASKED_FAILURES
    requests = n.REQUESTS
    C, P, E, R = n.L_COMPONENT, n.L_PROVIDER, n.L_ERROR_CLASS, n.L_ROOT_CAUSE
    FIRST = n.L_FIRST_ROOT_CAUSE
    failed = f'{n.L_OUTCOME}="failed"'
    link_help = (
        " Click a series for its otel_agents.attempt_failed spans in Tempo (the root cause "
        "message is on the span)."
    )

    def by_labels(title: str, text: str, labels: Sequence[str]) -> timeseries.Panel:
        return ts(
            title,
            text + link_help,
            "ops",
            [Q(rate(failures, by=labels), legend(*labels))],
            links=[trace_link(traceql(*label_conditions(labels)))],
        )

    totals = [
        single_stat(
            "Failed attempts",
            "Failed provider attempts in the time range (every retry counts), all components.",
            "short",
            [Q(total(failures), "failed attempts", instant=True)],
            span=4,
        ),
        single_stat(
            "Failed requests",
            "Provider requests whose retries ran out in the time range: what the session saw fail.",
            "short",
            [Q(total(requests, failed), "failed requests", instant=True)],
            span=4,
        ),
        single_stat(
            "Request failure ratio",
            "Failed requests divided by all requests in the time range, all providers. Orange "
            "from 5%, red from 20% (no alert: the silent-session and dead-turn alerts page on "
            "what callers feel).",
            "percentunit",
            [Q(f"{total(requests, failed)} / {total(requests)}", "failed", instant=True)],
            steps=FAILURE_STEPS,
            span=4,
        ),
        single_stat(
            "Terminal quota errors",
            "LiveKit Inference quota errors that will not recover without operator action "
            "(credits exhausted: MaxGatewayCredits, MaxBargeInRequests) in the time range. Red "
            "from 1, like the critical LiveKitAgentsCreditsExhausted alert: top up the account.",
            "short",
            [Q(total(quota, f'{n.L_TERMINAL}="true"'), "terminal quota errors", instant=True)],
            steps=RED_FROM_ONE,
            span=4,
        ),
        single_stat(
            "Terminal errors",
            "Errors that will not recover without operator action (exhausted credits or "
            "billing, bad credentials) in the time range, quota included. Red from 1: "
            "LiveKitAgentsCreditsExhausted or LiveKitAgentsTerminalErrors (critical) fires.",
            "short",
            [Q(total(terminal), "terminal errors", instant=True)],
            steps=RED_FROM_ONE,
            span=4,
        ),
        single_stat(
            "Masked failures",
            "Failed requests whose final root cause differs from their first attempt's in the "
            "time range: the retry loop hid the real cause. Orange from 1, like the "
            "LiveKitAgentsMaskedRetryFailures alert (warning).",
            "short",
            [Q(total(masked), "masked failures", instant=True)],
            steps=ORANGE_FROM_ONE,
            span=4,
        ),
    ]
    attempts = [
        by_labels(
            "Failed attempts by component",
            "Failed provider attempts per second (every retry counts), by component: llm, "
            "stt, tts, realtime, interruption.",
            (C,),
        ),
        by_labels(
            "Failed attempts by provider",
            "Failed attempts per second by component and provider (the model's provider "
            "name; at most 32 per process, the rest as other).",
            (C, P),
        ),
        by_labels(
            "Failed attempts by error class",
            "Failed attempts per second by component and error class: quota_exhausted, "
            "rate_limited, auth, bad_request, server_error, timeout, connection, cancelled, "
            "internal, unknown.",
            (C, E),
        ),
        by_labels(
            "Failed attempts by root cause",
            "Failed attempts per second by component and root cause: the class of the deepest "
            "exception in the chain, not livekit's wrapper error (at most 32 per process, the "
            "rest as other).",
            (C, R),
        ),
    ]
    masked_labels = (C, FIRST, R)
    masked_panels = [
        ts(
            "Masked failures: first vs final root cause",
            "Failed requests per second whose final root cause (root_cause) differs from "
            "their first attempt's (first_root_cause): the retry loop's last error hides "
            "what really went wrong first." + link_help,
            "ops",
            [
                Q(
                    rate(masked, by=masked_labels),
                    "{{component}}: {{first_root_cause}} hidden by {{root_cause}}",
                )
            ],
            links=[
                trace_link(traceql(f"span.{n.A_MASKED}=true", *label_conditions(masked_labels)))
            ],
        ),
        instant_table(
            "Masked failures in the time range",
            "One row per component, first root cause and final root cause, with the number "
            "of failed requests in the time range. Read the first root cause: it is what to "
            "fix. Click a row for its spans in Tempo.",
            "short",
            Q(total(masked, by=masked_labels), "", table=True),
            exclude=("Time",),
            rename={"Value": "failed requests"},
            links=[
                trace_link(
                    traceql(
                        f"span.{n.A_MASKED}=true",
                        *label_conditions(masked_labels, ref="__data.fields"),
                    ),
                    title="Failed attempts of this row in Tempo",
                )
            ],
        ),
    ]
    quota_panels = [
        ts(
            "Quota errors by type and category",
            "LiveKit Inference quota errors (inference_quota_exceeded) per second by quota "
            "type (llm, stt, tts, bargein) and gateway category: MaxGatewayCredits and "
            "MaxBargeInRequests mean credits are exhausted; MaxConcurrent*, *Rpm, *Tpm and "
            "MaxBargeInRPM are rate limits." + link_help,
            "ops",
            [
                Q(
                    rate(quota, by=(n.L_QUOTA_TYPE, n.L_QUOTA_CATEGORY)),
                    legend(n.L_QUOTA_TYPE, n.L_QUOTA_CATEGORY),
                )
            ],
            links=[trace_link(traceql(*label_conditions((n.L_QUOTA_TYPE, n.L_QUOTA_CATEGORY))))],
        ),
        ts(
            "Quota errors: terminal vs transient",
            "Quota errors per second by component and whether they are terminal "
            "(terminal=true: credits exhausted, will not recover without operator action) or "
            "transient (terminal=false: rate limits, recover on their own)." + link_help,
            "ops",
            [
                Q(
                    rate(quota, by=(C, n.L_TERMINAL)),
                    "{{component}} terminal={{terminal}}",
                )
            ],
            links=[
                trace_link(
                    traceql(
                        *label_conditions((C, n.L_TERMINAL)),
                        f'span.{n.A_QUOTA_CATEGORY}=~".+"',
                    )
                )
            ],
        ),
    ]
    terminal_panels = [
        ts(
            "Terminal errors by component, provider and error class",
            "Errors per second that will not recover without operator action, by component, "
            "provider and error class: quota_exhausted (credits or billing exhausted), auth "
            "(bad or revoked key), and others." + link_help,
            "ops",
            [Q(rate(terminal, by=(C, P, E)), legend(C, P, E))],
            links=[trace_link(traceql(f"span.{n.A_TERMINAL}=true", *label_conditions((C, P, E))))],
        ),
        ts(
            "Terminal errors other than quota",
            "Terminal errors per second whose error class is not quota_exhausted: bad or "
            "revoked credentials (auth, HTTP 401/403) and errors flagged terminal by the "
            "provider. Direct providers' billing exhaustion (OpenAI insufficient_quota, "
            "Anthropic credit balance) is quota_exhausted and shows on the left." + link_help,
            "ops",
            [
                Q(
                    rate(terminal, f'{E}!="quota_exhausted"', by=(C, P, E)),
                    legend(C, P, E),
                )
            ],
            links=[trace_link(traceql(f"span.{n.A_TERMINAL}=true", *label_conditions((C, P, E))))],
        ),
    ]
    failed_ratio = (
        f"({rate(requests, failed, by=(C, P))} or {rate(requests, by=(C, P))} * 0) "
        f"/ {rate(requests, by=(C, P))}"
    )
    request_panels = [
        ts(
            "Requests by provider and outcome",
            "Provider requests per second by component, provider and outcome: ok (a "
            "successful request's metrics report) or failed (its retries ran out).",
            "reqps",
            [Q(rate(requests, by=(C, P, n.L_OUTCOME)), legend(C, P, n.L_OUTCOME))],
        ),
        ts(
            "Request failure ratio by provider",
            "Failed requests divided by all requests, per component and provider (0 when a "
            "provider had no failure). A failed request is one whose retries ran out." + link_help,
            "percentunit",
            [Q(failed_ratio, legend(C, P))],
            links=[trace_link(traceql(f"span.{n.A_FINAL}=true", *label_conditions((C, P))))],
        ),
    ]
    internal_panels = [
        ts(
            "Unhandled task errors by root cause",
            "asyncio task or future exceptions never retrieved, on a session's event loop, "
            "per second by root cause (an orphan task's error that hid the real one). The "
            "session span carries an otel_agents.unhandled_task_error event for each.",
            "ops",
            [Q(rate(n.UNHANDLED_TASK_ERRORS, by=(R,)), legend(R))],
        ),
        ts(
            "otel-agents internal errors",
            "Failures inside otel-agents' own hooks per second, by where they happened; each "
            "was contained and the agent carried on, but the record it was writing may be "
            "incomplete. Report them.",
            "ops",
            [Q(rate(n.INTERNAL_ERRORS, by=(n.L_WHERE,)), legend(n.L_WHERE))],
        ),
    ]
    select = ", ".join(
        f"span.{a}"
        for a in (
            n.A_COMPONENT,
            n.A_PROVIDER,
            n.A_ATTEMPT,
            n.A_FINAL,
            n.A_ERROR_CLASS,
            n.A_ROOT_CAUSE_TYPE,
            n.A_ROOT_CAUSE_MESSAGE,
            n.A_FIRST_ROOT_CAUSE_TYPE,
            n.A_MASKED,
            n.A_TERMINAL,
            n.A_QUOTA_CATEGORY,
            n.A_STATUS_CODE,
        )
    )
    traces_panel = (
        table.Panel()
        .title("Failed attempts in Tempo")
        .description(
            "The latest otel_agents.attempt_failed spans in the time range (one per failed "
            "attempt), from the Tempo datasource, with their component, provider, error class, "
            "root cause and its redacted message, first root cause, masked and terminal "
            "flags, quota category and HTTP status. Click a trace id to open the whole trace: "
            "livekit's request spans and the session's otel_agents.session span."
        )
        .datasource(TEMPO)
        .unit("short")
        .span(24)
        .height(10)
        .thresholds(_thresholds(GREEN_ONLY))
        .targets(
            [
                tempo.TempoQuery()
                .datasource(TEMPO)
                .ref_id("A")
                .query_type("traceql")
                .query(f"{ATTEMPT_SPANS} | select({select})")
                .limit(TRACES_LIMIT)
                .table_type(SearchTableType.SPANS)
            ]
        )
        .links(
            [
                db.DashboardLink("All failed attempts in Explore")
                .type(dm.DashboardLinkType.LINK)
                .url(explore_url(ATTEMPT_SPANS))
                .target_blank(True)
            ]
        )
    )
    ids = _Ids()
    return _with(
        _base(
            ERRORS_UID,
            ERRORS_TITLE,
            "Every failed provider attempt of LiveKit Agents as otel-agents records it: root "
            "causes, masked retries, LiveKit Inference quota errors, terminal errors, "
            "per-provider failure ratios and otel-agents' own errors, with links to the "
            "failed attempts' spans in Tempo.",
            tempo_variable=True,
        ),
        ids,
        [
            ("Totals in the time range", totals),
            ("Failed attempts per second", attempts),
            ("Masked retries", masked_panels),
            ("LiveKit Inference quota", quota_panels),
            ("Terminal errors per second", terminal_panels),
            ("Requests per provider", request_panels),
            ("Unhandled task errors and otel-agents internal errors", internal_panels),
            ("Traces", [traces_panel]),
        ],
    )


# --- output -------------------------------------------------------------------------------------

#: file name -> builder of every dashboard
DASHBOARDS: Final = {"overview.json": overview, "errors.json": errors}


def to_json(builder: db.Dashboard) -> dict[str, Any]:
    """The dashboard as plain JSON data."""
    data: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    return data


def render(builder: db.Dashboard) -> str:
    """The committed form: sorted keys, 2-space indent, trailing newline."""
    return json.dumps(to_json(builder), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def generated() -> dict[Path, str]:
    """``{path: text}`` of every dashboard, as ``main`` writes them."""
    return {HERE / name: render(build()) for name, build in DASHBOARDS.items()}


def load(name: str) -> dict[str, Any]:
    """A committed dashboard, e.g. ``load("overview.json")``."""
    data: dict[str, Any] = json.loads((HERE / name).read_text(encoding="utf-8"))
    return data


# --- what the tests use ------------------------------------------------------------------------


def panels(dashboard_json: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that is not a row, collapsed rows' panels included, in order."""
    for panel in dashboard_json.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def _is_prometheus(panel: dict[str, Any], target: dict[str, Any]) -> bool:
    datasource = target.get("datasource") or panel.get("datasource") or {}
    return datasource.get("type") == "prometheus"


def queries(dashboard_json: dict[str, Any]) -> list[tuple[str, str]]:
    """``(panel title, expr)`` of every Prometheus target of a dashboard, in panel order."""
    return [
        (panel["title"], target["expr"])
        for panel in panels(dashboard_json)
        for target in panel.get("targets", [])
        if _is_prometheus(panel, target)
    ]


_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")


def substitute_variables(expr: str, values: dict[str, str] | None = None) -> str:
    """``expr`` with its Grafana variables replaced by ``values`` (default
    :data:`TEST_VALUES`), so it runs on a plain Prometheus. An unknown variable raises
    ``KeyError`` naming it."""
    table_ = TEST_VALUES if values is None else values

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in table_:
            raise KeyError(f"no value for Grafana variable ${name} in {expr!r}")
        return table_[name]

    return _VARIABLE.sub(replace, expr)


def main(argv: Sequence[str] | None = None) -> int:
    for path, text in generated().items():
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
