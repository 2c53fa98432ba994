"""The demo's realtime (speech-to-speech) model: in process, on livekit's public base classes
(``llm.RealtimeModel``, ``llm.RealtimeSession``), standing for LiveKit Inference's realtime
gateway. Each reply follows one step of its script and reaches the session exactly as livekit's
bundled OpenAI realtime session delivers it (``llm/_realtime/openai.py``):

* :class:`Answer`: ``generation_created``, one message with its text and audio, then
  ``metrics_collected``;
* :class:`Rejected`: the gateway rejects the ``response.create``: the ``generate_reply()`` future
  fails with livekit's ``RealtimeError``, then the session emits ``error`` with livekit's
  ``APIError`` whose body is the gateway's error (the openai SDK's realtime ``RealtimeError``
  object, its quota fields kept), ``recoverable=True`` as livekit emits an
  ``inference_quota_exceeded`` error.

Nothing here talks to otel-agents: it records these sessions through its ordinary hooks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from livekit import rtc
from livekit.agents import APIError, llm, utils
from livekit.agents.metrics import RealtimeModelMetrics
from livekit.agents.types import NOT_GIVEN

__all__ = ["Answer", "DemoRealtimeModel", "RealtimeStep", "Rejected"]

SAMPLE_RATE: Final = 24000
#: how much audio each answer plays
ANSWER_SECONDS: Final = 0.2


@dataclass(frozen=True)
class Answer:
    text: str


@dataclass(frozen=True)
class Rejected:
    """The gateway refuses the reply with its quota error (``category``)."""

    category: str
    hint: str


RealtimeStep = Answer | Rejected


def quota_error(step: Rejected) -> APIError:
    """The error livekit's realtime session emits for the gateway's quota error event."""
    from openai.types.realtime import RealtimeError

    body = RealtimeError(
        type="inference_quota_exceeded",
        message=f"realtime quota exceeded, category: {step.category}",
        quota_type="llm",  # type: ignore[call-arg]
        category=step.category,
        hint=step.hint,
        remaining_limit="0",
    )
    return APIError("LiveKit Inference returned an error", body=body, retryable=True)


class DemoRealtimeModel(llm.RealtimeModel):
    def __init__(self, script: Sequence[RealtimeStep]) -> None:
        super().__init__(
            capabilities=llm.RealtimeCapabilities(
                message_truncation=False,
                turn_detection=True,
                user_transcription=True,
                auto_tool_reply_generation=False,
                audio_output=True,
                manual_function_calls=False,
                mutable_chat_context=True,
                mutable_instructions=True,
                mutable_tools=True,
                per_response_tool_choice=True,
            )
        )
        self.script = list(script)
        self.replies = 0

    @property
    def provider(self) -> str:
        return "livekit"

    @property
    def model(self) -> str:
        return "openai/gpt-realtime"

    def next_step(self) -> RealtimeStep:
        step = self.script[min(self.replies, len(self.script) - 1)]
        self.replies += 1
        return step

    def session(self, *, turn_detection_disabled: bool = False) -> DemoRealtimeSession:
        return DemoRealtimeSession(self)

    async def aclose(self) -> None:
        pass


class QuietRealtimeSession(llm.RealtimeSession[Any]):
    """The parts of a ``RealtimeSession`` an in-process model has nothing to do for: a chat
    context and tools kept as given, audio and video ignored, and the tasks it started
    (``self._tasks``) cancelled at close. Subclasses write ``generate_reply`` and what their
    server says (the demo's model, and the tests' fake and scripted ones)."""

    def __init__(self, model: llm.RealtimeModel) -> None:
        super().__init__(model)
        self._chat_ctx = llm.ChatContext.empty()
        self._tools = llm.ToolContext.empty()
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def chat_ctx(self) -> llm.ChatContext:
        return self._chat_ctx

    @property
    def tools(self) -> llm.ToolContext:
        return self._tools

    async def update_instructions(self, instructions: str) -> None:
        pass

    async def update_chat_ctx(self, chat_ctx: llm.ChatContext) -> None:
        self._chat_ctx = chat_ctx

    async def update_tools(self, tools: list[Any]) -> None:
        pass

    def update_options(self, *, tool_choice: Any = NOT_GIVEN) -> None:
        pass

    def push_audio(self, frame: rtc.AudioFrame) -> None:
        pass

    def push_video(self, frame: rtc.VideoFrame) -> None:
        pass

    def commit_audio(self) -> None:
        pass

    def clear_audio(self) -> None:
        pass

    def interrupt(self) -> None:
        pass

    def truncate(self, **kwargs: Any) -> None:
        pass

    def emit_error(self, error: Exception, *, recoverable: bool) -> None:
        """Emit ``error`` the way livekit's realtime plugins do (openai's ``_emit_error``)."""
        self.emit(
            "error",
            llm.RealtimeModelError(
                timestamp=time.time(),
                label=self.realtime_model.label,
                error=error,
                recoverable=recoverable,
            ),
        )

    async def aclose(self) -> None:
        # a task cancelled here cannot outlive the session it speaks for
        for task in list(self._tasks):
            task.cancel()


class DemoRealtimeSession(QuietRealtimeSession):
    def __init__(self, model: DemoRealtimeModel) -> None:
        super().__init__(model)
        self._model = model

    def generate_reply(self, **kwargs: Any) -> asyncio.Future[llm.GenerationCreatedEvent]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[llm.GenerationCreatedEvent] = loop.create_future()
        step = self._model.next_step()

        def respond() -> None:
            if fut.done():
                return
            if isinstance(step, Rejected):
                error = quota_error(step)
                fut.set_exception(llm.RealtimeError(str(error)))
                self.emit_error(error, recoverable=True)
                return
            ev = self._answer(step)
            fut.set_result(ev)
            self.emit("generation_created", ev)

        loop.call_soon(respond)
        return fut

    def _answer(self, step: Answer) -> llm.GenerationCreatedEvent:
        response_id = utils.shortuuid("resp_")
        messages = utils.aio.Chan[llm.MessageGeneration]()
        functions = utils.aio.Chan[llm.FunctionCall]()
        text = utils.aio.Chan[str]()
        audio = utils.aio.Chan[rtc.AudioFrame]()
        modalities: asyncio.Future[list[Literal["text", "audio"]]] = asyncio.Future()
        modalities.set_result(["audio", "text"])
        messages.send_nowait(
            llm.MessageGeneration(
                message_id=f"item_{response_id}",
                text_stream=text,
                audio_stream=audio,
                modalities=modalities,
            )
        )
        text.send_nowait(step.text)
        samples = int(SAMPLE_RATE * ANSWER_SECONDS)
        audio.send_nowait(rtc.AudioFrame(b"\x00\x00" * samples, SAMPLE_RATE, 1, samples))
        for chan in (text, audio, messages, functions):
            chan.close()

        async def done() -> None:
            await asyncio.sleep(0)
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

        task = asyncio.create_task(done())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return llm.GenerationCreatedEvent(
            message_stream=messages,
            function_stream=functions,
            user_initiated=True,
            response_id=response_id,
        )
