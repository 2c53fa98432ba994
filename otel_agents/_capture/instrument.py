"""``instrument()`` / ``uninstrument()``: the wraps that put otel-agents' hooks into livekit.

Discovery wraps a few public methods of livekit's base classes, never a private one
(``docs/livekit.md`` lists them with the versions they were verified on):

* the ``__init__`` of ``llm.LLM``, ``stt.STT``, ``tts.TTS``, ``llm.RealtimeSession`` and the
  adaptive interruption detector: every provider instance gets the failed-attempt hooks;
* ``tts.ChunkedStream`` / ``tts.SynthesizeStream.__init__``: tell a TTS's inner stream apart;
* every stream base class's ``__init__`` and ``STT.recognize``: a request frame (wrappers found
  by structure) and the stream's tasks watched for failures that are never events
  (``never_events``), and each provider class's ``chat``/``stream``/``synthesize``, wrapped when
  its first instance is built;
* ``AgentSession.start``: every session gets a tracker;
* ``AgentServer.run``: the worker's directory clean-up and the forkserver preload.

Both are idempotent; after ``uninstrument()`` the handlers already attached stay, and do
nothing (they read ``otel_agents._runtime.current``).
"""

from __future__ import annotations

import functools
import importlib
import threading
from collections.abc import Callable
from typing import Any, Final

from .. import _runtime
from .. import names as n
from . import attempts, fallback, never_events, quota_headers, sessions, worker

#: (module, class, component): the base classes whose ``__init__`` is wrapped to attach hooks
TARGETS: Final[tuple[tuple[str, str, n.Component], ...]] = (
    ("livekit.agents.llm", "LLM", "llm"),
    ("livekit.agents.stt", "STT", "stt"),
    ("livekit.agents.tts", "TTS", "tts"),
    ("livekit.agents.llm", "RealtimeSession", "realtime"),
    ("livekit.agents.inference.interruption", "AdaptiveInterruptionDetector", "interruption"),
)

Wrap = Callable[[Callable[..., Any]], Callable[..., Any]]

_originals: dict[tuple[type, str], Callable[..., Any]] = {}
_lock = threading.Lock()
#: every wrap is in place: a job process forked from livekit's forkserver, which instrumented
#: already, skips looking each target up again (a missing optional module is searched anew)
_complete = False


def _internal_error(where: n.Where) -> None:
    runtime = _runtime.current
    if runtime is not None:
        runtime.recorder.internal_error(where)


def _wraps() -> list[tuple[str, str, str, Wrap]]:
    wraps: list[tuple[str, str, str, Wrap]] = [
        (module, name, "__init__", functools.partial(attempts.wrap_init, component=component))
        for module, name, component in TARGETS
    ]
    return [
        *wraps,
        (
            "livekit.agents.tts",
            "ChunkedStream",
            "__init__",
            lambda original: never_events.wrap_stream_init(
                attempts.wrap_chunked_stream_init(original), "tts"
            ),
        ),
        (
            "livekit.agents.tts",
            "SynthesizeStream",
            "__init__",
            lambda original: never_events.wrap_stream_init(
                attempts.wrap_synthesize_stream_init(original), "tts"
            ),
        ),
        (
            "livekit.agents.llm",
            "LLMStream",
            "__init__",
            lambda original: never_events.wrap_stream_init(original, "llm"),
        ),
        (
            "livekit.agents.stt",
            "RecognizeStream",
            "__init__",
            lambda original: never_events.wrap_stream_init(original, "stt"),
        ),
        ("livekit.agents.stt", "STT", "recognize", never_events.wrap_recognize),
        ("livekit.agents.voice", "AgentSession", "start", sessions.wrap_start),
        *quota_headers.wraps(),  # openai SDK responses and livekit LLM streams: quota headers
        *fallback.wraps(),  # the llm/stt/tts FallbackAdapters: switches and exhaustion
        (
            "livekit.agents.worker",
            "AgentServer",
            "run",
            lambda original: worker.wrap_run(original, _internal_error),
        ),
    ]


def instrument() -> None:
    """Wrap the base classes' constructors, ``AgentSession.start`` and ``AgentServer.run``
    (idempotent). The hooks record to ``otel_agents._runtime.current``."""
    global _complete
    if _complete:
        return
    with _lock:
        # several wraps of one method (a stream's __init__) compose, in the order listed
        wrapped_now: set[tuple[type, str]] = set()
        for module_name, class_name, attribute, wrap in _wraps():
            try:
                cls = getattr(importlib.import_module(module_name), class_name)
            except Exception:  # an optional part of livekit that is not there
                continue
            key = (cls, attribute)
            if key in _originals and key not in wrapped_now:
                continue
            current = cls.__dict__[attribute]
            _originals.setdefault(key, current)
            wrapped_now.add(key)
            setattr(cls, attribute, wrap(current))
        _complete = True


def uninstrument() -> None:
    """Restore the wrapped methods; handlers already attached become no-ops."""
    global _complete
    with _lock:
        _complete = False
        attempts.reset()
        never_events.unwrap_entries()
        for (cls, attribute), original in _originals.items():
            setattr(cls, attribute, original)
        _originals.clear()


def is_instrumented() -> bool:
    return bool(_originals)
