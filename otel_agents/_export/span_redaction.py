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

A stack trace keeps, line by line: ``Traceback (most recent call last)``, the ``File "..."``
frame lines, the lines that join a chain ("The above exception was the direct cause of the
following exception"), and the class name of each exception line (the first unindented line
after a frame, at the start, or after a joining line); each kept line is redacted too. The
source lines, every message line (a multi-line message's second line looks like any other
line) and the first line of a cut window (``STACKTRACE_CHARS``) are dropped. The exception's
class names (``exception.type``, ``error.type``) are redacted like every class name.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import weakref
from collections.abc import Mapping
from typing import Any, Final

from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.trace import Status, StatusCode

from .. import names as n
from .metrics import count_internal_error
from .redact import clean_name, clean_repeated

logger = logging.getLogger(__name__)

MESSAGE: Final = "exception.message"
STACKTRACE: Final = "exception.stacktrace"
#: class names: kept with ``capture_messages=False``, redacted like every foreign name
TYPES: Final = ("exception.type", "error.type")
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
    if not attributes or not any(key in attributes for key in (MESSAGE, STACKTRACE, *TYPES)):
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
    for key in TYPES:
        value = cleaned.get(key)
        if isinstance(value, str):
            cleaned[key] = clean_name(value)
    return cleaned


_TRACEBACK: Final = "Traceback (most recent call last):"
#: the lines that join the tracebacks of a chain
_JOINS: Final = frozenset(
    {
        "The above exception was the direct cause of the following exception:",
        "During handling of the above exception, another exception occurred:",
    }
)


def _clean_stacktrace(text: str) -> str:
    """The frames and exception class names of a formatted stack trace, each line redacted,
    without its messages and source lines (see the module docstring)."""
    return _clean_window(text[-STACKTRACE_CHARS:], len(text) > STACKTRACE_CHARS)


@functools.lru_cache(maxsize=64)
def _clean_window(window: str, cut: bool) -> str:
    """One pass over the lines of the window; cached (livekit records one exception on several
    spans, and its stack trace with it): at most 64 windows of 8 KiB."""
    lines = window.splitlines()
    if cut:
        lines = lines[1:]  # the window may start inside a line (a message's, a key's)
    kept = []
    exception_next = not cut  # an exception without a traceback is its first line
    for line in lines:
        if line.startswith('  File "'):
            kept.append(clean_name(line))
            exception_next = True
        elif not line or line[0].isspace():
            continue  # a source line, a caret line, an exception group's: never a message's start
        elif line == _TRACEBACK:
            kept.append(_TRACEBACK[:-1])
            exception_next = False
        elif line in _JOINS:
            kept.append(line[:-1])
            exception_next = True
        elif exception_next:
            # "pkg.Error: <message>": the class name (the message is on the span, cleaned)
            kept.append(clean_name(line.split(":", 1)[0]))
            exception_next = False
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
