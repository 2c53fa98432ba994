"""What otel-agents holds for one instrumented provider instance (an LLM, STT, TTS, realtime
session or interruption detector): its component, its provider's name, what it targets (model,
base URL), whether it wraps other providers, and the request in flight per task. The failed-
attempt hooks (:mod:`.attempts`) read and update it."""

from __future__ import annotations

import asyncio
import functools
import re
import weakref
from typing import Any, Final

from .. import names as n
from .._classify import Classification
from . import flows, target


class Request:
    __slots__ = ("attempts", "first_root_cause", "last_failure", "open")

    def __init__(self) -> None:
        self.open = False
        self.attempts = 0
        self.first_root_cause = ""
        self.last_failure = 0.0


class Instance:
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
        "target",
        "wrapper",
    )

    def __init__(self, owner: object, component: n.Component) -> None:
        self.owner = weakref.ref(owner)
        self.component = component
        self.provider: str | None = None
        self.per_instance = component == "realtime"
        # keyed by task; an entry leaves when its task is done (see request_for)
        self.requests: dict[object, Request] = {}
        # a TTS's inner-stream error, classified before livekit clobbers its chain
        self.inner_error: tuple[BaseException, Classification] | None = None
        # whether it wraps other providers (``flows.holds_providers``): read at its first
        # event, once its subclass's __init__ has set its attributes
        self.wrapper: bool | None = None
        # its model and base URL, read when a span needs them (``target_of``)
        self.target: target.Target | None = None

    def is_wrapper(self) -> bool:
        wrapper = self.wrapper
        if wrapper is None:
            owner = self.owner()
            wrapper = self.wrapper = owner is not None and flows.holds_providers(
                owner, self.component
            )
        return wrapper

    def provider_name(self) -> str:
        # Read lazily: subclasses set what ``provider`` reads after the base __init__ ran.
        if self.provider is None:
            owner = self.owner()
            if owner is not None and self.is_wrapper():
                self.provider = _wrapper_name(owner)
            else:
                self.provider = _provider_name(owner) or n.UNKNOWN
        return self.provider

    def target_of(self) -> target.Target:
        """Its model and base URL, read when a span needs them; none for a wrapper (its own
        failures are no one provider's)."""
        found = self.target
        if found is None:
            found = self.target = (
                target.NO_TARGET if self.is_wrapper() else target.Target(self.owner)
            )
        return found

    def request_for(self, key: object) -> Request:
        request = self.requests.get(key)
        if request is None:
            request = self.requests[key] = Request()
            if isinstance(key, asyncio.Task):
                key.add_done_callback(functools.partial(_forget, weakref.ref(self)))
        return request


def _forget(inst_ref: weakref.ref[Instance], task: asyncio.Task[Any]) -> None:
    inst = inst_ref()
    if inst is not None:
        inst.requests.pop(task, None)


_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def _wrapper_name(owner: object) -> str:
    """A wrapper's provider label: its class name in snake case (``FallbackAdapter`` ->
    ``fallback_adapter``): a wrapper's own ``provider`` names the child it would use next."""
    try:
        name = type(owner).__name__
    except Exception:
        return n.UNKNOWN
    return _CAMEL.sub("_", name).lower().strip("_") or n.UNKNOWN


def _provider_name(owner: object) -> str | None:
    if owner is None:
        return None
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


def request_key(inst: Instance) -> object:
    if inst.per_instance:
        return _ONE_KEY
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no running loop: a synchronous emit
        return _ONE_KEY
    return _ONE_KEY if task is None else task
