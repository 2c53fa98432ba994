"""The recording rules of otel-agents, and the PromQL pieces every rule is built from.

Counters: what a series counted in a window. :func:`new_in` ("what this series counted in the
last window") is what every rule reads a counter through, instead of ``increase()``, because
``increase()`` is wrong for a labelled counter three ways: a series is created by its first
increment, born at 1 or more, and ``increase()`` never sees that first step (the first terminal
quota error of a process, the very one that must page); it reads any fall as a counter reset and
counts the whole value again (a corrupt file of a dead process moved out of the sidecar's sum, a
one-scrape double count); and it extrapolates ("1.053 errors"). :func:`new_in` counts:

* the whole value of every series of a target whose process started in the window, watched from
  its start: its witness (``otel_agents_sessions_started_total``, exported at 0 from ``init()``)
  is 0 at some scrape of the window and was not 0 at its start (a new process, or a restart, even
  one whose first scrape shows the same count as the old process's last);
* the whole value of a series born in the window while its target was watched (absent at the
  window's start while the target's witness was there): a new label set;
* otherwise what the series gained since the window's start, read from the lower of its last two
  scrapes (``Config.scrape_interval`` apart), never less than 0: a fall is never a reset, and a
  one-scrape spike never counts; an increment counts from the second scrape that shows it.

No history is ever replayed: after a gap in the data of any length (Prometheus down, a new HA
replica, a relabelled instance, a failed scrape) a series whose target was not watched at the
window's start and did not start in it counts only what it gains after the gap (so for one window
after Prometheus starts watching a running target, its new errors are seen at the window's end,
not at once). Birth detection
reads one witness series per target (``on (job, instance)``), not a look-back scan of every
counter series, so a rule's cost grows with the series it counts, not with hours of their history
(``bench/rule_cost.py``).

Recording rules. Each count an alert computes is recorded, summed by the labels the alert keeps,
over the alert's window, and named ``level:metric:operations`` (Prometheus' convention):
``job:otel_agents_silent_sessions:increase15m`` is "silent sessions in the last 15m, per job,
counted by :func:`new_in`"; the shares are recorded as ``..._per_...:ratio_increase15m``. With
``Config.group_labels`` (``cluster``, ``namespace``, ...) every level keeps them too, after the job
(``job_cluster:...``). The alerts are built from the same expressions (``alerts``). The recording
rules are the first rules of the alerts' own group: Prometheus evaluates a group's rules one after
the other at the same timestamp, so each recorded sample is what the alert's expression gives at
that evaluation's timestamp, and a rule reading a recorded series (the shares) reads the value
recorded in the same evaluation, never the previous one.

For the dashboards: the recorded series (:func:`records`, names above) are per job (and group
labels); :func:`new_in` and :func:`sum_new` give the same birth-aware count for any selector,
window and grouping, e.g. ``sum_new(DEFAULTS, ["job", "component"], sel(DEFAULTS, n.REQUESTS),
"5m")``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from otel_agents import names as n

from .config import Config, duration, seconds

#: one PromQL label matcher: label, operator, quoted value
_MATCHER: Final = re.compile(
    r"""([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)"""
)


# --- PromQL pieces ---------------------------------------------------------------------------


def sel(cfg: Config, metric: str, *matchers: str) -> str:
    """``metric`` with the job selector and ``matchers``."""
    return f"{metric}{{{', '.join([cfg.selector, *matchers])}}}"


def indent(text: str, by: int = 2) -> str:
    return "\n".join(" " * by + line if line else line for line in text.splitlines())


def group_by(cfg: Config, *labels: str) -> tuple[str, ...]:
    """The labels an aggregation keeps: ``job``, the configured group labels, then ``labels``."""
    return ("job", *cfg.group_labels, *labels)


def target(cfg: Config) -> str:
    """The labels naming one target, for ``on (...)``: job, the group labels, instance."""
    return ", ".join(group_by(cfg, "instance"))


def fresh_targets(cfg: Config, window: str) -> str:
    """Per target: 0 where its process started in the last ``window``, watched from its start
    (its witness, exported at 0 from ``init()``, is 0 at some scrape of the window and was not 0
    at the window's start). A target back after a gap shows its old, non-zero count: not fresh."""
    witness = sel(cfg, n.SESSIONS_STARTED)
    return (
        f"(min_over_time({witness}[{window}]) == 0)\n"
        f"unless on ({target(cfg)})\n"
        f"({witness} offset {window} == 0)"
    )


def new_in(cfg: Config, series: str, window: str) -> str:
    """Per series: what the counter ``series`` counted in the last ``window``, first increments
    included, falls and one-scrape spikes ignored, history never replayed (see the module
    docstring)."""
    witness = sel(cfg, n.SESSIONS_STARTED)
    on = target(cfg)
    scrape = cfg.scrape_interval
    return "\n".join(
        [
            "# its target's process started in the window, watched from its start: all of it",
            "(",
            f"    {series}",
            f"  and on ({on})",
            indent(fresh_targets(cfg, window), 4),
            ")",
            "or",
            "# born in the window while its target was watched: all of it",
            "(",
            f"    ({series} unless {series} offset {window})",
            f"  and on ({on})",
            f"    {witness} offset {window}",
            ")",
            "or",
            "# what it gained since the window's start, by the lower of its last two scrapes:",
            "# a fall is no reset, a one-scrape spike no gain",
            "clamp_min(",
            f"    ({series} <= {series} offset {scrape} or {series} offset {scrape})",
            f"  - {series} offset {window},",
            "  0",
            ")",
        ]
    )


def sum_new(cfg: Config, by: Sequence[str], series: str, window: str) -> str:
    return f"sum by ({', '.join(by)}) (\n{indent(new_in(cfg, series, window))}\n)"


def job_matchers(cfg: Config) -> str:
    """The matchers of the job selector on the ``job`` label, the one label every recorded
    series keeps: how a rule reads its own deployment's recorded series only (rule files made
    for deployments of different jobs record the same names). With ``Config.group_labels``,
    the selector's matchers on them too (recorded series keep those labels)."""
    kept = ("job", *cfg.group_labels)
    return ", ".join(m.group(0) for m in _MATCHER.finditer(cfg.selector) if m.group(1) in kept)


# --- recording rules -------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """One recording rule: the series ``name``, recorded from ``expr``."""

    name: str
    expr: str

    def ref(self, cfg: Config) -> str:
        """The recorded series of ``cfg``'s deployment, as a rule reads it."""
        matchers = job_matchers(cfg)
        return f"{self.name}{{{matchers}}}" if matchers else self.name

    def rule(self) -> dict[str, str]:
        return {"record": self.name, "expr": self.expr}


@dataclass(frozen=True)
class Share:
    """A share ``part / whole`` over a window: both counts and their ratio, recorded."""

    part: Record
    whole: Record
    ratio: Record


def _metric(counter: str) -> str:
    """The metric part of a recorded name: the counter's name without ``_total``."""
    return counter.removesuffix("_total")


def counted(cfg: Config, by: Sequence[str], metric: str, series: str, window: str) -> Record:
    """``series`` (a counter selector) counted over ``window``, births included, summed by
    ``by``, recorded as ``<by joined by _>:<metric>:increase<window>``."""
    return Record(f"{'_'.join(by)}:{metric}:increase{window}", sum_new(cfg, by, series, window))


def share(cfg: Config, part: str, whole: str, window: str) -> Share:
    """The share of the counter ``part`` in the counter ``whole`` over ``window``, per job (and
    group labels)."""
    by = group_by(cfg)
    counts = [
        counted(cfg, by, _metric(counter), sel(cfg, counter), window) for counter in (part, whole)
    ]
    per = f"{_metric(part)}_per_{_metric(whole).removeprefix(n.PREFIX + '_')}"
    ratio = Record(
        f"{'_'.join(by)}:{per}:ratio_increase{window}",
        f"{counts[0].ref(cfg)}\n/\n{counts[1].ref(cfg)}",
    )
    return Share(counts[0], counts[1], ratio)


#: the labels of a LiveKit Inference quota error that its alerts keep (after the job and the
#: group labels: ``quota_by``)
QUOTA_BY: Final = ("job", n.L_COMPONENT, n.L_QUOTA_TYPE, n.L_QUOTA_CATEGORY)
#: the provider label of LiveKit Inference, the one provider whose terminal errors of class
#: ``quota_exhausted`` are quota errors too (what LiveKitAgentsCreditsExhausted reports)
INFERENCE_PROVIDER: Final = "livekit"


def quota_by(cfg: Config) -> tuple[str, ...]:
    return group_by(cfg, *QUOTA_BY[1:])


def terminal_quota_errors(cfg: Config, by: Sequence[str], window: str) -> Record:
    """Terminal LiveKit Inference quota errors (credits exhausted)."""
    terminal = sel(cfg, n.QUOTA_ERRORS, f'{n.L_TERMINAL}="true"')
    return counted(cfg, by, f"{n.PREFIX}_terminal_quota_errors", terminal, window)


def transient_quota_errors(cfg: Config) -> Record:
    """Transient LiveKit Inference quota errors (rate and concurrency limits)."""
    transient = sel(cfg, n.QUOTA_ERRORS, f'{n.L_TERMINAL}="false"')
    return counted(
        cfg,
        quota_by(cfg),
        f"{n.PREFIX}_transient_quota_errors",
        transient,
        cfg.rate_limited_window,
    )


def requests(cfg: Config, window: str) -> Record:
    """Requests (every outcome) per job and component: the traffic guard and denominator of the
    per-request alerts (RateLimited, MaskedRetryFailures)."""
    counter = n.REQUESTS
    by = group_by(cfg, n.L_COMPONENT)
    return counted(cfg, by, _metric(counter), sel(cfg, counter), window)


def credits_exhausted(cfg: Config) -> Record:
    return terminal_quota_errors(cfg, quota_by(cfg), cfg.credits_window)


def terminal_errors(cfg: Config) -> Record:
    by = group_by(cfg, n.L_COMPONENT, n.L_PROVIDER, n.L_ERROR_CLASS)
    counter = n.TERMINAL_ERRORS
    return counted(cfg, by, _metric(counter), sel(cfg, counter), cfg.terminal_window)


def terminal_quota_mask(cfg: Config) -> Record:
    """Terminal quota errors per job and component over twice the terminal window: the
    components whose LiveKit Inference (``provider="livekit"``) ``quota_exhausted`` terminal
    errors LiveKitAgentsTerminalErrors leaves to LiveKitAgentsCreditsExhausted. Twice: the mask
    must cover every evaluation at which the terminal error is in its own window."""
    window = duration(2 * seconds(cfg.terminal_window))
    return terminal_quota_errors(cfg, group_by(cfg, n.L_COMPONENT), window)


def masked_failures(cfg: Config) -> Record:
    by = group_by(cfg, n.L_COMPONENT, n.L_FIRST_ROOT_CAUSE, n.L_ROOT_CAUSE)
    counter = n.MASKED_FAILURES
    return counted(cfg, by, _metric(counter), sel(cfg, counter), cfg.masked_window)


def internal_errors(cfg: Config) -> Record:
    by = group_by(cfg, n.L_WHERE)
    counter = n.INTERNAL_ERRORS
    return counted(cfg, by, _metric(counter), sel(cfg, counter), cfg.internal_window)


def sidecar_count(cfg: Config, counter: str) -> Record:
    """One of the sidecar's own counters over ``Config.sidecar_window``, per target (each
    sidecar counts its own directory)."""
    by = group_by(cfg, "instance")
    return counted(cfg, by, _metric(counter), sel(cfg, counter), cfg.sidecar_window)


def sidecar_reap_errors(cfg: Config) -> Record:
    return sidecar_count(cfg, n.SIDECAR_REAP_ERRORS)


def sidecar_quarantined_files(cfg: Config) -> Record:
    return sidecar_count(cfg, n.SIDECAR_QUARANTINED_FILES)


def silent_sessions(cfg: Config) -> Share:
    return share(cfg, n.SILENT_SESSIONS, n.SESSIONS_CLOSED, cfg.silent_window)


def dead_turns(cfg: Config) -> Share:
    return share(cfg, n.DEAD_TURNS, n.USER_TURNS, cfg.dead_window)


def unheard_speech(cfg: Config) -> Share:
    return share(cfg, n.UNHEARD_SPEECH, n.USER_TURNS, cfg.unheard_window)


# --- quota gauges ----------------------------------------------------------------------------

#: the quota dimension the credit alerts watch: a balance that lasts a billing cycle. The others
#: (``rpm``, ``tpm``, ``requests``, ``tokens``) are rate-limit windows of a minute, refilled
#: before any forecast could matter (``LiveKitAgentsRateLimited`` covers hitting them)
CREDITS: Final = "credits"
#: the labels a quota alert keeps: one series per job, provider and dimension (after the job
#: and the group labels)
QUOTA_GAUGE_BY: Final = ("job", n.L_PROVIDER, n.L_DIMENSION)


def _credits(cfg: Config, gauge: str) -> str:
    return sel(cfg, gauge, f'{n.L_DIMENSION}="{CREDITS}"')


def credits_used_share(cfg: Config) -> str:
    """Per job, provider and dimension: the largest used share (used / limit) of the credit
    quota any target reports. A limit that is unknown (no series) or 0 gives no share."""
    by = ", ".join(group_by(cfg, *QUOTA_GAUGE_BY[1:]))
    return "\n".join(
        [
            f"max by ({by}) (",
            f"    {_credits(cfg, n.QUOTA_USED)}",
            "  /",
            f"    ({_credits(cfg, n.QUOTA_LIMIT)} > 0)",
            ")",
        ]
    )


def credits_seconds_left(cfg: Config) -> str:
    """Per job, provider and dimension: the seconds until the credits left run out at the burn
    rate of the last ``credits_burn_window`` (``deriv``: the least-squares slope of the used
    gauge), computed per target (each from its own view of the quota), the soonest target.
    Only while some credits are left and the used gauge grows: a balance reset at a new
    billing cycle (used drops) gives a negative slope, hence nothing, until the window holds
    the new cycle's burn alone."""
    by = ", ".join(group_by(cfg, *QUOTA_GAUGE_BY[1:]))
    used, limit = _credits(cfg, n.QUOTA_USED), _credits(cfg, n.QUOTA_LIMIT)
    return "\n".join(
        [
            f"min by ({by}) (",
            "  # the credits left, per target, while some are",
            "  (",
            "    (",
            f"        {limit}",
            f"      - {used}",
            "    ) > 0",
            "  )",
            "  /",
            f"  # the burn rate: credits used per second over the last {cfg.credits_burn_window}, "
            "while it grows",
            f"  (deriv({used}[{cfg.credits_burn_window}]) > 0)",
            ")",
        ]
    )


def records(cfg: Config) -> list[Record]:
    """Every recording rule, each before any rule that reads it, once."""
    silent, dead, unheard = silent_sessions(cfg), dead_turns(cfg), unheard_speech(cfg)
    ordered = [
        credits_exhausted(cfg),
        terminal_errors(cfg),
        terminal_quota_mask(cfg),
        silent.part,
        silent.whole,
        silent.ratio,
        dead.part,
        dead.whole,
        dead.ratio,
        unheard.part,
        unheard.whole,
        unheard.ratio,
        transient_quota_errors(cfg),
        requests(cfg, cfg.rate_limited_window),
        masked_failures(cfg),
        requests(cfg, cfg.masked_window),
        internal_errors(cfg),
        sidecar_reap_errors(cfg),
        sidecar_quarantined_files(cfg),
    ]
    unique: dict[str, Record] = {}
    for record in ordered:
        if unique.setdefault(record.name, record) != record:
            raise AssertionError(f"two recording rules named {record.name}")
    return list(unique.values())
