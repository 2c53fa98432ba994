"""Every metric a dashboard query or an alert rule may name, and a finder for the names used.

The catalogue is built from ``otel_agents.names.METRICS`` (where every metric is declared once),
so a query naming a metric that does not exist, or a histogram series that is not exported,
fails a test instead of an on-call engineer's night.
"""

from __future__ import annotations

import re
from typing import Final

from otel_agents import names as n

#: series Prometheus makes itself, which queries may use alongside ours
PROMETHEUS_SERIES: Final = frozenset({"ALERTS", "ALERTS_FOR_STATE", "up", "scrape_samples_scraped"})

_NAME = re.compile(r"\b(otel_agents_[a-zA-Z0-9_]+)\b")


def exported_series() -> frozenset[str]:
    """Every sample name the otel-agents exposition can contain (counters with ``_total``,
    histograms with ``_bucket``, ``_sum`` and ``_count``), the sidecar's own included."""
    names: set[str] = set()
    for spec in n.METRICS:
        if spec.kind == "histogram":
            names.update(spec.name + suffix for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(spec.name)
    names.update(
        getattr(n, attr)
        for attr in dir(n)
        if attr.startswith("SIDECAR_") and getattr(n, attr).startswith(n.PREFIX)
    )
    return frozenset(names)


def metrics_in(expr: str) -> set[str]:
    """The otel-agents metric names a PromQL expression mentions."""
    return set(_NAME.findall(expr))
