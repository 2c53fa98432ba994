"""Scripted providers built on livekit's public base classes, and real provider error chains.

Errors are built the way the real plugins build them: ``ssl.SSLError`` raised through httpx2 and
the openai SDK, and 429s made by the openai SDK's own ``_make_status_error_from_response`` from a
real ``httpx2.Response``, re-raised exactly as ``livekit/agents/inference/llm.py`` does.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Callable, Sequence
from typing import Any

import httpx2
import openai
from livekit.agents import APIConnectionError, APIStatusError, llm
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions

Step = Callable[[], None] | str  # raise, or reply with this text ("" = empty completion)

_REQUEST = httpx2.Request("POST", "https://agent-gateway.livekit.cloud/v1/chat/completions")


@functools.cache
def _openai_client() -> openai.AsyncOpenAI:
    # one client: each one loads its own SSL context and CA store (~1 MB)
    return openai.AsyncOpenAI(api_key="sk-test", base_url="https://agent-gateway.livekit.cloud/v1")


def ssl_connection_error() -> None:
    """The chain the inference plugin produces for a TLS failure (docs/livekit.md)."""
    try:
        try:
            try:
                raise ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] failed")
            except ssl.SSLError as e:
                raise httpx2.ConnectError(str(e), request=_REQUEST) from e
        except httpx2.ConnectError as e:
            raise openai.APIConnectionError(request=_REQUEST) from e
    except openai.APIConnectionError as e:
        raise APIConnectionError(retryable=True) from e


def openai_status_error(status: int, body: object) -> openai.APIStatusError:
    """An openai SDK error exactly as the SDK builds it from an HTTP response."""
    response = httpx2.Response(status, json=body, request=_REQUEST)
    err = _openai_client()._make_status_error_from_response(response)
    assert isinstance(err, openai.APIStatusError)
    return err


def gateway_status_error(status: int, body: object) -> Callable[[], None]:
    """A gateway HTTP error re-raised the way inference/llm.py:616-625 does (``from None``)."""

    def raise_it() -> None:
        try:
            # as the SDK does: its status error is raised ``from None`` while handling httpx's
            try:
                openai_status_error(status, body).response.raise_for_status()
            except httpx2.HTTPStatusError:
                raise openai_status_error(status, body) from None
        except openai.APIStatusError as e:
            raise APIStatusError(
                e.message,
                status_code=e.status_code,
                request_id=e.request_id,
                body=e.body,
                retryable=status in (408, 429, 499) or status >= 500,
            ) from None

    return raise_it


def raising(exc: BaseException) -> Callable[[], None]:
    def raise_it() -> None:
        raise exc

    return raise_it


class ScriptedLLM(llm.LLM):
    """Attempt k of the whole LLM runs ``script[k]`` (the last step repeats)."""

    def __init__(self, script: Sequence[Step], *, provider: str = "scripted") -> None:
        super().__init__()
        self.script = list(script)
        self.calls = 0
        self._provider = provider

    @property
    def provider(self) -> str:
        return self._provider

    def chat(
        self,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[Any] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        **kwargs: Any,
    ) -> ScriptedStream:
        return ScriptedStream(self, chat_ctx=chat_ctx, tools=tools or [], conn_options=conn_options)

    def next_step(self) -> Step:
        step = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        return step


class ScriptedStream(llm.LLMStream):
    async def _run(self) -> None:
        assert isinstance(self._llm, ScriptedLLM)
        step = self._llm.next_step()
        if callable(step):
            step()
            return
        if step:
            self._event_ch.send_nowait(
                llm.ChatChunk(id="c1", delta=llm.ChoiceDelta(role="assistant", content=step))
            )


# --- TTS, STT and realtime providers (appended for tests/test_components.py) ----------------------

import asyncio  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

from livekit import rtc  # noqa: E402
from livekit.agents import APIError, stt, tts  # noqa: E402
from livekit.agents.language import LanguageCode  # noqa: E402
from livekit.agents.types import NOT_GIVEN, NotGivenOr  # noqa: E402
from livekit.agents.utils import AudioBuffer, shortuuid  # noqa: E402

from otel_agents.demo.realtime import QuietRealtimeSession  # noqa: E402


def tts_quota_message_error(
    category: str = "MaxConcurrentGatewayTTS", *, quota_type: str = "tts"
) -> Callable[[], None]:
    """The inference TTS ``{"type":"error"}`` message: the gateway's JSON inside the message of a
    bare ``APIError`` (no status, no body, retryable), as ``inference/tts.py:779-780`` builds it."""
    payload = json.dumps(
        {
            "type": "inference_quota_exceeded",
            "quota_type": quota_type,
            "category": category,
            "hint": "Reduce concurrent TTS requests or upgrade your plan.",
            "remaining_limit": "0",
        },
        separators=(",", ":"),
    )

    def raise_it() -> None:
        raise APIError(f"LiveKit Inference TTS returned error: {payload}")

    return raise_it


def realtime_quota_error(
    category: str = "MaxConcurrentGatewayLLMRpm", *, retryable: bool = True
) -> APIError:
    """A realtime ``error`` server event as ``llm/_realtime/openai.py:2470-2475`` wraps it: the
    body is the openai SDK's ``RealtimeError`` object (attribute access, extra fields kept)."""
    from openai.types.realtime import RealtimeError

    body = RealtimeError(
        type="inference_quota_exceeded",
        message="realtime quota exceeded",
        quota_type="llm",  # type: ignore[call-arg]
        category=category,  # type: ignore[call-arg]
    )
    return APIError("LiveKit Inference returned an error", body=body, retryable=retryable)


class _Scripted:
    script: list[Step]
    calls: int

    def next_step(self) -> Step:
        step = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        return step


_PCM_100MS = b"\x00\x00" * 1600  # 100 ms of 16 kHz mono silence


class ScriptedTTS(_Scripted, tts.TTS):
    """Attempt k of the whole TTS (every stream and probe) runs ``script[k]``: raise, or
    synthesize 100 ms of silence (the text itself is ignored)."""

    def __init__(
        self,
        script: Sequence[Step],
        *,
        provider: str = "scripted-tts",
        streaming: bool = False,
        sample_rate: int = 16000,
    ) -> None:
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=streaming),
            sample_rate=sample_rate,
            num_channels=1,
        )
        self.script = list(script)
        self.calls = 0
        self._provider = provider

    @property
    def provider(self) -> str:
        return self._provider

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> ScriptedChunkedStream:
        return ScriptedChunkedStream(tts=self, input_text=text, conn_options=conn_options)

    def stream(
        self, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> ScriptedSynthesizeStream:
        return ScriptedSynthesizeStream(tts=self, conn_options=conn_options)


class ScriptedChunkedStream(tts.ChunkedStream):
    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        assert isinstance(self._tts, ScriptedTTS)
        step = self._tts.next_step()
        if callable(step):
            step()
            return
        output_emitter.initialize(
            request_id=shortuuid(),
            sample_rate=self._tts.sample_rate,
            num_channels=1,
            mime_type="audio/pcm",
        )
        output_emitter.push(_PCM_100MS)
        output_emitter.flush()


class ScriptedSynthesizeStream(tts.SynthesizeStream):
    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        assert isinstance(self._tts, ScriptedTTS)
        step = self._tts.next_step()
        if callable(step):
            step()
            return
        output_emitter.initialize(
            request_id=shortuuid(),
            sample_rate=self._tts.sample_rate,
            num_channels=1,
            mime_type="audio/pcm",
            stream=True,
        )
        in_segment = False
        async for data in self._input_ch:
            if isinstance(data, self._FlushSentinel):
                if in_segment:
                    output_emitter.end_segment()
                    in_segment = False
                continue
            if not in_segment:
                output_emitter.start_segment(segment_id=shortuuid())
                self._mark_started()
                in_segment = True
            output_emitter.push(_PCM_100MS)
        if in_segment:
            output_emitter.end_segment()


class ScriptedSTT(_Scripted, stt.STT):
    """Attempt k of the whole STT (``recognize()`` calls and streams alike) runs ``script[k]``:
    raise, or produce a final transcript with this text."""

    def __init__(
        self, script: Sequence[Step], *, provider: str = "scripted-stt", streaming: bool = False
    ) -> None:
        super().__init__(
            capabilities=stt.STTCapabilities(streaming=streaming, interim_results=False)
        )
        self.script = list(script)
        self.calls = 0
        self._provider = provider

    @property
    def provider(self) -> str:
        return self._provider

    def _transcript(self, text: str) -> stt.SpeechEvent:
        return stt.SpeechEvent(
            type=stt.SpeechEventType.FINAL_TRANSCRIPT,
            alternatives=[stt.SpeechData(language=LanguageCode("en"), text=text)],
        )

    async def _recognize_impl(
        self,
        buffer: AudioBuffer,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions,
    ) -> stt.SpeechEvent:
        step = self.next_step()
        if callable(step):
            step()
            raise AssertionError("a scripted failure step must raise")
        return self._transcript(step)

    def stream(
        self,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
    ) -> ScriptedRecognizeStream:
        return ScriptedRecognizeStream(stt=self, conn_options=conn_options)


class ScriptedRecognizeStream(stt.RecognizeStream):
    async def _run(self) -> None:
        assert isinstance(self._stt, ScriptedSTT)
        step = self._stt.next_step()
        if callable(step):
            step()
            return
        self._event_ch.send_nowait(self._stt._transcript(step))
        async for _ in self._input_ch:
            pass


def audio_frame(duration: float = 0.1, sample_rate: int = 16000) -> rtc.AudioFrame:
    samples = int(duration * sample_rate)
    return rtc.AudioFrame(b"\x00\x00" * samples, sample_rate, 1, samples)


class ScriptedRealtimeModel(llm.RealtimeModel):
    """A realtime model whose sessions do nothing until a test emits events on them."""

    def __init__(self, *, provider: str = "scripted-realtime") -> None:
        super().__init__(
            capabilities=llm.RealtimeCapabilities(
                message_truncation=False,
                turn_detection=False,
                user_transcription=False,
                auto_tool_reply_generation=False,
                audio_output=False,
                manual_function_calls=False,
            )
        )
        self._provider = provider
        self.sessions: list[ScriptedRealtimeSession] = []

    @property
    def provider(self) -> str:
        return self._provider

    def session(self, *, turn_detection_disabled: bool = False) -> ScriptedRealtimeSession:
        sess = ScriptedRealtimeSession(self)
        self.sessions.append(sess)
        return sess

    async def aclose(self) -> None:
        pass


class ScriptedRealtimeSession(QuietRealtimeSession):
    def generate_reply(self, **kwargs: Any) -> asyncio.Future[llm.GenerationCreatedEvent]:
        return asyncio.get_running_loop().create_future()  # never answered


# --- slow, hanging and tool-call LLM steps (appended for tests/test_session_turns.py) ------------

from dataclasses import dataclass  # noqa: E402


@dataclass(frozen=True)
class Sleep:
    """Wait ``seconds`` inside the attempt, then run ``then`` (raise, or reply with text)."""

    seconds: float
    then: Step


@dataclass(frozen=True)
class Hang:
    """Block the attempt until ``release`` is set, then run ``then``."""

    release: asyncio.Event
    then: Step


@dataclass(frozen=True)
class ToolCall:
    """Reply with one function tool call (as a provider's streamed ``delta.tool_calls``)."""

    name: str
    arguments: str = "{}"
    call_id: str = "call_1"


RichStep = Step | Sleep | Hang | ToolCall


class RichScriptedLLM(ScriptedLLM):
    """:class:`ScriptedLLM` whose steps may also be :class:`Sleep`, :class:`Hang` or
    :class:`ToolCall`."""

    def __init__(self, script: Sequence[RichStep], *, provider: str = "scripted") -> None:
        super().__init__([], provider=provider)
        self.script = list(script)  # type: ignore[arg-type]

    def chat(
        self,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[Any] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        **kwargs: Any,
    ) -> RichScriptedStream:
        return RichScriptedStream(
            self, chat_ctx=chat_ctx, tools=tools or [], conn_options=conn_options
        )


class RichScriptedStream(ScriptedStream):
    async def _run(self) -> None:
        assert isinstance(self._llm, ScriptedLLM)
        step: Any = self._llm.next_step()
        while isinstance(step, Sleep | Hang):
            if isinstance(step, Sleep):
                await asyncio.sleep(step.seconds)
            else:
                await step.release.wait()
            step = step.then
        if isinstance(step, ToolCall):
            call = llm.FunctionToolCall(
                name=step.name, arguments=step.arguments, call_id=step.call_id
            )
            self._event_ch.send_nowait(
                llm.ChatChunk(id="c1", delta=llm.ChoiceDelta(role="assistant", tool_calls=[call]))
            )
        elif callable(step):
            step()
        elif step:
            self._event_ch.send_nowait(
                llm.ChatChunk(id="c1", delta=llm.ChoiceDelta(role="assistant", content=step))
            )


# --- a VAD and an audio input the test drives (appended for tests/test_session_turns.py) ---------

from livekit.agents import utils, vad  # noqa: E402
from livekit.agents.voice.io import AudioInput  # noqa: E402


class ControlledVAD(vad.VAD):
    """A VAD whose streams emit only what the test sends with :meth:`ControlledVADStream.send`."""

    def __init__(self) -> None:
        super().__init__(capabilities=vad.VADCapabilities(update_interval=0.05))
        self.streams: list[ControlledVADStream] = []

    def stream(self) -> ControlledVADStream:
        stream = ControlledVADStream(self)
        self.streams.append(stream)
        return stream


class ControlledVADStream(vad.VADStream):
    async def _main_task(self) -> None:
        async for _ in self._input_ch:
            pass

    def send(self, type: vad.VADEventType, *, speech: float, silence: float = 0.0) -> None:
        self._event_ch.send_nowait(
            vad.VADEvent(
                type=type,
                samples_index=0,
                timestamp=time.time(),
                speech_duration=speech,
                silence_duration=silence,
            )
        )


class PushAudioInput(AudioInput):
    """``session.input.audio`` fed by the test (no room)."""

    def __init__(self) -> None:
        super().__init__(label="push")
        self.frames = utils.aio.Chan[rtc.AudioFrame]()

    async def __anext__(self) -> rtc.AudioFrame:
        return await self.frames.__anext__()


# --- random errors (the series-bound test and bench/memory_cost.py) ------------------------------

import random  # noqa: E402
import string  # noqa: E402

RANDOM_ERROR_BASES: tuple[type[Exception], ...] = (
    Exception,
    APIError,
    APIStatusError,
    OSError,
    TimeoutError,
)


def random_word(rng: random.Random, k: int = 12) -> str:
    return "".join(rng.choices(string.ascii_letters + string.digits + "_", k=k))


def random_error(rng: random.Random, i: int) -> Exception:
    """The ``i``-th error of a random stream: a fresh class with a random name on a random
    base, a random message, a quota-shaped body on every third livekit ``APIError`` and a
    random cause on every seventh (class names become ``root_cause`` labels: the bound's test)."""
    base = rng.choice(RANDOM_ERROR_BASES)
    cls = type("E" + random_word(rng, 6), (base,), {})
    message = random_word(rng, rng.randint(0, 40))
    error: Exception
    if base is APIStatusError:
        error = cls(message, status_code=rng.randint(100, 599))
    elif base is APIError:
        body = {"type": "inference_quota_exceeded", "category": random_word(rng)}
        error = cls(message, body=body if i % 3 == 0 else None)
    else:
        error = cls(message)
    if i % 7 == 0:
        error.__cause__ = type("C" + random_word(rng, 6), (Exception,), {})(message)
    return error
