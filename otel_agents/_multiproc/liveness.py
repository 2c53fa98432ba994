"""Process liveness in ``PROMETHEUS_MULTIPROC_DIR``: every agent process holds a lock on a file.

:func:`register_process` makes each process hold an exclusive POSIX record lock
(``fcntl.lockf``) on ``otel_agents_alive_<pid>.lock`` for its whole life. The kernel drops the
lock when the process dies, however it dies (SIGKILL and OOM included); the lock is not
inherited by fork (a forked child registers itself again, :func:`after_fork_in_child`); and it
works across containers that share a local volume. The sidecar's reaper
(``otel_agents._sidecar.reap``) counts a pid as dead only when it can take that lock itself, so
nothing is guessed from ``os.kill(pid, 0)`` (a sidecar may not share the pid namespace).

The lock file is deliberately left behind at a clean exit: it is what tells the reaper that this
process's metric files can be compacted. One POSIX trap: a process loses its locks on a file
when it closes *any* descriptor of that file, so nothing in a registered process may open its
own lock file (the reaper skips its own pid for that reason).

A new lock file is locked under a temporary name (``.otel_agents_alive_<pid>.<random>.tmp``),
then renamed into place, so a reaper never sees an unlocked new lock file.

This module is all an agent process needs of the multiprocess directory besides
:mod:`otel_agents._multiproc.process_files`; it imports nothing of the sidecar.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import multiprocessing
import os
import re
import secrets
import sys
import threading
from dataclasses import dataclass
from typing import Final

from .. import names as n

logger = logging.getLogger(n.LOGGER_NAME)

LOCK_PREFIX: Final = "otel_agents_alive_"
LOCK_SUFFIX: Final = ".lock"
#: registration temp files: ``.otel_agents_alive_<pid>.<random>.tmp``
TEMP_PREFIX: Final = "." + LOCK_PREFIX
TEMP_SUFFIX: Final = ".tmp"


def multiproc_dir() -> str | None:
    """The multiprocess directory in force, or ``None`` when multiprocess mode is off.

    ``PROMETHEUS_MULTIPROC_DIR``, else prometheus_client's legacy lower-case spelling; an empty
    value counts as unset.
    """
    return (
        os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        or os.environ.get("prometheus_multiproc_dir")  # noqa: SIM112  the legacy spelling
        or None
    )


#: a pid as ``os.getpid()`` writes it: ASCII digits, no sign, no leading zero (``str.isdigit``
#: also accepts "²" and "١٢٣", which ``int`` then refuses or reads as another number)
_PID = re.compile(r"[1-9][0-9]{0,9}")


def lock_file_pid(name: str) -> str | None:
    """``otel_agents_alive_123.lock`` -> ``"123"``; ``None`` for any other file name."""
    if name.startswith(LOCK_PREFIX) and name.endswith(LOCK_SUFFIX):
        pid = name[len(LOCK_PREFIX) : -len(LOCK_SUFFIX)]
        if _PID.fullmatch(pid):
            return pid
    return None


def is_registration_temp(name: str) -> bool:
    """Whether ``name`` is a lock file still under its temporary name."""
    return name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)


def same_file(a: os.stat_result, b: os.stat_result) -> bool:
    """Whether two ``stat`` results are of one file (a path replaced since is another file)."""
    return (a.st_ino, a.st_dev) == (b.st_ino, b.st_dev)


@dataclass(frozen=True)
class _Registration:
    pid: int
    fd: int
    path: str


_registration: _Registration | None = None
_registration_lock = threading.Lock()


def multiprocessing_child() -> bool:
    """A process multiprocessing started: a livekit job process, or its forkserver.

    A forkserver or spawn child imports the agent module (and so runs ``init()``) before
    multiprocessing's bootstrap sets ``parent_process()``; the command line tells then (and
    under ``opentelemetry-instrument``, whose ``sitecustomize`` runs first).
    """
    if multiprocessing.parent_process() is not None:
        return True
    argv = getattr(sys, "orig_argv", [])
    return "--multiprocessing-fork" in argv or any("from multiprocessing." in a for a in argv)


def register_process(directory: str | None = None, *, again_if_gone: bool = False) -> None:
    """Hold this process's liveness lock in ``directory`` (default: the multiprocess directory).

    A no-op when multiprocess mode is off or this pid is registered already (with
    ``again_if_gone``: and its lock file is still in place; livekit's worker deletes it when it
    empties the directory). Never raises: failures are logged and counted in
    ``otel_agents_internal_errors_total{where="liveness"}``.
    """
    try:
        directory = directory or multiproc_dir()
        if directory:
            _register(directory, again_if_gone)
    except FileNotFoundError:
        # the worker has not created the directory yet (livekit makes it in Worker.run): such
        # a process is simply never reaped
        logger.debug("otel_agents: no multiprocess directory yet: %s", directory)
    except Exception as exc:
        logger.warning("otel_agents: cannot register process liveness in %s: %r", directory, exc)
        count_error(n.WHERE_LIVENESS)


def _register(directory: str, again_if_gone: bool = False) -> None:
    global _registration
    pid = os.getpid()
    with _registration_lock:
        old = _registration
        if old is not None and old.pid == pid and not (again_if_gone and _gone(old)):
            return
        if old is not None:  # a forked child holds the parent's fd but not its lock
            _registration = None
            with contextlib.suppress(OSError):
                os.close(old.fd)
        path = os.path.join(directory, f"{LOCK_PREFIX}{pid}{LOCK_SUFFIX}")
        # lock a temp file, then rename it into place: a reaper never sees an unlocked new file
        tmp = os.path.join(directory, f"{TEMP_PREFIX}{pid}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.write(fd, f"{pid}\n".encode())
            os.rename(tmp, path)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _registration = _Registration(pid, fd, path)


def _gone(registration: _Registration) -> bool:
    """Whether the lock file is no longer at its path (stat only: opening it would drop the
    lock, see the module docstring)."""
    try:
        return not same_file(os.stat(registration.path), os.fstat(registration.fd))
    except FileNotFoundError:
        return True


def after_fork_in_child() -> None:
    """``os.register_at_fork(after_in_child=...)``: the child has a new pid and no lock."""
    global _registration_lock
    _registration_lock = threading.Lock()  # another parent thread may have held it at fork
    register_process()


def count_error(where: n.Where) -> None:
    """Count a contained failure of otel-agents itself (``internal_errors_total{where}``)."""
    from .._export.metrics import count_internal_error  # the metrics import this module

    count_internal_error(where)
