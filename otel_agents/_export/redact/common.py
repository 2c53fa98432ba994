"""What every pass of the redactor shares (pure, no I/O): the marker a credential becomes, the
mark of a cut, and how a pass is tried only where one of its hints occurs.

A pass lists the positions where a hint starts (:func:`_positions`, in the text put in lower
case by :func:`_lower` when the hints are case-insensitive), then replaces, at each, the span
its function returns (:func:`_replace_at`): a few ``str.find`` calls cost far less than a
regex scan of every position.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

REDACTED: Final = "[REDACTED]"
#: what marks a cut
ELLIPSIS: Final = "\u2026"


# --- positions ---------------------------------------------------------------------------------


def _lower(text: str) -> str:
    """``text`` in lower case, character for character (so positions in it are positions in
    ``text``): a character outside ASCII becomes ``?``."""
    if not text.isascii():
        text = text.encode("ascii", "replace").decode("ascii")
    return text.lower()


def _positions(low: str, hints: tuple[str, ...]) -> list[int]:
    """Every position in ``low`` where one of ``hints`` starts, in order: a pass then tries its
    pattern there only (``str.find`` is much cheaper than a regex scan of every position)."""
    found: list[int] = []
    for hint in hints:
        i = low.find(hint)
        while i >= 0:
            found.append(i)
            i = low.find(hint, i + 1)
    return sorted(set(found)) if len(found) > 1 else found


def _replace_at(
    text: str, positions: list[int], replace: Callable[[str, int], tuple[int, int, str] | None]
) -> str:
    """``text`` with, at each position (in order, none inside an earlier replacement), the span
    ``replace`` returns (``start``, ``end``, new text), if any."""
    if not positions:
        return text
    out: list[str] = []
    last = 0
    for i in positions:
        if i < last:
            continue
        found = replace(text, i)
        if found is None:
            continue
        start, end, new = found
        out.append(text[last:start])
        out.append(new)
        last = end
    if not out:
        return text
    out.append(text[last:])
    return "".join(out)
