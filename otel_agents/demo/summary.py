"""What the demo prints: per scenario, what otel-agents recorded, read back from its own output.

The per-scenario part comes from the spans otel-agents exported (kept by :class:`SpanCollector`,
a span processor beside the file exporter); the totals come from the demo's own ``/metrics``
endpoint, scraped over HTTP. The summary shows what a backend would receive, nothing else.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from prometheus_client.parser import text_string_to_metric_families

from .. import names as n

__all__ = ["ScenarioReport", "SpanCollector", "format_report", "metric_totals"]


@dataclass
class ScenarioReport:
    """otel-agents' records of one scenario: its attempt spans and its session span."""

    name: str
    summary: str = ""
    attempts: list[Mapping[str, Any]] = field(default_factory=list)
    sessions: list[Mapping[str, Any]] = field(default_factory=list)


class SpanCollector(SpanProcessor):
    """Keeps the attributes of otel-agents' spans, grouped by the demo scenario of their trace.

    Bounded: only otel-agents' own spans of the scenarios still being reported are kept, and
    :meth:`take` hands them over and forgets them.
    """

    _KEPT = frozenset({n.SPAN_ATTEMPT_FAILED, n.SPAN_SESSION})

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_trace: dict[int, list[tuple[str, Mapping[str, Any]]]] = {}

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if span.name not in self._KEPT or span.context is None:
            return
        with self._lock:
            self._by_trace.setdefault(span.context.trace_id, []).append(
                (span.name, dict(span.attributes or {}))
            )

    def take(self, trace_id: int, name: str, summary: str) -> ScenarioReport:
        with self._lock:
            spans = self._by_trace.pop(trace_id, [])
        report = ScenarioReport(name, summary)
        for span_name, attributes in spans:
            if span_name == n.SPAN_ATTEMPT_FAILED:
                report.attempts.append(attributes)
            else:
                report.sessions.append(attributes)
        return report

    def shutdown(self) -> None:
        with self._lock:
            self._by_trace.clear()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


# --- per scenario ---------------------------------------------------------------------------


def _attempt_groups(
    attempts: Iterable[Mapping[str, Any]],
) -> list[tuple[tuple[Any, ...], int, int]]:
    """Identical attempts folded into (signature, count, finals), in order of first sight."""
    counts: Counter[tuple[Any, ...]] = Counter()
    finals: Counter[tuple[Any, ...]] = Counter()
    for a in attempts:
        key = (
            a.get(n.A_COMPONENT),
            a.get(n.A_ERROR_CLASS),
            a.get(n.A_ROOT_CAUSE_TYPE),
            a.get(n.A_FIRST_ROOT_CAUSE_TYPE) if a.get(n.A_MASKED) else None,
            a.get(n.A_QUOTA_CATEGORY),
            bool(a.get(n.A_TERMINAL)),
        )
        counts[key] += 1
        finals[key] += bool(a.get(n.A_FINAL))
    return [(key, count, finals[key]) for key, count in counts.items()]


def _attempt_line(key: tuple[Any, ...], count: int, finals: int) -> str:
    component, error_class, root, masked_first, category, terminal = key
    parts = [f"{count:>2} x {component}", f"{error_class:<15}", f"{root:<30}"]
    if category:
        parts.append(f"quota {category} ({'TERMINAL' if terminal else 'transient'})")
    elif terminal:
        parts.append("TERMINAL")
    if masked_first:
        parts.append(f"hides the first cause: {masked_first}")
    if finals:
        parts.append(f"<- {finals} request{'s' if finals > 1 else ''} failed here")
    return "  ".join(parts).rstrip()


def _session_line(s: Mapping[str, Any]) -> str:
    turns = int(s.get(n.S_USER_TURNS, 0))
    answered = int(s.get(n.S_ANSWERED_TURNS, 0))
    dead = int(s.get(n.S_DEAD_TURNS, 0))
    parts = [f"closed {s.get(n.S_CLOSE_REASON, '?')}"]
    ttfs = s.get(n.S_TIME_TO_FIRST_SPEECH)
    if s.get(n.S_SILENT):
        parts.append("SILENT: the user spoke, the caller never heard the agent")
        parts.append(f"cause {s.get(n.S_SILENCE_CAUSE, n.UNKNOWN)}")
    elif ttfs is not None:
        parts.append(f"first speech after {float(ttfs):.2f} s")
    counts = f"{turns} turn{'s' if turns != 1 else ''}: {answered} answered"
    if dead:
        counts += f", {dead} dead"
    unanswered = int(s.get(n.S_UNANSWERED_TURNS, 0))
    if unanswered:
        counts += f", {unanswered} waited past the silence timeout"
    parts.append(counts)
    if s.get(n.S_TERMINAL_ERROR):
        parts.append("terminal error")
    return " | ".join(parts)


def format_scenario(report: ScenarioReport) -> list[str]:
    lines = [f"{report.name}: {report.summary}"]
    groups = _attempt_groups(report.attempts)
    if not groups:
        lines.append("    attempts  none failed")
    for i, (key, count, finals) in enumerate(groups):
        lines.append(
            ("    attempts  " if i == 0 else "              ") + _attempt_line(key, count, finals)
        )
    for session in report.sessions:
        lines.append("    session   " + _session_line(session))
    if not report.sessions:
        lines.append("    session   (no session record)")
    return lines


# --- totals from /metrics -------------------------------------------------------------------


def metric_totals(exposition: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """``{sample name: {sorted labels: value}}`` of every otel-agents sample in a scrape."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name.startswith(n.PREFIX):
                labels = tuple(sorted(sample.labels.items()))
                out.setdefault(sample.name, {})[labels] = sample.value
    return out


def _sum(
    totals: Mapping[str, Mapping[tuple[tuple[str, str], ...], float]], name: str, **match: str
) -> int:
    return int(
        sum(
            v
            for labels, v in totals.get(name, {}).items()
            if all(dict(labels).get(k) == want for k, want in match.items())
        )
    )


def format_totals(totals: Mapping[str, Mapping[tuple[tuple[str, str], ...], float]]) -> list[str]:
    rows = [
        (n.ATTEMPT_FAILURES, _sum(totals, n.ATTEMPT_FAILURES), ""),
        (
            n.QUOTA_ERRORS,
            _sum(totals, n.QUOTA_ERRORS),
            f"{_sum(totals, n.QUOTA_ERRORS, terminal='true')} terminal",
        ),
        (n.TERMINAL_ERRORS, _sum(totals, n.TERMINAL_ERRORS), ""),
        (n.MASKED_FAILURES, _sum(totals, n.MASKED_FAILURES), ""),
        (
            n.REQUESTS,
            _sum(totals, n.REQUESTS),
            f"{_sum(totals, n.REQUESTS, outcome='failed')} failed",
        ),
        (
            n.SESSIONS_CLOSED,
            _sum(totals, n.SESSIONS_CLOSED),
            f"{_sum(totals, n.SILENT_SESSIONS)} silent",
        ),
        (n.USER_TURNS, _sum(totals, n.USER_TURNS), ""),
        (
            n.DEAD_TURNS,
            _sum(totals, n.DEAD_TURNS),
            f"{_sum(totals, n.DEAD_TURNS, cause='error')} error, "
            f"{_sum(totals, n.DEAD_TURNS, cause='empty')} empty",
        ),
        (
            n.UNHEARD_SPEECH,
            _sum(totals, n.UNHEARD_SPEECH),
            f"{_sum(totals, n.UNHEARD_SPEECH, cause='never_played')} never played",
        ),
    ]
    width = max(len(name) for name, _, _ in rows)
    return [f"    {name:<{width}}  {value:>4}  {note}".rstrip() for name, value, note in rows]


def format_report(
    reports: Sequence[ScenarioReport],
    totals: Mapping[str, Mapping[tuple[tuple[str, str], ...], float]] | None,
    where: Sequence[tuple[str, str]],
) -> str:
    lines = ["", "What otel-agents recorded, per scenario", ""]
    for report in reports:
        lines += format_scenario(report)
        lines.append("")
    if totals is not None:
        lines.append("Totals, as scraped from /metrics")
        lines += format_totals(totals)
        lines.append("")
    lines.append("Where to look")
    width = max(len(label) for label, _ in where)
    lines += [f"    {label:<{width}}  {value}" for label, value in where]
    return "\n".join(lines) + "\n"
