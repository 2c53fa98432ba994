"""User turns of one session (``docs/sessions.md``): open on a committed user message, each ends
once with an outcome; the live unanswered-turn gauge, which counts a turn that has waited longer
than ``silence_timeout`` and falls as soon as that turn ends, by whatever path; and the error
window, the provider errors since the previous turn closed, which a dead turn is blamed on.

:class:`TurnBook` is a part of the session tracker (``tracker.py``): its state lives in the
tracker's slots.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Final

from .. import names as n

if TYPE_CHECKING:
    from .._export.recorder import Recorder

#: open user turns kept per session; beyond, the oldest is counted abandoned
MAX_OPEN_TURNS: Final = 16


class Turn:
    __slots__ = ("errors_at_tools", "opened_at", "reply", "spoke_at", "timer", "unanswered")

    def __init__(self, opened_at: float) -> None:
        self.opened_at = opened_at
        self.errors_at_tools: int | None = None  # the window's errors when tools ran
        self.unanswered = False
        self.timer: asyncio.TimerHandle | None = None
        self.spoke_at = 0.0  # when the reply that took it up started playing
        self.reply: Any = None  # a realtime session's reply that answers it (realtime.py)


class TurnBook:
    """Opening, ending and counting user turns (a mixin of the session tracker)."""

    if not TYPE_CHECKING:  # the tracker's slots hold its state (mypy: its attributes below)
        __slots__ = ()

    # the tracker's state this part reads and writes
    recorder: Recorder
    loop: asyncio.AbstractEventLoop | None
    silence_timeout: float
    closed: bool
    turns: deque[Turn]
    user_spoke: bool
    speech_pending: bool
    user_turns: int
    answered: int
    dead: int
    empty: int
    stalled: int
    unheard: int
    unanswered_total: int
    window_errors: int
    window_class: n.ErrorClass | None
    window_terminal: bool
    window_gave_up: tuple[str, ...]
    error_cause: n.ErrorClass | None
    errors: int
    terminal: bool
    seen_errors: deque[int]
    killed_by: n.ErrorClass | None
    killed_terminal: bool

    def _open_turn(self, at: float) -> Turn:
        if len(self.turns) >= MAX_OPEN_TURNS:
            self._end_turn("abandoned")
        self.user_spoke = True
        self.speech_pending = False
        self.user_turns += 1
        self.recorder.user_turn()
        turn = Turn(at)
        self.turns.append(turn)
        if self.loop is not None:
            # An empty context: call_later would copy livekit's (its AgentActivity, SpeechHandle),
            # and a cancelled timer keeps its context until its deadline passes.
            turn.timer = self.loop.call_later(
                self.silence_timeout,
                functools.partial(self._on_silence, turn),
                context=contextvars.Context(),
            )
        return turn

    def _on_silence(self, turn: Turn) -> None:
        if self.closed or turn not in self.turns:
            return
        turn.timer = None
        turn.unanswered = True
        self.unanswered_total += 1
        self.recorder.unanswered(1)

    def _take_turn(self, turn: Turn | None = None) -> Turn:
        """Close ``turn`` (else the oldest open one: a reply took it up, or it ended): it stops
        waiting, and its error window closes."""
        if turn is None:
            turn = self.turns.popleft()
        else:
            self.turns.remove(turn)
        if turn.timer is not None:
            turn.timer.cancel()
            turn.timer = None
        if turn.unanswered:
            self.recorder.unanswered(-1)
        turn.reply = None
        self.window_errors = 0
        self.window_class = None
        self.window_terminal = False
        self.window_gave_up = ()
        return turn

    def _end_turn(self, outcome: n.TurnOutcome, turn: Turn | None = None) -> None:
        """End ``turn`` (else the oldest open turn) with ``outcome``."""
        if not self.turns or (turn is not None and turn not in self.turns):
            return
        if outcome == "dead_error":
            # the first terminal cause, else the last one
            cause = self.window_class or self.error_cause
            if cause is not None and not self.killed_terminal:
                self.killed_by = cause
                self.killed_terminal = self.window_terminal
        spoke_at = turn.spoke_at if turn is not None else 0.0
        turn = self._take_turn(turn)
        if outcome == "answered":
            turn.spoke_at = spoke_at or time.time()
        self._outcome(turn, outcome)

    def _outcome(self, turn: Turn, outcome: n.TurnOutcome) -> None:
        """Count how ``turn`` ended (once per turn)."""
        if outcome == "answered":
            self.answered += 1
            self.recorder.answered(max(0.0, turn.spoke_at - turn.opened_at))
        elif outcome == "dead_error" or outcome == "dead_empty":
            self.dead += 1
            if outcome == "dead_empty":
                self.empty += 1
            self.recorder.dead_turn("error" if outcome == "dead_error" else "empty")
        elif outcome == "tool_only":
            self.empty += 1
        elif outcome == "preempted" or outcome == "abandoned":
            self.stalled += 1

    # --- a turn's errors: those since the previous turn closed ---------------------------------

    def _count_error(
        self,
        event_id: int,
        terminal: bool,
        error_class: n.ErrorClass,
        provider: str | None = None,
        final: bool = False,
    ) -> None:
        if self.closed:
            return
        self.seen_errors.append(event_id)
        self.errors += 1
        self.window_errors += 1
        # what a dead turn is blamed on: the window's first terminal error, else its last one,
        # each provider's first failed request only (a FallbackAdapter probes a failed child in
        # the background: its failures may land before the turn ends)
        if provider is not None and provider in self.window_gave_up:
            pass
        elif not self.window_terminal:
            self.window_class = error_class
            self.window_terminal = terminal
        if final and provider is not None and len(self.window_gave_up) < 8:
            self.window_gave_up += (provider,)
        if not self.terminal:
            self.error_cause = error_class
            self.terminal = terminal

    def _count_unheard(self, cause: n.UnheardCause) -> None:
        self.unheard += 1
        self.recorder.unheard_speech(cause)
