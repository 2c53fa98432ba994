"""This process's files in ``PROMETHEUS_MULTIPROC_DIR``: made before the first metric needs them,
and made again when livekit's worker empties the directory under them.

``python agent.py start`` imports the agent module (so ``init()`` runs and this process's
``counter_<pid>.db``, ``gauge_livesum_<pid>.db``... and liveness lock file exist), and only
then does ``AgentServer.run()`` create the directory if needed and delete every file in it.
The process keeps writing to the deleted files, so its metrics (the jobs of a thread executor
included) and its liveness vanish from every scrape. :func:`restore` puts them back: each
metric file is rewritten at its path with its current content, byte for byte, and swapped in
under prometheus_client's own lock, so every value keeps its place and what was counted before
the wipe is counted once; then the liveness lock is taken again on a new file.

``restore`` runs when a livekit ``AgentServer`` emits ``worker_started`` (after its clean-up),
and is cheap enough to run again whenever in doubt: a file still in place is left alone.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
from typing import Any

from prometheus_client import values

from .. import names as n
from . import liveness

logger = logging.getLogger(n.LOGGER_NAME)


def ensure_directory() -> None:
    """Create the multiprocess directory if it is set and missing (livekit creates it only
    later, in ``AgentServer.run``, and prometheus_client cannot create a file in a missing one).
    Never raises: a directory that cannot be made is reported by the first metric file."""
    directory = liveness.multiproc_dir()
    if not directory or os.path.isdir(directory):
        return
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        logger.warning("otel_agents: cannot create PROMETHEUS_MULTIPROC_DIR %s: %s", directory, exc)


def restore() -> int:
    """Rewrite this process's metric files that are no longer at their path, and take the
    liveness lock again if its file is gone. Returns how many metric files were rewritten.
    Never raises: a failure is logged and counted (``where="liveness"``)."""
    restored = 0
    try:
        restored = _restore_metric_files()
    except Exception as exc:  # prometheus_client's internals are not what they were
        logger.warning("otel_agents: cannot restore this process's metric files: %r", exc)
        liveness.count_error(n.WHERE_LIVENESS)
    liveness.register_process(again_if_gone=True)
    return restored


def _closure_cell(function: Any, name: str) -> Any:
    code = function.__code__
    return function.__closure__[code.co_freevars.index(name)].cell_contents


def _restore_metric_files() -> int:
    value_class = values.ValueClass
    if not getattr(value_class, "_multiprocess", False):
        return 0  # metrics are in process memory: nothing on disk to lose
    # prometheus_client keeps one MmapedDict per file kind in the closure that built the value
    # class (values.MultiProcessValue), guarded by that closure's lock
    files: dict[str, Any] = _closure_cell(value_class._MmapedValue__reset, "files")
    lock = _closure_cell(value_class.inc, "lock")
    restored = failed = 0
    with lock:
        for mmaped in list(files.values()):
            try:
                restored += _rewrite_if_gone(mmaped)
            except OSError as exc:  # this file only: the others are restored all the same
                logger.warning("otel_agents: cannot restore %s: %s", mmaped._fname, exc)
                failed += 1
    for _ in range(failed):
        liveness.count_error(n.WHERE_LIVENESS)
    return restored


def _rewrite_if_gone(mmaped: Any) -> bool:
    path: str = mmaped._fname
    handle = mmaped._f
    if handle is None:
        return False  # closed
    try:
        if liveness.same_file(os.stat(path), os.fstat(handle.fileno())):
            return False
    except FileNotFoundError:
        pass
    capacity: int = mmaped._capacity
    content = mmaped._m[: mmaped._used]  # the rest of the file is zeros
    directory, name = os.path.split(path)
    # a name outside the collectors' *.db glob until it is complete
    tmp = os.path.join(directory, f".{name}.{os.getpid()}.restore")
    try:
        with open(tmp, "wb") as f:
            f.write(content)
            f.truncate(capacity)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    new_file = open(path, "a+b")  # noqa: SIM115  owned by the MmapedDict from here on
    try:
        new_map = mmap.mmap(new_file.fileno(), capacity, access=mmap.ACCESS_WRITE)
    except BaseException:
        new_file.close()
        raise
    old_map, old_file = mmaped._m, handle
    mmaped._f, mmaped._m = new_file, new_map
    old_map.close()
    old_file.close()
    return True
