"""The demo's progress line: rewritten in place on a terminal, one line per step otherwise."""

from __future__ import annotations

from collections.abc import Callable
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """One progress line: rewritten in place on a terminal, one line per step otherwise."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self._width = 0

    def show(self, text: str) -> None:
        if self.tty:
            pad = max(0, self._width - len(text))
            self.out.write("\r" + text + " " * pad)
            self._width = len(text)
        else:
            self.out.write(text + "\n")
        self.out.flush()

    def done(self, text: str) -> None:
        if self.tty:
            self.show(text)
            self.out.write("\n")
            self._width = 0
            self.out.flush()
        else:
            self.show(text)

    def per_turn(self, label: str) -> Callable[[int], None] | None:
        """What to call at each turn of a scenario: on a terminal, ``<label> ... turn N``."""
        if not self.tty:
            return None
        return lambda turn: self.show(f"{label} ... turn {turn}")
