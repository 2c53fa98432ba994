"""The session tracker: a state machine over one ``AgentSession``'s public events (user turns
and how each ended, whether the user spoke and whether the caller heard the agent, time to first
speech, live unanswered turns, unheard replies, the close; ``docs/sessions.md``). Everything it
learns goes to the recorder: metrics as it happens, the span and the ``session_closed`` record at
the end.

"Heard" is decided by the audio output, not by the agent's ``speaking`` state: the tracker also
listens to ``playback_finished`` on ``session.output.audio`` (the top of the sink chain: wrappers
re-emit their sink's events, and a tail swapped under livekit's proxy keeps reporting through
it). The sink is looked up again at each reply, so one attached or replaced after ``start()`` is
followed.

Nothing of a session survives its close: the handlers are removed, the tracker leaves every
registry here, and the context variable only ever holds a weak reference. The session, its
output and its sink are held weakly.
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
#: the agent states of a reply (any other state ends the reply in progress)
_REPLYING: Final = frozenset({"thinking", "speaking"})


#: open user turns kept per session; beyond, the oldest is counted abandoned
MAX_OPEN_TURNS: Final = 16


class _Turn:
    __slots__ = ("errors_at_tools", "opened_at", "spoke_at", "timer", "unanswered")

    def __init__(self, opened_at: float) -> None:
        self.opened_at = opened_at
        self.errors_at_tools: int | None = None  # the window's errors when tools ran
        self.unanswered = False
        self.timer: asyncio.TimerHandle | None = None
        self.spoke_at = 0.0  # when the reply that took it up started playing


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
        self.turns: deque[_Turn] = deque()
        # the reply in progress: from the agent leaving listening to its return
        self.reply_open = False
        self.reply_audio = False  # it plays through an audio output
        self.reply_heard = False
        self.reply_spoke_at: float | None = None  # its first ``speaking``
        self.reply_unheard: n.UnheardCause | None = None  # its first unplayed playout
        self.reply_text = False  # an assistant message was added during it
        self.reply_took_turn = False
        self.replying: list[_Turn] = []  # turns it took up, waiting to know if it was heard
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
        leaves its ``agent_session`` span current in the caller's context), and follow the audio
        output start() attached (a room's)."""
        if self.closed:
            return
        self._watch_audio()
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

    # --- the audio output ----------------------------------------------------------------------

    def _watch_audio(self) -> bool:
        """Listen to the session's audio output as it is now; whether a reply would play
        through it (livekit reads ``output.audio`` the same way at the start of each reply).
        Never raises: a foreign output that misbehaves counts as no audio output."""
        try:
            output = self.output() if self.output is not None else None
            if output is None:
                return False
            sink = output.audio
            if sink is not (self.sink() if self.sink is not None else None):
                self._unwatch_sink()
                if sink is not None and self.sink_handler is not None:
                    sink.on("playback_finished", self.sink_handler)
                    self.sink = weakref.ref(sink)
            return sink is not None and bool(output.audio_enabled)
        except Exception:
            self.recorder.internal_error("session_hook")
            return False

    def _unwatch_sink(self) -> None:
        sink = self.sink() if self.sink is not None else None
        self.sink = None
        if sink is not None and self.sink_handler is not None:
            with contextlib.suppress(Exception):
                sink.off("playback_finished", self.sink_handler)

    def on_playback_finished(self, ev: Any) -> None:
        """One playout of the sink ended: heard if it advanced, else unheard, and why."""
        position = ev.playback_position
        if not self.reply_open:
            self.loose_playout = True
        if position > 0:
            if not self.reply_heard:
                self._heard(self.reply_spoke_at or time.time() - position)
            return
        cause: n.UnheardCause = "cleared_before_playout" if ev.interrupted else "never_played"
        if self.reply_open:
            if self.reply_unheard is None:
                self.reply_unheard = cause
        else:  # a speech that never reached ``speaking`` (``say()`` while listening)
            self._count_unheard(cause)

    # --- replies -------------------------------------------------------------------------------

    def _begin_reply(self) -> None:
        self.reply_open = True
        self.reply_heard = False
        self.reply_spoke_at = None
        self.reply_unheard = None
        self.reply_text = False
        self.reply_took_turn = False
        self.reply_audio = self._watch_audio()

    def _speaking(self, at: float) -> None:
        """The agent reached ``speaking``: its audio started playing (with an audio output), or
        its first text went out (without one)."""
        if self.reply_spoke_at is None:
            self.reply_spoke_at = at
        if not self.reply_audio and not self.reply_heard:
            self._heard(at)  # a text reply is heard as it goes out
        if self.turns:
            self.reply_took_turn = True
            turn = self._take_turn()
            turn.spoke_at = at
            if self.reply_heard:
                self._outcome(turn, "answered")
            else:
                self.replying.append(turn)  # until its playout says whether it was heard

    def _heard(self, at: float) -> None:
        """The caller heard the reply in progress (its playout started at ``at``)."""
        self.reply_heard = True
        if not self.agent_spoke:
            self.agent_spoke = True
            self.time_to_first_speech = max(0.0, at - self.started_at)
            self.recorder.first_speech(self.time_to_first_speech)
        while self.replying:
            self._outcome(self.replying.pop(0), "answered")

    def _end_reply(self, old: str, new: str) -> None:
        """The agent went back to ``new`` (from ``old``): was the reply heard, and what became of
        the oldest open turn if the reply took none up."""
        self.reply_open = False
        cause: n.UnheardCause | None = None
        if not self.reply_heard:
            if self.reply_unheard is not None:
                cause = self.reply_unheard
            elif self.reply_spoke_at is not None:
                # playout started and was never reported (its sink replaced meanwhile): the
                # sink's word that it started is all there is
                self._heard(self.reply_spoke_at)
            elif self.reply_text and self.reply_audio:
                cause = "no_frames"  # a reply went out with no audio at all
        if cause is not None:
            self._count_unheard(cause)
            while self.replying:
                self._outcome(self.replying.pop(0), "unheard")
        if old == "thinking" and new == "listening" and self.turns:
            errors_at_tools = self.turns[0].errors_at_tools
            # a provider attempt failed since the turn opened (since its tools ran, if they did)
            failed = self.window_errors > (errors_at_tools or 0)
            if self.user_state == "speaking":
                self._end_turn("preempted")
            elif not self.reply_took_turn and self.reply_heard:
                self._end_turn("answered")
            elif cause is not None and not (cause == "no_frames" and failed):
                # its audio reached the sink and was not played, or it had none for no error
                self._end_turn("unheard")
            elif errors_at_tools is not None and not failed:
                self._end_turn("tool_only")  # tools ran, and the reply after them did not fail
            elif self.window_errors:
                # a reply with no audio and a failure (a TTS that failed): the failure killed it
                self._end_turn("dead_error")
            else:
                self._end_turn("dead_empty")

    def _count_unheard(self, cause: n.UnheardCause) -> None:
        self.unheard += 1
        self.recorder.unheard_speech(cause)

    # --- turns ---------------------------------------------------------------------------------

    def _open_turn(self, at: float) -> None:
        if len(self.turns) >= MAX_OPEN_TURNS:
            self._end_turn("abandoned")
        self.user_spoke = True
        self.speech_pending = False
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

    def _take_turn(self) -> _Turn:
        """Close the oldest open turn (a reply took it up, or it ended): it stops waiting, and
        its error window closes."""
        turn = self.turns.popleft()
        if turn.timer is not None:
            turn.timer.cancel()
            turn.timer = None
        if turn.unanswered:
            self.recorder.unanswered(-1)
        self.window_errors = 0
        self.window_class = None
        self.window_terminal = False
        self.window_gave_up = ()
        return turn

    def _end_turn(self, outcome: n.TurnOutcome) -> None:
        """End the oldest open turn with ``outcome``."""
        if not self.turns:
            return
        if outcome == "dead_error":
            # the first terminal cause, else the last one
            cause = self.window_class or self.error_cause
            if cause is not None and not self.killed_terminal:
                self.killed_by = cause
                self.killed_terminal = self.window_terminal
        turn = self._take_turn()
        if outcome == "answered":
            turn.spoke_at = time.time()
        self._outcome(turn, outcome)

    def _outcome(self, turn: _Turn, outcome: n.TurnOutcome) -> None:
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

    # --- livekit session events ----------------------------------------------------------------

    def on_agent_state_changed(self, ev: Any) -> None:
        new = ev.new_state
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
            self._open_turn(ev.created_at)
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
