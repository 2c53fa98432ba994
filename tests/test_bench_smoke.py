"""``make bench`` keeps working: the cheap benchmarks, at tiny sizes, return their figures, and the
README's results table is rewritten between its markers. Not a timed test: no timing is
asserted (benchmarks measure, tests do not)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import __main__ as bench_main
from bench import _common, hook_cost, hook_instructions, quota_headers


def test_hook_cost_runs_and_reports_its_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hook_cost, "BATCH", 10)
    monkeypatch.setattr(hook_cost, "ROUNDS", 2)
    monkeypatch.setattr(_common, "configure_logging", lambda: None)  # leave the root logger
    result = hook_cost.run()
    assert {"metrics_path", "metrics_span_log", "figures"} <= set(result)
    figures = _common.figures_of(result)
    assert {f.key for f in figures} == {
        "hook.metrics.ssl",
        "hook.metrics.quota",
        "hook.full.ssl",
        "hook.full.quota",
        "hook.metrics_path.huge_body",
        "hook.metrics_span_log.huge_body",
    }
    for f in figures:
        assert f.value > 0
        assert f.baseline is not None
        assert f.baseline > 0
        assert f.ratio is not None
        assert f.met in (True, False)  # every one of them has a target
    json.dumps(_common.jsonable(result))  # what results/hook_cost.json gets


def test_hook_instructions_counts_both_emits_under_callgrind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hook_instructions, "EMITS", 5)
    monkeypatch.setattr(hook_instructions, "CHAINS", {"ssl": "TLS connection error chain"})
    result = hook_instructions.run()
    counted = result["instructions_per_emit"]["ssl"]
    # the hook runs inside the hooked emit: it can only add instructions
    assert 0 < counted["base"] < counted["hooked"]
    (figure,) = _common.figures_of(result)
    assert figure.key == "hook.instructions.ssl"
    assert figure.ratio == counted["hooked"] / counted["base"]
    assert figure.met in (True, False)
    json.dumps(_common.jsonable(result))


def test_quota_headers_runs_and_reports_its_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(quota_headers, "BATCH", 10)
    monkeypatch.setattr(quota_headers, "ROUNDS", 2)
    monkeypatch.setattr(_common, "configure_logging", lambda: None)  # leave the root logger
    result = quota_headers.run()
    assert {"baseline_us", "capture_us", "six_gauge_sets_us", "figures"} <= set(result)
    figures = _common.figures_of(result)
    assert {f.key for f in figures} == {"quota.response", "quota.capture"}
    for f in figures:
        assert f.value > 0
        assert f.baseline is not None
        assert f.baseline > 0
        assert f.ratio is not None
        assert f.met in (True, False)
    json.dumps(_common.jsonable(result))  # what results/quota_headers.json gets


def test_the_readme_table_is_rewritten_between_its_markers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n{bench_main.BEGIN}\nold table\n{bench_main.END}\nafter\n")
    monkeypatch.setattr(bench_main, "README", readme)
    figure = _common.Figure(
        key="k",
        name="a | figure",
        value=1.5,
        unit="µs",
        baseline=1.0,
        baseline_label="base",
        ratio=1.5,
        on="ratio",
        op="<=",
        limit=1.5,
        note="a note",
    )
    summary = {"machine": _common.machine(), "seconds": 12.0, "failed": []}
    assert bench_main.write_readme(bench_main.markdown(summary, [figure]))
    text = readme.read_text()
    assert "old table" not in text
    assert text.startswith("# x\n\nbefore\n")
    assert text.endswith(f"{bench_main.END}\nafter\n")
    assert "| a \\| figure | 1.50 µs | 1.00 µs (base) | 1.50x | ratio ≤ 1.50x | yes |" in text
    assert "livekit-agents" in text
