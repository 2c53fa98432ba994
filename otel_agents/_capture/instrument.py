"""``instrument()`` / ``uninstrument()``: the wraps that put otel-agents' hooks into livekit.

Discovery wraps a few public methods of livekit's base classes, never a private one
(``docs/livekit.md`` lists them with the versions they were verified on):

* the ``__init__`` of ``llm.LLM``, ``stt.STT``, ``tts.TTS``, ``llm.RealtimeSession`` and the
  adaptive interruption detector: every provider instance gets the failed-attempt hooks;
* ``tts.ChunkedStream`` / ``tts.SynthesizeStream.__init__``: tell a TTS's inner stream apart;
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
from . import attempts, sessions, worker

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
        ("livekit.agents.tts", "ChunkedStream", "__init__", attempts.wrap_chunked_stream_init),
        (
            "livekit.agents.tts",
            "SynthesizeStream",
            "__init__",
            attempts.wrap_synthesize_stream_init,
        ),
        ("livekit.agents.voice", "AgentSession", "start", sessions.wrap_start),
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
    with _lock:
        for module_name, class_name, attribute, wrap in _wraps():
            try:
                cls = getattr(importlib.import_module(module_name), class_name)
            except Exception:  # an optional part of livekit that is not there
                continue
            if (cls, attribute) in _originals:
                continue
            original = cls.__dict__[attribute]
            _originals[(cls, attribute)] = original
            setattr(cls, attribute, wrap(original))


def uninstrument() -> None:
    """Restore the wrapped methods; handlers already attached become no-ops."""
    with _lock:
        attempts.reset()
        for (cls, attribute), original in _originals.items():
            setattr(cls, attribute, original)
        _originals.clear()


def is_instrumented() -> bool:
    return bool(_originals)
