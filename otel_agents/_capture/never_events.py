"""Failures livekit never emits as an ``error`` event, and the frames that tell a wrapper's
re-report from a failure of its own (``docs/livekit.md``, "Failures that are never events").

* A stream's task that ends with an exception its retry loop never emitted: livekit's TTS loops
  catch ``APIError`` only, so a plugin's ``KeyError`` just ends the task (livekit logs it when the
  consumer re-raises it). Every stream's tasks are found by what they are (the ``asyncio.Task``
  attributes the base ``__init__`` left on the stream) and watched with a done callback, which
  runs before the consumer re-raises the exception inside ``except StopAsyncIteration`` (which
  overwrites its ``__context__``): the chain is still whole when it is classified.
* ``chat()``, ``stream()`` and ``synthesize()`` raising before any stream exists: each provider
  class's own methods are wrapped the first time an instance of it is built.
* A realtime session's tasks, found the same way once its subclass's ``__init__`` has run.

A failure is recorded once (``flows``): one its retry loop emitted, or a child counted, is not
recorded again when the task ends with it or a wrapper lets it through.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import weakref
from collections.abc import Callable
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace

from .. import _runtime
from .. import names as n
from . import attempts, flows

#: the public methods that start a request, per component: wrapped on each provider class
ENTRY_METHODS: Final[dict[str, tuple[str, ...]]] = {
    "llm": ("chat",),
    "stt": ("stream",),
    "tts": ("synthesize", "stream"),
}
_MARK: Final = "__otel_agents_entry__"

# (class, name) -> what the class itself held before (None: it inherited the method)
_wrapped: dict[tuple[type, str], Any] = {}
_wrapped_lock = threading.Lock()
_classes_seen: dict[int, weakref.ref[type]] = {}
# ids of the instances inside a wrapped entry method (a subclass's calling super()'s): only the
# outermost call records
_inside: set[int] = set()


def _internal_error(where: n.Where) -> None:
    runtime = _runtime.current
    if runtime is not None:
        runtime.recorder.internal_error(where)


# --- streams: a frame each, and their tasks watched ---------------------------------------------


def wrap_stream_init(original: Callable[..., None], owner_arg: str) -> Callable[..., None]:
    """A stream base class's ``__init__`` that opens its request frame (inherited by the tasks
    it creates) and watches those tasks. ``owner_arg``: the keyword naming its provider."""

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        frame: flows.Frame | None = None
        if _runtime.current is not None:
            try:
                owner = kwargs[owner_arg] if owner_arg in kwargs else (args[0] if args else None)
                inst = attempts.instance_of(owner)
                if inst is not None:
                    frame = flows.Frame(inst, flows.current.get(), kwargs.get("conn_options"))
            except Exception:
                _internal_error("instrument")
        if frame is None:
            original(self, *args, **kwargs)
            return
        token = flows.current.set(frame)
        try:
            original(self, *args, **kwargs)
        finally:
            flows.current.reset(token)
        try:
            _watch_tasks(self, frame)
        except Exception:
            _internal_error("instrument")

    return __init__


def _watch_tasks(owner: object, frame: flows.Frame | None, inst: Any = None) -> None:
    if inst is None and frame is not None:
        inst = frame.inst
    try:
        ref: Callable[[], object] | None = weakref.ref(owner)
    except TypeError:
        ref = None
    callback = functools.partial(_task_done, frame, inst, ref)
    for value in list(vars(owner).values()):
        if isinstance(value, asyncio.Task):
            value.add_done_callback(callback)


def _task_done(
    frame: flows.Frame | None,
    inst: Any,
    owner: Callable[[], object] | None,
    task: asyncio.Task[Any],
) -> None:
    try:
        if task.cancelled():
            return
        # read without retrieving it: a failure nobody awaits is still reported by asyncio
        # ("exception was never retrieved"), as it would have been without otel-agents
        error = getattr(task, "_exception", None)
        if not isinstance(error, BaseException) or inst is None:
            return
        # The callback runs in the context the stream was built in; the request's own span
        # (opened inside the task, ended only by the stream's aclose()) is held by the stream:
        # record the failure as its child, as an emitted failure would be.
        span = _request_span(owner() if owner is not None else None)
    except Exception:
        _internal_error("attempt_hook")
        return
    if span is None:
        attempts.record_never_event(inst, error, frame, key=task)
        return
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        attempts.record_never_event(inst, error, frame, key=task)
    finally:
        otel_context.detach(token)


def _request_span(stream: object) -> trace.Span | None:
    """The span a stream holds for its request, found by what it is (a recording span among
    its attributes), not by livekit's attribute name."""
    if stream is None:
        return None
    for value in vars(stream).values():
        if isinstance(value, trace.Span) and value.is_recording():
            return value
    return None


def wrap_recognize(original: Callable[..., Any]) -> Callable[..., Any]:
    """``STT.recognize`` with a request frame of its own (its retry loop runs in the caller's
    task: a wrapper's ``recognize()`` is the parent frame of its child's)."""

    @functools.wraps(original)
    async def recognize(self: Any, *args: Any, **kwargs: Any) -> Any:
        frame: flows.Frame | None = None
        if _runtime.current is not None:
            try:
                inst = attempts.instance_of(self)
                if inst is not None:
                    frame = flows.Frame(inst, flows.current.get(), kwargs.get("conn_options"))
            except Exception:
                _internal_error("instrument")
        if frame is None:
            return await original(self, *args, **kwargs)
        token = flows.current.set(frame)
        try:
            return await original(self, *args, **kwargs)
        finally:
            flows.current.reset(token)

    return recognize


# --- provider instances: their classes' entry methods, a realtime session's tasks --------------


def on_instance(owner: Any, component: n.Component) -> None:
    """A provider instance was built (after its hooks were attached)."""
    if component == "realtime":
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        # its subclass creates its tasks after the base __init__ returned
        loop.call_soon(_watch_realtime, weakref.ref(owner))
        return
    names = ENTRY_METHODS.get(component)
    if names is None:
        return
    cls = type(owner)
    seen = _classes_seen.get(id(cls))
    if seen is not None and seen() is cls:
        return
    with _wrapped_lock:
        _classes_seen[id(cls)] = weakref.ref(cls)
        for name in names:
            _wrap_entry(cls, name)


def _watch_realtime(ref: weakref.ref[Any]) -> None:
    owner = ref()
    if owner is None:
        return
    try:
        inst = attempts.instance_of(owner)
        if inst is not None:
            _watch_tasks(owner, None, inst)
    except Exception:
        _internal_error("instrument")


def _wrap_entry(cls: type, name: str) -> None:
    method = getattr(cls, name, None)
    if not callable(method) or getattr(method, _MARK, False) or not hasattr(method, "__get__"):
        return
    if isinstance(cls.__dict__.get(name), staticmethod | classmethod):
        return
    _wrapped[(cls, name)] = cls.__dict__.get(name)
    setattr(cls, name, _entry(method))


def _entry(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        key = id(self)
        if key in _inside:
            return original(self, *args, **kwargs)
        _inside.add(key)
        try:
            return original(self, *args, **kwargs)
        except Exception as error:
            _raised(self, error, kwargs.get("conn_options"))
            raise
        finally:
            _inside.discard(key)

    setattr(method, _MARK, True)
    return method


def _raised(owner: object, error: Exception, conn_options: object) -> None:
    """``chat()``/``stream()``/``synthesize()`` raised: a request that failed before any stream
    existed (its frame has the caller's as parent: a wrapper learns its child failed)."""
    try:
        inst = attempts.instance_of(owner)
        if inst is None:
            return
        frame = flows.Frame(inst, flows.current.get(), conn_options)
    except Exception:
        _internal_error("attempt_hook")
        return
    attempts.record_never_event(inst, error, frame)


def unwrap_entries() -> None:
    """Restore every class's entry methods (``uninstrument()``)."""
    with _wrapped_lock:
        for (cls, name), held in _wrapped.items():
            try:
                if held is None:
                    delattr(cls, name)
                else:
                    setattr(cls, name, held)
            except Exception:
                continue
        _wrapped.clear()
        _classes_seen.clear()
