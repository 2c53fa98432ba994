"""What capture hands the recorder: one record per failed attempt, per closed session and per
unhandled task error. Records hold values as they were seen (a provider's own name, not the
``other`` a metric label may fold it into); the recorder decides what each sink gets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from .._classify import Classification
from ..names import Component, SilenceCause


class Target(Protocol):
    """A provider instance's model and base URL, read when a span needs them (capture's
    ``target.Target``)."""

    def model(self) -> str | None:
        """The model it names now, else ``None``."""

    def base_url(self) -> str | None:
        """The base URL it sends its requests to, as it holds it (credentials and all: only
        its host and port are exported), else ``None``."""


@dataclass(slots=True)
class AttemptRecord:
    """One failed attempt of one provider request (``docs/reference.md``, failed attempts)."""

    component: Component
    #: the provider's own name (``unknown`` when it has none); bounded for metrics only
    provider: str
    attempt: int
    final: bool
    first_root_cause_type: str
    masked: bool
    classification: Classification
    timestamp_ns: int
    #: what the provider instance is asked for and where it sends it (``None``: unknown)
    target: Target | None = None


@dataclass(slots=True)
class SessionRecord:
    """One closed ``AgentSession`` (``docs/sessions.md``)."""

    close_reason: str
    silent: bool
    #: why a silent session was silent (``None`` when it was not)
    silence_cause: SilenceCause | None
    agent_spoke: bool
    user_spoke: bool
    user_turns: int
    answered_turns: int
    dead_turns: int
    unanswered_turns: int
    time_to_first_speech: float | None
    errors: int
    terminal_error: bool
    close_error_type: str | None
    #: the job's shutdown reason, when the job gave one (it arrives after the close)
    job_shutdown_reason: str | None
    started_at: float  # wall clock, seconds
    closed_at: float

    def fields(self) -> dict[str, Any]:
        """The ``session_closed`` log fields (the span attributes carry the same values)."""
        return {
            "close_reason": self.close_reason,
            "silent": self.silent,
            "silence_cause": self.silence_cause,
            "agent_spoke": self.agent_spoke,
            "user_spoke": self.user_spoke,
            "user_turns": self.user_turns,
            "answered_turns": self.answered_turns,
            "dead_turns": self.dead_turns,
            "unanswered_turns": self.unanswered_turns,
            "time_to_first_speech": self.time_to_first_speech,
            "errors": self.errors,
            "terminal_error": self.terminal_error,
            "close_error_type": self.close_error_type,
            "job_shutdown_reason": self.job_shutdown_reason,
        }


@dataclass(slots=True)
class TaskErrorRecord:
    """An asyncio task or future exception that was never retrieved."""

    error_type: str
    root: BaseException
    root_cause_type: str
    task_name: str | None
