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

import contextvars
import functools
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, Final

from .. import _runtime
from .. import names as n
from .._classify import classify
from .._export.recorder import Recorder
from .._export.records import AttemptRecord
from . import flows, never_events, sessions
from .events import one_arg
from .instances import Instance, request_key

#: a request with no failure for this long starts again at attempt 0
QUIET_GAP_S: Final = 30.0

_attached: weakref.WeakSet[object] = weakref.WeakSet()
_attached_lock = threading.Lock()

#: the hooks of every attached provider instance, by instance
_instances: weakref.WeakKeyDictionary[object, Instance] = weakref.WeakKeyDictionary()
#: instances known only from their session's ``error`` event (built before ``init()``)
_session_instances: weakref.WeakKeyDictionary[object, Instance] = weakref.WeakKeyDictionary()

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


def _make_error_handler(inst: Instance) -> Callable[[Any], None]:
    is_tts = inst.component == "tts"

    def on_error(ev: Any) -> None:
        runtime = _runtime.current
        if runtime is None:
            return
        recorder = runtime.recorder
        try:
            error = ev.error
            if is_tts and _inner_stream_tts.get() is inst.owner():
                # The outer retry loop re-emits this same error as its own attempt, but by then
                # livekit has re-raised it inside ``except StopAsyncIteration``, overwriting its
                # __context__: classify it now, record it then.
                inst.inner_error = (error, classify(error))
                return
            if not isinstance(error, BaseException):
                return
            frame = flows.current.get()
            if frame is not None and frame.inst is not inst:
                frame = None  # another provider's request: not this instance's own
            # only a wrapper re-reports (a leaf's errors skip the chain walk)
            wrapper = inst.wrapper
            if wrapper is None:
                wrapper = inst.is_wrapper()
            if wrapper and (
                flows.counted_elsewhere(error, inst) or (frame is not None and frame.child_failed)
            ):
                # a wrapper re-reporting a failure its child counted already (the realtime
                # FallbackAdapter's session re-emits its child's very exception; the LLM and TTS
                # FallbackAdapters end with an "all failed" error of their own)
                if frame is not None:
                    frame.child_failed = False
                flows.account(error, inst, frame)
                sessions.acknowledge(ev)
                return
            _on_error(recorder, inst, ev, error, ev.recoverable is not True, frame)
        except Exception:
            recorder.internal_error("attempt_hook")

    return one_arg(on_error)


def _on_error(
    recorder: Recorder,
    inst: Instance,
    ev: object,
    error: BaseException,
    final: bool,
    frame: flows.Frame | None = None,
    key: object = None,
) -> None:
    now = time.monotonic()
    # counted even if it cannot be classified: its task's end must not count it again
    flows.account(error, inst, frame)
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
    if not final and inst.component == "realtime" and sessions.claims_realtime_failure():
        # the failure of a reply (livekit never retries one): one reply, one request
        final = True
        inst.requests.clear()
    request = inst.request_for(request_key(inst) if key is None else key)
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
        target=inst.target or inst.target_of(),
    )
    if frame is not None:
        frame.mark_failed_child()
        _frame_failed(recorder, frame, attempt, final, now)
    recorder.attempt_failed(record)
    sessions.attribute_attempt(ev, record)


def _frame_failed(
    recorder: Recorder, frame: flows.Frame, attempt: int, final: bool, now: float
) -> None:
    """Retry wait: a failed attempt of ``frame``'s request; the next one starts after
    livekit's backoff. At the final failure the request's wait is observed."""
    if frame.observed:  # a long-lived stream failing again after it recovered: a new request
        frame.observed = False
        frame.failures = 0
        frame.started = frame.last_start = now
    frame.failures += 1
    if final:
        _observe_retry_wait(recorder, frame)
    else:
        frame.last_start = now + flows.backoff(frame.conn_options, attempt)


def _observe_retry_wait(recorder: Recorder, frame: flows.Frame) -> None:
    if frame.observed:
        return
    frame.observed = True
    inst: Instance = frame.inst  # type: ignore[assignment]
    recorder.retry_wait(inst.component, max(0.0, frame.last_start - frame.started))


def _make_metrics_handler(inst: Instance) -> Callable[[Any], None]:
    # recognize() calls share the caller's task: a success there ends the caller's request
    ends_request = inst.component == "stt"
    is_tts = inst.component == "tts"

    def on_metrics(ev: Any) -> None:
        runtime = _runtime.current
        if runtime is None:
            return
        recorder = runtime.recorder
        try:
            # Adapters forward their children's metrics: count requests once, on the children.
            if inst.wrapper or (inst.wrapper is None and inst.is_wrapper()):
                return
            # synthesize-via-stream: the inner stream's metrics (streamed=True) and the outer
            # chunked stream's describe one request; count the outer's
            if (
                is_tts
                and _chunked_tts.get() is inst.owner()
                and getattr(ev, "streamed", False) is True
            ):
                return
            if inst.component == "realtime" and sessions.counts_realtime_replies():
                return  # its session counts each reply as one request (realtime.py)
            if ends_request and inst.requests:
                request = inst.requests.get(request_key(inst))
                if request is not None:
                    request.open = False
            recorder.request_ok(inst.component, inst.provider or inst.provider_name())
            # a request that succeeded after failed attempts: what its retries cost
            frame = flows.current.get()
            if frame is not None and frame.failures and frame.inst is inst and not frame.observed:
                _observe_retry_wait(recorder, frame)
        except Exception:
            recorder.internal_error("request_hook")

    return one_arg(on_metrics)


def _make_reconnected_handler(inst: Instance) -> Callable[[Any], None]:
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
    inst = Instance(emitter, component)
    _instances[emitter] = inst
    emitter.on("error", _make_error_handler(inst))
    emitter.on("metrics_collected", _make_metrics_handler(inst))
    if component == "realtime":
        emitter.on("session_reconnected", _make_reconnected_handler(inst))


def instance_of(owner: object) -> Instance | None:
    """The hooks' state of an attached provider instance."""
    if owner is None:
        return None
    try:
        return _instances.get(owner)
    except TypeError:  # unhashable
        return None


# --- failures that are never events (``never_events`` finds them) -----------------------------


class _NoEvent:
    """Stands for the livekit event a failure never had (the session counts it by identity)."""

    __slots__ = ()


def record_never_event(
    inst: Instance, error: BaseException, frame: flows.Frame | None, key: object = None
) -> None:
    """Record a failure livekit never emitted (a stream's task ended with it, ``chat()``,
    ``stream()`` or ``synthesize()`` raised it): a final failed attempt, unless it was counted
    already (its retry loop emitted it, or a child did). Never raises."""
    runtime = _runtime.current
    if runtime is None:
        return
    recorder = runtime.recorder
    try:
        if not isinstance(error, Exception):  # cancellation, exit: not a provider failure
            return
        if frame is not None and frame.parent is not None and frame.parent.inst is inst:
            return  # a stream of the same provider inside another: the outer one reports it
        if flows.counted_for(error, inst, frame) and not _still_open(inst, key):
            return
        _on_error(recorder, inst, _NoEvent(), error, True, frame, key)
    except Exception:
        recorder.internal_error("attempt_hook")


def _still_open(inst: Instance, key: object) -> bool:
    """The request of ``key`` (a stream's task) had failed attempts and none final: its loop
    emitted a retryable failure, then ended without emitting its end (it broke while handling
    that failure). Its end is this task's exception, recorded as its final attempt."""
    request = inst.requests.get(key) if key is not None else None
    return request is not None and request.open


_COMPONENT_OF_ERROR: Final[dict[str, n.Component]] = {
    "llm_error": "llm",
    "stt_error": "stt",
    "tts_error": "tts",
    "realtime_model_error": "realtime",
}


class _NoSource:
    """The owner of errors whose session event names no source."""

    __slots__ = ("__weakref__",)


_no_source: dict[str, _NoSource] = {}


def record_session_error(error_event: Any, source: object) -> None:
    """A provider error that reached a session's ``error`` event without going through the
    hooks (injected into the session's error path, or from a model built before ``init()``):
    record it, once. Never raises."""
    runtime = _runtime.current
    if runtime is None:
        return
    recorder = runtime.recorder
    try:
        error = getattr(error_event, "error", None)
        if not isinstance(error, BaseException) or flows.is_accounted(error):
            return
        component = _COMPONENT_OF_ERROR.get(getattr(error_event, "type", None) or "")
        if component is None:
            return
        inst = instance_of(source)
        if inst is None or inst.component != component:
            owner: object = source
            if source is None:
                owner = _no_source.setdefault(component, _NoSource())
            try:
                inst = _session_instances.get(owner)
                if inst is None:
                    inst = _session_instances[owner] = Instance(owner, component)
            except TypeError:  # an unhashable source
                inst = Instance(_no_source.setdefault(component, _NoSource()), component)
        _on_error(recorder, inst, error_event, error, error_event.recoverable is not True)
    except Exception:
        recorder.internal_error("attempt_hook")


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
            never_events.on_instance(self, component)
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
    """Forget the failures counted (``shutdown()``)."""
    flows.reset()
