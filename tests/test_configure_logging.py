"""``otel_agents.configure_logging()``: livekit's own log lines, rendered as JSON through
structlog, carry no planted credential; trace context, exception text, idempotency, hostile
records; and the CLI uses it for its verbose logs."""

from __future__ import annotations

import asyncio
import builtins
import io
import json
import logging
import random
import sys
from collections.abc import Iterator
from typing import Any

import credentials as cr
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from livekit.agents import APIStatusError, llm
from livekit.agents.types import APIConnectOptions
from opentelemetry.sdk.trace import TracerProvider

import otel_agents
from otel_agents import _logs
from otel_agents._export.redact import REDACTED

from scripted import ScriptedLLM, raising

LIVEKIT = logging.getLogger("livekit.agents")


@pytest.fixture(autouse=True)
def _restore_root_logging() -> Iterator[None]:
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    yield
    for handler in [h for h in root.handlers if getattr(h, _logs._MARK, False)]:
        root.removeHandler(handler)
    root.handlers[:] = before[0]
    root.setLevel(before[1])


def _ours() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if getattr(h, _logs._MARK, False)]


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def _planted(seed: int) -> tuple[str, list[str]]:
    """An error text carrying credentials the way providers' error bodies quote requests."""
    rng = random.Random(seed)
    keys = [fmt.make(rng) for fmt in rng.sample(cr.KEY_FORMATS, 2)]
    _, header = rng.choice(cr.HEADERS)
    text = (
        f"upstream rejected the request: {header.format(keys[0])} Authorization: Bearer {keys[1]}"
    )
    return text, keys


async def _retry_once(message: str) -> None:
    """livekit's real retry loop: the first attempt fails (livekit logs ``failed to generate LLM
    completion: <error>, retrying in 0.0s``), the second answers."""
    error = APIStatusError(message, status_code=500, body={"error": message}, retryable=True)
    stream = ScriptedLLM([raising(error), "hello"]).chat(
        chat_ctx=llm.ChatContext.empty(),
        conn_options=APIConnectOptions(max_retry=1, retry_interval=0.0),
    )
    async with stream:
        async for _ in stream:
            pass


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1))
def test_livekit_retry_warning_has_no_planted_credential(seed: int) -> None:
    message, keys = _planted(seed)
    stream = io.StringIO()
    otel_agents.configure_logging(fmt="json", stream=stream)

    asyncio.run(_retry_once(message))

    text = stream.getvalue()
    (warning,) = [
        line for line in _lines(stream) if line["event"].startswith("failed to generate LLM")
    ]
    assert warning["logger"] == "livekit.agents"
    assert warning["level"] == "warning"
    assert warning["attempt"] == 1  # livekit's extras are kept
    assert REDACTED in warning["event"]
    assert "retrying in" in warning["event"]
    for key in keys:
        assert key not in text
    # the same key plain, for contrast: livekit's text carries it raw
    assert keys[1] in message


def test_trace_context_inside_a_span_only() -> None:
    stream = io.StringIO()
    otel_agents.configure_logging(fmt="json", stream=stream)
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("turn") as span:
        LIVEKIT.warning("inside")
    LIVEKIT.warning("outside")
    inside, outside = _lines(stream)
    ctx = span.get_span_context()
    assert inside["trace_id"] == format(ctx.trace_id, "032x")
    assert inside["span_id"] == format(ctx.span_id, "016x")
    assert "trace_id" not in outside
    assert "span_id" not in outside


def test_a_record_keeps_its_own_trace_context() -> None:
    stream = io.StringIO()
    otel_agents.configure_logging(fmt="json", stream=stream)
    with TracerProvider().get_tracer("test").start_as_current_span("turn"):
        logging.getLogger("otel_agents").warning(
            "attempt_failed", extra={"trace_id": "a" * 32, "span_id": "b" * 16}
        )
    (line,) = _lines(stream)
    assert (line["trace_id"], line["span_id"]) == ("a" * 32, "b" * 16)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_exception_text_extras_and_stack_are_redacted(seed: int) -> None:
    message, keys = _planted(seed)
    stream = io.StringIO()
    otel_agents.configure_logging(fmt="json", stream=stream)
    try:
        try:
            raise ConnectionError(message)
        except ConnectionError as exc:
            raise RuntimeError(f"wrapped: {message}") from exc
    except RuntimeError:
        LIVEKIT.exception(
            "request failed",
            extra={"request": {"headers": [message], "body": (message, 3)}, "raw": message},
            stack_info=True,
        )
    text = stream.getvalue()
    for key in keys:
        assert key not in text
    (line,) = _lines(stream)
    assert line["exception"].startswith("Traceback (most recent call last):")
    assert "builtins.RuntimeError" not in line["exception"]
    assert "RuntimeError: wrapped: upstream rejected the request" in line["exception"]
    assert REDACTED in line["exception"]
    assert REDACTED in line["raw"]
    assert REDACTED in line["request"]["headers"][0]
    assert line["request"]["body"][1] == 3
    assert line["stack"].startswith("Stack (most recent call last):")


def test_a_message_is_redacted_after_percent_formatting() -> None:
    key = cr.KEY_FORMATS[0].make(random.Random(7))
    stream = io.StringIO()
    otel_agents.configure_logging(fmt="json", stream=stream)
    LIVEKIT.warning("header %s: %s", "Authorization", f"Bearer {key}")
    (line,) = _lines(stream)
    assert line["event"] == f"header Authorization: Bearer {REDACTED}"


def test_idempotent_one_handler_the_last_calls() -> None:
    first, second = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    others = [h for h in root.handlers if not getattr(h, _logs._MARK, False)]
    otel_agents.configure_logging(fmt="json", stream=first)
    otel_agents.configure_logging(logging.ERROR, fmt="json", stream=second)
    assert len(_ours()) == 1
    assert [h for h in root.handlers if not getattr(h, _logs._MARK, False)] == others
    assert root.level == logging.ERROR
    LIVEKIT.warning("below the level")
    LIVEKIT.error("shown")
    assert first.getvalue() == ""
    assert [line["event"] for line in _lines(second)] == ["shown"]
    assert otel_agents.configure_logging(fmt="json", stream=second) is None


def test_bad_arguments_change_nothing() -> None:
    before = (list(logging.getLogger().handlers), logging.getLogger().level)
    with pytest.raises(ValueError, match="fmt"):
        otel_agents.configure_logging(fmt="xml")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="LOUD"):
        otel_agents.configure_logging("LOUD")
    assert (list(logging.getLogger().handlers), logging.getLogger().level) == before


class _Hostile:
    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def test_hostile_records_are_contained(capsys: pytest.CaptureFixture[str]) -> None:
    key = cr.KEY_FORMATS[0].make(random.Random(3))
    logging.getLogger().handlers[:] = []  # pytest's capture handler would raise on them
    stream = io.StringIO()
    otel_agents.configure_logging(fmt="json", stream=stream)
    nested: list[Any] = []
    nested.append(nested)  # a list that holds itself
    LIVEKIT.warning(_Hostile())
    LIVEKIT.warning("%d items for " + key, "many")  # arguments that do not match
    LIVEKIT.warning("extras", extra={"bad": _Hostile(), "loop": nested, "big": 10**5000})
    LIVEKIT.warning(
        "huge", extra={"blob": "x" * 1_000_000, "map": {str(i): i for i in range(10**4)}}
    )
    LIVEKIT.warning("x" * 100_000 + " Authorization: Bearer " + key)
    lines = _lines(stream)
    assert len(lines) == 5
    assert (
        lines[0]["event"] == "<unprintable message> (message could not be formatted: RuntimeError)"
    )
    assert lines[1]["event"].endswith("(message could not be formatted: TypeError)")
    assert key not in stream.getvalue()
    assert lines[2]["bad"] == "<unrenderable _Hostile: RuntimeError>"
    assert lines[2]["big"].startswith("<int of")
    assert len(lines[3]["blob"]) <= _logs.EXTRA_CHARS + 1
    assert len(lines[3]["map"]) == _logs.EXTRA_ITEMS + 1
    assert len(lines[4]["event"]) <= _logs.MESSAGE_CHARS + 1
    assert capsys.readouterr().err == ""  # no "--- Logging error ---" report


def test_a_renderer_failure_gives_the_fallback_line(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    otel_agents.configure_logging(fmt="json", stream=stream)

    def broken(*_: object) -> None:
        raise RuntimeError("renderer down")

    monkeypatch.setattr(_logs, "_redact_fields", broken)
    otel_agents.configure_logging(fmt="json", stream=stream)  # built with the broken step
    LIVEKIT.warning("Authorization: Bearer %s", "secret-value-1234567890")
    (line,) = _lines(stream)
    assert line == {
        "event": _logs._FALLBACK,
        "level": "warning",
        "logger": "livekit.agents",
        "error": "RuntimeError",
    }


def test_console_format_is_redacted_too() -> None:
    key = cr.KEY_FORMATS[0].make(random.Random(5))
    stream = io.StringIO()
    otel_agents.configure_logging(fmt="console", stream=stream)
    LIVEKIT.warning("Authorization: Bearer %s", key)
    text = stream.getvalue()
    assert key not in text
    assert REDACTED in text
    assert "livekit.agents" in text


def test_auto_is_json_off_a_terminal() -> None:
    stream = io.StringIO()
    otel_agents.configure_logging(stream=stream)
    LIVEKIT.warning("hello")
    assert _lines(stream)[0]["event"] == "hello"


def test_without_structlog_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_structlog(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "structlog" or name.startswith("structlog."):
            raise ImportError("No module named 'structlog'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_structlog)
    before = list(logging.getLogger().handlers)
    with pytest.raises(ImportError, match=r"pip install 'otel-agents\[structlog\]'"):
        otel_agents.configure_logging()
    assert list(logging.getLogger().handlers) == before


def test_init_alone_adds_no_handler() -> None:
    otel_agents.shutdown()
    before = list(logging.getLogger().handlers)
    otel_agents.init()
    try:
        assert list(logging.getLogger().handlers) == before
        assert _ours() == []
    finally:
        otel_agents.shutdown()


def test_demo_verbose_logs_go_through_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from otel_agents.demo import cli

    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    cli._quiet_logs(verbose=True)
    assert len(_ours()) == 1
    LIVEKIT.warning("Authorization: Bearer %s", cr.KEY_FORMATS[0].make(random.Random(9)))
    (line,) = _lines(stderr)
    assert line["event"] == f"Authorization: Bearer {REDACTED}"
