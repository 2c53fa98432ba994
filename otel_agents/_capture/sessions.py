"""Session discovery: every ``AgentSession`` started gets a tracker (``tracker.py``), and every
failed attempt is counted in the session it belongs to.

``AgentSession.start`` is wrapped: the tracker subscribes to the session's public events before
livekit's own start runs (so it sees ``initializing -> listening``), and a context variable, set
in the caller's context, is inherited by every task the session creates. That is how a
provider's failed attempt (FallbackAdapter children included, whose errors never reach the
session) is attributed to its session, and why errors that arrive before the user message is
committed land in the right turn: a turn's errors are those since the previous turn closed,
whatever their order of arrival.
"""

from __future__ import annotations

import asyncio
import functools
import weakref
from collections.abc import Callable
from typing import Any

from .. import _runtime
from .._export.records import AttemptRecord
from . import task_errors
from .events import one_arg
from .tracker import SessionTracker, _by_session, _open, _unpublished, current

__all__ = [
    "SessionTracker",
    "acknowledge",
    "attribute_attempt",
    "claims_realtime_failure",
    "counts_realtime_replies",
    "current",
    "finalize_all",
    "forget_inherited",
    "newest_session_on",
    "sessions_on",
    "wrap_start",
]


def _job_context() -> Any:
    try:
        from livekit.agents import get_job_context

        return get_job_context(required=False)
    except Exception:
        return None


# --- discovery: AgentSession.start ----------------------------------------------------------


def wrap_start(original: Callable[..., Any]) -> Callable[..., Any]:
    """``AgentSession.start`` that tracks the session it starts."""

    @functools.wraps(original)
    async def start(self: Any, *args: Any, **kwargs: Any) -> Any:
        runtime = _runtime.current
        tracker: SessionTracker | None = None
        if runtime is not None and getattr(self, "_started", False) is False:
            recorder, silence_timeout = runtime.recorder, runtime.settings.silence_timeout
            try:
                # before the tracker's own handler: an error that reaches the session without
                # having been recorded is recorded first, so the tracker counts it once
                _hook_session_errors(self)
                previous = _by_session.get(self)
                if previous is not None:  # restarted without a close we saw
                    previous.finalize("other")
                tracker = SessionTracker(self, recorder, silence_timeout)
                tracker.begin(self)
                current.set(weakref.ref(tracker))
                tracker.in_job = _register_job_shutdown(tracker)
                if tracker.loop is not None:
                    task_errors.chain_exception_handler(tracker.loop, newest_session_on)
            except Exception:
                recorder.internal_error("session_hook")
        try:
            result = await original(self, *args, **kwargs)
        except BaseException:
            if tracker is not None and not tracker.closed:
                tracker.finalize("error")
            raise
        if tracker is not None:
            try:
                tracker.started()
            except Exception:
                tracker.recorder.internal_error("session_hook")
        return result

    return start


_error_hooked: weakref.WeakSet[object] = weakref.WeakSet()


def _on_session_error(ev: Any) -> None:
    runtime = _runtime.current
    if runtime is None:
        return
    try:
        from .attempts import record_session_error

        record_session_error(ev.error, getattr(ev, "source", None))
    except Exception:
        runtime.recorder.internal_error("session_hook")


_SESSION_ERROR_HANDLER = one_arg(_on_session_error)


def _hook_session_errors(session: Any) -> None:
    """Record the provider errors that reach ``session``'s ``error`` event without an event of
    their provider's (injected into the session's error path; models built before init())."""
    if session in _error_hooked:
        return
    _error_hooked.add(session)
    session.on("error", _SESSION_ERROR_HANDLER)


def _register_job_shutdown(tracker: SessionTracker) -> bool:
    """Tell ``tracker`` the job's shutdown reason when it comes; whether there is a job."""
    job = _job_context()
    if job is None:
        return False
    ref = weakref.ref(tracker)

    async def on_job_shutdown(reason: str) -> None:
        t = ref()
        if t is not None:
            try:
                t.on_job_shutdown(reason)
            except Exception:
                t.recorder.internal_error("session_hook")

    job.add_shutdown_callback(on_job_shutdown)
    return True


def attribute_attempt(event: object, record: AttemptRecord) -> None:
    """Count a provider's failed attempt in the session of the task that emitted it."""
    ref = current.get()
    tracker = ref() if ref is not None else _only_session_of_running_loop()
    if tracker is not None:
        tracker.on_attempt(id(event), record)


def acknowledge(event: object) -> None:
    """A provider error event that re-reports a failure already counted (a wrapper's): the
    session must not count it again when livekit forwards it to the session's ``error``."""
    ref = current.get()
    tracker = ref() if ref is not None else _only_session_of_running_loop()
    if tracker is not None and not tracker.closed:
        tracker.seen_errors.append(id(event))


def _realtime_session() -> SessionTracker | None:
    ref = current.get()
    tracker = ref() if ref is not None else _only_session_of_running_loop()
    if tracker is None or tracker.closed or tracker.realtime is None:
        return None
    return tracker


def claims_realtime_failure() -> bool:
    """A realtime model's error, emitted now, fails a reply of its session (or a turn waiting
    for one): livekit never retries a realtime reply, so the attempt is final (``realtime.py``)."""
    tracker = _realtime_session()
    return (
        tracker is not None and tracker.realtime is not None and tracker.realtime.claims_failure()
    )


def counts_realtime_replies() -> bool:
    """The realtime model's requests are its session's replies, counted as they end
    (``realtime.py``), not its ``metrics_collected`` (a failed response has them too)."""
    return _realtime_session() is not None


def _only_session_of_running_loop() -> SessionTracker | None:
    # A task that did not inherit the session's context (start() awaited in a task of its
    # own, as asyncio.wait_for does on 3.11): with one session on the loop, livekit's norm
    # per job process, it is that one; with several, nothing is guessed.
    if not _open:
        return None
    try:
        sessions = sessions_on(asyncio.get_running_loop())
    except RuntimeError:
        return None
    return sessions[0] if len(sessions) == 1 else None


def sessions_on(loop: asyncio.AbstractEventLoop) -> list[SessionTracker]:
    """The open sessions running on ``loop``, oldest first."""
    return sorted((t for t in _open if t.loop is loop), key=lambda t: t.started_at)


def newest_session_on(loop: asyncio.AbstractEventLoop) -> SessionTracker | None:
    """The session an unhandled task error on ``loop`` belongs to: with one session per job
    process (livekit's norm) it is exact (on 3.11 a task's context cannot be read to find its
    own session)."""
    sessions = sessions_on(loop)
    return sessions[-1] if sessions else None


def forget_inherited() -> None:
    """In a forked child: drop the parent's sessions, which this process must not close."""
    _open.clear()
    _unpublished.clear()
    _by_session.clear()


def finalize_all(reason: str = "other") -> None:
    """Close the books of every session still open, and publish every closed one still waiting
    for its job's shutdown reason (process exit, shutdown())."""
    for tracker in [*_open, *_unpublished]:
        try:
            tracker.finalize(reason)
            tracker.publish()
        except Exception:
            tracker.recorder.internal_error("session_hook")
