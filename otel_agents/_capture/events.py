"""What every handler otel-agents subscribes to livekit's emitters has in common."""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable
from typing import Any, Final


def _one_arg(ev: Any) -> None: ...


#: the signature of every handler otel-agents subscribes: one positional argument
HANDLER_SIGNATURE: Final = inspect.signature(_one_arg)


def one_arg(handler: Callable[[Any], None]) -> Callable[[Any], None]:
    """``handler`` with a precomputed ``__signature__``: livekit's ``EventEmitter.emit`` calls
    ``inspect.signature()`` on every callback for every event, about 5 us each without it."""
    handler.__signature__ = HANDLER_SIGNATURE  # type: ignore[attr-defined]
    return handler


def guarded(owner: Any, method: Callable[[Any], None]) -> Callable[[Any], None]:
    """``method`` of ``owner`` (a session tracker) as a handler that holds ``owner`` weakly,
    does nothing once it is closed, and counts its exceptions instead of raising them."""
    ref = weakref.ref(owner)

    def handler(ev: Any) -> None:
        t = ref()
        if t is None or t.closed:
            return
        try:
            method(ev)
        except Exception:
            t.recorder.internal_error("session_hook")

    return one_arg(handler)
