"""Writes ``docs/reference.md`` from ``otel_agents.names``: ``python docs/reference.py``
(``make docs``). ``tests/test_docs.py`` fails when the committed file is stale."""

from __future__ import annotations

import sys
from pathlib import Path

from otel_agents import names as n

PATH = Path(__file__).with_name("reference.md")


#: how each gauge combines the values of a worker's processes (prometheus_client's multiprocess
#: modes)
_GAUGE_MODES = {
    "livesum": "sum over live processes",
    "max": "the largest of any process",
    "mostrecent": "the most recent value of any process",
}


def _labels(spec: n.Metric) -> str:
    parts = []
    for label in spec.labels:
        if label.values is None:
            bound = f"open: {n.OPEN_LABEL_LIMIT} values per process, then `other`"
        else:
            bound = ", ".join(f"`{v}`" for v in label.values) + ", else `other`"
        parts.append(f"`{label.name}` ({bound})")
    return "; ".join(parts) or "none"


def render() -> str:
    lines = [
        "# Reference: metrics, spans and log records",
        "",
        "Generated from `otel_agents.names` by `docs/reference.py` (`make docs`): edit the names",
        "module, not this file. Dashboards, alert rules and users' queries depend on these names;",
        "`tests/test_names.py` freezes them. Label values are closed sets or bounded per process:",
        "no label is ever built from free text, ids, rooms or messages (those go on spans).",
        "",
        "## Prometheus metrics",
        "",
        "The OpenTelemetry instrument of each (when an OTLP endpoint is set) has the dotted name",
        "without `_total`, the same attributes and, for histograms, the same bucket boundaries.",
        "",
        "| metric | type | labels | series budget | help |",
        "| --- | --- | --- | ---: | --- |",
    ]
    for spec in n.METRICS:
        kind = spec.kind + (
            f" ({_GAUGE_MODES[spec.multiprocess_mode]})" if spec.kind == "gauge" else ""
        )
        budget = str(spec.budget) if spec.kind == "counter" else ""
        lines.append(f"| `{spec.name}` | {kind} | {_labels(spec)} | {budget} | {spec.help} |")
    lines += [
        "",
        "Histogram buckets (seconds): voice latencies "
        + ", ".join(f"{b:g}" for b in n.VOICE_BUCKETS)
        + "; session durations "
        + ", ".join(f"{b:g}" for b in n.DURATION_BUCKETS)
        + ".",
        "",
        "## Spans",
        "",
    ]
    for span in n.SPANS:
        lines += [
            f"### `{span.name}`",
            "",
            span.help,
            "",
            "| attribute | meaning |",
            "| --- | --- |",
        ]
        lines += [f"| `{a}` | {n.ATTRIBUTE_HELP[a]} |" for a in span.attributes]
        lines.append("")
    lines += [
        "## Log records",
        "",
        f"On the standard library logger `{n.LOGGER_NAME}`, the fields as record attributes"
        " (`extra`); `trace_id` and `span_id` tie each record to its span.",
        "",
        "| message | level | fields |",
        "| --- | --- | --- |",
    ]
    for message, level, fields in n.LOG_RECORDS:
        lines.append(f"| `{message}` | {level} | {', '.join(f'`{f}`' for f in fields)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    PATH.write_text(render())
    sys.stdout.write(f"wrote {PATH}\n")
