"""Bounded: hostile exceptions never escape a hook, and random input never grows the number of
series past the budget (docs/reference.md, docs/architecture.md)."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from livekit.agents import APIError, APIStatusError, llm
from prometheus_client import REGISTRY

import otel_agents
from otel_agents import names as n
from otel_agents._export import metrics as _metrics

from conftest import reset_metrics
from scripted import ScriptedLLM, random_error, random_word

SERIES_BOUND = sum(b + 1 for b in _metrics.SERIES_BUDGET.values())


@pytest.fixture
def metrics_only() -> Iterator[None]:
    """init() with no tracer and the otel_agents logger quiet: the metrics path alone."""
    reset_metrics()
    log = logging.getLogger(n.LOGGER_NAME)
    level = log.level
    log.setLevel(logging.CRITICAL)
    otel_agents.init()
    yield
    otel_agents.shutdown()
    log.setLevel(level)


def emit(model: llm.LLM, error: Exception, recoverable: bool) -> None:
    model.emit(
        "error",
        llm.LLMError(timestamp=time.time(), label="x", error=error, recoverable=recoverable),
    )


def otel_agents_series() -> int:
    return sum(
        1
        for metric in REGISTRY.collect()
        for s in metric.samples
        if s.name.startswith(n.PREFIX) and s.name.endswith("_total")
    )


@pytest.mark.usefixtures("metrics_only")
def test_100k_random_errors_types_messages_and_providers_stay_within_the_series_bound() -> None:
    rng = random.Random(1234)
    models = [ScriptedLLM(["x"], provider=random_word(rng)) for _ in range(200)]
    for i in range(100_000):
        error = random_error(rng, i)
        emit(rng.choice(models), error, recoverable=rng.random() < 0.6)
    series = otel_agents_series()
    assert series <= SERIES_BOUND <= 500
    families = _metrics.get_metrics().families
    # an unlabeled counter always exports its one sample, even before its first increment
    unlabeled_unused = sum(1 for f in families if not f._label_names and f.series == 0)
    assert series == sum(f.series for f in families) + unlabeled_unused
    # and nothing was lost: every attempt is counted somewhere
    total = sum(
        s.value
        for metric in REGISTRY.collect()
        for s in metric.samples
        if s.name == n.ATTEMPT_FAILURES
    )
    assert total == 100_000


class _Hostile(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str for you")

    def __repr__(self) -> str:
        raise RuntimeError("no repr either")


class _RaisingAttrs(APIStatusError):
    def __getattribute__(self, name: str) -> Any:
        if name in ("body", "message", "status_code", "response", "code", "terminal", "args"):
            raise RuntimeError(f"no {name}")
        return super().__getattribute__(name)


class _RaisingCause(Exception):
    @property  # type: ignore[override]
    def __cause__(self) -> BaseException | None:
        raise RuntimeError("no cause")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)


@st.composite
def hostile_errors(draw: st.DrawFn) -> Exception:
    kind = draw(st.sampled_from(["hostile", "attrs", "cause", "body", "cycle", "deep", "message"]))
    if kind == "hostile":
        return _Hostile(draw(st.text(max_size=30)))
    if kind == "attrs":
        return _RaisingAttrs("x", status_code=429)
    if kind == "cause":
        return _RaisingCause()
    if kind == "body":
        body = draw(json_values)
        if draw(st.booleans()):
            body = {"type": "inference_quota_exceeded", "category": body, "hint": body}
        return APIError(draw(st.text(max_size=50)), body=body)
    if kind == "cycle":
        a, b = Exception("a"), Exception("b")
        a.__cause__, b.__context__ = b, a
        return a
    if kind == "deep":
        top: Exception = Exception("0")
        for i in range(draw(st.integers(1, 3000))):
            nxt = Exception(str(i))
            nxt.__cause__ = top
            top = nxt
        return top
    text = draw(st.text(max_size=200))
    return APIError(f"returned error: {{{text}}} category: {text}")


@pytest.mark.usefixtures("metrics_only")
@settings(
    max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(error=hostile_errors(), recoverable=st.booleans())
def test_hostile_exceptions_never_escape_a_hook(error: Exception, recoverable: bool) -> None:
    model = ScriptedLLM(["x"])
    before = REGISTRY.get_sample_value(n.INTERNAL_ERRORS, {"where": "attempt_hook"}) or 0.0
    emit(model, error, recoverable)  # livekit's emitter re-raises TypeError: must not happen
    after = REGISTRY.get_sample_value(n.INTERNAL_ERRORS, {"where": "attempt_hook"}) or 0.0
    assert after == before  # contained by the classifier's own guards, not by the last resort
