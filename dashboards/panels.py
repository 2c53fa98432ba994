"""The panel library of the dashboards: PromQL helpers, panel builders and the dashboard frame.

Conventions every dashboard follows: stable uids; a ``datasource`` variable (Prometheus) used by
every panel and target, never a hard-coded datasource uid; ``job`` and ``instance`` variables
filtering every query; every query aggregated across instances (a fleet is many); counters only
inside ``rate()`` over ``$__rate_interval``, or counted over the time range (``$__range``) by the
alerts' own expression (:func:`count`) in the stat and table panels; every panel with a title, a
description and a unit; every stat with its text for no value.

Per-second panels use ``rate()``. It is right for the counters every process exports at 0 from
the start (``otel_agents._export.build``: unlabelled, or a few closed label sets); for a series
born at its first increment (a provider, a root cause...) it shows nothing of that first
increment: the totals above them count it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from otel_agents import names as n
from otel_agents._export.build import ZEROED

from . import rules
from .config import DEFAULTS, TAGS

PROMETHEUS: Final = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
TEMPO: Final = dm.DataSourceRef(type_val="tempo", uid="${tempo}")

#: the matchers every otel-agents selector carries
SCOPE: Final = 'job=~"$job", instance=~"$instance"'
RATE: Final = "$__rate_interval"
RANGE: Final = "$__range"
#: the rules' configuration with the dashboards' filters: what the birth-aware counts read
BOARD: Final = replace(DEFAULTS, selector=SCOPE)

#: Titles of the panels whose queries may legitimately return no series at all: failures of
#: otel-agents itself, never-retrieved task exceptions, terminal errors other than quota,
#: fallback switches and exhausted fallbacks (and agents without a FallbackAdapter), replies the
#: caller never heard, and firing alerts, none of which a healthy system produces. "May", not
#: "must": the demo's ``bad-key`` scenario does produce a terminal auth error, and its faults can
#: fire alerts. Each panel says so in its description. Every other panel returns data against
#: the demo.
EMPTY_WHEN_HEALTHY: Final = frozenset(
    {
        "Alerts firing",
        "Terminal errors other than quota",
        "Unhandled task errors by root cause",
        "otel-agents internal errors",
        "Fallback switches",
        "Fallbacks exhausted",
        "Unheard replies by cause",
    }
)
EMPTY_NOTE: Final = " Empty when healthy: no series at all means none happened in the time range."
#: what a per-second panel of a counter whose series are born at their first increment says
BIRTH_NOTE: Final = (
    " A series' first increment is not in its rate (a new series has no earlier sample to rate "
    "from): the totals count it."
)
_RATED: Final = re.compile(r"\brate\((otel_agents_\w+_total)\{")

#: threshold steps of a panel: ``(from value, colour)``, the first from ``None``
Steps = Sequence[tuple[float | None, str]]
GREEN_ONLY: Final = ((None, "green"),)
RED_FROM_ONE: Final = ((None, "green"), (1.0, "red"))
ORANGE_FROM_ONE: Final = ((None, "green"), (1.0, "orange"))


# --- PromQL -------------------------------------------------------------------------------------


def sel(metric: str, *matchers: str) -> str:
    """``metric{job=~"$job", instance=~"$instance", matchers...}``."""
    return f"{metric}{{{', '.join((SCOPE, *matchers))}}}"


def _sum(labels: Sequence[str]) -> str:
    return f"sum by ({', '.join(labels)}) " if labels else "sum"


def rate(metric: str, *matchers: str, by: Sequence[str] = ()) -> str:
    """``sum by (labels) (rate(metric{...}[$__rate_interval]))``: events per second."""
    return f"{_sum(by)}(rate({sel(metric, *matchers)}[{RATE}]))"


def count(metric: str, *matchers: str, by: Sequence[str] = ()) -> str:
    """Events of the counter ``metric`` in the time range, summed by ``by``: what the alerts
    count, with their expression (``rules.new_in``): a series' first increment included (a
    labelled series is born at 1 or more, and ``increase()`` never sees that step), a fall or a
    one-scrape spike never read as a reset, whole events (no extrapolated "1.053 errors").

    That expression never replays a history Prometheus did not watch: a target first scraped
    inside the range (a Prometheus younger than the range, a range longer than its retention)
    has no count there, so for such a series the panel shows what ``increase()`` saw of it."""
    series = sel(metric, *matchers)
    counted = rules.new_in(BOARD, series, RANGE)
    fallback = "\n".join(
        [
            "# a target first scraped inside the range: what increase() saw of it",
            f"increase({series}[{RANGE}])",
        ]
    )
    return f"{_sum(by)}(\n{rules.indent(counted)}\nor\n{rules.indent(fallback)}\n)"


def or_zero(expr: str) -> str:
    """``expr``, or 0 when it has no series (nothing counted yet): for the numerator of a
    share, so a healthy share reads 0, not "No data"."""
    return f"({expr} or on () vector(0))"


def at_least(expr: str, least: int) -> str:
    """``expr`` where it is at least ``least``: a share's denominator with the minimum-traffic
    guard of its alert (below it the share has no value, and the stat says why)."""
    return f"({expr} >= {least})"


def quantile(q: float, histogram: str) -> str:
    bucket = sel(f"{histogram}_bucket")
    return f"histogram_quantile({q}, sum by (le) (rate({bucket}[{RATE}])))"


def top_bucket(histogram: str) -> float:
    """The largest finite bucket boundary of an otel-agents histogram."""
    (spec,) = [m for m in n.METRICS if m.name == histogram]
    return spec.buckets[-1]


def capped(histogram: str) -> str:
    """What a quantile panel of ``histogram`` says about its ceiling."""
    top = top_bucket(histogram)
    return (
        f" The quantiles cap at the top bucket, {top:g} s: histogram_quantile cannot see past it, "
        f"so a line flat at {top:g} s means {top:g} s or more."
    )


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


# --- panels -------------------------------------------------------------------------------------


class Ids:
    """Panel ids, in build order: stable as long as the layout is."""

    def __init__(self) -> None:
        self.last = 0

    def next(self) -> int:
        self.last += 1
        return self.last


def _description(title: str, text: str, targets: Sequence[Q] = ()) -> str:
    born = any(m not in ZEROED for q in targets for m in _RATED.findall(q.expr))
    return text + (BIRTH_NOTE if born else "") + (EMPTY_NOTE if title in EMPTY_WHEN_HEALTHY else "")


def thresholds(steps: Steps) -> db.ThresholdsConfig:
    return (
        db.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=value, color=color) for value, color in steps])
    )


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
        .description(_description(title, description, targets))
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
        .thresholds(thresholds(GREEN_ONLY))
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
    no_value: str,
    steps: Steps = GREEN_ONLY,
    graph: bool = False,
    span: int = 6,
    height: int = 8,
) -> stat.Panel:
    """A stat; ``no_value``: what it shows when its query returns nothing (a share below its
    minimum traffic, a quota a provider never reported...), never Grafana's bare "No data"."""
    return (
        stat.Panel()
        .title(title)
        .description(_description(title, description))
        .datasource(PROMETHEUS)
        .unit(unit)
        .span(span)
        .height(height)
        .thresholds(thresholds(steps))
        .color_mode(cm.BigValueColorMode.VALUE)
        .graph_mode(cm.BigValueGraphMode.AREA if graph else cm.BigValueGraphMode.NONE)
        .text_mode(cm.BigValueTextMode.AUTO)
        .no_value(no_value)
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
        .thresholds(thresholds(GREEN_ONLY))
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


# --- the dashboard frame ------------------------------------------------------------------------


def with_rows(builder: db.Dashboard, rows: Sequence[tuple[str, Sequence[Any]]]) -> db.Dashboard:
    """``builder`` with ``rows`` of ``(title, panels)``, ids given in order from 1."""
    ids = Ids()
    for title, panels in rows:
        builder = builder.with_row(db.Row(title).id(ids.next()))
        for panel in panels:
            builder = builder.with_panel(panel.id(ids.next()))
    return builder


def dashboard(
    uid: str, title: str, description: str, *, tempo_variable: bool = False
) -> db.Dashboard:
    """An empty dashboard with everything every otel-agents dashboard has: tags, time range and
    refresh, the cross-dashboard link, the data source pickers and the job and instance
    filters."""
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
