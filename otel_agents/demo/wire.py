"""The messages the fake gateway sends, in the LiveKit Inference gateway's wire format.

Pure builders, no I/O but :func:`json_messages`: an OpenAI-compatible chat completion (one JSON
body, or the SSE frames of a streamed one), the STT ``final_transcript`` message, the TTS
``output_audio`` message of silence, and the websocket ``error`` message. The routes that send
them, and when, are :class:`otel_agents.demo.gateway.FakeGateway`'s.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

from aiohttp import WSMsgType, web

logger = logging.getLogger("otel_agents.demo.gateway")

_TTS_SECONDS_PER_WORD: Final = 0.06
_TTS_MIN_SECONDS: Final = 0.1


# --- LLM: chat completions ---------------------------------------------------------------------


def stream_pieces(text: str) -> list[str]:
    """``text`` cut into the pieces a streamed completion sends, one word (with its spaces)
    each; ``[]`` for an empty text."""
    return re.findall(r"\s*\S+\s*", text) or ([text] if text else [])


def usage(messages: object, pieces: list[str]) -> dict[str, int]:
    """A completion's ``usage``: prompt tokens roughly estimated from the request's messages."""
    prompt_tokens = max(1, len(json.dumps(messages)) // 4)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": len(pieces),
        "total_tokens": prompt_tokens + len(pieces),
    }


def completion(
    completion_id: str, created: int, model: str, text: str, usage: Mapping[str, int]
) -> dict[str, Any]:
    """The JSON body of a chat completion that is not streamed."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text or None},
                "finish_reason": "stop",
            }
        ],
        "usage": dict(usage),
    }


def completion_frames(
    completion_id: str,
    created: int,
    model: str,
    pieces: list[str],
    usage: Mapping[str, int] | None,
) -> list[bytes]:
    """The SSE frames of a streamed chat completion: the role, one chunk per piece, a ``stop``
    chunk, a usage chunk (when ``usage`` is given), then ``[DONE]``."""

    def chunk(choices: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> bytes:
        data: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": choices,
        }
        data.update(extra or {})
        return f"data: {json.dumps(data)}\n\n".encode()

    def delta(content: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": content, "finish_reason": finish}]

    frames = [chunk(delta({"role": "assistant", "content": ""}))]
    frames += [chunk(delta({"content": piece})) for piece in pieces]
    frames.append(chunk(delta({}, "stop")))
    if usage is not None:
        frames.append(chunk([], {"usage": dict(usage)}))
    frames.append(b"data: [DONE]\n\n")
    return frames


# --- STT and TTS: websocket messages -----------------------------------------------------------


async def json_messages(ws: web.WebSocketResponse) -> AsyncIterator[dict[str, Any]]:
    """Yield the JSON object of each text message; skip anything malformed."""
    async for msg in ws:
        if msg.type == WSMsgType.ERROR:
            return
        if msg.type != WSMsgType.TEXT:
            continue
        try:
            data = json.loads(msg.data)
        except ValueError:
            logger.debug("fake gateway: ignoring non-JSON websocket message")
            continue
        if isinstance(data, dict):
            yield data


def error_message(payload: Mapping[str, Any], session_id: str | None) -> dict[str, Any]:
    """A websocket ``error`` message carrying ``payload`` (see ``faults.ws_error``)."""
    fields = dict(payload)
    message = fields.get("message", fields.get("error"))
    msg: dict[str, Any] = {
        "type": "error",
        "message": message if isinstance(message, str) else "error",
    }
    if session_id is not None:
        msg["session_id"] = session_id
    msg.update((k, v) for k, v in fields.items() if k != "type")
    return msg


def final_transcript(
    session_id: str, text: str, language: str, start: float, duration: float
) -> dict[str, Any]:
    """STT: the ``final_transcript`` of ``duration`` seconds of audio, words evenly spaced."""
    words = text.split()
    step = duration / len(words) if words else 0.0
    return {
        "type": "final_transcript",
        "session_id": session_id,
        "transcript": text,
        "language": language,
        "start": start,
        "duration": duration,
        "confidence": 1.0,
        "words": [
            {
                "word": word,
                "start": start + i * step,
                "end": start + (i + 1) * step,
                "confidence": 1.0,
            }
            for i, word in enumerate(words)
        ],
    }


def output_audio(session_id: str, transcript: str, sample_rate: int) -> dict[str, Any]:
    """TTS: an ``output_audio`` message of silence, about as long as ``transcript`` spoken."""
    seconds = max(_TTS_MIN_SECONDS, _TTS_SECONDS_PER_WORD * len(transcript.split()))
    silence = bytes(2 * int(sample_rate * seconds))
    return {
        "type": "output_audio",
        "audio": base64.b64encode(silence).decode(),
        "session_id": session_id,
    }


def positive_int(value: object, default: int) -> int:
    """``value`` as a positive integer (a sample rate from the client), else ``default``."""
    try:
        number = int(str(value))
    except ValueError:
        return default
    return number if number > 0 else default
