"""The fake gateway's STT and TTS websocket sessions: what one connection hears and answers, given
the fault it was opened with (:mod:`otel_agents.demo.gateway` serves them).

* ``GET {url}/stt`` (websocket): ``inference.STT``. JSON messages both ways; the client sends
  ``session.create``, ``input_audio`` (base64 PCM), ``session.finalize`` and ``session.close``;
  the gateway answers ``session.created``, ``final_transcript``, ``session.finalized`` and
  ``session.closed``.
* ``GET {url}/tts`` (websocket): ``inference.TTS``. The client sends ``session.create``, then per
  synthesis ``input_transcript`` messages and a ``session.flush``; the gateway answers
  ``session.created``, ``output_audio`` (base64 PCM silence) and ``done``. The plugin pools this
  connection and reuses it across syntheses.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from . import wire
from .faults import Fault

logger = logging.getLogger("otel_agents.demo.gateway")


#: builds the websocket error message a fault sends (the gateway passes its own method, which a
#: test's gateway can override)
ErrorMessage = Callable[[Fault, "str | None"], dict[str, Any]]


def error_message(fault: Fault, session_id: str | None) -> dict[str, Any]:
    return wire.error_message(fault.body or {}, session_id)


async def stt_session(
    ws: web.WebSocketResponse,
    fault: Fault | None,
    session_id: str,
    transcript: str,
    describe: ErrorMessage = error_message,
) -> None:
    """One STT connection: a final transcript of ``transcript`` (or an ``ok`` fault's text) per
    finalized stretch of audio; a ``ws_error`` fault answers the session's creation with an
    error message and nothing after it."""
    text = fault.text if fault is not None and fault.kind == "ok" else transcript
    sample_rate, language = 16000, "en"
    pending_bytes, offset = 0, 0.0
    failed = False
    async for data in wire.json_messages(ws):
        msg_type = data.get("type")
        if msg_type == "session.create":
            settings = data.get("settings")
            if isinstance(settings, dict):
                sample_rate = wire.positive_int(settings.get("sample_rate"), sample_rate)
                if isinstance(lang := settings.get("language"), str) and lang:
                    language = lang
            await ws.send_json({"type": "session.created", "session_id": session_id})
            if fault is not None and fault.kind == "ws_error" and not failed:
                failed = True
                await ws.send_json(describe(fault, None))
        elif msg_type == "input_audio":
            if isinstance(audio := data.get("audio"), str):
                try:
                    pending_bytes += len(base64.b64decode(audio))
                except (binascii.Error, ValueError):
                    logger.debug("fake gateway: ignoring undecodable STT audio")
        elif msg_type == "session.finalize" and not failed:
            if pending_bytes > 0:
                duration = pending_bytes / (2 * sample_rate)
                await ws.send_json(
                    wire.final_transcript(session_id, text, language, offset, duration)
                )
                offset += duration
                pending_bytes = 0
            await ws.send_json({"type": "session.finalized", "session_id": session_id})
            # ends the client's stream now instead of after its 3 s inactivity timeout
            await ws.send_json({"type": "session.closed", "session_id": session_id})
        elif msg_type == "session.close":
            await ws.send_json({"type": "session.closed", "session_id": session_id})
            return


async def tts_session(
    ws: web.WebSocketResponse,
    fault: Fault | None,
    session_id: str,
    synthesis_fault: Callable[[], Awaitable[Fault | None]],
    describe: ErrorMessage = error_message,
) -> None:
    """One pooled TTS connection: silence for every transcript of every synthesis on it.
    ``synthesis_fault`` is called as each synthesis starts (a ``ws_error`` fails that one); a
    ``no_session_id`` connection fault strips the session id from every message."""
    untagged = fault is not None and fault.kind == "no_session_id"

    async def send(message: dict[str, Any]) -> None:
        if untagged:  # a gateway that stopped tagging its messages
            message = {k: v for k, v in message.items() if k != "session_id"}
        await ws.send_json(message)

    sample_rate = 24000
    active = failed = False

    async def begin_synthesis() -> bool:
        started = await synthesis_fault()
        if started is not None and started.kind == "ws_error":
            await send(describe(started, session_id))
            return True
        return False

    async for data in wire.json_messages(ws):
        msg_type = data.get("type")
        if msg_type == "session.create":
            sample_rate = wire.positive_int(data.get("sample_rate"), sample_rate)
            await send({"type": "session.created", "session_id": session_id})
        elif msg_type == "input_transcript":
            if not active:
                active, failed = True, await begin_synthesis()
            transcript = data.get("transcript")
            if not failed and isinstance(transcript, str) and transcript.strip():
                await send(wire.output_audio(session_id, transcript, sample_rate))
        elif msg_type == "session.flush":
            if not active:
                failed = await begin_synthesis()
            if not failed:
                await send({"type": "done", "session_id": session_id})
            active = failed = False
        elif msg_type == "session.close":
            await send({"type": "session.closed", "session_id": session_id})
            return
