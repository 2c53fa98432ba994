"""The one configuration of the monitoring mixin, shared by the alert rules and the dashboards.

:class:`Config` holds every threshold, window and ``for`` duration of the rules, and the job
selector; the rule file is generated from one (``alerts.build_rules``), and the dashboards colour
their stat panels at the thresholds of :data:`DEFAULTS`, so a panel turns orange or red exactly
where the shipped alert fires. The names the rules, the dashboards and the runbook agree on (alert
names and severities, the runbook's address, the dashboards' uids, titles and tags) live here too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Final

# --- alerts ----------------------------------------------------------------------------------

#: what every alert name starts with (the Overview's "Alerts firing" panel selects on it)
ALERT_PREFIX: Final = "LiveKitAgents"
CREDITS_EXHAUSTED: Final = "LiveKitAgentsCreditsExhausted"
CREDITS_RUNNING_OUT: Final = "LiveKitAgentsCreditsRunningOut"
CREDITS_LOW: Final = "LiveKitAgentsCreditsLow"
TERMINAL_ERRORS: Final = "LiveKitAgentsTerminalErrors"
SILENT_SESSIONS: Final = "LiveKitAgentsSilentSessions"
UNANSWERED_TURNS: Final = "LiveKitAgentsUnansweredTurns"
DEAD_TURNS: Final = "LiveKitAgentsDeadTurns"
UNHEARD_SPEECH: Final = "LiveKitAgentsUnheardSpeech"
RATE_LIMITED: Final = "LiveKitAgentsRateLimited"
MASKED_RETRY_FAILURES: Final = "LiveKitAgentsMaskedRetryFailures"
METRICS_ABSENT: Final = "LiveKitAgentsMetricsAbsent"
TARGET_DOWN: Final = "LiveKitAgentsTargetDown"
INTERNAL_ERRORS: Final = "LiveKitAgentsInternalErrors"
SIDECAR_REAP_ERRORS: Final = "LiveKitAgentsSidecarReapErrors"
SIDECAR_REAPING_STALLED: Final = "LiveKitAgentsSidecarReapingStalled"
SIDECAR_RENDER_SLOW: Final = "LiveKitAgentsSidecarRenderSlow"
SIDECAR_QUARANTINED_FILES: Final = "LiveKitAgentsSidecarQuarantinedFiles"
#: every alert and its severities
ALERTS: Final[dict[str, tuple[str, ...]]] = {
    CREDITS_EXHAUSTED: ("critical",),
    CREDITS_RUNNING_OUT: ("critical",),
    CREDITS_LOW: ("warning",),
    TERMINAL_ERRORS: ("critical",),
    SILENT_SESSIONS: ("warning", "critical"),
    UNANSWERED_TURNS: ("warning",),
    DEAD_TURNS: ("warning",),
    UNHEARD_SPEECH: ("warning",),
    RATE_LIMITED: ("warning",),
    MASKED_RETRY_FAILURES: ("warning",),
    METRICS_ABSENT: ("warning",),
    TARGET_DOWN: ("warning",),
    INTERNAL_ERRORS: ("warning",),
    SIDECAR_REAP_ERRORS: ("warning",),
    SIDECAR_REAPING_STALLED: ("warning",),
    SIDECAR_RENDER_SLOW: ("warning",),
    SIDECAR_QUARANTINED_FILES: ("warning",),
}
#: the causes, and the symptoms they bring with them: while a cause fires for a job, the shipped
#: Alertmanager configuration mutes these symptoms of the same job (``exporters/alertmanager.yml``)
CAUSES: Final = (CREDITS_EXHAUSTED, TERMINAL_ERRORS)
SYMPTOMS: Final = (SILENT_SESSIONS, DEAD_TURNS, UNANSWERED_TURNS)
#: where the runbook lives; each alert links to its section (``#<alertname in lower case>``)
RUNBOOK_URL: Final = "https://github.com/otel-agents/otel-agents/blob/main/dashboards/runbook.md"

# --- dashboards ------------------------------------------------------------------------------

#: the Grafana release (major.minor) the dashboards are generated for: the version of the
#: grafana-foundation-sdk pinned in pyproject.toml, and the Grafana image docker-compose.yml runs
#: (tests/test_compose.py checks all three agree)
GRAFANA_VERSION: Final = "11.6"
#: every dashboard carries both; the header's dashboard links follow the first
TAGS: Final = ("livekit-agents", "otel-agents")
OVERVIEW_UID: Final = "livekit-agents-overview"
OVERVIEW_TITLE: Final = "LiveKit Agents / Overview"
ERRORS_UID: Final = "livekit-agents-errors"
ERRORS_TITLE: Final = "LiveKit Agents / Errors and quota"

# --- the thresholds --------------------------------------------------------------------------

_DURATION: Final = re.compile(r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_LABEL: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_UNITS: Final = (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


@dataclass(frozen=True)
class Config:
    """Every threshold, window and ``for`` duration of the rules, and the job selector.

    Durations are Prometheus durations (``30s``, ``5m``, ``1h30m``); ``for`` may be ``0s``.
    """

    #: label matchers selecting the scrape job of the workers (or sidecars): "which deployment"
    selector: str = 'job="livekit-agents"'
    #: labels every alert and recorded series keeps besides ``job`` (and ``instance`` where it
    #: has it), for a fleet: e.g. ``("cluster", "namespace")``. Empty: per job, as shipped
    group_labels: tuple[str, ...] = ()
    #: the scrape interval of the targets: a counter's gain counts once two consecutive scrapes
    #: show it, so a one-scrape spike never pages (``rules.new_in``)
    scrape_interval: str = "15s"
    #: the critical counter alerts (CreditsExhausted, TerminalErrors) keep firing this long
    #: after their last error: one incident while a balance or a key stays broken at low traffic
    critical_keep_firing_for: str = "30m"

    #: LiveKitAgentsCreditsExhausted: any terminal quota error in this window
    credits_window: str = "5m"
    credits_for: str = "0s"
    #: LiveKitAgentsCreditsRunningOut: at the burn rate over the burn window (``deriv``), the
    #: credits left run out within the horizon, for this long
    credits_burn_window: str = "1h"
    credits_horizon: str = "6h"
    credits_running_out_for: str = "15m"
    #: LiveKitAgentsCreditsLow: a credit quota's used share (used / limit) at least this, this long
    credits_low_ratio: float = 0.90
    credits_low_for: str = "5m"

    #: LiveKitAgentsTerminalErrors: any other terminal error in this window
    terminal_window: str = "5m"
    terminal_for: str = "0s"

    #: LiveKitAgentsSilentSessions: silent / closed sessions over the window
    silent_window: str = "15m"
    #: fewer sessions closed than this in the window page nobody
    silent_min_sessions: int = 10
    silent_warning_ratio: float = 0.10
    silent_warning_for: str = "10m"
    silent_critical_ratio: float = 0.30
    silent_critical_for: str = "5m"

    #: LiveKitAgentsUnansweredTurns: more user turns than this waiting unanswered, this long
    unanswered_turns_threshold: int = 0
    unanswered_for: str = "1m"

    #: LiveKitAgentsDeadTurns: dead / user turns over the window
    dead_window: str = "15m"
    #: fewer user turns than this in the window page nobody
    dead_min_turns: int = 20
    dead_ratio: float = 0.20
    dead_for: str = "10m"

    #: LiveKitAgentsUnheardSpeech: unheard replies / user turns over the window
    unheard_window: str = "15m"
    #: fewer user turns than this in the window page nobody
    unheard_min_turns: int = 20
    unheard_ratio: float = 0.10
    unheard_for: str = "10m"

    #: LiveKitAgentsUnansweredTurns: ... and at least this share of the active sessions
    unanswered_ratio: float = 0.10

    #: LiveKitAgentsRateLimited: transient quota errors per request of the component in the
    #: window at least this, with at least ``rate_limited_min_requests`` requests, this long
    rate_limited_window: str = "5m"
    rate_limited_ratio: float = 0.05
    rate_limited_min_requests: int = 20
    rate_limited_for: str = "10m"

    #: LiveKitAgentsMaskedRetryFailures: masked failures per request of the component in the
    #: window above this, with at least ``masked_min_requests`` requests (and at least one)
    masked_window: str = "15m"
    masked_ratio: float = 0.01
    masked_min_requests: int = 20
    masked_for: str = "0s"

    #: LiveKitAgentsMetricsAbsent (up, no otel-agents metrics) and LiveKitAgentsTargetDown
    absent_for: str = "10m"
    target_down_for: str = "10m"

    #: LiveKitAgentsInternalErrors: any internal error of otel-agents in the window
    internal_window: str = "15m"
    internal_for: str = "0s"

    #: LiveKitAgentsSidecarReapErrors and LiveKitAgentsSidecarQuarantinedFiles: any in the window
    sidecar_window: str = "15m"
    sidecar_for: str = "0s"
    #: LiveKitAgentsSidecarReapingStalled: more metric files than this per live process
    #: (a live process has at most one per kind, the compacted files one per kind), this long
    reap_stalled_threshold: int = 20
    reap_stalled_for: str = "30m"
    #: LiveKitAgentsSidecarRenderSlow: a render took at least this share of the scrape timeout
    #: in every window, this long
    scrape_timeout: str = "10s"
    render_slow_window: str = "5m"
    render_slow_ratio: float = 0.80
    render_slow_for: str = "15m"

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith(("_window", "_lookback", "_horizon", "_interval", "_timeout")):
                if seconds(value, f.name) <= 0:
                    raise ValueError(f"Config.{f.name}={value!r}: expected a positive duration")
            elif f.name.endswith("_for"):
                seconds(value, f.name)
            elif f.name.endswith("_ratio"):
                if not (isinstance(value, int | float) and 0 < value < 1):
                    raise ValueError(f"Config.{f.name}={value!r}: expected a ratio in (0, 1)")
            elif f.name.endswith(("_min_sessions", "_min_turns", "_min_requests", "_threshold")):
                least = 0 if f.name.endswith("_threshold") else 1
                if not (isinstance(value, int) and not isinstance(value, bool) and value >= least):
                    raise ValueError(f"Config.{f.name}={value!r}: expected an integer >= {least}")
        if not (
            isinstance(self.group_labels, tuple)
            and all(isinstance(g, str) and _LABEL.fullmatch(g) for g in self.group_labels)
            and not {"job", "instance"} & set(self.group_labels)
            and len(set(self.group_labels)) == len(self.group_labels)
        ):
            raise ValueError(
                f"Config.group_labels={self.group_labels!r}: expected a tuple of distinct label "
                'names other than job and instance, e.g. ("cluster", "namespace")'
            )
        if not (isinstance(self.selector, str) and self.selector.strip()):
            raise ValueError(
                f"Config.selector={self.selector!r}: expected label matchers, "
                'e.g. job="livekit-agents"'
            )
        if self.silent_critical_ratio <= self.silent_warning_ratio:
            raise ValueError(
                f"Config.silent_critical_ratio={self.silent_critical_ratio!r}: expected more "
                f"than silent_warning_ratio={self.silent_warning_ratio!r}"
            )


def seconds(duration: object, name: str = "duration") -> int:
    """A Prometheus duration (``1h30m``, ``0s``) in seconds."""
    match = _DURATION.match(duration) if isinstance(duration, str) and duration else None
    if match is None:
        raise ValueError(
            f"Config.{name}={duration!r}: expected a Prometheus duration such as 30s, 5m or 1h"
        )
    return sum(int(g) * unit for g, (_, unit) in zip(match.groups(), _UNITS, strict=True) if g)


def duration(secs: int) -> str:
    """``secs`` as a Prometheus duration: 600 -> ``10m``, 5400 -> ``1h30m``."""
    out = ""
    for suffix, unit in _UNITS:
        if secs >= unit:
            out += f"{secs // unit}{suffix}"
            secs %= unit
    return out or "0s"


def percent(ratio: float) -> str:
    """``0.1`` -> ``10%``: a threshold as the alerts' descriptions and the panels' say it."""
    return f"{ratio * 100:g}%"


#: the shipped rules' configuration, and the thresholds the dashboards colour at
DEFAULTS: Final = Config()
