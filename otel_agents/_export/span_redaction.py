"""Clean the error text livekit records on its own spans, before any exporter sees it.

``init()`` hands livekit the tracer provider (``set_tracer_provider``), so livekit's spans leave
the process through it too. livekit's tracer records every exception with ``str(exception)``
unredacted: in the ``exception`` event, in ``exception.message`` and ``exception.stacktrace``
attributes, and in the error status. A provider's error body often quotes the request, keys and
tokens included (tests/test_secret_audit.py plants them and finds them there).

:class:`RedactingSpanProcessor` runs first on the provider, ahead of the exporters: on ``on_end``
the SDK dispatches one shared span snapshot to every processor in order, so rewriting it here is
what the exporters go on to export (the same mechanism livekit's own PII filter uses). Messages
are truncated and redacted (once per distinct message: livekit records one exception on several
spans); stack traces keep their frames and exception types, not their messages (a linear pass:
this runs in ``span.end()``, on the event loop); both are dropped under
``capture_messages=False``. Spans without an error or an event cost two attribute lookups.
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from collections.abc import Mapping
from typing import Any, Final

from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.trace import Status, StatusCode

from .. import names as n
from .metrics import count_internal_error
from .redact import MAX_MESSAGE_CHARS, clean_repeated

logger = logging.getLogger(__name__)

MESSAGE: Final = "exception.message"
STACKTRACE: Final = "exception.stacktrace"
#: a stack trace ends with the messages of its chain: keep its last part, redacted
STACKTRACE_CHARS: Final = 8192
OWN_SPANS: Final = n.PREFIX + "."

_installed: weakref.WeakKeyDictionary[TracerProvider, RedactingSpanProcessor] = (
    weakref.WeakKeyDictionary()
)


def _clean_attributes(
    attributes: Mapping[str, Any] | None, capture_messages: bool
) -> dict[str, Any] | None:
    """A cleaned copy of ``attributes``, or ``None`` when there was nothing to clean."""
    if not attributes or (MESSAGE not in attributes and STACKTRACE not in attributes):
        return None
    cleaned = dict(attributes)
    for key, clean in ((MESSAGE, clean_repeated), (STACKTRACE, _clean_stacktrace)):
        value = cleaned.get(key)
        if value is None:
            continue
        if capture_messages and isinstance(value, str):
            cleaned[key] = clean(value)
        else:
            del cleaned[key]
    return cleaned


def _clean_stacktrace(text: str) -> str:
    """The frames and exception types of a formatted stack trace, without its messages and
    source lines (where a secret would be): a linear pass, no regex, on the event loop."""
    kept = []
    for line in text[-STACKTRACE_CHARS:].splitlines():
        if line.startswith('  File "'):
            kept.append(line)
        elif line and not line[0].isspace():
            # "Traceback (most recent call last):", "pkg.Error: <message>", "The above ..."
            kept.append(line.split(":", 1)[0][:MAX_MESSAGE_CHARS])
    return "\n".join(kept)


class RedactingSpanProcessor(SpanProcessor):
    """Rewrites error text on every ending span; see the module docstring."""

    def __init__(self, *, capture_messages: bool) -> None:
        self.capture_messages = capture_messages

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        try:
            self._clean(span)
        except Exception:
            # never in the way of the export: count it, and let the span go as it is
            logger.debug("otel_agents: could not clean a span's error text", exc_info=False)
            count_internal_error(n.WHERE_SPAN_REDACTION)

    def _clean(self, span: ReadableSpan) -> None:
        if span.name.startswith(OWN_SPANS):
            return  # otel-agents' own records are clean already
        capture = self.capture_messages
        status = span.status
        events = span.events
        error = status.status_code is StatusCode.ERROR and bool(status.description)
        attributes = _clean_attributes(span.attributes, capture)
        if not events and not error and attributes is None:
            return
        # rebind rather than mutate: the ended span's attribute mappings are immutable
        if attributes is not None:
            span._attributes = attributes
        if events:
            cleaned_events = []
            changed = False
            for event in events:
                event_attributes = _clean_attributes(event.attributes, capture)
                if event_attributes is None:
                    cleaned_events.append(event)
                else:
                    changed = True
                    cleaned_events.append(Event(event.name, event_attributes, event.timestamp))
            if changed:
                span._events = tuple(cleaned_events)
        if error:
            description = clean_repeated(status.description or "") if capture else None
            span._status = Status(StatusCode.ERROR, description)

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def install(provider: object, *, capture_messages: bool) -> None:
    """Put a :class:`RedactingSpanProcessor` first on ``provider`` (an SDK provider), once;
    a later call only updates its ``capture_messages``."""
    if not isinstance(provider, TracerProvider):
        return  # a no-op or proxy provider exports nothing
    installed = _installed.get(provider)
    if installed is not None:
        installed.capture_messages = capture_messages
        return
    processor = RedactingSpanProcessor(capture_messages=capture_messages)
    provider.add_span_processor(processor)
    _installed[provider] = processor
    # ahead of the exporters already there: the SDK keeps its processors in a tuple, in order
    multi = getattr(provider, "_active_span_processor", None)
    processors = getattr(multi, "_span_processors", None)
    if not (isinstance(processors, tuple) and processor in processors):
        logger.warning(
            "otel_agents: unknown TracerProvider layout: error text on livekit's spans is "
            "cleaned only for exporters added after init()"
        )
        return
    reordered = (processor, *(p for p in processors if p is not processor))
    with getattr(multi, "_lock", None) or contextlib.nullcontext():
        multi._span_processors = reordered  # type: ignore[union-attr]
