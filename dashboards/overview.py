"""The LiveKit Agents / Overview dashboard: how the voice sessions are going.

Sessions and the alerts firing, silent sessions (by close reason and cause), dead, unanswered
and unheard turns, and latency. The silent-session, dead-turn, unanswered-turn and unheard-reply
stats turn orange and red at the default thresholds of their alerts (``config.DEFAULTS``).
"""

from __future__ import annotations

from typing import Final

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import timeseries

from otel_agents import names as n

from .config import (
    ALERT_PREFIX,
    DEAD_TURNS,
    DEFAULTS,
    OVERVIEW_TITLE,
    OVERVIEW_UID,
    SILENT_SESSIONS,
    UNANSWERED_TURNS,
    UNHEARD_SPEECH,
    percent,
)
from .panels import (
    Q,
    at_least,
    capped,
    count,
    dashboard,
    instant_table,
    legend,
    or_zero,
    quantile,
    rate,
    sel,
    single_stat,
    ts,
    with_rows,
)

# Stat colours follow the alerts' severities (orange: warning, red: critical) at their default
# thresholds, and the shares keep their alerts' minimum-traffic guards.
SILENT_STEPS: Final = (
    (None, "green"),
    (DEFAULTS.silent_warning_ratio, "orange"),
    (DEFAULTS.silent_critical_ratio, "red"),
)
DEAD_STEPS: Final = ((None, "green"), (DEFAULTS.dead_ratio, "orange"))
#: the alert fires when more turns than its threshold wait: the first such count is orange
UNANSWERED_FROM: Final = float(DEFAULTS.unanswered_turns_threshold + 1)
UNANSWERED_STEPS: Final = ((None, "green"), (UNANSWERED_FROM, "orange"))
UNHEARD_STEPS: Final = ((None, "green"), (DEFAULTS.unheard_ratio, "orange"))
#: what a share shows below its alert's minimum traffic, and a count with no target at all
NOT_ENOUGH: Final = "Not enough traffic"
NO_TARGET: Final = "No target"


def guarded(least: int, what: str, alert: str) -> str:
    """The description of a share's minimum-traffic guard."""
    return (
        f" With fewer than {least} {what} in the time range it shows {NOT_ENOUGH!r}, not a "
        f"colour: the minimum traffic of the {alert} alert (one bad of two at night is not an "
        "incident). 0 when none was."
    )


def overview() -> db.Dashboard:
    closed = n.SESSIONS_CLOSED
    silent = n.SILENT_SESSIONS
    turns = n.USER_TURNS
    dead = n.DEAD_TURNS
    unheard = n.UNHEARD_SPEECH
    percentiles = (0.5, 0.9, 0.99)

    def latency(title: str, histogram: str, text: str) -> timeseries.Panel:
        targets = [Q(quantile(q, histogram), f"p{round(q * 100)}") for q in percentiles]
        return ts(title, text + capped(histogram), "s", targets, span=8)

    sessions = [
        single_stat(
            "Active sessions",
            "AgentSessions started and not yet closed, right now, summed over every live job "
            "process (the gauge drops a dead process's sessions when the sidecar reaps it).",
            "short",
            [Q(f"sum({sel(n.SESSIONS_ACTIVE)})", "active")],
            no_value=NO_TARGET,
            graph=True,
            span=4,
        ),
        single_stat(
            "Sessions started",
            "AgentSession.start() calls in the dashboard's time range.",
            "short",
            [Q(count(n.SESSIONS_STARTED), "started", instant=True)],
            no_value=NO_TARGET,
            span=4,
        ),
        single_stat(
            "Sessions closed",
            "Sessions closed in the dashboard's time range, whatever the reason (a session "
            "that ends with its job is still closed and counted).",
            "short",
            [Q(count(closed), "closed", instant=True)],
            no_value=NO_TARGET,
            span=4,
        ),
        instant_table(
            "Alerts firing",
            f"The otel-agents alerts (alertname {ALERT_PREFIX}*) firing right now, one row each "
            "with its labels; see the runbook for each alert. Alerts are not filtered by job "
            "or instance.",
            "short",
            Q(f'ALERTS{{alertname=~"{ALERT_PREFIX}.*", alertstate="firing"}}', "", table=True),
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
            f"{percent(DEFAULTS.silent_warning_ratio)}, red from "
            f"{percent(DEFAULTS.silent_critical_ratio)}: the default thresholds "
            f"of the {SILENT_SESSIONS} alert (warning, critical)."
            + guarded(DEFAULTS.silent_min_sessions, "sessions closed", SILENT_SESSIONS),
            "percentunit",
            [
                Q(
                    f"{or_zero(count(silent))}\n/\n"
                    f"{at_least(count(closed), DEFAULTS.silent_min_sessions)}",
                    "silent",
                    instant=True,
                )
            ],
            no_value=NOT_ENOUGH,
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
            "Silent sessions divided by closed sessions, per rate interval (0 when none was "
            "silent; no value while no session closes).",
            "percentunit",
            [Q(f"({rate(silent)} or on () {rate(closed)} * 0) / {rate(closed)}", "silent share")],
            span=9,
        ),
        ts(
            "Silent sessions by cause",
            "Silent sessions per second, by why the caller heard nothing: the error class of "
            "the provider error that killed the turns (quota_exhausted, auth, rate_limited, "
            "timeout, ...), empty_reply (the LLM answered nothing), unheard (the agent spoke "
            "but no audio reached the caller), stalled (no answer and no error) or unknown (a "
            "defect: report it).",
            "ops",
            [Q(rate(silent, by=(n.L_CAUSE,)), legend(n.L_CAUSE))],
            span=24,
        ),
    ]
    dead_share = f"{or_zero(count(dead))} / {at_least(count(turns), DEFAULTS.dead_min_turns)}"
    dead_share_rate = (
        f"{rate(dead, by=(n.L_CAUSE,))} / ignoring({n.L_CAUSE}) group_left {rate(turns)}"
    )
    turn_panels = [
        single_stat(
            "Unanswered turns now",
            "User turns waiting longer than silence_timeout (default 8 s) with no agent speech, "
            "right now: callers waiting in silence. Falls when the turn is answered, dies or "
            f"its session closes. Orange from {UNANSWERED_FROM:g}: {UNANSWERED_TURNS} fires "
            f"when it stays above {DEFAULTS.unanswered_turns_threshold}.",
            "short",
            [Q(f"sum({sel(n.UNANSWERED_TURNS)})", "unanswered")],
            no_value=NO_TARGET,
            steps=UNANSWERED_STEPS,
            graph=True,
        ),
        single_stat(
            "Dead turn share",
            "Share of the user turns in the time range that died: the agent went from "
            "thinking back to listening without speaking (both causes; the panel on the right "
            f"splits them). Orange from {percent(DEFAULTS.dead_ratio)}: the default threshold "
            f"of the {DEAD_TURNS} alert."
            + guarded(DEFAULTS.dead_min_turns, "user turns", DEAD_TURNS),
            "percentunit",
            [Q(dead_share, "dead", instant=True)],
            no_value=NOT_ENOUGH,
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
        single_stat(
            "Unheard reply share",
            "Agent replies the caller never heard, divided by user turns, in the time range. "
            "The agent answered by its own account, and nothing reached the "
            f"caller. Orange from {percent(DEFAULTS.unheard_ratio)}: the default threshold of "
            f"the {UNHEARD_SPEECH} alert."
            + guarded(DEFAULTS.unheard_min_turns, "user turns", UNHEARD_SPEECH),
            "percentunit",
            [
                Q(
                    f"{or_zero(count(unheard))} / "
                    f"{at_least(count(turns), DEFAULTS.unheard_min_turns)}",
                    "unheard",
                    instant=True,
                )
            ],
            no_value=NOT_ENOUGH,
            steps=UNHEARD_STEPS,
        ),
        ts(
            "Unheard replies by cause",
            "Agent replies per second that the caller never heard, by cause: no_frames (the "
            "reply went out as text and no audio frame reached the output), never_played (the "
            "output finished its playout without playing any of it), cleared_before_playout "
            "(interrupted or cleared before any audio played).",
            "ops",
            [Q(rate(unheard, by=(n.L_CAUSE,)), legend(n.L_CAUSE))],
            span=18,
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
    return with_rows(
        dashboard(
            OVERVIEW_UID,
            OVERVIEW_TITLE,
            "LiveKit Agents voice sessions as otel-agents sees them: sessions, silent "
            "sessions and their causes, dead, unanswered and unheard turns, latency, and the "
            "otel-agents alerts firing.",
        ),
        [
            ("Sessions", sessions),
            ("Silent sessions", silent_sessions),
            ("Turns", turn_panels),
            ("Latency", latency_panels),
        ],
    )
