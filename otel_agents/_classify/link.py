"""What classification reads from one exception of the chain, read once.

An exception of the chain is read without running its code: its relevant attributes come from
its instance ``__dict__`` and from plain values on its class; only an attribute that the class
defines as a property (or another descriptor) costs a guarded ``getattr``, and ``code`` and
``type`` are never read through one (aiohttp's ``ClientResponseError.code`` and websockets'
``ConnectionClosed.code`` are deprecated properties that emit a ``DeprecationWarning``). Its
messages (``message``, a string ``body``, ``args[0]``) are read as exact strings cut to
MAX_SCAN_CHARS, never through ``str()``.

:func:`read_link` does this once per exception. The status, the terminal flag, the provider
signal and the quota search all work from the :data:`Link` it returns.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final, TypeAlias

from .values import MAX_CACHED_TYPES, MAX_SCAN_CHARS, as_str, attr

#: the attributes classification reads from an exception of the chain
RELEVANT: Final = (
    "body",
    "message",
    "status_code",
    "status",
    "response",
    "terminal",
    "category",
    "quota_type",
    "hint",
    "remaining_limit",
    "code",
    "type",
)
#: read as plain data only, never through a property (see the module docstring)
DATA_ONLY: Final = frozenset({"code", "type"})


#: One exception of the chain, as classification reads it: ``(fields, body, texts)``.
#:
#: * ``fields``: the relevant attributes (:data:`RELEVANT`); only ever read, never written: for
#:   most exceptions this is the instance ``__dict__`` itself;
#: * ``body``: ``fields.get("body")``;
#: * ``texts``: the messages the exception carries (message, a string body, args[0]), as exact
#:   strings cut to MAX_SCAN_CHARS.
#:
#: A plain tuple: this is built for every exception of every failed attempt, and a named tuple
#: costs five times as much to build.
Link: TypeAlias = tuple[dict[str, Any], Any, list[str]]


#: (plain class-level values, names that are descriptors) of a class with neither
_PLAIN: Final[tuple[dict[str, Any], tuple[str, ...]]] = ({}, ())
_class_attrs: dict[type, tuple[dict[str, Any], tuple[str, ...]]] = {}
_dict_of: Final = object.__getattribute__


def class_attrs(cls: type) -> tuple[dict[str, Any], tuple[str, ...]]:
    """(plain class-level values, names that are descriptors) of the relevant attributes.

    Computed once per class: an exception is then read through its instance ``__dict__`` alone,
    and only a descriptor (a property) costs a guarded ``getattr``.
    """
    try:
        return _class_attrs[cls]
    except Exception:  # KeyError, or a metaclass whose __hash__/__eq__ raises
        pass
    static: dict[str, Any] = {}
    props: list[str] = []
    try:
        mro = cls.__mro__
        for name in RELEVANT:
            for klass in mro:
                namespace = klass.__dict__
                if name in namespace:
                    value = namespace[name]
                    if hasattr(type(value), "__get__"):
                        if name not in DATA_ONLY:
                            props.append(name)
                    elif value is not None:
                        static[name] = value
                    break
        info = (static, tuple(props)) if static or props else _PLAIN
        if len(_class_attrs) < MAX_CACHED_TYPES:
            _class_attrs[cls] = info
        return info
    except Exception:
        return ({}, tuple(n for n in RELEVANT if n not in DATA_ONLY))


def read_link(exc: BaseException) -> Link:
    """Read ``exc``'s relevant attributes and messages once (see the module docstring)."""
    return read_links((exc,))[0]


def read_links(chain: Iterable[BaseException]) -> list[Link]:
    """:func:`read_link` of every exception of ``chain``, in one call (this runs for every
    failed attempt: one loop here costs less than a call per exception)."""
    links: list[Link] = []
    for exc in chain:
        cls = type(exc)
        try:
            plan = _class_attrs[cls]
        except Exception:  # KeyError (a class seen for the first time), or a hostile metaclass
            plan = class_attrs(cls)
        try:
            own = _dict_of(exc, "__dict__")
        except Exception:  # no __dict__ (slots), or a hostile one
            own = None
        if plan is _PLAIN and type(own) is dict:
            fields = own  # the common case: read-only use of the instance dict, no copy
        else:
            static, props = plan
            fields = dict(static)
            if type(own) is dict:
                fields.update(own)
            for name in props:
                fields[name] = attr(exc, name)
        message = fields.get("message")
        body = fields.get("body")
        texts: list[str] = []
        if message is not None:
            text = message[:MAX_SCAN_CHARS] if type(message) is str else as_str(message)
            if text:
                texts.append(text)
        if body is not None:
            text = body[:MAX_SCAN_CHARS] if type(body) is str else as_str(body)
            if text:
                texts.append(text)
        try:
            args = exc.args
        except Exception:
            args = None
        if type(args) is tuple and args:
            first = args[0]
            if first is not message:
                text = first[:MAX_SCAN_CHARS] if type(first) is str else as_str(first)
                if text:
                    texts.append(text)
        links.append((fields, body, texts))
    return links
