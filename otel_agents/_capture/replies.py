"""The agent's replies on the pipeline path (STT, LLM, TTS) and whether the caller heard them
(``docs/sessions.md``, "the agent spoke", "unheard speech").

A pipeline reply runs from the agent leaving ``listening`` to its return; livekit's agent states
delimit it. "Heard" is decided by the audio output, not by the ``speaking`` state: the tracker
listens to ``playback_finished`` on ``session.output.audio`` (the top of the sink chain: wrappers
re-emit their sink's events, and a tail swapped under livekit's proxy keeps reporting through
it). The sink is looked up again at each reply, so one attached or replaced after ``start()`` is
followed. A realtime session's replies are delimited otherwise (``realtime.py``); the audio
output is shared.

:class:`Replies` is a part of the session tracker (``tracker.py``): its state lives in the
tracker's slots.
"""

from __future__ import annotations

import contextlib
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import names as n
from .turns import Turn, TurnBook

if TYPE_CHECKING:
    from .realtime import RealtimeReplies


class Replies(TurnBook):
    """Pipeline replies and the audio output (a mixin of the session tracker)."""

    if not TYPE_CHECKING:  # the tracker's slots hold its state (mypy: its attributes below)
        __slots__ = ()

    output: weakref.ref[Any] | None
    sink: weakref.ref[Any] | None
    sink_handler: Callable[[Any], None] | None
    agent_spoke: bool
    time_to_first_speech: float | None
    started_at: float
    user_state: str
    loose_playout: bool
    reply_open: bool
    reply_audio: bool
    reply_heard: bool
    reply_spoke_at: float | None
    reply_unheard: n.UnheardCause | None
    reply_text: bool
    reply_took_turn: bool
    replying: list[Turn]
    realtime: RealtimeReplies | None

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
        cause: n.UnheardCause = "cleared_before_playout" if ev.interrupted else "never_played"
        if self.realtime is not None:
            self.realtime.playback_finished(position, cause)
            return
        if not self.reply_open:
            self.loose_playout = True
        if position > 0:
            if not self.reply_heard:
                self._heard(self.reply_spoke_at or time.time() - position)
            return
        if self.reply_open:
            if self.reply_unheard is None:
                self.reply_unheard = cause
        else:  # a speech that never reached ``speaking`` (``say()`` while listening)
            self._count_unheard(cause)

    # --- replies -------------------------------------------------------------------------------

    def _agent_heard(self, at: float) -> None:
        """The caller heard the agent, its playout having started at ``at``."""
        if not self.agent_spoke:
            self.agent_spoke = True
            self.time_to_first_speech = max(0.0, at - self.started_at)
            self.recorder.first_speech(self.time_to_first_speech)

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
        self._agent_heard(at)
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
