"""The alerts on the scrape targets and on otel-agents itself.

MetricsAbsent and TargetDown (a target without otel-agents metrics, or that cannot be scraped:
every other alert is blind to it), InternalErrors (otel-agents contained its own failure), and the
sidecar's SidecarReapErrors, SidecarQuarantinedFiles, SidecarReapingStalled and
SidecarRenderSlow. :func:`alerts` builds them in the order of the rule file, after the alerts of
:mod:`dashboards.alerts_calls`; :mod:`dashboards.alerts` writes it.
"""

from __future__ import annotations

from typing import Any

from otel_agents import names as n

from . import rules as r
from .alert_rule import on as _on
from .alert_rule import rule as _rule
from .config import (
    INTERNAL_ERRORS,
    METRICS_ABSENT,
    SIDECAR_QUARANTINED_FILES,
    SIDECAR_REAP_ERRORS,
    SIDECAR_REAPING_STALLED,
    SIDECAR_RENDER_SLOW,
    TARGET_DOWN,
    Config,
    percent,
    seconds,
)


def _metrics_absent(cfg: Config) -> dict[str, Any]:
    started = r.sel(cfg, n.SESSIONS_STARTED)
    on = _on(cfg, "instance")
    expr = (
        "# a target of the job, scraped, without otel-agents metrics\n"
        f"max by ({on}) (up{{{cfg.selector}}} == 1)\n"
        f"unless on ({on})\n"
        f"{started}"
    )
    return _rule(
        METRICS_ABSENT,
        expr,
        cfg.absent_for,
        "warning",
        "A LiveKit Agents target is scraped but exposes no otel-agents metrics: the other "
        "otel-agents alerts cannot fire for it.",
        "Target {{ $labels.instance }} of job {{ $labels.job }} is up (up == {{ $value }}) but "
        f"exposes no {n.SESSIONS_STARTED}, for {cfg.absent_for}: otel-agents is not initialised "
        "in it, or the scrape reaches the wrong port.",
    )


def _target_down(cfg: Config) -> dict[str, Any]:
    up = f"up{{{cfg.selector}}}"
    expr = (
        "# a target of the job that Prometheus cannot scrape\n"
        f"max by ({_on(cfg, 'instance')}) ({up}) == 0\n"
        "or\n"
        "# no target of the job at all\n"
        f"absent({up})"
    )
    return _rule(
        TARGET_DOWN,
        expr,
        cfg.target_down_for,
        "warning",
        "A LiveKit Agents target cannot be scraped, or the job has no target: the other "
        "otel-agents alerts are blind to it.",
        "{{ if $labels.instance }}Target {{ $labels.instance }} of job {{ $labels.job }} is "
        "down (up == {{ $value }}){{ else }}Prometheus scrapes no target of job "
        f"{{{{ $labels.job }}}}{{{{ end }}}}, for {cfg.target_down_for}.",
    )


def _internal_errors(cfg: Config) -> dict[str, Any]:
    w = cfg.internal_window
    return _rule(
        INTERNAL_ERRORS,
        f"{r.internal_errors(cfg).expr} > 0",
        cfg.internal_for,
        "warning",
        "otel-agents contained an internal failure: some telemetry (metrics, spans, logs) may "
        "be missing; the calls themselves are unaffected.",
        f"{{{{ $value | humanize }}}} internal errors of otel-agents in the last {w} on job "
        "{{ $labels.job }}, where {{ $labels.where }}: the library caught its own failure and "
        "went on; what it was recording there may be incomplete.",
    )


def _sidecar_reap_errors(cfg: Config) -> dict[str, Any]:
    w = cfg.sidecar_window
    return _rule(
        SIDECAR_REAP_ERRORS,
        f"{r.sidecar_reap_errors(cfg).expr} > 0",
        cfg.sidecar_for,
        "warning",
        "The sidecar failed to read, merge or remove files of dead processes: their metrics "
        "may be missing or the directory may grow.",
        f"{{{{ $value | humanize }}}} reap errors in the last {w} on target "
        "{{ $labels.instance }} of job {{ $labels.job }}: files of the multiprocess directory "
        "the sidecar could not read, merge or remove.",
    )


def _sidecar_quarantined_files(cfg: Config) -> dict[str, Any]:
    w = cfg.sidecar_window
    return _rule(
        SIDECAR_QUARANTINED_FILES,
        f"{r.sidecar_quarantined_files(cfg).expr} > 0",
        cfg.sidecar_for,
        "warning",
        "The sidecar moved corrupt metric files aside: the counts they held left the totals.",
        f"{{{{ $value | humanize }}}} files of the multiprocess directory of target "
        "{{ $labels.instance }} of job {{ $labels.job }} were unsound and renamed to *.corrupt "
        f"in the last {w}: the counts they held left the target's totals (a fall, never "
        "counted as new errors by the rules).",
    )


def _sidecar_reaping_stalled(cfg: Config) -> dict[str, Any]:
    on, most = _on(cfg, "instance"), cfg.reap_stalled_threshold
    files = f"max by ({on}) ({r.sel(cfg, n.SIDECAR_DB_FILES)})"
    live = f"max by ({on}) ({r.sel(cfg, n.SIDECAR_LIVE_PROCESSES)})"
    return _rule(
        SIDECAR_REAPING_STALLED,
        f"{files}\n> {most} * clamp_min({live}, 1)",
        cfg.reap_stalled_for,
        "warning",
        "Metric files of dead processes pile up in the multiprocess directory: every scrape "
        "reads them all and gets slower.",
        "{{ $value | humanize }} metric files in the multiprocess directory of target "
        "{{ $labels.instance }} of job {{ $labels.job }}: more than "
        f"{most} per live process for {cfg.reap_stalled_for}; the sidecar is not compacting "
        "dead processes' files.",
    )


def _sidecar_render_slow(cfg: Config) -> dict[str, Any]:
    on, w = _on(cfg, "instance"), cfg.render_slow_window
    limit = cfg.render_slow_ratio * seconds(cfg.scrape_timeout, "scrape_timeout")
    render = r.sel(cfg, n.SIDECAR_RENDER_SECONDS)
    return _rule(
        SIDECAR_RENDER_SLOW,
        f"max by ({on}) (max_over_time({render}[{w}]))\n>= {limit:g}",
        cfg.render_slow_for,
        "warning",
        "The sidecar's /metrics renders come close to the scrape timeout: scrapes are about to "
        "fail and every otel-agents alert would go blind.",
        "A /metrics render of target {{ $labels.instance }} of job {{ $labels.job }} took "
        f"{{{{ $value | humanizeDuration }}}}, at least {percent(cfg.render_slow_ratio)} of the "
        f"{cfg.scrape_timeout} scrape timeout, in every {w} for {cfg.render_slow_for}.",
    )


def alerts(cfg: Config) -> list[dict[str, Any]]:
    """The alerts on the targets and otel-agents for ``cfg``, in the order of the rule file."""
    return [
        _metrics_absent(cfg),
        _target_down(cfg),
        _internal_errors(cfg),
        _sidecar_reap_errors(cfg),
        _sidecar_quarantined_files(cfg),
        _sidecar_reaping_stalled(cfg),
        _sidecar_render_slow(cfg),
    ]
