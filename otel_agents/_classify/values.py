"""Reading foreign values without trusting them.

Everything classification reads comes from an exception some provider SDK, plugin or agent
built: an attribute may be a property that raises, a string may be a ``str`` subclass whose
methods raise, a mapping may raise on ``get``, and any of them may be huge. These helpers read
such values with every failure turned into "absent" (``None``), and cut text to a bounded size
before anything scans it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, TypeGuard

#: text scanned for quota markers and provider signals
MAX_SCAN_CHARS: Final = 8 * 1024
#: quota fields and provider codes are short; longer values are cut (they end up in labels)
MAX_FIELD_CHARS: Final = 256
#: how many classes each per-class cache remembers (classes made at run time must not grow
#: a cache without bound)
MAX_CACHED_TYPES: Final = 4096

MISSING: Final = object()


def attr(obj: object, name: str) -> Any:
    """``obj.name``, or None when it is missing or reading it raises."""
    try:
        return getattr(obj, name, None)
    except Exception:
        return None


def data_attr(obj: object, name: str) -> Any:
    """``obj.name`` only when it is plain data: never runs a property or another descriptor.

    Used for ``code`` and ``type``: aiohttp's ``ClientResponseError.code`` (and websockets'
    ``ConnectionClosed.code``) are deprecated properties that emit a ``DeprecationWarning``.
    """
    try:
        attrs = object.__getattribute__(obj, "__dict__")
        if type(attrs) is dict:
            value = attrs.get(name, MISSING)
            if value is not MISSING:
                return value
    except Exception:  # no __dict__ (slots), or a hostile one
        pass
    try:
        # through the class, a property (or any descriptor) comes back as itself, unrun
        value = getattr(type(obj), name, None)
        return None if value is None or hasattr(type(value), "__get__") else value
    except Exception:
        return None


def as_str(value: object, limit: int = MAX_SCAN_CHARS) -> str | None:
    """``value`` cut to ``limit`` chars when it is a string, as an exact ``str``; else None.

    A ``str`` subclass is copied through ``str.__getitem__`` so that none of its own (possibly
    raising) methods ever run.
    """
    if type(value) is str:
        return value if len(value) <= limit else value[:limit]
    if value is None:
        return None
    try:
        if isinstance(value, str):
            return str.__getitem__(value, slice(0, limit))
    except Exception:
        pass
    return None


def field(value: object) -> str | None:
    """A quota field or provider code: a string, or a number (the gateway may send
    ``remaining_limit`` as one), cut to MAX_FIELD_CHARS."""
    if type(value) is str:
        return value if len(value) <= MAX_FIELD_CHARS else value[:MAX_FIELD_CHARS]
    text = as_str(value, MAX_FIELD_CHARS)
    if text is not None:
        return text
    if type(value) in (int, float):
        try:
            return str(value)[:MAX_FIELD_CHARS]
        except ValueError:  # an int above sys.get_int_max_str_digits()
            return None
    return None


def is_mapping(value: object) -> TypeGuard[Mapping[Any, Any]]:
    """Whether ``value`` is a mapping; a value whose ``__class__`` raises is not."""
    if type(value) is dict:
        return True
    try:
        return isinstance(value, Mapping)
    except Exception:
        return False
