"""What one session comes to (``docs/sessions.md``): whether it was silent, why, and the
``SessionRecord`` its close publishes. :class:`Summary` is a part of the session tracker
(``tracker.py``): its state lives in the tracker's slots.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import names as n
from .._export.records import SessionRecord


class Summary:
    """The session's silence and its record (a mixin of the session tracker)."""

    if not TYPE_CHECKING:  # the tracker's slots hold its state (mypy: its attributes below)
        __slots__ = ()

    user_spoke: bool
    agent_spoke: bool
    killed_by: n.ErrorClass | None
    unheard: int
    empty: int
    stalled: int
    unanswered_total: int
    error_cause: n.ErrorClass | None
    speech_pending: bool
    close_reason: str
    user_turns: int
    answered: int
    dead: int
    time_to_first_speech: float | None
    errors: int
    terminal: bool
    close_error_type: str | None
    job_shutdown_reason: str | None
    started_at: float
    closed_at: float

    @property
    def silent(self) -> bool:
        return self.user_spoke and not self.agent_spoke

    def silence_cause(self) -> n.SilenceCause:
        """Why a silent session was silent (``docs/sessions.md``, "Silence cause")."""
        if self.killed_by is not None:
            return self.killed_by
        if self.unheard:
            return "unheard"
        if self.empty:
            return "empty_reply"
        if self.stalled or self.unanswered_total:
            return "stalled"
        if self.error_cause is not None:  # no turn to kill: the user's speech never became one
            return self.error_cause
        if self.speech_pending:
            return "stalled"
        return "unknown"

    def record(self) -> SessionRecord:
        return SessionRecord(
            close_reason=self.close_reason,
            silent=self.silent,
            silence_cause=self.silence_cause() if self.silent else None,
            agent_spoke=self.agent_spoke,
            user_spoke=self.user_spoke,
            user_turns=self.user_turns,
            answered_turns=self.answered,
            dead_turns=self.dead,
            unanswered_turns=self.unanswered_total,
            time_to_first_speech=self.time_to_first_speech,
            errors=self.errors,
            terminal_error=self.terminal,
            close_error_type=self.close_error_type,
            job_shutdown_reason=self.job_shutdown_reason,
            started_at=self.started_at,
            closed_at=self.closed_at,
        )
