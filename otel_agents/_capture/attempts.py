"""Every failed attempt of every provider instance becomes an ``AttemptRecord``.

The hooks use only the instances' public ``.on()`` events (``docs/livekit.md``): FallbackAdapter
children, StreamAdapter inner STTs, recovery probes and hot-swapped models are all covered,
although their errors never reach the session's ``error`` event. ``instrument`` attaches them to
every instance livekit's base classes construct.

Attempt index: livekit's events carry none, but each retry loop emits from its own task, so
failures are counted per ``(instance, asyncio.current_task())``. A request ends at its final
(``recoverable=False``) failure; it also ends when its task ends, after a quiet gap (long-lived
STT streams reset their retry budget), and on an STT success in the same task (``recognize()``
calls share the caller's task). A realtime session is one long-lived connection whose errors come
from two tasks (receive loop and reconnect loop): it counts per instance, reset on
``session_reconnected``.

Every handler catches its own exceptions: livekit's emitter re-raises ``TypeError`` into the
retry loop, and a hook must never change what the agent does.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, Final

from .. import _runtime
from .. import names as n
from .._classify import Classification, classify
from .._export.recorder import Recorder
from .._export.records import AttemptRecord
from . import sessions
from .events import one_arg

#: a request with no failure for this long starts again at attempt 0
QUIET_GAP_S: Final = 30.0

_attached: weakref.WeakSet[object] = weakref.WeakSet()
_attached_lock = threading.Lock()

# The realtime FallbackAdapter's session re-emits its child's error (the same exception object,
# sometimes in a model_copy of the event): the child's record is the one that counts.
_last_realtime_error: BaseException | None = None

# A TTS that implements synthesize() with its own stream() (livekit's _ChunkedStreamFromStream,
# used by inference.TTS) emits each failure twice: once from the inner max_retry=0 stream and
# once, with the same exception, from the outer retry loop, whose attempt index and final flag
# are the true ones. Tasks inherit the context they are created in, so marking the construction
# of the chunked stream, and then of a stream of the same TTS inside it, marks exactly the inner
# stream's task.
_chunked_tts: contextvars.ContextVar[object | None] = contextvars.ContextVar(
    "otel_agents_chunked_tts", default=None
)
_inner_stream_tts: contextvars.ContextVar[object | None] = contextvars.ContextVar(
    "otel_agents_inner_stream_tts", default=None
)


class _Request:
    __slots__ = ("attempts", "first_root_cause", "last_failure", "open")

    def __init__(self) -> None:
        self.open = False
        self.attempts = 0
        self.first_root_cause = ""
        self.last_failure = 0.0


class _Instance:
    """What one instrumented provider instance needs: its component, its provider's name and
    the request in flight per task."""

    __slots__ = (
        "__weakref__",
        "component",
        "inner_error",
        "owner",
        "per_instance",
        "provider",
        "requests",
    )

    def __init__(self, owner: object, component: n.Component) -> None:
        self.owner = weakref.ref(owner)
        self.component = component
        self.provider: str | None = None
        self.per_instance = component == "realtime"
        # keyed by task; an entry leaves when its task is done (see request_for)
        self.requests: dict[object, _Request] = {}
        # a TTS's inner-stream error, classified before livekit clobbers its chain
        self.inner_error: tuple[BaseException, Classification] | None = None

    def provider_name(self) -> str:
        # Read lazily: subclasses set what ``provider`` reads after the base __init__ ran.
        if self.provider is None:
            self.provider = _provider_name(self.owner()) or n.UNKNOWN
        return self.provider

    def request_for(self, key: object) -> _Request:
        request = self.requests.get(key)
        if request is None:
            request = self.requests[key] = _Request()
            if isinstance(key, asyncio.Task):
                key.add_done_callback(functools.partial(_forget, weakref.ref(self)))
        return request


def _forget(inst_ref: weakref.ref[_Instance], task: asyncio.Task[Any]) -> None:
    inst = inst_ref()
    if inst is not None:
        inst.requests.pop(task, None)


def _is_wrapper(owner: object) -> bool:
    name = type(owner).__name__
    return name == "FallbackAdapter" or name.startswith("_Fallback")


def _provider_name(owner: object) -> str | None:
    if owner is None:
        return None
    if _is_wrapper(owner):
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


_ONE_KEY: Final = object()  # the request of a realtime session, or of synchronous emits


def _request_key(inst: _Instance) -> object:
    if inst.per_instance:
        return _ONE_KEY
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no running loop: a synchronous emit
        return _ONE_KEY
    return _ONE_KEY if task is None else task


def _make_error_handler(inst: _Instance, emitter: object) -> Callable[[Any], None]:
    is_wrapper = _is_wrapper(emitter)
    is_tts = inst.component == "tts"
    is_realtime = inst.component == "realtime"

    def on_error(ev: Any) -> None:
        global _last_realtime_error
        runtime = _runtime.current
        if runtime is None:
            return
        recorder = runtime.recorder
        try:
            error = ev.error
            if is_realtime:
                if is_wrapper and error is _last_realtime_error:
                    return
                _last_realtime_error = error
            elif is_tts and _inner_stream_tts.get() is inst.owner():
                # The outer retry loop re-emits this same error as its own attempt, but by then
                # livekit has re-raised it inside ``except StopAsyncIteration``, overwriting its
                # __context__: classify it now, record it then.
                inst.inner_error = (error, classify(error))
                return
            _on_error(recorder, inst, ev, error, ev.recoverable is not True)
        except Exception:
            recorder.internal_error("attempt_hook")

    return one_arg(on_error)


def _on_error(recorder: Recorder, inst: _Instance, ev: object, error: object, final: bool) -> None:
    if not isinstance(error, BaseException):
        return
    now = time.monotonic()
    inner = inst.inner_error
    if inner is not None and inner[0] is error:
        classification = inner[1]
        inst.inner_error = None
    else:
        try:
            classification = classify(error)
        except Exception:
            recorder.internal_error("classify")
            return
    root = classification.root_cause_type
    key = _request_key(inst)
    request = inst.request_for(key)
    if not request.open or now - request.last_failure > QUIET_GAP_S:
        request.open = True
        request.attempts = 0
        request.first_root_cause = root
    else:
        request.attempts += 1
    request.last_failure = now
    attempt = request.attempts
    first_root_cause = request.first_root_cause
    if final:
        request.open = False
    record = AttemptRecord(
        component=inst.component,
        provider=inst.provider or inst.provider_name(),
        attempt=attempt,
        final=final,
        first_root_cause_type=first_root_cause,
        masked=final and attempt > 0 and root != first_root_cause,
        classification=classification,
        timestamp_ns=time.time_ns(),
    )
    recorder.attempt_failed(record)
    sessions.attribute_attempt(ev, record)


def _make_metrics_handler(inst: _Instance) -> Callable[[Any], None]:
    # recognize() calls share the caller's task: a success there ends the caller's request
    ends_request = inst.component == "stt"
    is_tts = inst.component == "tts"

    def on_metrics(ev: Any) -> None:
        runtime = _runtime.current
        if runtime is None:
            return
        recorder = runtime.recorder
        try:
            # synthesize-via-stream: the inner stream's metrics (streamed=True) and the outer
            # chunked stream's describe one request; count the outer's
            if (
                is_tts
                and _chunked_tts.get() is inst.owner()
                and getattr(ev, "streamed", False) is True
            ):
                return
            if ends_request and inst.requests:
                request = inst.requests.get(_request_key(inst))
                if request is not None:
                    request.open = False
            recorder.request_ok(inst.component, inst.provider or inst.provider_name())
        except Exception:
            recorder.internal_error("request_hook")

    return one_arg(on_metrics)


def _make_reconnected_handler(inst: _Instance) -> Callable[[Any], None]:
    def on_reconnected(_: Any) -> None:
        try:
            inst.requests.clear()
        except Exception:
            runtime = _runtime.current
            if runtime is not None:
                runtime.recorder.internal_error("request_hook")

    return one_arg(on_reconnected)


def attach(emitter: Any, component: n.Component) -> None:
    """Subscribe the hooks to one provider instance (idempotent)."""
    with _attached_lock:
        if emitter in _attached:
            return
        _attached.add(emitter)
    inst = _Instance(emitter, component)
    emitter.on("error", _make_error_handler(inst, emitter))
    # Adapters forward their children's metrics: count requests once, on the children.
    if not _is_wrapper(emitter):
        emitter.on("metrics_collected", _make_metrics_handler(inst))
    if component == "realtime":
        emitter.on("session_reconnected", _make_reconnected_handler(inst))


def wrap_init(original: Callable[..., None], component: n.Component) -> Callable[..., None]:
    """A provider base class's ``__init__`` that attaches the hooks to the new instance."""

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        runtime = _runtime.current
        if runtime is None:
            return
        try:
            attach(self, component)
        except Exception:
            runtime.recorder.internal_error("instrument")

    return __init__


def wrap_chunked_stream_init(original: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        token = _chunked_tts.set(kwargs.get("tts"))
        try:
            original(self, *args, **kwargs)
        finally:
            _chunked_tts.reset(token)

    return __init__


def wrap_synthesize_stream_init(original: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        tts = kwargs.get("tts")
        if tts is None or _chunked_tts.get() is not tts:
            original(self, *args, **kwargs)
            return
        token = _inner_stream_tts.set(tts)
        try:
            original(self, *args, **kwargs)
        finally:
            _inner_stream_tts.reset(token)

    return __init__


def reset() -> None:
    """Forget the realtime error last seen (``shutdown()``)."""
    global _last_realtime_error
    _last_realtime_error = None
