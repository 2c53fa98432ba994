"""``configure_logging()``: the host's stdlib log records as redacted JSON lines (opt-in).

``init()`` never touches logging. ``configure_logging()`` is for a host (and otel-agents' own
CLI) that wants every log line, livekit's included, to be structured and free of credentials:
livekit logs ``failed to generate LLM completion: <the provider's error>, retrying in ...``
with the provider's error text, which may quote an ``Authorization`` header or a key.

It puts one handler on the root logger (every logger that propagates reaches it:
``livekit.agents``, ``otel_agents``, the host's own), formatted by structlog's
``ProcessorFormatter``, and sets the root logger's level. Each record becomes one line:

* ``event`` (the message, %-formatted), ``level``, ``logger``, ``timestamp`` (ISO 8601, UTC),
  the record's extras (``extra={...}``), ``trace_id`` and ``span_id`` (hex) of the current
  OpenTelemetry span when it is valid (a record's own ``trace_id``/``span_id`` extras, as
  otel-agents' ``attempt_failed`` records carry, are kept), ``exception`` (the formatted
  ``exc_info``) and ``stack`` (``stack_info``).
* Every string in it goes through otel-agents' redactor (``otel_agents/_export/redact/``): the
  message (its first ``MESSAGE_CHARS`` characters), the exception and stack text (their last
  ``TRACE_CHARS``: the messages of a chain are at its end; the first line of the cut is
  dropped), extras (strings of at most ``EXTRA_CHARS``, in dicts, lists, tuples and sets down
  to ``EXTRA_DEPTH`` levels, ``EXTRA_ITEMS`` items each; any other object as its redacted
  ``repr``) and key names. A cut is marked ``…``; a word the cut ended in is dropped.
* ``fmt="json"`` renders it with structlog's ``JSONRenderer``, ``fmt="console"`` with its
  ``ConsoleRenderer`` (colours when the stream is a terminal), ``fmt="auto"`` (the default)
  picks the console renderer when the stream is a terminal, JSON otherwise.

A record that cannot be rendered (its message's ``str()`` raises, its arguments do not match
its format, an extra's ``repr`` raises...) is contained: an unformattable message becomes its
redacted format string and a note; anything else gives a fallback line naming the logger, the
level and the error's type, never the record's content. A write that fails prints one fixed
line on stderr instead of logging's default report (which would print the raw message and
arguments).

A second call replaces the handler of the first (it never stacks); handlers others put on the
root logger (livekit's CLI installs its own in ``cli.run_app``) are left alone, and so is their
raw output. structlog is the ``structlog`` extra: without it, ``ImportError`` names it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import sys
import traceback
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal, TextIO

from opentelemetry import trace

from ._export.redact import ELLIPSIS, clean_name, drop_partial_word, redact, utf8

__all__ = ["configure_logging"]

MESSAGE_CHARS: Final = 4096
TRACE_CHARS: Final = 8192
EXTRA_CHARS: Final = 1024
EXTRA_DEPTH: Final = 4
EXTRA_ITEMS: Final = 64
#: the attribute that marks the handler ``configure_logging`` installed
_MARK: Final = "_otel_agents_configure_logging"
_FALLBACK: Final = "otel-agents: a log record could not be rendered"
_STRUCTLOG_MISSING: Final = (
    "otel_agents.configure_logging() needs structlog: pip install 'otel-agents[structlog]'"
)


def configure_logging(
    level: int | str = logging.INFO,
    *,
    fmt: Literal["json", "console", "auto"] = "auto",
    stream: TextIO | None = None,
) -> None:
    """Render every stdlib log record reaching the root logger as one redacted line on
    ``stream`` (default: ``sys.stderr``), JSON or console (``fmt``), and set the root logger's
    level to ``level``. Idempotent: a second call replaces the first one's handler. See the
    module docstring for the fields, the redaction and the bounds."""
    try:
        import structlog
    except ImportError as exc:
        raise ImportError(_STRUCTLOG_MISSING, name="structlog") from exc
    if fmt not in ("json", "console", "auto"):
        raise ValueError(f"fmt must be 'json', 'console' or 'auto', not {fmt!r}")
    out = sys.stderr if stream is None else stream
    tty = _isatty(out)
    console = fmt == "console" or (fmt == "auto" and tty)
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=tty, exception_formatter=structlog.dev.plain_traceback)
        if console
        else structlog.processors.JSONRenderer()
    )
    handler = _Handler(out)
    handler.setLevel(level)  # validates ``level`` before anything changes
    handler.setFormatter(
        _formatter_class()(
            console=console,
            foreign_pre_chain=[
                structlog.stdlib.ExtraAdder(),
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _add_trace_context,
                _redact_fields,
                renderer,
            ],
        )
    )
    setattr(handler, _MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(old)
        with contextlib.suppress(Exception):
            old.close()
    root.addHandler(handler)
    root.setLevel(level)


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except Exception:
        return False


# --- rendering --------------------------------------------------------------------------------


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    def handleError(self, record: logging.LogRecord) -> None:
        # logging's default prints the record's raw message and arguments
        with contextlib.suppress(Exception):
            sys.stderr.write("otel-agents: a log record could not be written\n")


def _message(record: logging.LogRecord) -> str:
    """The record's message, %-formatted; its format string and a note when that fails."""
    try:
        return str(record.getMessage())
    except Exception as exc:
        note = f" (message could not be formatted: {_type_name(exc)})"
    try:
        return str(record.msg) + note
    except Exception:
        return "<unprintable message>" + note


def _type_name(value: object) -> str:
    try:
        return clean_name(type(value).__qualname__)
    except Exception:
        return "?"


@functools.cache
def _formatter_class() -> Callable[..., logging.Formatter]:
    """structlog's ``ProcessorFormatter``, with the message formatted safely first and every
    failure turned into a fallback line (built on first use: structlog is optional)."""
    from structlog.stdlib import ProcessorFormatter

    class Formatter(ProcessorFormatter):
        def __init__(self, *, console: bool, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._console = console

        def format(self, record: logging.LogRecord) -> str:
            try:
                copy = logging.makeLogRecord(record.__dict__)
                if not hasattr(copy, "_logger"):  # a stdlib record, not structlog's
                    copy.msg = _message(record)
                    copy.args = ()
                return str(super().format(copy))
            except Exception as exc:
                return _fallback(record, exc, self._console)

    return Formatter


def _fallback(record: logging.LogRecord, exc: Exception, console: bool) -> str:
    """A line naming the record's logger and level and the error's type, nothing else."""
    try:
        name = clean_name(utf8(str(record.name)))
        level = clean_name(utf8(str(record.levelname)))
        error = _type_name(exc)
        if console:
            return f"{level} {name}: {_FALLBACK} ({error})"
        fields = {"event": _FALLBACK, "level": level.lower(), "logger": name, "error": error}
        return json.dumps(fields)
    except Exception:
        return _FALLBACK


def _add_trace_context(_logger: Any, _method: str, ed: dict[str, Any]) -> dict[str, Any]:
    """``trace_id`` and ``span_id`` of the current span, unless the record has its own."""
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid and "trace_id" not in ed:
        ed["trace_id"] = format(ctx.trace_id, "032x")
        ed["span_id"] = format(ctx.span_id, "016x")
    return ed


def _redact_fields(_logger: Any, _method: str, ed: dict[str, Any]) -> dict[str, Any]:
    """Every field as plain JSON values, every string redacted and bounded."""
    out: dict[str, Any] = {}
    exc_info = ed.pop("exc_info", None)
    stack = ed.pop("stack_info", None) or ed.pop("stack", None)
    for i, (key, value) in enumerate(ed.items()):
        if i >= EXTRA_ITEMS:
            out[ELLIPSIS] = f"{len(ed) - i} more fields"
            break
        name = clean_name(utf8(str(key)))
        if key == "event":
            out[name] = _text(_as_str(value), MESSAGE_CHARS)
        elif key == "exception" and isinstance(value, str):
            out[name] = _tail(value)
        else:
            out[name] = _value(value, EXTRA_DEPTH)
    if exc_info:
        out["exception"] = _exception_text(exc_info)
    if stack:
        out["stack"] = _tail(_as_str(stack))
    return out


def _exception_text(exc_info: Any) -> str:
    try:
        if isinstance(exc_info, BaseException):
            exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
        elif not isinstance(exc_info, tuple):
            exc_info = sys.exc_info()
        if exc_info[0] is None:
            return ""
        text = "".join(traceback.format_exception(*exc_info)).rstrip("\n")
    except Exception as exc:
        text = f"<exception could not be formatted: {_type_name(exc)}>"
    return _tail(text)


def _as_str(value: object) -> str:
    try:
        return value if isinstance(value, str) else str(value)
    except Exception:
        return f"<unprintable {_type_name(value)}>"


def _text(text: str, limit: int) -> str:
    """``text`` redacted, its first ``limit`` characters; a word at the cut is dropped."""
    if len(text) > limit:
        return utf8(redact(drop_partial_word(text[:limit])) + ELLIPSIS)
    return utf8(redact(text))


def _tail(text: str) -> str:
    """``text`` redacted, its last ``TRACE_CHARS`` characters from a line's start."""
    if len(text) > TRACE_CHARS:
        window = text[-TRACE_CHARS:]
        text = ELLIPSIS + "\n" + window[window.find("\n") + 1 :] if "\n" in window else ELLIPSIS
    return utf8(redact(text))


def _value(value: Any, depth: int) -> Any:
    """A JSON value for an extra: strings redacted and bounded, containers bounded."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)  # NaN is not JSON
    if isinstance(value, int):
        return value if -(10**18) < value < 10**18 else f"<int of {value.bit_length()} bits>"
    if isinstance(value, str):
        return _text(value, EXTRA_CHARS)
    if depth <= 0:
        return ELLIPSIS
    try:
        if isinstance(value, Mapping):
            items: dict[str, Any] = {}
            for i, (key, item) in enumerate(value.items()):
                if i >= EXTRA_ITEMS:
                    items[ELLIPSIS] = "more items"
                    break
                items[clean_name(utf8(_as_str(key)))] = _value(item, depth - 1)
            return items
        if isinstance(value, list | tuple | set | frozenset):
            seq: list[Any] = []
            for i, item in enumerate(value):
                if i >= EXTRA_ITEMS:
                    seq.append(ELLIPSIS)
                    break
                seq.append(_value(item, depth - 1))
            return seq
        return _text(repr(value), EXTRA_CHARS)
    except Exception as exc:
        return f"<unrenderable {_type_name(value)}: {_type_name(exc)}>"
