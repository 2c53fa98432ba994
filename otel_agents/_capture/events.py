"""What every handler otel-agents subscribes to livekit's emitters has in common."""

from __future__ import annotations

import inspect
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
