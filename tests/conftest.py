"""Shared fixtures. ``telemetry`` is otel-agents' own public test fixture,
``otel_agents_capture`` (``otel_agents.testing``, a pytest plugin registered by the package):
otel-agents initialised with an in-memory span exporter, fresh metrics and captured
``otel_agents`` log records."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from otel_agents import names as n
from otel_agents import testing
from otel_agents._capture import sessions as _session

Series = testing.Series
Telemetry = testing.Capture


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any OpenTelemetry or multiprocess setting (what a
    test's child process must not inherit), plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "PROMETHEUS_MULTIPROC")) and k != "prometheus_multiproc_dir"
    }
    env.update(extra)
    return env


def session_series(
    *,
    reason: str = "user_initiated",
    agent_spoke: bool = True,
    turns: int = 1,
    dead: dict[str, int] | None = None,
    cause: str | None = None,
    unheard: dict[str, int] | None = None,
) -> Series:
    """The ``*_total`` series one closed session adds (silent when the user spoke and the caller
    never heard the agent: then ``cause`` is its silence cause, which a silent session must
    name), in the form of ``Capture.series()``. ``unheard``: its unheard replies, by cause."""
    spoke = "true" if agent_spoke else "false"
    out: Series = {
        (n.SESSIONS_STARTED, ()): 1,
        (n.SESSIONS_CLOSED, (("agent_spoke", spoke), ("reason", reason))): 1,
    }
    silent = bool(turns) and not agent_spoke
    if silent != (cause is not None):
        raise TypeError("a silent session has a cause, and only a silent session has one")
    if turns:
        out[(n.USER_TURNS, ())] = turns
    if cause is not None:
        out[(n.SILENT_SESSIONS, (("cause", cause), ("reason", reason)))] = 1
    for dead_cause, count in (dead or {}).items():
        out[(n.DEAD_TURNS, (("cause", dead_cause),))] = count
    for unheard_cause, count in (unheard or {}).items():
        out[(n.UNHEARD_SPEECH, (("cause", unheard_cause),))] = count
    return out


reset_metrics = testing.reset_metrics


@pytest.fixture
def telemetry(otel_agents_capture: testing.Capture) -> testing.Capture:
    """otel-agents initialised with an explicit in-memory tracer provider and fresh metrics:
    the public ``otel_agents_capture`` fixture of ``otel_agents.testing``."""
    return otel_agents_capture


@pytest.fixture
def outcomes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every turn outcome the session tracker decides, in order (each turn's, once)."""
    seen: list[str] = []
    original = _session.SessionTracker._outcome

    def outcome(self: _session.SessionTracker, turn: Any, outcome: str) -> None:
        seen.append(outcome)
        original(self, turn, outcome)  # type: ignore[arg-type]

    monkeypatch.setattr(_session.SessionTracker, "_outcome", outcome)
    return seen


@pytest.fixture(autouse=True)
def no_unknown_silence_cause(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every silent session names a cause: ``unknown`` is a defect of the session tracker, and
    no test may produce one (the subprocess tests assert their exact series instead)."""
    from otel_agents._capture import tracker

    unknown: list[str] = []  # their close reasons
    original = tracker.SessionTracker.silence_cause

    def silence_cause(self: tracker.SessionTracker) -> n.SilenceCause:
        cause = original(self)
        if cause == "unknown":
            unknown.append(self.close_reason)
        return cause

    monkeypatch.setattr(tracker.SessionTracker, "silence_cause", silence_cause)
    yield
    assert not unknown, f"silent sessions whose cause is unknown (closed: {unknown})"
