"""Reaping: compact the metric files of dead agent processes in the multiprocess directory.

Two things go wrong in ``PROMETHEUS_MULTIPROC_DIR`` over a worker's lifetime:

* a job process killed abruptly (SIGKILL, OOM) never calls ``mark_process_dead``, so its
  ``live*`` gauge files keep its values (``otel_agents_sessions_active``) forever;
* hundreds of short-lived processes leave hundreds of files, and every scrape reads them all.

:func:`reap` finds the dead processes through their liveness lock files
(:mod:`otel_agents._multiproc.liveness`): a pid is dead only when the reaper can take its lock
itself, and files of pids without a lock file are never touched. It deletes a dead pid's
``gauge_live*`` files (what ``mark_process_dead`` does) and merges its other files into one
``<kind>_compacted.db`` per kind (the rules of :mod:`.dbfile`), which ``MultiProcessCollector``
reads like any process file. The merged file is written under a temporary name,
``os.replace``-d into place, and only then are the dead pid's files and its lock file removed.
A dead pid's file that does not parse is renamed ``*.corrupt`` (out of the collector's ``*.db``
glob, where it would fail every scrape) rather than merged. Reapers in several processes take
turns through ``otel_agents_reaper.lock``.

**The one race.** A reader in *another* process (livekit's own ``/metrics`` handler) that lists
the directory just before a reap and reads the files just after it can, for that one scrape,
see a dead process's values twice (the new compacted file and the not-yet-deleted pid file) or
fail on a pid file that vanished between its listing and its read. The sidecar runs reap and
render one after the other on one thread, so its own scrapes never do. (A pid reused by a new
process while the old one's files are still unreaped is prometheus_client's own problem: the
new process reopens the old files; the reaper only checks that the lock file it locked is still
the one at that path.)
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Final

from .. import names as n
from .._multiproc import liveness
from .dbfile import DELETE, KEEP, CorruptFile, merge, parse_db_name, read_db, rule, write_db

logger = logging.getLogger(n.LOGGER_NAME)

REAPER_LOCK: Final = "otel_agents_reaper.lock"
COMPACTED: Final = "compacted"
#: a registration temp file older than this, and unlocked, was left by a killed process
STALE_TMP_S: Final = 60.0


@dataclass(frozen=True)
class ReapReport:
    """What one :func:`reap` did."""

    dead_pids: tuple[int, ...] = ()  # reaped: files compacted, lock file removed
    live_processes: int = 0  # lock files whose lock is held
    files_merged: int = 0  # dead pids' files folded into compacted files
    files_removed: int = 0  # .db files deleted (merged, and live* gauges)
    files_quarantined: int = 0  # unreadable dead files renamed to *.corrupt
    errors: int = 0
    db_files: int = 0  # .db files left in the directory
    skipped: bool = False  # another reaper held the directory


_reap_lock = threading.Lock()  # POSIX locks do not exclude threads of one process


def reap(directory: str) -> ReapReport:
    """Compact the files of every dead registered process in ``directory``.

    Raises ``OSError`` only when the directory itself cannot be listed; every per-file
    problem is contained and counted in ``errors``.
    """
    with _reap_lock:
        try:
            guard = os.open(
                os.path.join(directory, REAPER_LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666
            )
        except (FileNotFoundError, NotADirectoryError):
            raise  # the directory itself is gone
        except OSError:  # a read-only directory: nothing can be reaped, the scrape still works
            return ReapReport(errors=1, skipped=True)
        try:
            try:
                fcntl.lockf(guard, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # another sidecar is reaping this directory
                return ReapReport(skipped=True)
            return _Reaper(directory).run()
        finally:
            os.close(guard)


class _Reaper:
    """One pass over the directory, under the reaper lock."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.errors = 0
        self.merged = 0
        self.removed = 0
        self.quarantined = 0
        self.created = 0

    def run(self) -> ReapReport:
        locks: dict[str, str] = {}
        files: dict[str, list[tuple[str, str]]] = defaultdict(list)  # pid -> [(prefix, path)]
        temps: list[str] = []
        db_files = 0
        with os.scandir(self.directory) as it:
            for entry in it:
                name = entry.name
                if (lock_pid := liveness.lock_file_pid(name)) is not None:
                    locks[lock_pid] = entry.path
                elif name.endswith(".db"):
                    db_files += 1
                    parsed = parse_db_name(name)
                    if parsed is not None and parsed[1].isdigit():
                        files[parsed[1]].append((parsed[0], entry.path))
                elif liveness.is_registration_temp(name):
                    temps.append(entry.path)

        dead: dict[str, int] = {}  # pid -> fd holding its (now our) lock
        live = 0
        own = str(os.getpid())
        try:
            for pid, path in locks.items():
                if pid == own:  # our own lock: taking it again would succeed, and closing drop it
                    live += 1
                    continue
                fd = self._lock_if_dead(path)
                if fd is None:
                    live += 1
                else:
                    dead[pid] = fd
            incomplete = self._compact(dead, files)
            reaped = []
            for pid, fd in dead.items():
                if pid not in incomplete:
                    self._remove_lock(locks[pid], fd)
                    reaped.append(int(pid))
        finally:
            for fd in dead.values():
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._clean_temps(temps)
        return ReapReport(
            dead_pids=tuple(sorted(reaped)),
            live_processes=live,
            files_merged=self.merged,
            files_removed=self.removed,
            files_quarantined=self.quarantined,
            errors=self.errors,
            db_files=db_files - self.removed - self.quarantined + self.created,
        )

    def _lock_if_dead(self, path: str) -> int | None:
        """An fd holding ``path``'s lock when its owner is dead, else ``None``."""
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError:
            self.errors += 1
            return None
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                self.errors += 1
            return None  # held: alive
        try:
            if not liveness.same_file(os.stat(path), os.fstat(fd)):
                os.close(fd)  # replaced by a new process with the same pid
                return None
        except OSError:
            os.close(fd)
            return None
        return fd

    def _compact(self, dead: dict[str, int], files: dict[str, list[tuple[str, str]]]) -> set[str]:
        """Merge or delete the dead pids' files; the pids whose files were not all handled."""
        groups: dict[str, list[tuple[str, str]]] = defaultdict(list)  # prefix -> [(pid, path)]
        incomplete: set[str] = set()
        for pid in dead:
            for prefix, path in files.get(pid, ()):
                how = rule(prefix)
                if how == DELETE:
                    if not self._unlink(path):
                        incomplete.add(pid)
                elif how != KEEP:
                    groups[prefix].append((pid, path))
        for prefix, members in groups.items():
            incomplete |= self._merge_group(prefix, members)
        return incomplete

    def _merge_group(self, prefix: str, members: list[tuple[str, str]]) -> set[str]:
        how = rule(prefix)
        target = os.path.join(self.directory, f"{prefix}_{COMPACTED}.db")
        values: dict[str, tuple[float, float]] = {}
        existed = os.path.exists(target)
        try:
            if existed:
                merge(how, values, read_db(target))
        except (OSError, CorruptFile) as exc:
            logger.warning("otel_agents: cannot read %s: %s", target, exc)
            self.errors += 1
            return {pid for pid, _ in members}
        merged: set[str] = set()
        for _pid, path in members:
            try:
                merge(how, values, read_db(path))
                merged.add(path)
            except CorruptFile as exc:
                logger.warning("otel_agents: quarantined %s", exc)
                self._quarantine(path)
            except FileNotFoundError:
                pass
            except OSError:
                self.errors += 1
        if values or existed:
            tmp = os.path.join(self.directory, f".{prefix}_{COMPACTED}.tmp")
            try:
                write_db(tmp, ((k, v, t) for k, (v, t) in values.items()))
                os.replace(tmp, target)
            except Exception as exc:
                logger.warning("otel_agents: cannot write %s: %r", target, exc)
                self.errors += 1
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                return {pid for pid, _ in members}
            self.created += not existed
        incomplete = set()
        for pid, path in members:
            if path in merged:
                self.merged += 1
                if not self._unlink(path):
                    incomplete.add(pid)
        return incomplete

    def _unlink(self, path: str) -> bool:
        try:
            os.unlink(path)
        except FileNotFoundError:
            return True
        except OSError:
            self.errors += 1
            return False
        self.removed += 1
        return True

    def _quarantine(self, path: str) -> None:
        # an unreadable file breaks every scrape: move it out of the collector's glob, keep it
        try:
            os.replace(path, path + ".corrupt")
            self.quarantined += 1
        except OSError:
            self.errors += 1

    def _remove_lock(self, path: str, fd: int) -> None:
        try:
            if liveness.same_file(os.stat(path), os.fstat(fd)):
                os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError:
            self.errors += 1

    def _clean_temps(self, temps: list[str]) -> None:
        """Remove registration temp files of processes killed mid-registration."""
        now = time.time()
        for path in temps:
            try:
                if now - os.stat(path).st_mtime < STALE_TMP_S:
                    continue
                fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
                try:
                    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    os.unlink(path)
                finally:
                    os.close(fd)
            except OSError:
                continue
