"""Links from a Prometheus series of failed attempts to its ``otel_agents.attempt_failed`` spans
in Tempo: a TraceQL query matching the series' labels, opened in Grafana Explore."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Final
from urllib.parse import quote

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import dashboard as dm

from otel_agents import names as n

#: Prometheus label -> attribute of the ``otel_agents.attempt_failed`` span, for trace links.
#: Quoted: string attributes; unquoted: boolean ones. Each attribute holds its label's value
#: exactly (``otel_agents.provider``, not ``gen_ai.provider.name``, which is the GenAI
#: registry's spelling: ``tests/test_conventions.py`` checks it on real spans).
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
