"""Unhandled task errors: asyncio task and future exceptions that were never retrieved.

An orphan task's exception is only ever logged by asyncio's default handler, and the error a
user sees may be a later one that it caused. Chained on a session's event loop, the handler
records the root cause of each (a metric, an event on the session's span, a log record) and
then hands the context on to the handler that was there before, so nothing else changes.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from .. import _runtime
from .. import names as n
from .._classify import exception_chain, root_index, type_name
from .._export.records import TaskErrorRecord

_chained: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()


class Session(Protocol):
    """What a task error needs of the session it happened in."""

    span: Any

    def add_event(self, name: str, attributes: dict[str, Any]) -> None: ...


SessionOf = Callable[[asyncio.AbstractEventLoop], Session | None]


def chain_exception_handler(loop: asyncio.AbstractEventLoop, session_of: SessionOf) -> None:
    """Record every never-retrieved task exception on ``loop`` (in the session ``session_of``
    names), then call the handler that was there before (or the loop's default)."""
    if loop in _chained:
        return
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        runtime = _runtime.current
        if runtime is not None:
            try:
                _record(runtime, loop, context, session_of)
            except Exception:
                runtime.recorder.internal_error("task_error_hook")
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    _chained[loop] = previous
    loop.set_exception_handler(handler)


def _record(
    runtime: _runtime.Runtime,
    loop: asyncio.AbstractEventLoop,
    context: dict[str, Any],
    session_of: SessionOf,
) -> None:
    exc = context.get("exception")
    if not isinstance(exc, BaseException):
        return
    message = context.get("message")
    if not isinstance(message, str) or "never retrieved" not in message:
        return
    chain = exception_chain(exc)
    root = chain[root_index(chain)]
    future = context.get("future") or context.get("task")
    try:
        task_name = future.get_name() if isinstance(future, asyncio.Task) else None
    except Exception:
        task_name = None
    record = TaskErrorRecord(type_name(type(exc)), root, type_name(type(root)), task_name)
    recorder = runtime.recorder
    attributes = recorder.task_error(record)
    session = session_of(loop)
    span = None
    if session is not None:
        session.add_event(n.EVENT_UNHANDLED_TASK_ERROR, attributes)
        span = session.span
    recorder.log_task_error(record, attributes, span)
