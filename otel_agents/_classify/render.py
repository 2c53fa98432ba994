"""Turning a foreign exception into text that is safe to export.

:func:`type_name` names an exception class (``ssl.SSLError``, ``openai.RateLimitError``);
:func:`safe_str` and :func:`safe_message` render an exception's message. None of them ever
raises: ``str()`` and ``repr()`` may raise or return a ``str`` subclass whose methods raise, and
a class's ``__module__`` or ``__qualname__`` may be anything. :func:`safe_message` also refuses
to render a large ``body`` into the text (livekit's ``APIStatusError.__str__`` formats the whole
body: a 10 MB body would stall the event loop for tens of milliseconds, only to be cut to 256
characters later).
"""

from __future__ import annotations

from typing import Final

from .values import MAX_CACHED_TYPES, MAX_FIELD_CHARS, data_attr

#: units (characters, items) of an exception's ``body`` that may be rendered into its message
BODY_BUDGET: Final = 4096

_type_names: dict[type, str] = {}


def type_name(cls: type) -> str:
    """A stable, readable name for an exception class: ``ssl.SSLError``, ``openai.RateLimitError``.

    Private module segments are dropped (``openai._exceptions`` -> ``openai``) and builtins
    stay bare (``TimeoutError``).
    """
    try:
        name = _type_names.get(cls)
    except Exception:  # a metaclass whose __hash__/__eq__ raises
        name = None
    if name is not None:
        return name
    try:
        module = cls.__module__
        qualname = cls.__qualname__
    except Exception:
        return "unknown"
    if type(module) is not str or type(qualname) is not str:
        return "unknown"
    if module == "builtins":
        name = qualname
    else:
        public = []
        for part in module.split("."):
            if part.startswith("_"):
                break
            public.append(part)
        name = ".".join([*public, qualname]) if public else qualname
    try:
        if len(_type_names) < MAX_CACHED_TYPES:
            _type_names[cls] = name
    except Exception:
        pass
    return name


def safe_str(exc: BaseException) -> str:
    """``str(exc)``, falling back to ``repr`` and then to the class name; never raises.

    The result is always an exact ``str`` (a ``str`` subclass could override ``len`` or
    slicing and raise later, in the redaction).
    """
    for render in (str, repr):
        try:
            text = render(exc)
            if type(text) is str:
                return text
            if isinstance(text, str):
                return str.__str__(text)
        except Exception:
            pass
    return f"<unprintable {type_name(type(exc))}>"


def safe_message(exc: BaseException) -> str:
    """:func:`safe_str`, without rendering a large ``body`` into the text.

    A body over :data:`BODY_BUDGET` leaves the exception's own ``message`` (or first argument)
    and a note instead.
    """
    body = data_attr(exc, "body")
    try:
        small = body is None or within_budget(body)
    except Exception:  # a hostile body (a raising __len__ or __class__): do not render it
        small = False
    if small:
        return safe_str(exc)
    message = data_attr(exc, "message")
    if type(message) is not str:
        args = data_attr(exc, "args")
        message = args[0] if type(args) is tuple and args and type(args[0]) is str else ""
    note = f"(a {type_name(type(body))} body too large to render)"
    return f"{message[:MAX_FIELD_CHARS]} {note}" if message else note


def within_budget(body: object) -> bool:
    """Whether ``body`` is small: a walk that stops as soon as it has seen too much."""
    seen = 0
    stack = [body]
    while stack:
        value = stack.pop()
        if isinstance(value, str | bytes | bytearray):
            seen += len(value)
        elif isinstance(value, dict):
            seen += len(value)
            if seen <= BODY_BUDGET:
                stack.extend(value.keys())
                stack.extend(value.values())
        elif isinstance(value, list | tuple | set | frozenset):
            seen += len(value)
            if seen <= BODY_BUDGET:
                stack.extend(value)
        else:
            seen += 16  # a number, None, or an object whose text is its own business
        if seen > BODY_BUDGET:
            return False
    return True
