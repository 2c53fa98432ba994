"""The LiveKit Agents / Errors and quota dashboard: every failed provider attempt.

Totals, failed attempts by component, provider, error class and root cause, masked retries,
LiveKit Inference quota errors, the providers' quota (credits used, burn rate, time to
exhaustion), terminal errors, per-provider failure ratios, fallbacks and retry waits,
otel-agents' own errors, and the failed attempts' spans in Tempo. Every time series of failed
attempts links to its spans (``tracelinks``). The quota and terminal-error rows are built in
:mod:`dashboards.errors_quota`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import table, tempo, timeseries
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models.tempo import SearchTableType

from otel_agents import names as n

from .config import (
    CREDITS_EXHAUSTED,
    ERRORS_TITLE,
    ERRORS_UID,
    MASKED_RETRY_FAILURES,
    TERMINAL_ERRORS,
    percent,
)
from .errors_quota import LINK_HELP, inference_quota, provider_quota, terminal_errors
from .panels import (
    GREEN_ONLY,
    ORANGE_FROM_ONE,
    RED_FROM_ONE,
    TEMPO,
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
    single_stat,
    thresholds,
    ts,
    with_rows,
)
from .tracelinks import (
    ATTEMPT_SPANS,
    TRACES_LIMIT,
    explore_url,
    label_conditions,
    trace_link,
    traceql,
)

#: the request failure ratio's colours (no alert: the silent-session and dead-turn alerts page
#: on what callers feel)
FAILURE_ORANGE: Final = 0.05
FAILURE_RED: Final = 0.2
FAILURE_STEPS: Final = ((None, "green"), (FAILURE_ORANGE, "orange"), (FAILURE_RED, "red"))
#: fewer requests than this in the time range give the failure ratio no value (one failure of
#: two requests at night is not a 50% outage)
FAILURE_MIN_REQUESTS: Final = 20
#: the requests a failure ratio counts: STT's ``outcome="ok"`` counts its transcript usage
#: reports (several per stream), not requests, so an STT ratio would understate its failures
NOT_STT: Final = f'{n.L_COMPONENT}!="stt"'


def _traces_panel() -> table.Panel:
    """The latest failed attempts, from Tempo."""
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
    return (
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
        .thresholds(thresholds(GREEN_ONLY))
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


def errors() -> db.Dashboard:
    failures = n.ATTEMPT_FAILURES
    quota = n.QUOTA_ERRORS
    terminal = n.TERMINAL_ERRORS
    masked = n.MASKED_FAILURES
    requests = n.REQUESTS
    C, P, E, R = n.L_COMPONENT, n.L_PROVIDER, n.L_ERROR_CLASS, n.L_ROOT_CAUSE
    FIRST = n.L_FIRST_ROOT_CAUSE
    failed = f'{n.L_OUTCOME}="failed"'

    def by_labels(title: str, text: str, labels: Sequence[str]) -> timeseries.Panel:
        return ts(
            title,
            text + LINK_HELP,
            "ops",
            [Q(rate(failures, by=labels), legend(*labels))],
            links=[trace_link(traceql(*label_conditions(labels)))],
        )

    totals = [
        single_stat(
            "Failed attempts",
            "Failed provider attempts in the time range (every retry counts), all components.",
            "short",
            [Q(count(failures), "failed attempts", instant=True)],
            no_value="0",
            span=4,
        ),
        single_stat(
            "Failed requests",
            "Provider requests whose retries ran out in the time range: what the session saw fail.",
            "short",
            [Q(count(requests, failed), "failed requests", instant=True)],
            no_value="0",
            span=4,
        ),
        single_stat(
            "Request failure ratio",
            "Failed requests divided by all requests in the time range, all providers, STT "
            "left out (its ok count is transcript usage reports, several per stream, not "
            "requests: its failed requests are in Failed requests and Requests by provider and "
            f"outcome). Orange from {percent(FAILURE_ORANGE)}, red from {percent(FAILURE_RED)} "
            "(no alert: the silent-session and dead-turn alerts page on what callers feel). "
            f"With fewer than {FAILURE_MIN_REQUESTS} requests in the time range it shows 'Not "
            "enough traffic'; 0 when none failed.",
            "percentunit",
            [
                Q(
                    f"{or_zero(count(requests, failed, NOT_STT))}\n/\n"
                    f"{at_least(count(requests, NOT_STT), FAILURE_MIN_REQUESTS)}",
                    "failed",
                    instant=True,
                )
            ],
            no_value="Not enough traffic",
            steps=FAILURE_STEPS,
            span=4,
        ),
        single_stat(
            "Terminal quota errors",
            "LiveKit Inference quota errors that will not recover without operator action "
            "(credits exhausted: MaxGatewayCredits, MaxBargeInRequests) in the time range. Red "
            f"from 1, like the critical {CREDITS_EXHAUSTED} alert: top up the account.",
            "short",
            [Q(count(quota, f'{n.L_TERMINAL}="true"'), "terminal quota errors", instant=True)],
            no_value="0",
            steps=RED_FROM_ONE,
            span=4,
        ),
        single_stat(
            "Terminal errors",
            "Errors that will not recover without operator action (exhausted credits or "
            "billing, bad credentials) in the time range, quota included. Red from 1: "
            f"{CREDITS_EXHAUSTED} or {TERMINAL_ERRORS} (critical) fires.",
            "short",
            [Q(count(terminal), "terminal errors", instant=True)],
            no_value="0",
            steps=RED_FROM_ONE,
            span=4,
        ),
        single_stat(
            "Masked failures",
            "Failed requests whose final root cause differs from their first attempt's in the "
            "time range: the retry loop hid the real cause. Orange from 1, like the "
            f"{MASKED_RETRY_FAILURES} alert (warning).",
            "short",
            [Q(count(masked), "masked failures", instant=True)],
            no_value="0",
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
            "what really went wrong first." + LINK_HELP,
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
            Q(count(masked, by=masked_labels), "", table=True),
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
    failed_ratio = (
        f"({rate(requests, failed, NOT_STT, by=(C, P))} or {rate(requests, NOT_STT, by=(C, P))} "
        f"* 0) / {rate(requests, NOT_STT, by=(C, P))}"
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
            "provider had no failure). A failed request is one whose retries ran out. STT is "
            "left out: its ok count is transcript usage reports, several per stream, not "
            "requests (its failed requests are on the left)." + LINK_HELP,
            "percentunit",
            [Q(failed_ratio, legend(C, P))],
            links=[trace_link(traceql(f"span.{n.A_FINAL}=true", *label_conditions((C, P))))],
        ),
    ]
    fallback_panels = [
        ts(
            "Fallback switches",
            "FallbackAdapter switches per second from a failing provider to the next one, by "
            "component and the two providers: the session carried on, on its second choice.",
            "ops",
            [
                Q(
                    rate(n.FALLBACK_SWITCHES, by=(C, n.L_FROM_PROVIDER, n.L_TO_PROVIDER)),
                    "{{component}}: {{from_provider}} to {{to_provider}}",
                )
            ],
            span=8,
        ),
        ts(
            "Fallbacks exhausted",
            "FallbackAdapter requests per second on which every provider failed, by component: "
            "nothing left to fall back on, the request failed.",
            "ops",
            [Q(rate(n.FALLBACK_EXHAUSTED, by=(C,)), legend(C))],
            span=8,
        ),
        ts(
            "Retry wait",
            "For requests with a failed attempt: from the first attempt's start to the last's, "
            "what retries (and fallbacks) added before the final attempt. p50, p90 and p99 over "
            "the rate interval." + capped(n.RETRY_WAIT),
            "s",
            [Q(quantile(q, n.RETRY_WAIT), f"p{round(q * 100)}") for q in (0.5, 0.9, 0.99)],
            span=8,
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
    return with_rows(
        dashboard(
            ERRORS_UID,
            ERRORS_TITLE,
            "Every failed provider attempt of LiveKit Agents as otel-agents records it: root "
            "causes, masked retries, LiveKit Inference quota errors, the providers' quota and "
            "credit burn, terminal errors, per-provider failure ratios, fallbacks and retry "
            "waits, and otel-agents' own errors, with links to the failed attempts' spans in "
            "Tempo.",
            tempo_variable=True,
        ),
        [
            ("Totals in the time range", totals),
            ("Failed attempts per second", attempts),
            ("Masked retries", masked_panels),
            ("LiveKit Inference quota", inference_quota()),
            ("Provider quota", provider_quota()),
            ("Terminal errors per second", terminal_errors()),
            ("Requests per provider", request_panels),
            ("Fallbacks and retries", fallback_panels),
            ("Unhandled task errors and otel-agents internal errors", internal_panels),
            ("Traces", [_traces_panel()]),
        ],
    )
