"""The quota rows of the Errors and quota dashboard (:mod:`dashboards.errors`).

LiveKit Inference quota errors (by type and category, terminal or transient), the providers'
quota from their response headers (credits used, burn rate, time to exhaustion, every quota's used
share), and terminal errors: what only an operator can end (a top-up, an upgrade, a new key). The
stats turn orange and red where CreditsLow, CreditsRunningOut and CreditsExhausted fire, at their
defaults (``config.DEFAULTS``).
"""

from __future__ import annotations

from typing import Final

from grafana_foundation_sdk.builders import stat, timeseries

from otel_agents import names as n

from .config import CREDITS_EXHAUSTED, CREDITS_LOW, CREDITS_RUNNING_OUT, DEFAULTS, percent, seconds
from .panels import Q, legend, rate, sel, single_stat, ts
from .rules import CREDITS
from .tracelinks import label_conditions, trace_link, traceql

#: the end of the description of every panel whose series link to their failed attempts' spans
LINK_HELP: Final = (
    " Click a series for its otel_agents.attempt_failed spans in Tempo (the root cause "
    "message is on the span)."
)
#: the credits' used share: orange where LiveKitAgentsCreditsLow (warning) fires, red when spent
CREDITS_SHARE_STEPS: Final = ((None, "green"), (DEFAULTS.credits_low_ratio, "orange"), (1.0, "red"))
#: the time to credit exhaustion: red under the horizon of LiveKitAgentsCreditsRunningOut
HORIZON_S: Final = float(seconds(DEFAULTS.credits_horizon))
EXHAUSTION_STEPS: Final = ((None, "red"), (HORIZON_S, "green"))


def inference_quota() -> list[timeseries.Panel]:
    """LiveKit Inference quota errors per second, by type and category and by terminal."""
    quota, C = n.QUOTA_ERRORS, n.L_COMPONENT
    return [
        ts(
            "Quota errors by type and category",
            "LiveKit Inference quota errors (inference_quota_exceeded) per second by quota "
            "type (llm, stt, tts, bargein) and gateway category: MaxGatewayCredits and "
            "MaxBargeInRequests mean credits are exhausted; MaxConcurrent*, *Rpm, *Tpm and "
            "MaxBargeInRPM are rate limits." + LINK_HELP,
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
            "transient (terminal=false: rate limits, recover on their own)." + LINK_HELP,
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


def provider_quota() -> list[stat.Panel | timeseries.Panel]:
    """The providers' quota, from their response headers: the credits and every rate limit."""
    P = n.L_PROVIDER
    credits = f'{n.L_DIMENSION}="{CREDITS}"'
    used, limit = sel(n.QUOTA_USED, credits), sel(n.QUOTA_LIMIT, credits)
    burn_window = DEFAULTS.credits_burn_window
    left = f"(({limit} - {used}) > 0)"
    burn = f"(deriv({used}[{burn_window}]) > 0)"
    quota_gauge_help = (
        " From the providers' response headers: the limit is the largest and the used amount the "
        "most recent any process saw; no series when a provider sends none (unknown)."
    )
    return [
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


def terminal_errors() -> list[timeseries.Panel]:
    """Terminal errors per second: all of them, and those other than quota."""
    terminal = n.TERMINAL_ERRORS
    C, P, E = n.L_COMPONENT, n.L_PROVIDER, n.L_ERROR_CLASS
    return [
        ts(
            "Terminal errors by component, provider and error class",
            "Errors per second that will not recover without operator action, by component, "
            "provider and error class: quota_exhausted (credits or billing exhausted), auth "
            "(bad or revoked key), and others." + LINK_HELP,
            "ops",
            [Q(rate(terminal, by=(C, P, E)), legend(C, P, E))],
            links=[trace_link(traceql(f"span.{n.A_TERMINAL}=true", *label_conditions((C, P, E))))],
        ),
        ts(
            "Terminal errors other than quota",
            "Terminal errors per second whose error class is not quota_exhausted: bad or "
            "revoked credentials (auth, HTTP 401/403) and errors flagged terminal by the "
            "provider. Direct providers' billing exhaustion (OpenAI insufficient_quota, "
            "Anthropic credit balance) is quota_exhausted and shows on the left." + LINK_HELP,
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
