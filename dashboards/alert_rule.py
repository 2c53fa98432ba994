"""One alert of the rule file, as every alert of :mod:`dashboards.alerts` is built.

:func:`rule` gives an alert its ``severity`` label and its annotations (``summary``,
``description`` and the link to its runbook section); :func:`on` names the labels its vector
matches and aggregations keep. The alerts themselves are in :mod:`dashboards.alerts_calls` and
:mod:`dashboards.alerts_targets`.
"""

from __future__ import annotations

from typing import Any

from . import rules as r
from .config import RUNBOOK_URL, Config


def rule(
    name: str,
    expr: str,
    for_: str,
    severity: str,
    summary: str,
    description: str,
    keep_firing_for: str | None = None,
) -> dict[str, Any]:
    """The alert ``name`` as the rule file holds it (its keys in the committed order)."""
    alert: dict[str, Any] = {"alert": name, "expr": expr, "for": for_}
    if keep_firing_for is not None:
        alert["keep_firing_for"] = keep_firing_for
    alert["labels"] = {"severity": severity}
    alert["annotations"] = {
        "summary": summary,
        "description": description,
        "runbook_url": f"{RUNBOOK_URL}#{name.lower()}",
    }
    return alert


def on(cfg: Config, *labels: str) -> str:
    """The labels of an ``on (...)`` or ``by (...)``: the job, the group labels, then ``labels``."""
    return ", ".join(r.group_by(cfg, *labels))
