"""The series every process exports at 0 from ``init()`` (``otel_agents._export.build``): the
counters whose labels are all small closed sets, so that ``increase()`` and ``rate()`` see their
first increment; within each metric's series budget; at 0 in multiprocess mode, where the
sidecar's totals stay exact."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess

import otel_agents
from otel_agents import names as n
from otel_agents._export import build
from otel_agents._export import metrics as _metrics

from conftest import reset_metrics


def closed_label_sets(spec: n.Metric) -> set[tuple[tuple[str, str], ...]]:
    values = [label.values or () for label in spec.labels]
    return {
        tuple(sorted(zip(spec.label_names, combo, strict=True)))
        for combo in itertools.product(*values)
    }


def exported() -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for metric in REGISTRY.collect():
        for s in metric.samples:
            if s.name.startswith(n.PREFIX) and s.name.endswith("_total"):
                out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_which_counters_start_at_zero() -> None:
    """Small closed sets only: never a provider, a root cause, or a set of hundreds."""
    labelled = {
        name for name in build.ZEROED if any(m.name == name and m.labels for m in n.METRICS)
    }
    assert labelled == {
        n.INTERNAL_ERRORS,
        n.SESSIONS_CLOSED,
        n.DEAD_TURNS,
        n.UNHEARD_SPEECH,
        n.FALLBACK_EXHAUSTED,
    }
    for spec in n.METRICS:
        if spec.name in build.ZEROED and spec.labels:
            assert all(label.values is not None for label in spec.labels), spec.name
            # within the budget: a zero series never folds a real label set into "other"
            assert len(closed_label_sets(spec)) <= min(build.ZERO_LIMIT, spec.budget), spec.name
    assert n.SILENT_SESSIONS not in build.ZEROED  # 65 label sets
    assert n.QUOTA_ERRORS not in build.ZEROED  # 280
    assert n.REQUESTS not in build.ZEROED  # an open provider label


def test_init_exports_every_closed_label_set_at_zero_and_clear_keeps_them() -> None:
    reset_metrics()
    otel_agents.init()
    try:
        series = exported()
        for spec in n.METRICS:
            if spec.name in build.ZEROED and spec.labels:
                assert set(series[spec.name]) == closed_label_sets(spec), spec.name
                assert set(series[spec.name].values()) == {0.0}, spec.name
        metrics = _metrics.get_metrics()
        metrics.dead_turns.inc(("error",))
        metrics.clear()  # the tests' reset: back to every zero series, none counted
        after = exported()
        assert after[n.DEAD_TURNS] == {(("cause", "empty"),): 0.0, (("cause", "error"),): 0.0}
    finally:
        otel_agents.shutdown()


def test_a_fresh_registry_has_the_zero_series_too() -> None:
    registry = CollectorRegistry()
    _metrics.Metrics(registry)
    text = generate_latest(registry).decode()
    assert 'otel_agents_sessions_closed_total{agent_spoke="false",reason="error"} 0.0' in text
    assert 'otel_agents_internal_errors_total{where="liveness"} 0.0' in text
    assert "otel_agents_silent_sessions_total{" not in text


CHILD = textwrap.dedent(
    """
    import os, sys
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = {directory!r}
    import otel_agents
    otel_agents.init()
    from otel_agents._export.metrics import get_metrics
    if sys.argv[1] == "count":
        get_metrics().dead_turns.inc(("empty",))
    """
)


def test_multiprocess_zero_series_add_nothing_to_the_totals(tmp_path: Path) -> None:
    """Three processes, one of which counts a dead turn: the merged directory has every zero
    series once, and the count exactly."""
    directory = tmp_path / "prom"
    directory.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    script = CHILD.format(directory=str(directory))
    for mode in ("count", "idle", "idle"):
        subprocess.run([sys.executable, "-c", script, mode], env=env, check=True, timeout=120)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    text = generate_latest(registry).decode()
    assert 'otel_agents_dead_turns_total{cause="empty"} 1.0' in text
    assert 'otel_agents_dead_turns_total{cause="error"} 0.0' in text
    assert text.count("otel_agents_sessions_closed_total{") == 10
