"""The PromQL of a dashboard's JSON, for the tests: every Prometheus query of its panels
(:func:`queries`), made runnable on a plain Prometheus (:func:`substitute_variables`)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, Final

#: values that make a dashboard query runnable on a plain Prometheus (``substitute_variables``)
TEST_VALUES: Final = {
    "job": ".*",
    "instance": ".*",
    "__rate_interval": "1m",
    "__range": "5m",
    "__interval": "15s",
}

_VARIABLE: Final = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")


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


def substitute_variables(expr: str, values: dict[str, str] | None = None) -> str:
    """``expr`` with its Grafana variables replaced by ``values`` (default
    :data:`TEST_VALUES`), so it runs on a plain Prometheus. An unknown variable raises
    ``KeyError`` naming it."""
    table = TEST_VALUES if values is None else values

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in table:
            raise KeyError(f"no value for Grafana variable ${name} in {expr!r}")
        return table[name]

    return _VARIABLE.sub(replace, expr)
