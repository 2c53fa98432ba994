"""livekit's FallbackAdapters: ``otel_agents_fallback_switches_total`` and
``otel_agents_fallback_exhausted_total``, and their events on the session span.

The signals are the adapters' own public events (``docs/livekit.md``), subscribed on every
``llm``/``stt``/``tts.FallbackAdapter`` at its construction:

* ``{llm,stt,tts}_availability_changed`` with ``available=False`` is emitted once each time a
  provider that was available fails a request, from the task of that request, before the
  adapter moves on. When another provider is still available the adapter tries it next: that is
  a switch, from the failed provider to the adapter's ``provider`` (livekit's "provider of the
  instance that serves next"). When none is left, the request fails: no switch.
* ``error`` on the adapter itself with ``recoverable=False`` ends a request; when its error is
  livekit's ``all LLMs failed`` / ``all STTs failed`` / ``all TTSs failed``, every provider
  failed it: one exhausted request (once, however many rounds livekit's retry loop ran).

While every provider is already marked down, livekit tries them all again in order without
emitting anything: those retries are not switches here (the request counts as exhausted if it
fails). The availability of each provider is followed from the same events (an adapter starts
with all of them available), so no private attribute of the adapter is read.

The realtime one, ``llm.RealtimeModelFallbackAdapter`` (component ``realtime``), works per
session and has no ``error`` of its own: when a session's model fails unrecoverably (or a model
fails to start on a swap) the adapter emits ``realtime_availability_changed(available=False)``,
then re-enables the models whose cooldown has expired (``available=True``, in the same
synchronous run) and swaps to the first available one in order, the primary preferred. When
none is left, the session escalates the error with ``recoverable=False`` (the ``AgentSession``
counts it and may close): that is its exhausted. So a realtime failure is decided once those
events are in (``loop.call_soon``): a switch from the failed model to the first available, else
one exhausted. livekit keeps availability per session of the adapter; here it is followed per
adapter, which is the same while the adapter serves one session at a time (an adapter per
``AgentSession``, as livekit's examples build it).
"""

from __future__ import annotations

import asyncio
import functools
import threading
import weakref
from collections.abc import Callable
from typing import Any, Final

from .. import _runtime
from .. import names as n
from . import sessions
from .events import one_arg

#: (module, class, component, the keyword of the providers' list in its constructor)
ADAPTERS: Final[tuple[tuple[str, str, n.Component, str], ...]] = (
    ("livekit.agents.llm.fallback_adapter", "FallbackAdapter", "llm", "llm"),
    ("livekit.agents.stt.fallback_adapter", "FallbackAdapter", "stt", "stt"),
    ("livekit.agents.tts.fallback_adapter", "FallbackAdapter", "tts", "tts"),
    (
        "livekit.agents.llm.realtime_fallback_adapter",
        "RealtimeModelFallbackAdapter",
        "realtime",
        "models",
    ),
)
#: the availability event's attribute holding the provider instance, by component
_INSTANCE_FIELD: Final[dict[n.Component, str]] = {
    "llm": "llm",
    "stt": "stt",
    "tts": "tts",
    "realtime": "realtime_model",
}

#: the start of the error livekit raises when every provider of a request failed
_EXHAUSTED_PREFIX: Final[dict[n.Component, str]] = {
    "llm": "all LLMs failed",
    "stt": "all STTs failed",
    "tts": "all TTSs failed",
}

_attached: weakref.WeakSet[object] = weakref.WeakSet()
_attached_lock = threading.Lock()


def _provider(instance: object) -> str | None:
    try:
        name = instance.provider  # type: ignore[attr-defined]
    except Exception:
        return None
    if isinstance(name, str) and name and name != n.UNKNOWN:
        return name
    module = type(instance).__module__
    if module.startswith("livekit.plugins."):
        return module.split(".")[2]
    return None


def _session() -> sessions.SessionTracker | None:
    """The session of the running task (inherited context), else the only one on its loop."""
    ref = sessions.current.get()
    tracker = ref() if ref is not None else None
    if tracker is not None:
        return tracker
    try:
        open_here = sessions.sessions_on(asyncio.get_running_loop())
    except RuntimeError:
        return None
    return open_here[0] if len(open_here) == 1 else None


def _add_event(name: str, attributes: dict[str, Any]) -> None:
    tracker = _session()
    if tracker is not None and not tracker.closed:
        tracker.add_event(name, attributes)


class _Adapter:
    """What one FallbackAdapter needs: its component, how many providers it has, and which of
    them its events said are down."""

    __slots__ = ("adapter", "component", "down", "size")

    def __init__(self, adapter: object, component: n.Component, size: int) -> None:
        self.adapter = weakref.ref(adapter)
        self.component = component
        self.size = size
        self.down: set[int] = set()

    def on_availability(self, ev: Any) -> None:
        runtime = _runtime.current
        if runtime is None:
            return
        recorder = runtime.recorder
        try:
            instance = getattr(ev, _INSTANCE_FIELD[self.component], None)
            if ev.available is not False:
                self.down.discard(id(instance))
                return
            self.down.add(id(instance))
            if len(self.down) >= self.size:
                return  # none left: the request fails (exhausted), no switch
            adapter = self.adapter()
            target = _provider(adapter) if adapter is not None else None
            attributes = recorder.fallback_switch(self.component, _provider(instance), target)
            _add_event(n.EVENT_FALLBACK_SWITCH, attributes)
        except Exception:
            recorder.internal_error("fallback_hook")

    def on_error(self, ev: Any) -> None:
        runtime = _runtime.current
        if runtime is None:
            return
        recorder = runtime.recorder
        try:
            if ev.recoverable is not False:
                return
            error = ev.error
            if not isinstance(error, Exception):
                return
            try:
                message = str(error)
            except Exception:
                return
            if not message.startswith(_EXHAUSTED_PREFIX[self.component]):
                return
            _add_event(n.EVENT_FALLBACK_EXHAUSTED, recorder.fallback_exhausted(self.component))
        except Exception:
            recorder.internal_error("fallback_hook")


class _RealtimeAdapter:
    """What one ``RealtimeModelFallbackAdapter`` needs: its models, in order, and which of them
    its events said are down (see the module docstring)."""

    __slots__ = ("down", "models")

    def __init__(self, models: list[object] | tuple[object, ...]) -> None:
        self.models = [weakref.ref(m) for m in models]
        self.down: set[int] = set()

    def on_availability(self, ev: Any) -> None:
        runtime = _runtime.current
        if runtime is None:
            return
        try:
            instance = ev.realtime_model
            if ev.available is not False:
                self.down.discard(id(instance))
                return
            self.down.add(id(instance))
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.decide(instance)
                return
            # after the models whose cooldown expired are back (the same synchronous run)
            loop.call_soon(self.decide, instance)
        except Exception:
            runtime.recorder.internal_error("fallback_hook")

    def decide(self, failed: object) -> None:
        """A switch to the first model available now, else the session's fallbacks are
        exhausted. The failed model itself back already (its cooldown was over): livekit
        restarts it, no switch."""
        runtime = _runtime.current
        if runtime is None:
            return
        recorder = runtime.recorder
        try:
            target = None
            for ref in self.models:
                model = ref()
                if model is not None and id(model) not in self.down:
                    target = model
                    break
            if target is None:
                _add_event(n.EVENT_FALLBACK_EXHAUSTED, recorder.fallback_exhausted("realtime"))
                return
            if target is failed:
                return
            attributes = recorder.fallback_switch("realtime", _provider(failed), _provider(target))
            _add_event(n.EVENT_FALLBACK_SWITCH, attributes)
        except Exception:
            recorder.internal_error("fallback_hook")


def attach(adapter: Any, component: n.Component, providers: object) -> None:
    """Subscribe to one FallbackAdapter (idempotent)."""
    with _attached_lock:
        if adapter in _attached:
            return
        _attached.add(adapter)
    size = len(providers) if isinstance(providers, list | tuple) else 0
    if size < 1:
        return
    if component == "realtime":
        assert isinstance(providers, list | tuple)
        realtime = _RealtimeAdapter(providers)

        def on_realtime_availability(ev: Any) -> None:
            realtime.on_availability(ev)

        adapter.on("realtime_availability_changed", one_arg(on_realtime_availability))
        return
    state = _Adapter(adapter, component, size)

    # plain functions: livekit's emitter reads each callback's signature (``one_arg``)
    def on_availability(ev: Any) -> None:
        state.on_availability(ev)

    def on_error(ev: Any) -> None:
        state.on_error(ev)

    adapter.on(f"{component}_availability_changed", one_arg(on_availability))
    adapter.on("error", one_arg(on_error))


def wrap_init(
    original: Callable[..., None], component: n.Component, keyword: str
) -> Callable[..., None]:
    """A FallbackAdapter's ``__init__`` that subscribes to the new adapter."""

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        runtime = _runtime.current
        if runtime is None:
            return
        try:
            attach(self, component, args[0] if args else kwargs.get(keyword))
        except Exception:
            runtime.recorder.internal_error("fallback_hook")

    return __init__


def wraps() -> list[tuple[str, str, str, Callable[[Callable[..., Any]], Callable[..., Any]]]]:
    """The ``(module, class, "__init__", wrap)`` entries for ``instrument``."""
    return [
        (module, name, "__init__", functools.partial(wrap_init, component=c, keyword=kw))
        for module, name, c, kw in ADAPTERS
    ]
