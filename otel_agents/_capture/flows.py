"""Which failure is which: request frames, the failures already counted, and wrappers found by
structure (``docs/livekit.md``, "Counted once").

A *frame* is one provider request in flight: a stream (``LLMStream``, ``RecognizeStream``,
``ChunkedStream``, ``SynthesizeStream``) from its construction, or one ``STT.recognize()`` call.
A context variable holds the frame while the stream is built, so every task the stream creates
(its retry loop, its metrics monitor) inherits it, and so does every stream built inside those
tasks: a wrapper's stream (FallbackAdapter, MultiSpeakerAdapter, a StreamAdapter, a TTS that
synthesizes with its own stream) is the parent frame of its children's. Nothing names a wrapper
class: a wrapper is whatever builds a stream of another provider inside its own.

Every failure counted is *accounted*: its exception is marked, and the mark names the instance
and the frame that counted it. A wrapper's error is a re-report when its exception, or a link of
its chain, was counted by another instance, or when a child of its frame failed since its last
error (livekit's "all LLMs failed" carries no chain).

No stack trace is ever formatted here; every function is a few dict and attribute lookups.
"""

from __future__ import annotations

import contextvars
import importlib
import itertools
import time
import weakref
from collections.abc import Callable
from typing import Any, Final

#: failures remembered to recognise their re-reports (the oldest are forgotten first)
ACCOUNTED_LIMIT: Final = 256
#: links of an exception's chain compared with the failures already counted
CHAIN_DEPTH: Final = 8


class Frame:
    """One provider request in flight (a stream, or a ``recognize()`` call)."""

    __slots__ = (
        "child_failed",
        "conn_options",
        "failures",
        "inst",
        "last_start",
        "observed",
        "parent",
        "started",
    )

    def __init__(self, inst: object, parent: Frame | None, conn_options: object) -> None:
        self.inst = inst  # the instances.Instance of the provider serving it
        self.parent = parent
        self.conn_options = conn_options
        self.child_failed = False  # a child frame's failure since this frame's last error
        self.started = time.monotonic()  # its first attempt's start
        self.last_start = self.started  # its last attempt's start (as far as known)
        self.failures = 0
        self.observed = False  # its retry wait was observed

    def is_within(self, other: Frame) -> bool:
        """Whether this frame is ``other`` or one of its descendants."""
        frame: Frame | None = self
        depth = 0
        while frame is not None and depth < 32:
            if frame is other:
                return True
            frame = frame.parent
            depth += 1
        return False

    def mark_failed_child(self) -> None:
        """A failure was counted in this frame: its ancestors served by other instances learn
        that their next error may be a re-report."""
        frame = self.parent
        depth = 0
        while frame is not None and depth < 32:
            if frame.inst is not self.inst:
                frame.child_failed = True
            frame = frame.parent
            depth += 1


current: contextvars.ContextVar[Frame | None] = contextvars.ContextVar(
    "otel_agents_frame", default=None
)

# Built-in exceptions take no weak reference, and an id can be reused once its object is gone:
# a counted exception carries a token (an int, harmless to pickling and printing) in its
# ``__dict__``; the token's entry names the instance and the frame that counted it.
_TOKEN: Final = "_otel_agents_counted"
_accounted: dict[int, tuple[object, Frame | None]] = {}
_tokens = itertools.count(1)
# exceptions whose __dict__ cannot be used, by id, each entry holding a reference to its
# exception (weak when the type allows it): an id reused by a later object never matches
ID_LIMIT: Final = 16
_by_id: dict[int, tuple[Callable[[], object], object, Frame | None]] = {}


def _reference(exc: BaseException) -> Callable[[], object]:
    try:
        return weakref.ref(exc)
    except TypeError:  # a type without weak references: held (at most ID_LIMIT of them)
        return lambda: exc


def _by_id_entry(exc: BaseException) -> tuple[object, Frame | None] | None:
    held = _by_id.get(id(exc))
    if held is None or held[0]() is not exc:
        return None
    return held[1], held[2]


def account(exc: BaseException, inst: object, frame: Frame | None) -> None:
    """Remember that ``exc`` was counted (or knowingly not counted: a re-report), last by
    ``inst`` in ``frame`` (one exception object raised by every request is counted each time)."""
    try:
        held = exc.__dict__
        token = held.get(_TOKEN)
        if token not in _accounted:
            token = next(_tokens)
            held[_TOKEN] = token
    except Exception:  # no __dict__, or a hostile one: remembered by id (bounded)
        if id(exc) not in _by_id and len(_by_id) >= ID_LIMIT:
            _by_id.pop(next(iter(_by_id)))
        _by_id[id(exc)] = (_reference(exc), inst, frame)
        return
    if token not in _accounted and len(_accounted) >= ACCOUNTED_LIMIT:
        _accounted.pop(next(iter(_accounted)))
    _accounted[token] = (inst, frame)


def _chain(exc: BaseException) -> list[BaseException]:
    links: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and len(links) < CHAIN_DEPTH:
        if any(link is seen for seen in links):
            break
        links.append(link)
        try:  # a hostile exception's attributes may raise
            cause = link.__cause__
            if cause is None and not link.__suppress_context__:
                cause = link.__context__
        except Exception:
            break
        link = cause if isinstance(cause, BaseException) else None
    return links


def _entries(exc: BaseException) -> list[tuple[object, Frame | None]]:
    """(instance, frame) of every link of ``exc``'s chain already accounted."""
    if not _accounted and not _by_id:
        return []
    found = []
    for link in _chain(exc):
        try:
            token = link.__dict__.get(_TOKEN)
        except Exception:
            held = _by_id_entry(link)
            if held is not None:
                found.append(held)
            continue
        entry = _accounted.get(token) if type(token) is int else None
        if entry is not None:
            found.append(entry)
    return found


def counted_elsewhere(exc: BaseException, inst: object) -> bool:
    """An error event's exception (or a link of its chain) was counted by another instance:
    a wrapper re-reporting its child's failure."""
    return any(other is not inst for other, _ in _entries(exc))


def counted_for(exc: BaseException, inst: object, frame: Frame | None) -> bool:
    """A failure that was never an event (a stream's task ended with it, a method raised it)
    was counted already: by another instance (a child, whose exception the wrapper lets
    through), within ``frame`` (its own retry loop emitted it, or a child frame counted it), or
    by this instance outside any frame of its own (a realtime session emits, then raises)."""
    for other, where in _entries(exc):
        if other is not inst or where is None or frame is None or where.is_within(frame):
            return True
    return False


def is_accounted(exc: BaseException) -> bool:
    """Any link of ``exc``'s chain was counted, by anyone."""
    return bool(_entries(exc))


def reset() -> None:
    _accounted.clear()
    _by_id.clear()


# --- wrappers, by structure --------------------------------------------------------------------

#: the base class a wrapper of each component holds instances of
_BASES: Final = {
    "llm": ("livekit.agents.llm", "LLM"),
    "stt": ("livekit.agents.stt", "STT"),
    "tts": ("livekit.agents.tts", "TTS"),
    "realtime": ("livekit.agents.llm", "RealtimeSession"),
}
_bases: dict[str, type | None] = {}


def _base(component: str) -> type | None:
    if component not in _bases:
        where = _BASES.get(component)
        base = None
        if where is not None:
            try:
                base = getattr(importlib.import_module(where[0]), where[1])
            except Exception:
                base = None
        _bases[component] = base
    return _bases[component]


def holds_providers(owner: object, component: str) -> bool:
    """Whether ``owner``'s attributes hold other instances of its own provider base class (an
    LLM holding LLMs, a realtime session holding a session), alone or in a list: a wrapper,
    whatever its class is called."""
    base = _base(component)
    if base is None:
        return False
    try:
        values = list(vars(owner).values())
    except TypeError:  # no __dict__
        return False
    for value in values:
        if value is owner:
            continue
        if isinstance(value, base):
            return True
        if isinstance(value, list | tuple):
            for item in value[:16]:
                if item is not owner and isinstance(item, base):
                    return True
    return False


def backoff(conn_options: object, attempt: int) -> float:
    """How long livekit's retry loop sleeps after failed attempt ``attempt`` (0-based) under
    ``conn_options``: its own rule when it has one, else the ``retry_interval`` field."""
    interval: Any = getattr(conn_options, "_interval_for_retry", None)
    try:
        if interval is not None:
            return float(interval(attempt))
        return float(getattr(conn_options, "retry_interval", 0.0))
    except Exception:
        return 0.0
