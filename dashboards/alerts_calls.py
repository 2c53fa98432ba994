"""The alerts on the calls: LiveKit Inference credits, provider errors, sessions and turns.

CreditsExhausted, CreditsRunningOut and CreditsLow (the credit balance), TerminalErrors,
RateLimited and MaskedRetryFailures (failed provider requests), SilentSessions (a warning and a
critical rule), UnansweredTurns, DeadTurns and UnheardSpeech (what callers hear).
:func:`alerts` builds them in the order of the rule file; :mod:`dashboards.alerts` writes it.

The critical counter alerts (CreditsExhausted, TerminalErrors) carry ``keep_firing_for``: at one
failing call every few minutes their window empties between calls, and without it each call would
open a new incident. Every counter is read through ``rules.new_in`` (exact counts, births through
the per-target witness, no replay after a gap, falls and one-scrape spikes ignored). RateLimited and
MaskedRetryFailures are shares of the component's requests and UnansweredTurns a share of the
active sessions, each with a minimum, so a fleet's background noise pages nobody.

LiveKitAgentsCreditsRunningOut forecasts, LiveKitAgentsCreditsExhausted reports: the forecast
holds only while some credits are left (by the quota headers) and no terminal quota error of the
same job is in the credits window, so the two never page at once; when the balance is spent the
first failing request pages LiveKitAgentsCreditsExhausted (see the runbook).
"""

from __future__ import annotations

from typing import Any, Final

from otel_agents import names as n

from . import rules as r
from .alert_rule import on as _on
from .alert_rule import rule as _rule
from .config import (
    CREDITS_EXHAUSTED,
    CREDITS_LOW,
    CREDITS_RUNNING_OUT,
    DEAD_TURNS,
    MASKED_RETRY_FAILURES,
    RATE_LIMITED,
    SILENT_SESSIONS,
    TERMINAL_ERRORS,
    UNANSWERED_TURNS,
    UNHEARD_SPEECH,
    Config,
    percent,
    seconds,
)

#: the error class a terminal LiveKit Inference quota error gets (``_classify.classification``)
QUOTA_EXHAUSTED: Final = "quota_exhausted"


def _per_request(part: r.Record, whole: r.Record, cfg: Config, minimum: int) -> str:
    """``part`` (a count per job, component and more) per request of its job and component,
    only where the component made at least ``minimum`` requests in the window."""
    return (
        f"(\n{r.indent(part.expr)}\n)\n"
        f"/ on ({_on(cfg, n.L_COMPONENT)}) group_left ()\n"
        f"(\n{r.indent(whole.expr)}\n  >= {minimum}\n)"
    )


def _above(share: r.Share, ratio: float, minimum: int) -> str:
    """The share above ``ratio``, per job, only where its whole counted at least ``minimum``
    in the window (the minimum-traffic guard)."""
    num, den = share.part.expr, share.whole.expr
    return f"(\n{r.indent(num)}\n/\n  (\n{r.indent(den, 4)}\n    >= {minimum}\n  )\n) > {ratio:g}"


def _credits_exhausted(cfg: Config) -> dict[str, Any]:
    w = cfg.credits_window
    return _rule(
        CREDITS_EXHAUSTED,
        f"{r.credits_exhausted(cfg).expr} > 0",
        cfg.credits_for,
        "critical",
        "LiveKit Inference credits are exhausted: requests fail until the balance is topped up, "
        "and callers hear silence.",
        f"{{{{ $value | humanize }}}} terminal LiveKit Inference quota errors in the last {w} on "
        "job {{ $labels.job }}: component {{ $labels.component }}, quota type "
        "{{ $labels.quota_type }}, category {{ $labels.quota_category }}. Every such request "
        "fails until credits are topped up or the plan is upgraded (the alert stays on "
        f"{cfg.critical_keep_firing_for} after the last one).",
        cfg.critical_keep_firing_for,
    )


def _credits_running_out(cfg: Config) -> dict[str, Any]:
    w, horizon = cfg.credits_burn_window, cfg.credits_horizon
    expr = (
        f"{r.credits_seconds_left(cfg)} < {seconds(horizon, 'credits_horizon')}\n"
        "# LiveKitAgentsCreditsExhausted pages for this job: already out, no forecast\n"
        f"unless on ({_on(cfg)})\n"
        "  (\n"
        f"{r.indent(r.credits_exhausted(cfg).expr, 4)}\n"
        "  ) > 0"
    )
    return _rule(
        CREDITS_RUNNING_OUT,
        expr,
        cfg.credits_running_out_for,
        "critical",
        "Credits will run out within hours at the current burn rate: then requests fail and "
        "callers hear silence.",
        f"At the burn rate of the last {w}, the {{{{ $labels.provider }}}} "
        "{{ $labels.dimension }} quota of job {{ $labels.job }} runs out in "
        f"{{{{ $value | humanizeDuration }}}}, within the {horizon} horizon. Top up or "
        "upgrade before then.",
    )


def _credits_low(cfg: Config) -> dict[str, Any]:
    ratio = cfg.credits_low_ratio
    return _rule(
        CREDITS_LOW,
        f"{r.credits_used_share(cfg)}\n>= {ratio:g}",
        cfg.credits_low_for,
        "warning",
        "Most of a credit quota is used: requests fail when the rest is.",
        "{{ $value | humanizePercentage }} of the {{ $labels.provider }} "
        "{{ $labels.dimension }} quota of job {{ $labels.job }} is used (by the provider's "
        f"response headers); threshold {percent(ratio)}.",
    )


def _terminal_errors(cfg: Config) -> dict[str, Any]:
    w = cfg.terminal_window
    # A terminal LiveKit Inference quota error is also a terminal error of error class
    # quota_exhausted, provider livekit, in the same component: leave those to
    # LiveKitAgentsCreditsExhausted (r.terminal_quota_mask). Only those: a provider's own
    # billing signal (OpenAI insufficient_quota, Anthropic credit balance, HTTP 402) has the
    # same error class and no quota body, and pages here, also in the same component (an
    # OpenAI fallback out of billing behind an exhausted LiveKit Inference primary).
    on = _on(cfg, n.L_COMPONENT, n.L_PROVIDER, n.L_ERROR_CLASS)
    expr = (
        f"{r.terminal_errors(cfg).expr} > 0\n"
        f"unless on ({on})\n"
        "  label_replace(\n"
        "    label_replace(\n"
        f"{r.indent(r.terminal_quota_mask(cfg).expr, 4)} > 0,\n"
        f'      "{n.L_ERROR_CLASS}", "{QUOTA_EXHAUSTED}", "", ""\n'
        "    ),\n"
        f'    "{n.L_PROVIDER}", "{r.INFERENCE_PROVIDER}", "", ""\n'
        "  )"
    )
    return _rule(
        TERMINAL_ERRORS,
        expr,
        cfg.terminal_for,
        "critical",
        "A provider fails with an error that will not recover without operator action "
        "(API key, billing, permissions).",
        f"{{{{ $value | humanize }}}} terminal {{{{ $labels.error_class }}}} errors in the last "
        f"{w} on job {{{{ $labels.job }}}}: component {{{{ $labels.component }}}}, provider "
        "{{ $labels.provider }}. Requests to this provider keep failing until an operator "
        f"acts (the alert stays on {cfg.critical_keep_firing_for} after the last one).",
        cfg.critical_keep_firing_for,
    )


def _silent_sessions(cfg: Config, severity: str, ratio: float, for_: str) -> dict[str, Any]:
    w = cfg.silent_window
    return _rule(
        SILENT_SESSIONS,
        _above(r.silent_sessions(cfg), ratio, cfg.silent_min_sessions),
        for_,
        severity,
        "Callers speak and the agent never answers: sessions close without the agent "
        "ever speaking.",
        f"{{{{ $value | humanizePercentage }}}} of the sessions closed in the last {w} on job "
        "{{ $labels.job }} were silent (the user spoke, the agent never did); threshold "
        f"{percent(ratio)}, with at least {cfg.silent_min_sessions} sessions closed.",
    )


def _unanswered_turns(cfg: Config) -> dict[str, Any]:
    for_, by = cfg.unanswered_for, _on(cfg)
    waiting = f"sum by ({by}) ({r.sel(cfg, n.UNANSWERED_TURNS)})"
    active = f"sum by ({by}) ({r.sel(cfg, n.SESSIONS_ACTIVE)})"
    ratio = cfg.unanswered_ratio
    expr = (
        f"{waiting} > {cfg.unanswered_turns_threshold}\n"
        f"# and a share of the active sessions: a few waiting callers in a large fleet are noise\n"
        f"and on ({by})\n"
        f"  {waiting}\n"
        "  /\n"
        f"  clamp_min({active}, 1)\n"
        f"  >= {ratio:g}"
    )
    return _rule(
        UNANSWERED_TURNS,
        expr,
        for_,
        "warning",
        "Callers are waiting for the agent to answer, right now.",
        "{{ $value | humanize }} user turns on job {{ $labels.job }} are waiting longer than "
        "the silence timeout for the agent to speak; more than "
        f"{cfg.unanswered_turns_threshold}, and at least {percent(ratio)} of the active "
        f"sessions, have been waiting, without a break, for {for_}.",
    )


def _dead_turns(cfg: Config) -> dict[str, Any]:
    w = cfg.dead_window
    return _rule(
        DEAD_TURNS,
        _above(r.dead_turns(cfg), cfg.dead_ratio, cfg.dead_min_turns),
        cfg.dead_for,
        "warning",
        "User turns die: the agent goes back to listening without saying anything.",
        f"{{{{ $value | humanizePercentage }}}} of the user turns in the last {w} on job "
        "{{ $labels.job }} died (the agent went from thinking back to listening without "
        f"speaking); threshold {percent(cfg.dead_ratio)}, with at least {cfg.dead_min_turns} "
        "user turns.",
    )


def _unheard_speech(cfg: Config) -> dict[str, Any]:
    w = cfg.unheard_window
    return _rule(
        UNHEARD_SPEECH,
        _above(r.unheard_speech(cfg), cfg.unheard_ratio, cfg.unheard_min_turns),
        cfg.unheard_for,
        "warning",
        "The agent replies but callers never hear it: its speech produces no audio, is never "
        "played, or is cleared before playout.",
        "Agent replies the caller never heard (no audio frames, never played, or cleared "
        "before playout) came to {{ $value | humanizePercentage }} of the user turns in the "
        f"last {w} on job {{{{ $labels.job }}}}; threshold "
        f"{percent(cfg.unheard_ratio)}, with at least {cfg.unheard_min_turns} user turns.",
    )


def _rate_limited(cfg: Config) -> dict[str, Any]:
    w, ratio, least = cfg.rate_limited_window, cfg.rate_limited_ratio, cfg.rate_limited_min_requests
    part, whole = r.transient_quota_errors(cfg), r.requests(cfg, w)
    return _rule(
        RATE_LIMITED,
        f"{_per_request(part, whole, cfg, least)}\n>= {ratio:g}",
        cfg.rate_limited_for,
        "warning",
        "LiveKit Inference rate or concurrency limits are hit again and again: retries add "
        "latency and turns die when they run out.",
        f"{{{{ $value | humanizePercentage }}}} of the {{{{ $labels.component }}}} requests in "
        f"the last {w} on job {{{{ $labels.job }}}} met a transient LiveKit Inference quota "
        "error (quota type {{ $labels.quota_type }}, category {{ $labels.quota_category }}; "
        f"one per failed attempt); threshold {percent(ratio)} in every {w} for "
        f"{cfg.rate_limited_for}, with at least {least} requests.",
    )


def _masked_retry_failures(cfg: Config) -> dict[str, Any]:
    w, ratio, least = cfg.masked_window, cfg.masked_ratio, cfg.masked_min_requests
    part, whole = r.masked_failures(cfg), r.requests(cfg, w)
    return _rule(
        MASKED_RETRY_FAILURES,
        f"{_per_request(part, whole, cfg, least)}\n> {ratio:g}",
        cfg.masked_for,
        "warning",
        "Requests failed after retries whose final error hides the first attempt's cause.",
        f"{{{{ $value | humanizePercentage }}}} of the {{{{ $labels.component }}}} requests on "
        f"job {{{{ $labels.job }}}} in the last {w} failed with root cause "
        "{{ $labels.root_cause }} while their first attempt failed with "
        "{{ $labels.first_root_cause }}: the retries hid the first cause; threshold "
        f"{percent(ratio)}, with at least {least} requests.",
    )


def alerts(cfg: Config) -> list[dict[str, Any]]:
    """The alerts on the calls for ``cfg``, in the order of the rule file."""
    return [
        _credits_exhausted(cfg),
        _credits_running_out(cfg),
        _credits_low(cfg),
        _terminal_errors(cfg),
        _silent_sessions(cfg, "warning", cfg.silent_warning_ratio, cfg.silent_warning_for),
        _silent_sessions(cfg, "critical", cfg.silent_critical_ratio, cfg.silent_critical_for),
        _unanswered_turns(cfg),
        _dead_turns(cfg),
        _unheard_speech(cfg),
        _rate_limited(cfg),
        _masked_retry_failures(cfg),
    ]
