"""The session tracker: a state machine over one ``AgentSession``'s public events (user turns
and how each ended, whether the user spoke and whether the caller heard the agent, time to first
speech, live unanswered turns, unheard replies, the close; ``docs/sessions.md``). Everything it
learns goes to the recorder: metrics as it happens, the span and the ``session_closed`` record at
the end.

Its parts, one concern each: ``turns.py`` (user turns and the unanswered gauge), ``replies.py``
(pipeline replies, delimited by the agent's states, and whether the audio output played them),
``realtime.py`` (a realtime model's replies, delimited by its speeches and the model's errors),
``summary.py`` (the session's silence and its record).

Nothing of a session survives its close: the handlers are removed, the tracker leaves every
registry here, and the context variable only ever holds a weak reference. The session, its
output and its sink are held weakly.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, Final

from .. import names as n
from .._classify import classify, type_name
from .._export import labels as lbl
from .._export.recorder import Recorder
from .._export.records import AttemptRecord
from .events import guarded as _guarded
from .realtime import RealtimeReplies, runs_realtime
from .replies import Replies
from .summary import Summary
from .turns import Turn

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
    "speech_created",
    "error",
    "close",
)
#: the agent states of a reply (any other state ends the reply in progress)
_REPLYING: Final = frozenset({"thinking", "speaking"})


class SessionTracker(Summary, Replies):
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
        "empty",
        "error_cause",
        "errors",
        "handlers",
        "in_job",
        "job_shutdown_reason",
        "killed_by",
        "killed_terminal",
        "loop",
        "loose_playout",
        "output",
        "pending_events",
        "publish_timer",
        "published",
        "realtime",
        "recorder",
        "reply_audio",
        "reply_heard",
        "reply_open",
        "reply_spoke_at",
        "reply_text",
        "reply_took_turn",
        "reply_unheard",
        "replying",
        "seen_errors",
        "session",
        "silence_timeout",
        "sink",
        "sink_handler",
        "span",
        "speech_pending",
        "stalled",
        "started_at",
        "terminal",
        "time_to_first_speech",
        "turns",
        "unanswered_total",
        "unheard",
        "user_spoke",
        "user_state",
        "user_turns",
        "window_class",
        "window_errors",
        "window_gave_up",
        "window_terminal",
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
        # the session's AgentOutput and the audio sink listened to (weak: a sink or an output
        # may hold the session, which must not outlive its app's last reference)
        self.output: weakref.ref[Any] | None = None
        self.sink: weakref.ref[Any] | None = None
        self.sink_handler: Callable[[Any], None] | None = None
        self.user_spoke = False
        self.agent_spoke = False  # the caller heard the agent (docs/sessions.md)
        self.user_state = "listening"
        self.speech_pending = False  # the user spoke since the last user turn opened
        self.time_to_first_speech: float | None = None
        self.user_turns = 0
        self.answered = 0
        self.dead = 0
        self.empty = 0  # turns whose reply was empty: dead_empty, tool_only
        self.stalled = 0  # turns preempted or abandoned while the agent worked on them
        self.unheard = 0  # replies the caller never heard
        self.unanswered_total = 0
        self.errors = 0
        self.window_errors = 0  # errors since the previous turn closed
        self.window_class: n.ErrorClass | None = None  # the window's first terminal, else last
        self.window_terminal = False
        # providers whose request already failed in the window: a later failure of theirs is a
        # recovery probe or a repeat, which says nothing new about what killed the turn
        self.window_gave_up: tuple[str, ...] = ()
        self.terminal = False
        self.error_cause: n.ErrorClass | None = None  # the session's first terminal, else last
        # what killed the dead_error turns: the first terminal cause, else the last one
        self.killed_by: n.ErrorClass | None = None
        self.killed_terminal = False
        self.seen_errors: deque[int] = deque(maxlen=8)  # ids of error events the hooks saw
        # open user turns, oldest first: livekit queues a message sent before the previous one
        # was answered, and answers both in order
        self.turns: deque[Turn] = deque()
        # the reply in progress: from the agent leaving listening to its return
        self.reply_open = False
        self.reply_audio = False  # it plays through an audio output
        self.reply_heard = False
        self.reply_spoke_at: float | None = None  # its first ``speaking``
        self.reply_unheard: n.UnheardCause | None = None  # its first unplayed playout
        self.reply_text = False  # an assistant message was added during it
        self.reply_took_turn = False
        self.replying: list[Turn] = []  # turns it took up, waiting to know if it was heard
        # the replies of a realtime model, when the session runs on one (realtime.py)
        self.realtime: RealtimeReplies | None = None
        # a playout ended outside any reply since the last assistant message outside one
        self.loose_playout = False
        self.closed = False
        self.closed_at = 0.0
        self.close_reason = ""
        self.close_error_type: str | None = None
        self.job_shutdown_reason: str | None = None
        self.in_job = False  # started in a livekit job: its shutdown reason will come

    # --- lifecycle -----------------------------------------------------------------------------

    def begin(self, session: Any) -> None:
        """Subscribe to the session's events (and its audio output's) and count the start."""
        try:
            self.loop = asyncio.get_running_loop()
        except RuntimeError:
            self.loop = None
        for event in _EVENTS:
            handler = _guarded(self, getattr(self, "on_" + event))
            session.on(event, handler)
            self.handlers.append((event, handler))
        output = getattr(session, "output", None)
        if output is not None:
            self.output = weakref.ref(output)
            self.sink_handler = _guarded(self, self.on_playback_finished)
            self._watch_audio()
        _open.add(self)
        _by_session[session] = self
        self.recorder.session_started()

    def started(self) -> None:
        """After livekit's start returned: open the session span in livekit's trace (livekit
        leaves its ``agent_session`` span current in the caller's context), follow the audio
        output start() attached (a room's), and see whether its agent runs a realtime model."""
        if self.closed:
            return
        self._watch_audio()
        self._follow_model()
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
        if self.reply_open:
            self._end_reply("", "")
        if self.realtime is not None:
            self.realtime.close()
            self.realtime = None
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
        self._unwatch_sink()
        self.output = None
        self.sink_handler = None
        _open.discard(self)

    # --- livekit session events ----------------------------------------------------------------

    def _follow_model(self) -> None:
        """Whether the session runs on a realtime model now (its agent may have changed)."""
        session = self.session()
        realtime = session is not None and runs_realtime(session)
        if realtime and self.realtime is None:
            self.realtime = RealtimeReplies(self)
        elif not realtime and self.realtime is not None:
            self.realtime.close()
            self.realtime = None

    def on_speech_created(self, ev: Any) -> None:
        self._follow_model()
        if self.realtime is not None:
            self.realtime.reply_created(ev)

    def on_agent_state_changed(self, ev: Any) -> None:
        new = ev.new_state
        if self.realtime is not None:
            # no agent state delimits a realtime reply: ``speaking`` is its first frame or text
            if new == "speaking":
                self.realtime.speaking(ev.created_at)
            return
        if new in _REPLYING:
            if self.reply_open and new == "thinking" and ev.old_state == "speaking":
                # a speech ended (its playout reported) and the agent works on: tools, or the
                # next queued speech. Each speech is heard or not on its own.
                self._end_reply("speaking", "thinking")
            if not self.reply_open:
                self._begin_reply()
            if new == "speaking":
                self._speaking(ev.created_at)
        elif self.reply_open:
            self._end_reply(ev.old_state, new)

    def on_user_state_changed(self, ev: Any) -> None:
        self.user_state = ev.new_state
        if ev.new_state == "speaking":
            self.user_spoke = self.speech_pending = True

    def on_user_input_transcribed(self, ev: Any) -> None:
        if ev.transcript and ev.transcript.strip():
            self.user_spoke = self.speech_pending = True

    def on_user_transcription_timeout(self, ev: Any) -> None:
        # VAD heard speech that never became a transcript
        self.user_spoke = self.speech_pending = True

    def on_conversation_item_added(self, ev: Any) -> None:
        role = getattr(ev.item, "role", None)
        if role == "user":
            if self.realtime is None:
                self._open_turn(ev.created_at)
                return
            # a late transcript is placed where the user's turn began (livekit's created_at)
            at = getattr(ev.item, "created_at", None)
            opened_at = at if isinstance(at, float) and at < ev.created_at else ev.created_at
            self.realtime.turn_opened(self._open_turn(opened_at))
        elif self.realtime is not None:
            # added after the reply's playout, which said whether it was heard
            self.loose_playout = False
        elif role == "assistant" and getattr(ev.item, "text_content", None):
            if self.reply_open:
                self.reply_text = True  # with no playout reported, a reply that had no audio
            elif not self.loose_playout and self._watch_audio():
                # a speech that never reached ``speaking`` and whose output reported no
                # playout (``say()`` while listening): it had no audio
                self._count_unheard("no_frames")
            self.loose_playout = False

    def on_function_tools_executed(self, ev: Any) -> None:
        if self.turns:
            self.turns[0].errors_at_tools = self.window_errors
        if self.realtime is not None:
            self.realtime.tools_ran()

    def on_error(self, ev: Any) -> None:
        # The provider hooks already counted this error (the same object), unless the model was
        # built before init(): count it here then.
        error = ev.error
        if id(error) not in self.seen_errors:
            c = classify(error.error)
            self._count_error(id(error), c.terminal, c.error_class)

    def on_close(self, ev: Any) -> None:
        reason = getattr(ev.reason, "value", ev.reason)
        error = getattr(ev, "error", None)
        if error is not None:
            self.window_errors += 1
            exc = getattr(error, "error", error)
            self.close_error_type = type_name(type(exc))
            if self.window_class is None:
                self.window_class = classify(exc).error_class
        self.finalize(str(reason))

    # --- from the provider hooks ---------------------------------------------------------------

    def on_attempt(self, event_id: int, record: AttemptRecord) -> None:
        c = record.classification
        provider = f"{record.component}:{record.provider}"
        self._count_error(event_id, c.terminal, c.error_class, provider, record.final)
        if record.final and record.component == "realtime" and self.realtime is not None:
            self.realtime.failed()  # a reply livekit never retries, or a turn left waiting

    def add_event(self, name: str, attributes: dict[str, Any]) -> None:
        if self.span is not None:
            self.recorder.session_event(self.span, name, attributes)
        elif not self.closed and len(self.pending_events) < 8:
            self.pending_events.append((name, attributes, time.time_ns()))
