"""The LiveKit Agents / Errors and quota dashboard: every failed provider attempt.

Totals, failed attempts by component, provider, error class and root cause, masked retries,
LiveKit Inference quota errors, the providers' quota (credits used, burn rate, time to
exhaustion), terminal errors, per-provider failure ratios, fallbacks and retry waits,
otel-agents' own errors, and the failed attempts' spans in Tempo. Every time series of failed
attempts links to its spans (``tracelinks``).
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
    CREDITS_LOW,
    CREDITS_RUNNING_OUT,
    DEFAULTS,
    ERRORS_TITLE,
    ERRORS_UID,
    MASKED_RETRY_FAILURES,
    TERMINAL_ERRORS,
    percent,
    seconds,
)
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
    sel,
    single_stat,
    thresholds,
    ts,
    with_rows,
)
from .rules import CREDITS
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
#: the credits' used share: orange where LiveKitAgentsCreditsLow (warning) fires, red when spent
CREDITS_SHARE_STEPS: Final = ((None, "green"), (DEFAULTS.credits_low_ratio, "orange"), (1.0, "red"))
#: the time to credit exhaustion: red under the horizon of LiveKitAgentsCreditsRunningOut
HORIZON_S: Final = float(seconds(DEFAULTS.credits_horizon))
EXHAUSTION_STEPS: Final = ((None, "red"), (HORIZON_S, "green"))


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
    link_help = (
        " Click a series for its otel_agents.attempt_failed spans in Tempo (the root cause "
        "message is on the span)."
    )

    def by_labels(title: str, text: str, labels: Sequence[str]) -> timeseries.Panel:
        return ts(
            title,
            text + link_help,
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
            "what really went wrong first." + link_help,
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
    quota_panels = [
        ts(
            "Quota errors by type and category",
            "LiveKit Inference quota errors (inference_quota_exceeded) per second by quota "
            "type (llm, stt, tts, bargein) and gateway category: MaxGatewayCredits and "
            "MaxBargeInRequests mean credits are exhausted; MaxConcurrent*, *Rpm, *Tpm and "
            "MaxBargeInRPM are rate limits." + link_help,
            "ops",
            [
                Q(
                    rate(quota, by=(n.L_QUOTA_TYPE, n.L_QUOTA_CATEGORY)),
                    legend(n.L_QUOTA_TYPE, n.L_QUOTA_CATEGORY),
                )
            ],
            links=[trace_link(traceql(*label_conditions((n.L_QUOTA_TYPE, n.L_QUOTA_CATEGORY))))],
        ),
        ts(
            "Quota errors: terminal vs transient",
            "Quota errors per second by component and whether they are terminal "
            "(terminal=true: credits exhausted, will not recover without operator action) or "
            "transient (terminal=false: rate limits, recover on their own)." + link_help,
            "ops",
            [
                Q(
                    rate(quota, by=(C, n.L_TERMINAL)),
                    "{{component}} terminal={{terminal}}",
                )
            ],
            links=[
                trace_link(
                    traceql(
                        *label_conditions((C, n.L_TERMINAL)),
                        f'span.{n.A_QUOTA_CATEGORY}=~".+"',
                    )
                )
            ],
        ),
    ]
    credits = f'{n.L_DIMENSION}="{CREDITS}"'
    used, limit = sel(n.QUOTA_USED, credits), sel(n.QUOTA_LIMIT, credits)
    burn_window = DEFAULTS.credits_burn_window
    left = f"(({limit} - {used}) > 0)"
    burn = f"(deriv({used}[{burn_window}]) > 0)"
    quota_gauge_help = (
        " From the providers' response headers: the limit is the largest and the used amount the "
        "most recent any process saw; no series when a provider sends none (unknown)."
    )
    provider_quota_panels = [
        single_stat(
            "Credits used share",
            "Used / limit of each provider's credit quota, now, the largest share of the "
            f"targets. Orange from {percent(DEFAULTS.credits_low_ratio)}: {CREDITS_LOW} "
            "(warning) fires; red from 100%: the balance is spent, and the next request fails "
            f"({CREDITS_EXHAUSTED})." + quota_gauge_help,
            "percentunit",
            [
                Q(
                    f"max by ({P}) ({used} / ({limit} > 0))",
                    legend(P),
                )
            ],
            no_value="Unknown",
            steps=CREDITS_SHARE_STEPS,
        ),
        single_stat(
            "Time to credit exhaustion",
            "When each provider's credits run out at the burn rate of the last "
            f"{burn_window} (the least-squares slope of the used amount): credits left / burn "
            "rate, per target, the soonest. Red under "
            f"{DEFAULTS.credits_horizon}: {CREDITS_RUNNING_OUT} (critical) fires when it stays "
            f"there for {DEFAULTS.credits_running_out_for}. No value while nothing burns, after "
            "a billing reset (for up to the window) or once nothing is left.",
            "s",
            [Q(f"min by ({P}) ({left} / {burn})", legend(P))],
            no_value="Not burning",
            steps=EXHAUSTION_STEPS,
            graph=True,
            span=6,
        ),
        ts(
            "Quota used share by provider and dimension",
            "Used / limit of every quota the providers report, by provider and dimension: "
            "credits (a balance for the billing cycle) and the per-minute rate-limit windows "
            "(rpm, tpm, requests, tokens), which swing to 100% and back under bursts; the largest "
            "share of the targets." + quota_gauge_help,
            "percentunit",
            [
                Q(
                    f"max by ({P}, {n.L_DIMENSION}) ({sel(n.QUOTA_USED)} / "
                    f"({sel(n.QUOTA_LIMIT)} > 0))",
                    legend(P, n.L_DIMENSION),
                )
            ],
        ),
        ts(
            "Credits used and limit",
            "Each provider's credit quota: the amount used and the limit, the largest of the "
            "targets. Used drops back at a new billing cycle; a top-up raises the limit."
            + quota_gauge_help,
            "short",
            [
                Q(f"max by ({P}) ({used})", legend(P, prefix="used: ")),
                Q(f"max by ({P}) ({limit})", legend(P, prefix="limit: ")),
            ],
        ),
        ts(
            "Credit burn rate",
            "Credits used per hour by each provider, at the slope of the used amount over the "
            f"last {burn_window} (deriv), the fastest target: the rate {CREDITS_RUNNING_OUT} "
            "projects. Below zero (clipped) for up to the window after a billing reset.",
            "short",
            [Q(f"max by ({P}) (deriv({used}[{burn_window}])) * 3600", legend(P))],
        ),
    ]
    terminal_panels = [
        ts(
            "Terminal errors by component, provider and error class",
            "Errors per second that will not recover without operator action, by component, "
            "provider and error class: quota_exhausted (credits or billing exhausted), auth "
            "(bad or revoked key), and others." + link_help,
            "ops",
            [Q(rate(terminal, by=(C, P, E)), legend(C, P, E))],
            links=[trace_link(traceql(f"span.{n.A_TERMINAL}=true", *label_conditions((C, P, E))))],
        ),
        ts(
            "Terminal errors other than quota",
            "Terminal errors per second whose error class is not quota_exhausted: bad or "
            "revoked credentials (auth, HTTP 401/403) and errors flagged terminal by the "
            "provider. Direct providers' billing exhaustion (OpenAI insufficient_quota, "
            "Anthropic credit balance) is quota_exhausted and shows on the left." + link_help,
            "ops",
            [
                Q(
                    rate(terminal, f'{E}!="quota_exhausted"', by=(C, P, E)),
                    legend(C, P, E),
                )
            ],
            links=[trace_link(traceql(f"span.{n.A_TERMINAL}=true", *label_conditions((C, P, E))))],
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
            "requests (its failed requests are on the left)." + link_help,
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
            ("LiveKit Inference quota", quota_panels),
            ("Provider quota", provider_quota_panels),
            ("Terminal errors per second", terminal_panels),
            ("Requests per provider", request_panels),
            ("Fallbacks and retries", fallback_panels),
            ("Unhandled task errors and otel-agents internal errors", internal_panels),
            ("Traces", [_traces_panel()]),
        ],
    )
