"""A scripted realtime (speech-to-speech) model on livekit's public base classes
(``llm.RealtimeModel``, ``llm.RealtimeSession``), modelled on livekit's own test fake
(``tests/fake_realtime.py`` of livekit/agents) and emitting what livekit's bundled OpenAI realtime
session emits, in its order (``llm/_realtime/openai.py``):

* a reply: ``generation_created`` (``user_initiated`` for ``generate_reply()``, not for a reply
  the server created after the user's speech), its message and function streams, then
  ``metrics_collected`` at ``response.done``;
* a rejected ``response.create`` (:class:`Refused`): the ``generate_reply()`` future fails with a
  ``RealtimeError``, then the ``error`` event (``recoverable=True``; a fatal error is raised in
  the receive loop and emitted ``recoverable=False`` by the reconnect loop);
* a failed response (:class:`FailedResponse`): ``generation_created``, the streams close empty,
  ``metrics_collected``, then the ``error`` event;
* no response (:class:`Stall`): ``generate_reply()`` times out with livekit's own
  ``RealtimeError("generate_reply timed out.")`` after ``reply_timeout`` (10 s in livekit);
* the audio path (:meth:`FakeRealtimeSession.user_says`): server VAD's
  ``input_speech_started``/``input_speech_stopped``, the final input transcript, then the reply the
  server creates itself.

Step k of the model's script runs for the k-th reply of its sessions (the last step repeats).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from livekit import rtc
from livekit.agents import llm, utils
from livekit.agents.metrics import RealtimeModelMetrics

from otel_agents.demo.realtime import QuietRealtimeSession

SAMPLE_RATE = 24000


def audio_frame(seconds: float) -> rtc.AudioFrame:
    samples = int(SAMPLE_RATE * seconds)
    return rtc.AudioFrame(b"\x00\x01" * samples, SAMPLE_RATE, 1, samples)


@dataclass(frozen=True)
class Reply:
    """A response with one message: ``text``, and ``audio`` seconds of audio (``None``: a
    text-only message, as a realtime model configured for text sends)."""

    text: str
    audio: float | None = 0.2


@dataclass(frozen=True)
class Empty:
    """A response that completes with no output at all."""


@dataclass(frozen=True)
class Refused:
    """The server rejects the response (an ``error`` event, no response created)."""

    error: Callable[[], Exception]
    fatal: bool = False


@dataclass(frozen=True)
class FailedResponse:
    """The response is created, then ends ``failed``: no output, then an ``error`` event."""

    error: Callable[[], Exception]
    fatal: bool = False


@dataclass(frozen=True)
class Stall:
    """No response: a ``generate_reply()`` times out (livekit's ``RealtimeError``); a reply the
    server should have created never comes."""


Step = Reply | Empty | Refused | FailedResponse | Stall


def capabilities(*, audio_output: bool = True) -> llm.RealtimeCapabilities:
    return llm.RealtimeCapabilities(
        message_truncation=False,
        turn_detection=True,
        user_transcription=True,
        auto_tool_reply_generation=False,
        audio_output=audio_output,
        manual_function_calls=False,
        mutable_chat_context=True,
        mutable_instructions=True,
        mutable_tools=True,
        per_response_tool_choice=True,
    )


class FakeRealtimeModel(llm.RealtimeModel):
    def __init__(
        self,
        script: Sequence[Step],
        *,
        provider: str = "fake-realtime",
        reply_timeout: float = 0.3,
        audio_output: bool = True,
    ) -> None:
        super().__init__(capabilities=capabilities(audio_output=audio_output))
        self.script = list(script)
        self.calls = 0
        self.reply_timeout = reply_timeout
        self._provider = provider
        self.sessions: list[FakeRealtimeSession] = []

    @property
    def provider(self) -> str:
        return self._provider

    @property
    def model(self) -> str:
        return "fake-realtime-1"

    def next_step(self) -> Step:
        step = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        return step

    def session(self, *, turn_detection_disabled: bool = False) -> FakeRealtimeSession:
        sess = FakeRealtimeSession(self)
        self.sessions.append(sess)
        return sess

    async def aclose(self) -> None:
        pass


class FakeRealtimeSession(QuietRealtimeSession):
    def __init__(self, model: FakeRealtimeModel) -> None:
        super().__init__(model)
        self._model = model
        self._responses = 0
        self.replies_created = 0

    # --- what the server does --------------------------------------------------------------

    def _fail(self, step: Refused | FailedResponse) -> None:
        # a fatal error is raised in the receive loop; the reconnect loop emits it unrecoverable
        self.emit_error(step.error(), recoverable=not step.fatal)

    def _create_response(self, step: Step, *, user_initiated: bool) -> llm.GenerationCreatedEvent:
        self._responses += 1
        self.replies_created += 1
        response_id = f"resp_{self._responses}"
        message_ch = utils.aio.Chan[llm.MessageGeneration]()
        function_ch = utils.aio.Chan[llm.FunctionCall]()
        ev = llm.GenerationCreatedEvent(
            message_stream=message_ch,
            function_stream=function_ch,
            user_initiated=user_initiated,
            response_id=response_id,
        )
        task = asyncio.create_task(self._respond(step, response_id, message_ch, function_ch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return ev

    async def _respond(
        self,
        step: Step,
        response_id: str,
        message_ch: utils.aio.Chan[llm.MessageGeneration],
        function_ch: utils.aio.Chan[llm.FunctionCall],
    ) -> None:
        await asyncio.sleep(0)
        if isinstance(step, Reply):
            text_ch = utils.aio.Chan[str]()
            audio_ch = utils.aio.Chan[rtc.AudioFrame]()
            modalities: asyncio.Future[list[Literal["text", "audio"]]] = asyncio.Future()
            modalities.set_result(["audio", "text"] if step.audio is not None else ["text"])
            message_ch.send_nowait(
                llm.MessageGeneration(
                    message_id=f"item_{response_id}",
                    text_stream=text_ch,
                    audio_stream=audio_ch,
                    modalities=modalities,
                )
            )
            text_ch.send_nowait(step.text)
            text_ch.close()
            if step.audio is not None:
                audio_ch.send_nowait(audio_frame(step.audio))
            audio_ch.close()
        message_ch.close()
        function_ch.close()
        # response.done: metrics for every response, failed ones included, then the error
        self.emit(
            "metrics_collected",
            RealtimeModelMetrics(
                request_id=response_id,
                timestamp=time.time(),
                label=self.realtime_model.label,
                input_token_details=RealtimeModelMetrics.InputTokenDetails(),
                output_token_details=RealtimeModelMetrics.OutputTokenDetails(),
            ),
        )
        if isinstance(step, FailedResponse):
            self._fail(step)

    # --- the client API livekit calls --------------------------------------------------------

    def generate_reply(self, **kwargs: Any) -> asyncio.Future[llm.GenerationCreatedEvent]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[llm.GenerationCreatedEvent] = loop.create_future()
        step = self._model.next_step()

        def answer() -> None:
            if fut.done():
                return
            if isinstance(step, Refused):
                fut.set_exception(llm.RealtimeError("realtime quota exceeded", code="quota"))
                self._fail(step)
            elif isinstance(step, Stall):

                def on_timeout() -> None:
                    if not fut.done():
                        fut.set_exception(llm.RealtimeError("generate_reply timed out."))

                loop.call_later(self._model.reply_timeout, on_timeout)
            else:
                ev = self._create_response(step, user_initiated=True)
                fut.set_result(ev)
                self.emit("generation_created", ev)

        loop.call_soon(answer)
        return fut

    def user_says(self, transcript: str, *, late_transcript: bool = False) -> None:
        """The audio path: server VAD hears the user, transcribes the turn and replies on its
        own (``late_transcript``: the transcript comes after the reply was created)."""
        self.emit("input_speech_started", llm.InputSpeechStartedEvent())
        self.emit(
            "input_speech_stopped", llm.InputSpeechStoppedEvent(user_transcription_enabled=True)
        )
        started = time.time()
        if not late_transcript:
            self._transcript(transcript, started)
        step = self._model.next_step()
        if isinstance(step, Refused):
            self._fail(step)
        elif not isinstance(step, Stall):
            self.emit("generation_created", self._create_response(step, user_initiated=False))
        if late_transcript:
            asyncio.get_running_loop().call_later(0.05, self._transcript, transcript, started)

    def _transcript(self, transcript: str, started: float) -> None:
        self.emit(
            "input_audio_transcription_completed",
            llm.InputTranscriptionCompleted(
                item_id=utils.shortuuid("item_"),
                transcript=transcript,
                is_final=True,
                turn_started_at=started,
            ),
        )
