"""Hooks that see every failed attempt of every provider instance (DESIGN.md section 4).

Discovery wraps the ``__init__`` of livekit's public base classes; observation uses only the
instances' public ``.on()`` events (livekit-internals.md section 4.2). So FallbackAdapter
children, StreamAdapter inner STTs, recovery probes and hot-swapped models are all covered,
although their errors never reach the session's ``error`` event.

Attempt index: livekit's events carry none, but each retry loop emits from its own task, so
failures are counted per ``(instance, asyncio.current_task())``. A request ends at its final
(``recoverable=False``) failure; the count also resets after a quiet gap (long-lived STT
streams reset their retry budget), on ``metrics_collected`` for STT (``recognize()`` calls share
the caller's task) and on ``session_reconnected`` for realtime sessions.

Every handler catches its own exceptions: livekit's emitter re-raises ``TypeError`` into the
retry loop, and a hook must never change what the agent does.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from . import _labels as lbl
from ._classify import classify
from ._record import AttemptRecord, Recorder

#: a request with no failure for this long starts again at attempt 0
QUIET_GAP_S: Final = 30.0

#: (module, class, component): the base classes whose ``__init__`` is wrapped
TARGETS: Final = (
    ("livekit.agents.llm", "LLM", "llm"),
    ("livekit.agents.stt", "STT", "stt"),
    ("livekit.agents.tts", "TTS", "tts"),
    ("livekit.agents.llm", "RealtimeSession", "realtime"),
    ("livekit.agents.inference.interruption", "AdaptiveInterruptionDetector", "interruption"),
)

_recorder: Recorder | None = None
_originals: dict[type, Callable[..., None]] = {}
_attached: weakref.WeakSet[object] = weakref.WeakSet()
_lock = threading.Lock()
# Some wrappers re-emit a child's error (the realtime FallbackAdapter): record it once.
_last_error: weakref.ref[BaseException] | None = None
_NO_TASK: Final = object()


@dataclass(slots=True)
class _Request:
    attempts: int
    first_root_cause: str
    last_failure: float


class _Instance:
    """What one instrumented provider instance needs: its component, provider label and the
    in-flight requests, keyed weakly by the task that runs each retry loop."""

    __slots__ = ("__weakref__", "component", "owner", "provider", "requests")

    def __init__(self, owner: object, component: str) -> None:
        self.owner = weakref.ref(owner)
        self.component = component
        self.provider: str | None = None
        self.requests: weakref.WeakKeyDictionary[Any, _Request] = weakref.WeakKeyDictionary()

    def provider_label(self) -> str:
        # Read lazily: subclasses set what ``provider`` reads after the base __init__ ran.
        if self.provider is None:
            self.provider = lbl.provider(_provider_name(self.owner()))
        return self.provider


def _provider_name(owner: object) -> str | None:
    if owner is None:
        return None
    if type(owner).__name__ == "FallbackAdapter" or type(owner).__name__.startswith("_Fallback"):
        return "fallback_adapter"
    try:
        source = owner
        if not hasattr(type(owner), "provider"):  # a RealtimeSession asks its model
            source = owner.realtime_model  # type: ignore[attr-defined]
        name = source.provider  # type: ignore[attr-defined]
    except Exception:
        name = None
    if isinstance(name, str) and name and name != "unknown":
        return name
    # e.g. livekit.plugins.deepgram.stt -> deepgram
    module = type(owner).__module__
    if module.startswith("livekit.plugins."):
        return module.split(".")[2]
    return None


def _current_task() -> Any:
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no running loop: a synchronous emit
        return _NO_TASK
    return task if task is not None else _NO_TASK


def _make_error_handler(inst: _Instance) -> Callable[[Any], None]:
    def on_error(ev: Any) -> None:
        recorder = _recorder
        if recorder is None:
            return
        try:
            _on_error(recorder, inst, ev)
        except Exception:
            recorder.internal_error("attempt_hook")

    return on_error


def _on_error(recorder: Recorder, inst: _Instance, ev: Any) -> None:
    global _last_error
    error = ev.error
    if not isinstance(error, BaseException):
        return
    last = _last_error
    if last is not None and last() is error:
        return
    try:
        _last_error = weakref.ref(error)
    except TypeError:
        _last_error = None
    final = ev.recoverable is not True
    now = time.monotonic()
    try:
        classification = classify(error)
    except Exception:
        recorder.internal_error("classify")
        return
    root = classification.root_cause_type
    key = _current_task()
    requests = inst.requests
    if key is _NO_TASK:
        key = inst  # synchronous emits share one request per instance
    request = requests.get(key)
    if request is None or now - request.last_failure > QUIET_GAP_S:
        request = _Request(attempts=0, first_root_cause=root, last_failure=now)
        attempt = 0
    else:
        request.attempts += 1
        request.last_failure = now
        attempt = request.attempts
    if final:
        requests.pop(key, None)
    else:
        requests[key] = request
    recorder.attempt_failed(
        AttemptRecord(
            component=inst.component,
            provider=inst.provider_label(),
            attempt=attempt,
            final=final,
            first_root_cause_type=request.first_root_cause,
            masked=final and attempt > 0 and root != request.first_root_cause,
            classification=classification,
            timestamp_ns=time.time_ns(),
        )
    )


def _make_metrics_handler(inst: _Instance) -> Callable[[Any], None]:
    reset = inst.component == "stt"

    def on_metrics(_: Any) -> None:
        recorder = _recorder
        if recorder is None:
            return
        try:
            if reset and inst.requests:
                inst.requests.clear()
            recorder.request_ok(inst.component, inst.provider_label())
        except Exception:
            recorder.internal_error("request_hook")

    return on_metrics


def _make_reconnected_handler(inst: _Instance) -> Callable[[Any], None]:
    def on_reconnected(_: Any = None) -> None:
        try:
            inst.requests.clear()
        except Exception:
            if _recorder is not None:
                _recorder.internal_error("request_hook")

    return on_reconnected


def attach(emitter: Any, component: str) -> None:
    """Subscribe the hooks to one provider instance (idempotent)."""
    with _lock:
        if emitter in _attached:
            return
        _attached.add(emitter)
    inst = _Instance(emitter, component)
    emitter.on("error", _make_error_handler(inst))
    # Adapters forward their children's metrics: count requests once, on the children.
    if not type(emitter).__name__.startswith(("FallbackAdapter", "_Fallback")):
        emitter.on("metrics_collected", _make_metrics_handler(inst))
    if component == "realtime":
        emitter.on("session_reconnected", _make_reconnected_handler(inst))


def _wrap_init(original: Callable[..., None], component: str) -> Callable[..., None]:
    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        if _recorder is None:
            return
        try:
            attach(self, component)
        except Exception:
            _recorder.internal_error("instrument")

    return __init__


def instrument(recorder: Recorder) -> None:
    """Wrap the base classes' constructors (idempotent) and start recording to ``recorder``."""
    global _recorder
    with _lock:
        _recorder = recorder
        for module_name, class_name, component in TARGETS:
            try:
                cls = getattr(importlib.import_module(module_name), class_name)
            except Exception:  # an optional part of livekit that is not there
                continue
            if cls in _originals:
                continue
            original = cls.__dict__["__init__"]
            _originals[cls] = original
            cls.__init__ = _wrap_init(original, component)


def uninstrument() -> None:
    """Restore the constructors; handlers already attached become no-ops."""
    global _recorder, _last_error
    with _lock:
        _recorder = None
        _last_error = None
        for cls, original in _originals.items():
            cls.__init__ = original  # type: ignore[misc]
        _originals.clear()


def is_instrumented() -> bool:
    return _recorder is not None


__all__ = ["attach", "instrument", "is_instrumented", "uninstrument"]
