"""The recording rules of otel-agents, and the PromQL pieces every rule is built from.

Counters and new series. A labeled counter series is created by its first increment, so it is
born at 1 (or more), and ``increase()`` never sees that first step: the first terminal quota
error of a process, the very one that must page, would be invisible. Every counter the rules
read goes through :func:`new_in`, "what this series counted in the last window", which adds the
value of a series born in the window to ``increase()``:

* a series with no sample at all in the ``birth_lookback`` before the window (a new process, a
  new label set): its whole value is new;
* a series that was absent at the window's start while the same target exposed
  ``otel_agents_sessions_started_total`` (exported from ``init()`` on): it was really zero then
  (e.g. the worker restarted and its counters started over);
* otherwise ``increase()`` (counter resets included).

A failed scrape, a gap in the data or a Prometheus restart makes every series absent for a
while; none of them counts as a birth (the witness is absent too, and the series has samples in
the lookback), so old errors do not page again. Only a gap longer than ``birth_lookback`` makes
the whole value of every counter of a target count once more.

Recording rules. Each count an alert computes is recorded, summed by the labels the alert keeps,
over the alert's window, and named ``level:metric:operations`` (Prometheus' convention):
``job:otel_agents_silent_sessions:increase15m`` is "silent sessions in the last 15m, per job,
first increments included"; the shares are recorded as ``..._per_...:ratio_increase15m``. The
alerts are built from the same expressions (``alerts``). The recording rules are the first rules
of the alerts' own group: Prometheus evaluates a group's rules one after the other at the same
timestamp, so each recorded sample is what the alert's expression gives at that evaluation's
timestamp, and a rule reading a recorded series (the shares) reads the value recorded in the same
evaluation, never the previous one.
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


def new_in(cfg: Config, series: str, window: str) -> str:
    """Per series: what the counter ``series`` counted in the last ``window``, births included
    (see the module docstring)."""
    witness = sel(cfg, n.SESSIONS_STARTED)
    return "\n".join(
        [
            "# born in the window: no sample before it (a new process or label set)",
            "(",
            f"  {series}",
            f"  unless present_over_time({series}[{cfg.birth_lookback}] offset {window})",
            ")",
            "or",
            "# absent at the window's start while its target was up: it was zero then",
            "(",
            f"    ({series} unless {series} offset {window})",
            "  and on (job, instance)",
            f"    {witness} offset {window}",
            ")",
            "or",
            f"increase({series}[{window}])",
        ]
    )


def sum_new(cfg: Config, by: Sequence[str], series: str, window: str) -> str:
    return f"sum by ({', '.join(by)}) (\n{indent(new_in(cfg, series, window))}\n)"


def job_matchers(cfg: Config) -> str:
    """The matchers of the job selector on the ``job`` label, the one label every recorded
    series keeps: how a rule reads its own deployment's recorded series only (rule files made
    for deployments of different jobs record the same names)."""
    return ", ".join(m.group(0) for m in _MATCHER.finditer(cfg.selector) if m.group(1) == "job")


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
    """The share of the counter ``part`` in the counter ``whole`` over ``window``, per job."""
    counts = [
        counted(cfg, ["job"], _metric(counter), sel(cfg, counter), window)
        for counter in (part, whole)
    ]
    per = f"{_metric(part)}_per_{_metric(whole).removeprefix(n.PREFIX + '_')}"
    ratio = Record(
        f"job:{per}:ratio_increase{window}",
        f"{counts[0].ref(cfg)}\n/\n{counts[1].ref(cfg)}",
    )
    return Share(counts[0], counts[1], ratio)


#: the labels of a LiveKit Inference quota error that its alerts keep
QUOTA_BY: Final = ("job", n.L_COMPONENT, n.L_QUOTA_TYPE, n.L_QUOTA_CATEGORY)


def terminal_quota_errors(cfg: Config, by: Sequence[str], window: str) -> Record:
    """Terminal LiveKit Inference quota errors (credits exhausted)."""
    terminal = sel(cfg, n.QUOTA_ERRORS, f'{n.L_TERMINAL}="true"')
    return counted(cfg, by, f"{n.PREFIX}_terminal_quota_errors", terminal, window)


def transient_quota_errors(cfg: Config) -> Record:
    """Transient LiveKit Inference quota errors (rate and concurrency limits)."""
    transient = sel(cfg, n.QUOTA_ERRORS, f'{n.L_TERMINAL}="false"')
    return counted(
        cfg, QUOTA_BY, f"{n.PREFIX}_transient_quota_errors", transient, cfg.rate_limited_window
    )


def credits_exhausted(cfg: Config) -> Record:
    return terminal_quota_errors(cfg, QUOTA_BY, cfg.credits_window)


def terminal_errors(cfg: Config) -> Record:
    by = ("job", n.L_COMPONENT, n.L_PROVIDER, n.L_ERROR_CLASS)
    counter = n.TERMINAL_ERRORS
    return counted(cfg, by, _metric(counter), sel(cfg, counter), cfg.terminal_window)


def terminal_quota_mask(cfg: Config) -> Record:
    """Terminal quota errors per job and component over twice the terminal window: the
    components whose ``quota_exhausted`` terminal errors LiveKitAgentsTerminalErrors leaves to
    LiveKitAgentsCreditsExhausted. Twice, because a series born in the window counts one scrape
    longer than ``increase()``."""
    window = duration(2 * seconds(cfg.terminal_window))
    return terminal_quota_errors(cfg, ("job", n.L_COMPONENT), window)


def masked_failures(cfg: Config) -> Record:
    by = ("job", n.L_COMPONENT, n.L_FIRST_ROOT_CAUSE, n.L_ROOT_CAUSE)
    counter = n.MASKED_FAILURES
    return counted(cfg, by, _metric(counter), sel(cfg, counter), cfg.masked_window)


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
#: the labels a quota alert keeps: one series per job, provider and dimension
QUOTA_GAUGE_BY: Final = ("job", n.L_PROVIDER, n.L_DIMENSION)


def _credits(cfg: Config, gauge: str) -> str:
    return sel(cfg, gauge, f'{n.L_DIMENSION}="{CREDITS}"')


def credits_used_share(cfg: Config) -> str:
    """Per job, provider and dimension: the largest used share (used / limit) of the credit
    quota any target reports. A limit that is unknown (no series) or 0 gives no share."""
    by = ", ".join(QUOTA_GAUGE_BY)
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
    by = ", ".join(QUOTA_GAUGE_BY)
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
        masked_failures(cfg),
    ]
    unique: dict[str, Record] = {}
    for record in ordered:
        if unique.setdefault(record.name, record) != record:
            raise AssertionError(f"two recording rules named {record.name}")
    return list(unique.values())
