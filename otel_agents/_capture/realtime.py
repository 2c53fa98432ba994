"""Turns of a session on a realtime (speech-to-speech) model (``docs/sessions.md``, "Realtime
models").

livekit never sets ``thinking`` on the realtime path, and a failed, empty or timed-out reply goes
back to ``listening``, which it already was: no agent state delimits a realtime reply. Its
boundaries are the session's speeches instead: a reply is one ``speech_created`` (its
``SpeechHandle``) until the handle is done, its failure is the model's ``error`` event while it
waits for its output, or livekit's error on the handle (``SpeechHandle.exception()``: a
``generate_reply`` that timed out or was refused). Each reply knows the user turns it answers:

* ``generate_reply(user_input=...)``: the user message is committed while its own speech is the
  session's current speech, before the model is asked;
* the audio path (server VAD): the model creates the reply itself after the user's speech; it
  answers the turns open at that moment, or, when the final transcript comes only after the reply
  was created, the user turn that transcript opens next.

A reply ends its turns at once: ``answered`` when the caller heard it, ``dead_error`` the moment
it fails (the model's error, livekit's timeout), ``dead_empty`` when it ends with no output,
``unheard`` when it spoke and was not heard (text-only output with an audio output: livekit
reaches ``speaking`` on the first text), ``preempted`` when interrupted before it spoke. A model
error while a user turn waits with no reply in flight ends that turn ``dead_error`` too.

One reply is one request (``otel_agents_requests_total{component="realtime"}``): ``failed`` by its
final failed attempt, ``ok`` when it ends otherwise (not counted when interrupted before it
spoke).
"""

from __future__ import annotations

import time
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any, Final

from .. import names as n
from .._classify import classify
from .turns import Turn

if TYPE_CHECKING:
    from .tracker import SessionTracker

#: replies in flight kept per session (beyond, the oldest is forgotten)
MAX_OPEN_REPLIES: Final = 8
#: replies of the audio path whose user transcript has not come yet, kept per session
MAX_AWAITING: Final = 4
#: livekit's message when a ``generate_reply`` got no response in time (``llm/_realtime``)
TIMED_OUT: Final = "timed out"

_realtime_model: Any = None  # livekit's llm.RealtimeModel, imported at first use


def runs_realtime(session: Any) -> bool:
    """Whether ``session``'s current agent runs on a realtime model (the agent's own model,
    else the session's). Never raises."""
    global _realtime_model
    try:
        if _realtime_model is None:
            from livekit.agents.llm import RealtimeModel

            _realtime_model = RealtimeModel
        model = getattr(session.current_agent, "llm", None)
        if not isinstance(model, _realtime_model):
            model = session.llm
        return isinstance(model, _realtime_model)
    except Exception:
        return False


class _Reply:
    __slots__ = (
        "audio",
        "awaits_transcript",
        "done",
        "failed",
        "handle",
        "heard",
        "model_reply",
        "result",
        "server",
        "spoke_at",
        "tools",
        "turns",
        "unheard",
    )

    def __init__(self, handle: Any, *, model_reply: bool, server: bool, audio: bool) -> None:
        self.handle = handle  # its SpeechHandle, dropped when it is done
        self.model_reply = model_reply  # asked of the model (not a say())
        self.server = server  # created by the model itself (the audio path)
        self.audio = audio  # it plays through an audio output
        self.turns: list[Turn] = []
        self.spoke_at: float | None = None
        self.heard = False
        self.unheard: n.UnheardCause | None = None
        self.failed = False
        self.tools = False
        self.done = False
        self.awaits_transcript = False
        self.result: n.TurnOutcome | None = None  # for a turn bound after it ended


class RealtimeReplies:
    """The replies of one realtime session (a part of its tracker)."""

    __slots__ = ("__weakref__", "awaiting", "open", "recording", "tracker")

    def __init__(self, tracker: SessionTracker) -> None:
        self.tracker = tracker
        self.open: list[_Reply] = []
        self.awaiting: deque[_Reply] = deque(maxlen=MAX_AWAITING)
        self.recording = False  # recording a reply's failure that was never an event

    # --- which reply --------------------------------------------------------------------------

    def _current(self) -> _Reply | None:
        """The reply of the session's current speech, else the oldest that has not spoken."""
        session: Any = self.tracker.session()
        try:
            handle = session.current_speech if session is not None else None
        except Exception:
            handle = None
        if handle is not None:
            for reply in self.open:
                if reply.handle is handle:
                    return reply
        for reply in self.open:
            if reply.spoke_at is None:
                return reply
        return None

    def _failing(self) -> _Reply | None:
        """The reply a model error kills: in flight and not speaking yet."""
        reply = self._current()
        if reply is not None and reply.spoke_at is None and not reply.failed:
            return reply
        for reply in self.open:
            if reply.model_reply and reply.spoke_at is None and not reply.failed:
                return reply
        return None

    def _waiting(self) -> list[Turn]:
        """Open turns no reply has taken up."""
        return [turn for turn in self.tracker.turns if turn.reply is None]

    def claims_failure(self) -> bool:
        """A model error now fails a reply or a waiting turn: livekit never retries either, so
        the failed attempt is final."""
        return not self.recording and (self._failing() is not None or bool(self._waiting()))

    # --- livekit's events ----------------------------------------------------------------------

    def reply_created(self, ev: Any) -> None:
        """``speech_created``: a reply begins."""
        t = self.tracker
        handle = ev.speech_handle
        reply = _Reply(
            handle,
            model_reply=ev.source == "generate_reply",
            server=not ev.user_initiated,
            audio=t._watch_audio(),
        )
        if reply.model_reply:
            for turn in self._waiting():
                self._bind(reply, turn)
            if not reply.turns and reply.server and t.speech_pending:
                reply.awaits_transcript = True  # its transcript comes after it
                self.awaiting.append(reply)
        if len(self.open) >= MAX_OPEN_REPLIES:
            self.open.pop(0).handle = None
        self.open.append(reply)
        # weakly: a handle the app keeps must not keep the session's tracker alive
        ref = weakref.ref(self)

        def on_done(_: Any) -> None:
            replies = ref()
            if replies is None:
                return
            tracker = replies.tracker
            if tracker.closed or tracker.realtime is not replies:
                return
            try:
                replies._done(reply)
            except Exception:
                tracker.recorder.internal_error("session_hook")

        handle.add_done_callback(on_done)

    def turn_opened(self, turn: Turn) -> None:
        """A user message was committed: which reply answers it."""
        reply = self._current()
        if (
            reply is not None
            and reply.model_reply
            and not reply.server
            and reply.spoke_at is None
            and not reply.failed
        ):
            self._bind(reply, turn)  # generate_reply(user_input=...): its own reply
            return
        if self.awaiting:  # the late transcript of the speech a reply already answers
            reply = self.awaiting.popleft()
            reply.awaits_transcript = False
            self._bind(reply, turn)

    def speaking(self, at: float) -> None:
        """``speaking``: the current reply's first audio frame, or its first text."""
        reply = self._current()
        if reply is None or reply.spoke_at is not None:
            return
        reply.spoke_at = at
        if not reply.audio:
            self._heard(reply, at)  # a text reply is heard as it goes out

    def playback_finished(self, position: float, cause: n.UnheardCause) -> None:
        reply = self._current()
        if reply is None:
            return
        if position > 0:
            if not reply.heard:
                self._heard(reply, reply.spoke_at or time.time() - position)
        elif reply.unheard is None:
            reply.unheard = cause

    def tools_ran(self) -> None:
        reply = self._current()
        if reply is not None:
            reply.tools = True

    def failed(self) -> None:
        """A model error, counted as final (:meth:`claims_failure`): it kills the reply in
        flight, else the turns that wait for one."""
        if self.recording:
            return
        reply = self._failing()
        if reply is not None:
            self._fail(reply)
            return
        for turn in self._waiting():
            self.tracker._end_turn("dead_error", turn)

    # --- outcomes ------------------------------------------------------------------------------

    def _bind(self, reply: _Reply, turn: Turn) -> None:
        turn.reply = reply
        reply.turns.append(turn)
        if reply.failed:
            self._end_turns(reply, "dead_error")
        elif reply.heard:
            self._end_turns(reply, "answered")
        elif reply.result is not None:
            self._end_turns(reply, reply.result)

    def _end_turns(self, reply: _Reply, outcome: n.TurnOutcome) -> None:
        t = self.tracker
        for turn in reply.turns:
            if outcome == "answered":
                turn.spoke_at = reply.spoke_at or time.time()
            t._end_turn(outcome, turn)
        reply.turns.clear()

    def _heard(self, reply: _Reply, at: float) -> None:
        reply.heard = True
        self.tracker._agent_heard(at)
        self._end_turns(reply, "answered")

    def _fail(self, reply: _Reply) -> None:
        reply.failed = True
        self._end_turns(reply, "dead_error")

    def _done(self, reply: _Reply) -> None:
        """The reply's speech is done: how it ended, for its turns and as a request."""
        t = self.tracker
        handle, reply.handle = reply.handle, None
        reply.done = True
        if reply in self.open:
            self.open.remove(reply)
        if handle is None:
            return
        error = handle.exception()
        if error is not None and not reply.failed:
            self._record(error)
            self._fail(reply)
        outcome: n.TurnOutcome
        if reply.failed:
            outcome = "dead_error"
        elif reply.heard:
            outcome = "answered"
        elif reply.spoke_at is not None or reply.unheard is not None:
            # it spoke (its audio never played, or only its text went out) or its audio
            # reached the sink and did not play
            t._count_unheard(reply.unheard or "no_frames")
            outcome = "unheard"
        elif handle.interrupted:
            outcome = "preempted"
        elif reply.tools:
            for turn in reply.turns:  # the reply after the tools answers them
                turn.reply = None
            reply.turns.clear()
            outcome = "tool_only"
        elif reply.turns and reply.turns[0].errors_at_tools is not None:
            outcome = (
                "tool_only" if t.window_errors <= reply.turns[0].errors_at_tools else "dead_error"
            )
        else:
            outcome = "dead_error" if t.window_errors else "dead_empty"
        reply.result = outcome
        self._end_turns(reply, outcome)
        if (
            reply.model_reply
            and not reply.failed
            and not (handle.interrupted and reply.spoke_at is None)
        ):
            t.recorder.request_ok("realtime", self._provider())

    def _record(self, error: BaseException) -> None:
        """livekit failed the reply without a model error (a ``generate_reply`` that timed out):
        a final failed attempt of the realtime model, recorded once."""
        from . import attempts  # attempts imports sessions, which imports this module

        inst = attempts.instance_of(self._model_session())
        if TIMED_OUT in str(error) and isinstance(error, Exception):
            # livekit's RealtimeError says it in words only: a TimeoutError caused by it
            timeout = TimeoutError(str(error))
            timeout.__cause__ = error
            error = timeout
        self.recording = True
        try:
            if inst is not None:
                inst.requests.clear()  # one reply, one request
                attempts.record_never_event(inst, error, None)
            else:
                c = classify(error)
                self.tracker._count_error(id(error), c.terminal, c.error_class)
        finally:
            self.recording = False

    def _model_session(self) -> Any:
        session: Any = self.tracker.session()
        try:
            return session.current_agent.realtime_llm_session if session is not None else None
        except Exception:
            return None

    def _provider(self) -> str:
        from . import attempts

        inst = attempts.instance_of(self._model_session())
        return inst.provider_name() if inst is not None else n.UNKNOWN

    def close(self) -> None:
        """The session closed: a reply that spoke and whose playout was never reported counts
        as heard (the sink's word that it started is all there is); its other turns are left
        to the close."""
        for reply in self.open:
            if reply.spoke_at is not None and not reply.heard and reply.unheard is None:
                self._heard(reply, reply.spoke_at)
            reply.handle = None
        self.open.clear()
        self.awaiting.clear()
