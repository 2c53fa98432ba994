"""The error text livekit records on its own spans is cleaned before any exporter sees it.

``init()`` hands livekit its tracer provider; livekit's tracer records exceptions with their raw
message (``exception`` event, ``exception.message``/``exception.stacktrace`` attributes, the error
status). ``otel_agents._export.span_redaction`` runs first on that provider. The end-to-end
proof with real sessions and planted secrets is ``tests/test_secret_audit.py``; these pin the
mechanism.
"""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from otel_agents import names as n
from otel_agents._export import span_redaction as _span_redaction
from otel_agents._export.redact import REDACTED

KEY = "sk-proj-Zx81Qm2Lk9Vb7Nc3Hd5Jf0Ws"
MESSAGE = f"Error code: 401 - Incorrect API key provided: {KEY}"


def provider_with_exporter() -> tuple[TracerProvider, InMemorySpanExporter]:
    """An exporter attached first, as an integrator's provider has it before ``init()``."""
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def livekit_like_failure(provider: TracerProvider, name: str = "llm_request_run") -> None:
    """What livekit's tracer does with a failed attempt: record_exception, error status."""
    with provider.get_tracer("livekit-agents").start_as_current_span(
        name, record_exception=False, set_status_on_exception=False
    ) as span:
        try:
            raise RuntimeError(MESSAGE)
        except RuntimeError as exc:
            span.record_exception(exc)
            span.set_attribute("exception.message", str(exc))
            span.set_status(Status(StatusCode.ERROR, str(exc)))


def exported_text(exporter: InMemorySpanExporter) -> str:
    return "".join(span.to_json() for span in exporter.get_finished_spans())


def test_exporters_attached_before_install_get_the_cleaned_span() -> None:
    provider, exporter = provider_with_exporter()
    _span_redaction.install(provider, capture_messages=True)
    livekit_like_failure(provider)

    (span,) = exporter.get_finished_spans()
    assert KEY not in exported_text(exporter)
    (event,) = span.events
    assert event.name == "exception"
    assert event.attributes is not None
    assert event.attributes["exception.type"] == "RuntimeError"
    assert event.attributes["exception.message"] == (
        f"Error code: 401 - Incorrect API key provided: {REDACTED}"
    )
    stacktrace = event.attributes["exception.stacktrace"]
    assert isinstance(stacktrace, str)
    # the frames and the exception type stay; the message does not
    assert stacktrace.startswith('Traceback (most recent call last)\n  File "')
    assert stacktrace.endswith("\nRuntimeError")
    assert "Incorrect API key" not in stacktrace
    assert span.attributes is not None
    assert span.attributes["exception.message"] == event.attributes["exception.message"]
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == event.attributes["exception.message"]


def test_capture_messages_false_drops_the_text_and_keeps_the_type() -> None:
    provider, exporter = provider_with_exporter()
    _span_redaction.install(provider, capture_messages=False)
    livekit_like_failure(provider)

    (span,) = exporter.get_finished_spans()
    (event,) = span.events
    assert dict(event.attributes or {}) == {
        "exception.type": "RuntimeError",
        "exception.escaped": "False",
    }
    assert "exception.message" not in (span.attributes or {})
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description is None


def test_a_second_install_updates_the_setting_without_a_second_processor() -> None:
    provider, exporter = provider_with_exporter()
    _span_redaction.install(provider, capture_messages=False)
    _span_redaction.install(provider, capture_messages=True)
    processors = provider._active_span_processor._span_processors
    assert sum(isinstance(p, _span_redaction.RedactingSpanProcessor) for p in processors) == 1
    assert isinstance(processors[0], _span_redaction.RedactingSpanProcessor)
    livekit_like_failure(provider)
    (span,) = exporter.get_finished_spans()
    assert span.status.description == f"Error code: 401 - Incorrect API key provided: {REDACTED}"


def test_healthy_spans_and_our_own_records_pass_untouched() -> None:
    provider, exporter = provider_with_exporter()
    _span_redaction.install(provider, capture_messages=True)
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("agent_turn", attributes={"lk.user_input": MESSAGE}):
        pass
    # our records are clean already; a key in an attribute other than the exception's is
    # livekit's content, not an error message, and is left alone
    with tracer.start_as_current_span(n.SPAN_ATTEMPT_FAILED) as span:
        span.set_status(Status(StatusCode.ERROR, "already clean: " + REDACTED))
    healthy, ours = exporter.get_finished_spans()
    assert dict(healthy.attributes or {}) == {"lk.user_input": MESSAGE}
    assert ours.status.description == "already clean: " + REDACTED


def test_a_failure_to_clean_is_counted_and_the_span_still_exported(
    telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(text: str) -> str:
        raise ValueError("boom")

    provider, exporter = provider_with_exporter()
    _span_redaction.install(provider, capture_messages=True)
    monkeypatch.setattr(_span_redaction, "clean_repeated", broken)
    livekit_like_failure(provider)

    assert len(exporter.get_finished_spans()) == 1
    assert telemetry.value(n.INTERNAL_ERRORS, where="span_redaction") == 1


def test_init_installs_it_on_the_provider_it_hands_livekit(telemetry) -> None:
    processors = list(telemetry.provider._active_span_processor._span_processors)
    ours = [p for p in processors if isinstance(p, _span_redaction.RedactingSpanProcessor)]
    assert len(ours) == 1
    assert ours[0].capture_messages is True
    # ahead of the fixture's exporter (livekit's own PII filter may come first: it rewrites
    # other attributes, and both run before anything is exported)
    exporter = next(p for p in processors if isinstance(p, SimpleSpanProcessor))
    assert processors.index(ours[0]) < processors.index(exporter)


def test_the_stacktrace_keeps_its_frames_not_its_messages() -> None:
    frames = "".join(f'  File "x.py", line {i}, in f\n    call({KEY!r})\n' for i in range(400))
    text = (
        "Traceback (most recent call last):\n"
        + frames
        + f"openai.AuthenticationError: {MESSAGE}\n\n"
        + "The above exception was the direct cause of the following exception:\n\n"
        + f"livekit.agents.APIStatusError: message={MESSAGE!r}\n"
    )
    cleaned = _span_redaction._clean_stacktrace(text)
    assert KEY not in cleaned
    assert len(cleaned) <= _span_redaction.STACKTRACE_CHARS
    assert cleaned.endswith(
        '  File "x.py", line 399, in f\n'
        "openai.AuthenticationError\n"
        "The above exception was the direct cause of the following exception\n"
        "livekit.agents.APIStatusError"
    )
