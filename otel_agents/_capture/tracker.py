"""The session tracker: a state machine over one ``AgentSession``'s public events (user turns
and how each ended, whether the user and the agent spoke, time to first speech, live unanswered
turns, the close; ``docs/sessions.md``). Everything it learns goes to the recorder: metrics as
it happens, the span and the ``session_closed`` record at the end.

Nothing of a session survives its close: the handlers are removed, the tracker leaves every
registry here, and the context variable only ever holds a weak reference.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, Final

from .. import names as n
from .._classify import classify, type_name
from .._export import labels as lbl
from .._export.recorder import Recorder
from .._export.records import AttemptRecord, SessionRecord
from .events import one_arg

#: after close, how long a job's session span waits for the job's shutdown reason
JOB_SHUTDOWN_GRACE_S: Final = 15.0

current: contextvars.ContextVar[weakref.ref[SessionTracker] | None] = contextvars.ContextVar(
    "otel_agents_session", default=None
)
_open: weakref.WeakSet[SessionTracker] = weakref.WeakSet()
#: closed, their span and log record waiting for the job's shutdown reason (held by a timer)
_unpublished: weakref.WeakSet[SessionTracker] = weakref.WeakSet()
_by_session: weakref.WeakKeyDictionary[object, SessionTracker] = weakref.WeakKeyDictionary()

_EVENTS: Final = (
    "agent_state_changed",
    "user_state_changed",
    "user_input_transcribed",
    "user_transcription_timeout",
    "conversation_item_added",
    "function_tools_executed",
    "error",
    "close",
)


#: open user turns kept per session; beyond, the oldest is counted abandoned
MAX_OPEN_TURNS: Final = 16


class _Turn:
    __slots__ = ("errors_at_tools", "opened_at", "timer", "unanswered")

    def __init__(self, opened_at: float) -> None:
        self.opened_at = opened_at
        self.errors_at_tools: int | None = None  # the window's errors when tools ran
        self.unanswered = False
        self.timer: asyncio.TimerHandle | None = None


class SessionTracker:
    """The live state of one started ``AgentSession`` (a few hundred bytes)."""

    __slots__ = (
        "__weakref__",
        "agent_spoke",
        "answered",
        "close_error_type",
        "close_reason",
        "closed",
        "closed_at",
        "dead",
        "errors",
        "handlers",
        "in_job",
        "job_shutdown_reason",
        "loop",
        "pending_events",
        "publish_timer",
        "published",
        "recorder",
        "seen_errors",
        "session",
        "silence_timeout",
        "span",
        "started_at",
        "terminal",
        "time_to_first_speech",
        "turns",
        "unanswered_total",
        "user_spoke",
        "user_state",
        "user_turns",
        "window_errors",
    )

    def __init__(self, session: object, recorder: Recorder, silence_timeout: float) -> None:
        self.session = weakref.ref(session)
        self.recorder = recorder
        self.silence_timeout = silence_timeout
        self.started_at = time.time()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.span: Any = None  # the recorder's handle
        self.publish_timer: asyncio.TimerHandle | None = None
        self.published = False
        self.pending_events: list[tuple[str, dict[str, Any], int]] = []
        self.handlers: list[tuple[str, Callable[[Any], None]]] = []
        self.user_spoke = False
        self.agent_spoke = False
        self.user_state = "listening"
        self.time_to_first_speech: float | None = None
        self.user_turns = 0
        self.answered = 0
        self.dead = 0
        self.unanswered_total = 0
        self.errors = 0
        self.window_errors = 0  # errors since the previous turn closed
        self.terminal = False
        self.seen_errors: deque[int] = deque(maxlen=8)  # ids of error events the hooks saw
        # open user turns, oldest first: livekit queues a message sent before the previous one
        # was answered, and answers both in order
        self.turns: deque[_Turn] = deque()
        self.closed = False
        self.closed_at = 0.0
        self.close_reason = ""
        self.close_error_type: str | None = None
        self.job_shutdown_reason: str | None = None
        self.in_job = False  # started in a livekit job: its shutdown reason will come

    # --- lifecycle -----------------------------------------------------------------------------

    def begin(self, session: Any) -> None:
        """Subscribe to the session's events and count the start."""
        try:
            self.loop = asyncio.get_running_loop()
        except RuntimeError:
            self.loop = None
        for event in _EVENTS:
            handler = _guarded(self, getattr(self, "on_" + event))
            session.on(event, handler)
            self.handlers.append((event, handler))
        _open.add(self)
        _by_session[session] = self
        self.recorder.session_started()

    def started(self) -> None:
        """After livekit's start returned: open the session span in livekit's trace (livekit
        leaves its ``agent_session`` span current in the caller's context)."""
        if self.closed:
            return
        self.span = self.recorder.open_session_span(self.started_at)
        if self.span is not None:
            for name, attributes, timestamp in self.pending_events:
                self.recorder.session_event(self.span, name, attributes, timestamp)
        self.pending_events.clear()

    def finalize(self, reason: str) -> None:
        """Close the books: metrics now; the span and the ``session_closed`` record when the
        job's shutdown reason is known (see :meth:`publish`). Drops every reference to the
        session."""
        if self.closed:
            return
        self.closed = True
        self.closed_at = time.time()
        self.close_reason = lbl.close_reason(reason)
        while self.turns:
            self._end_turn("dead_error" if self.window_errors else "abandoned")
        self.recorder.session_closed(self.record())
        self._detach()
        if self.in_job and not self.job_shutdown_reason and self._on_own_loop():
            # the job's shutdown reason arrives after close, from its shutdown callbacks: the
            # span and the log record wait for it (bounded)
            assert self.loop is not None
            self.publish_timer = self.loop.call_later(
                JOB_SHUTDOWN_GRACE_S, self.publish, context=contextvars.Context()
            )
            _unpublished.add(self)
        else:
            self.publish()

    def _on_own_loop(self) -> bool:
        try:
            return self.loop is not None and asyncio.get_running_loop() is self.loop
        except RuntimeError:  # no running loop: process exit, shutdown() from a thread
            return False

    def publish(self) -> None:
        """End the span and write the ``session_closed`` record (once, after close)."""
        if self.published or not self.closed:
            return
        self.published = True
        _unpublished.discard(self)
        if self.publish_timer is not None:
            self.publish_timer.cancel()
            self.publish_timer = None
        span, self.span = self.span, None
        self.recorder.publish_session(self.record(), span)

    def on_job_shutdown(self, reason: str) -> None:
        self.job_shutdown_reason = reason
        if self.closed:
            self.publish()
        else:
            self.finalize("job_shutdown")

    def _detach(self) -> None:
        session: Any = self.session()
        if session is not None:
            for event, handler in self.handlers:
                with contextlib.suppress(Exception):
                    session.off(event, handler)
            _by_session.pop(session, None)
        self.handlers.clear()
        _open.discard(self)

    @property
    def silent(self) -> bool:
        return self.user_spoke and not self.agent_spoke

    def record(self) -> SessionRecord:
        return SessionRecord(
            close_reason=self.close_reason,
            silent=self.silent,
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

    # --- turns ---------------------------------------------------------------------------------

    def _open_turn(self, at: float) -> None:
        if len(self.turns) >= MAX_OPEN_TURNS:
            self._end_turn("abandoned")
        self.user_spoke = True
        self.user_turns += 1
        self.recorder.user_turn()
        turn = _Turn(at)
        self.turns.append(turn)
        if self.loop is not None:
            # An empty context: call_later would copy livekit's (its AgentActivity, SpeechHandle),
            # and a cancelled timer keeps its context until its deadline passes.
            turn.timer = self.loop.call_later(
                self.silence_timeout,
                functools.partial(self._on_silence, turn),
                context=contextvars.Context(),
            )

    def _on_silence(self, turn: _Turn) -> None:
        if self.closed or turn not in self.turns:
            return
        turn.timer = None
        turn.unanswered = True
        self.unanswered_total += 1
        self.recorder.unanswered(1)

    def _end_turn(self, outcome: n.TurnOutcome) -> None:
        """End the oldest open turn with ``outcome``."""
        if not self.turns:
            return
        turn = self.turns.popleft()
        if turn.timer is not None:
            turn.timer.cancel()
        if turn.unanswered:
            self.recorder.unanswered(-1)
        if outcome in ("dead_error", "dead_empty"):
            self.dead += 1
            self.recorder.dead_turn("error" if outcome == "dead_error" else "empty")
        self.window_errors = 0

    # --- livekit session events ----------------------------------------------------------------

    def on_agent_state_changed(self, ev: Any) -> None:
        old, new = ev.old_state, ev.new_state
        if new == "speaking":
            at = ev.created_at
            if not self.agent_spoke:
                self.agent_spoke = True
                self.time_to_first_speech = max(0.0, at - self.started_at)
                self.recorder.first_speech(self.time_to_first_speech)
            if self.turns:
                self.answered += 1
                opened_at = self.turns[0].opened_at
                self.recorder.answered(max(0.0, at - opened_at))
                self._end_turn("answered")
        elif old == "thinking" and new == "listening" and self.turns:
            errors_at_tools = self.turns[0].errors_at_tools
            if self.user_state == "speaking":
                self._end_turn("preempted")
            elif errors_at_tools is not None and self.window_errors == errors_at_tools:
                self._end_turn("tool_only")  # tools ran, and the reply after them did not fail
            elif self.window_errors:
                self._end_turn("dead_error")
            else:
                self._end_turn("dead_empty")

    def on_user_state_changed(self, ev: Any) -> None:
        self.user_state = ev.new_state
        if ev.new_state == "speaking":
            self.user_spoke = True

    def on_user_input_transcribed(self, ev: Any) -> None:
        if ev.transcript and ev.transcript.strip():
            self.user_spoke = True

    def on_user_transcription_timeout(self, ev: Any) -> None:
        self.user_spoke = True  # VAD heard speech that never became a transcript

    def on_conversation_item_added(self, ev: Any) -> None:
        if getattr(ev.item, "role", None) == "user":
            self._open_turn(ev.created_at)

    def on_function_tools_executed(self, ev: Any) -> None:
        if self.turns:
            self.turns[0].errors_at_tools = self.window_errors

    def on_error(self, ev: Any) -> None:
        # The provider hooks already counted this error (the same object), unless the model was
        # built before init(): count it here then.
        error = ev.error
        if id(error) not in self.seen_errors:
            self._count_error(id(error), classify(error.error).terminal)

    def on_close(self, ev: Any) -> None:
        reason = getattr(ev.reason, "value", ev.reason)
        error = getattr(ev, "error", None)
        if error is not None:
            self.window_errors += 1
            self.close_error_type = type_name(type(getattr(error, "error", error)))
        self.finalize(str(reason))

    # --- from the provider hooks ---------------------------------------------------------------

    def on_attempt(self, event_id: int, record: AttemptRecord) -> None:
        self._count_error(event_id, record.classification.terminal)

    def _count_error(self, event_id: int, terminal: bool) -> None:
        if self.closed:
            return
        self.seen_errors.append(event_id)
        self.errors += 1
        self.window_errors += 1
        if terminal:
            self.terminal = True

    def add_event(self, name: str, attributes: dict[str, Any]) -> None:
        if self.span is not None:
            self.recorder.session_event(self.span, name, attributes)
        elif not self.closed and len(self.pending_events) < 8:
            self.pending_events.append((name, attributes, time.time_ns()))


def _guarded(tracker: SessionTracker, method: Callable[[Any], None]) -> Callable[[Any], None]:
    ref = weakref.ref(tracker)

    def handler(ev: Any) -> None:
        t = ref()
        if t is None or t.closed:
            return
        try:
            method(ev)
        except Exception:
            t.recorder.internal_error("session_hook")

    return one_arg(handler)
