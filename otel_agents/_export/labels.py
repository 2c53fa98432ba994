"""Bounded label values: no metric label is ever built from free text (docs/reference.md)."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Final

from .. import names as n

_MAX_VALUE_CHARS: Final = 128


def _encodable(value: str) -> bool:
    """A lone surrogate (from a class name or a provider string) cannot be written in UTF-8:
    as a label it would break every later scrape of the registry."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class OpenLabel:
    """An open label (provider, root cause): the first ``limit`` values seen pass, the rest
    fold into ``other``. Values are strings we derived (class or provider names), never text."""

    __slots__ = ("_lock", "_values", "limit")

    def __init__(self, limit: int = n.OPEN_LABEL_LIMIT) -> None:
        self.limit = limit
        self._values: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str | None) -> str:
        if not value:
            return n.UNKNOWN
        if value in self._values:
            return value
        if len(value) > _MAX_VALUE_CHARS or not _encodable(value):
            return n.OTHER
        with self._lock:
            if value in self._values:
                return value
            if len(self._values) >= self.limit:
                return n.OTHER
            self._values.add(value)
            return value

    def reset(self) -> None:
        with self._lock:
            self._values.clear()


class ClosedLabel:
    """A closed label: known values pass, anything else is ``other``."""

    __slots__ = ("_values",)

    def __init__(self, values: Iterable[str]) -> None:
        self._values = frozenset(values)

    def __call__(self, value: str | None) -> str:
        if value is None:
            return n.UNKNOWN
        return value if value in self._values else n.OTHER


def boolean(value: bool) -> str:
    return "true" if value else "false"


provider = OpenLabel()
root_cause = OpenLabel()  # shared by root_cause and first_root_cause
quota_type = ClosedLabel(n.QUOTA_TYPES)
quota_category = ClosedLabel(n.QUOTA_CATEGORIES)
close_reason = ClosedLabel(n.CLOSE_REASONS)


def reset_open_labels() -> None:
    """Forget the open labels' values (tests, and ``shutdown()`` followed by ``init()``)."""
    provider.reset()
    root_cause.reset()
