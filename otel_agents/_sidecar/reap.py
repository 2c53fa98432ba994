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
reads like any process file. The merged file is written under a fresh random name, created
exclusively, ``os.replace``-d into place and checked to be the file written, and only then are
the dead pid's files and its lock file removed. Reapers in several processes take turns through
``otel_agents_reaper.lock``; dead pids are reaped a batch at a time, so the descriptors held
stay few however many processes died.

**Hostile content.** Every job process can write to the directory, so nothing in it is trusted:
every name is opened relative to the directory's descriptor without following a symbolic link
(``O_NOFOLLOW``) and must be a regular file. A dead pid's file that is not a sound metric file
(garbage, a symbolic link, a directory named ``*.db``, an unknown kind) is renamed
``<name>.corrupt``, out of every collector's ``*.db`` glob, rather than merged; so is a
compacted file that does not parse (found while merging into it, or named in ``suspects`` by
the render that skipped it), which compaction then starts afresh. The reaper's own lock file,
when it is not a regular file, is moved aside the same way and made again.

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
import stat
import threading
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from typing import Final

from .. import names as n
from .._multiproc import liveness
from .dbfile import (
    DELETE,
    KEEP,
    CorruptFile,
    encode_db,
    merge,
    metric_file,
    parse_db_name,
    read_db,
    rule,
)
from .dirfiles import LOCK_FLAGS, DirectoryFiles

logger = logging.getLogger(n.LOGGER_NAME)

REAPER_LOCK: Final = "otel_agents_reaper.lock"
COMPACTED: Final = "compacted"
#: dead pids' lock descriptors held at once
LOCK_BATCH: Final = 16


@dataclass(frozen=True)
class ReapReport:
    """What one :func:`reap` did."""

    dead_pids: tuple[int, ...] = ()  # reaped: files compacted, lock file removed
    live_processes: int = 0  # lock files whose lock is held
    files_merged: int = 0  # dead pids' files folded into compacted files
    files_removed: int = 0  # .db files deleted (merged, and live* gauges)
    files_quarantined: int = 0  # unsound files renamed to *.corrupt
    errors: int = 0
    db_files: int = 0  # .db files left in the directory
    skipped: bool = False  # another reaper held the directory


_reap_lock = threading.Lock()  # POSIX locks do not exclude threads of one process


def is_compacted(name: str) -> bool:
    """Whether ``name`` is one of the reaper's ``<kind>_compacted.db`` files."""
    return name.endswith(f"_{COMPACTED}.db")


def reap(
    directory: str, *, dir_fd: int | None = None, suspects: Collection[str] = ()
) -> ReapReport:
    """Compact the files of every dead registered process in ``directory``.

    ``dir_fd``: the directory, already open; ``suspects``: names of compacted files a render
    could not read, checked again and moved aside if they still do not parse. Raises
    ``OSError`` only when the directory itself cannot be opened or listed; every per-file
    problem is contained and counted.
    """
    with _reap_lock:
        own = None
        if dir_fd is None:
            dir_fd = own = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            reaper = _Reaper(dir_fd)
            guard = reaper.open_guard()
            if guard is None:  # a read-only directory: nothing can be reaped, scrapes still work
                return ReapReport(
                    errors=reaper.errors, files_quarantined=reaper.quarantined, skipped=True
                )
            try:
                try:
                    fcntl.lockf(guard, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:  # another sidecar is reaping this directory
                    return ReapReport(files_quarantined=reaper.quarantined, skipped=True)
                return reaper.run(suspects)
            finally:
                os.close(guard)
        finally:
            if own is not None:
                os.close(own)


class _NotALock(Exception):
    """A lock file name on something that is not a regular file."""


class _Reaper(DirectoryFiles):
    """One pass over the directory, under the reaper lock. Every name is relative to ``dir``."""

    def __init__(self, dir_fd: int) -> None:
        super().__init__(dir_fd)
        self.merged = 0

    def open_guard(self) -> int | None:
        """The reaper lock file, opened (not locked); ``None`` when it cannot be."""
        for attempt in range(2):
            try:
                fd = os.open(REAPER_LOCK, LOCK_FLAGS | os.O_CREAT, 0o666, dir_fd=self.dir)
            except OSError as exc:
                # a read-only directory, permissions... (ELOOP: a symbolic link in its place)
                if exc.errno not in (errno.ELOOP, errno.EISDIR):
                    self.errors += 1
                    return None
            else:
                if _is_regular(fd):
                    return fd
                os.close(fd)  # a FIFO, a socket...
            # not a file to lock: move it aside and make the lock file again, once
            if attempt == 1:  # something else again, already
                self.errors += 1
                return None
            if not self._quarantine(REAPER_LOCK, db=False):
                return None
        return None

    def run(self, suspects: Collection[str]) -> ReapReport:
        locks: dict[str, str] = {}
        files: dict[str, list[tuple[str, str]]] = defaultdict(list)  # pid -> [(prefix, name)]
        temps: list[str] = []
        leftovers: list[str] = []
        db_files = 0
        with os.scandir(self.dir) as it:
            for entry in it:
                name = entry.name
                if (lock_pid := liveness.lock_file_pid(name)) is not None:
                    locks[lock_pid] = name
                elif name.endswith(".db"):
                    db_files += 1
                    parsed = parse_db_name(name)
                    if parsed is not None:
                        files[parsed[1]].append((parsed[0], name))
                elif liveness.is_registration_temp(name):
                    temps.append(name)
                elif _is_compaction_temp(name):
                    leftovers.append(name)
        for name in leftovers:  # a reaper killed mid-write: we hold the lock, nobody writes them
            self._unlink(name, db=False)
        for name in suspects:
            if is_compacted(name):
                self._read_compacted(name)  # moved aside if it still does not parse

        live = 0
        own = str(os.getpid())
        reaped: list[int] = []
        batch: dict[str, int] = {}  # pid -> fd holding its (now our) lock
        try:
            for pid, name in locks.items():
                if pid == own:  # our own lock: taking it again would succeed, and closing drop it
                    live += 1
                    continue
                try:
                    fd = self._lock_if_dead(name)
                except _NotALock:
                    continue
                if fd is None:
                    live += 1
                    continue
                batch[pid] = fd
                if len(batch) >= LOCK_BATCH:
                    reaped += self._reap_batch(batch, locks, files)
            reaped += self._reap_batch(batch, locks, files)
        finally:
            for fd in batch.values():
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
            db_files=db_files - self.removed + self.db_delta,
        )

    def _reap_batch(
        self, batch: dict[str, int], locks: dict[str, str], files: dict[str, list[tuple[str, str]]]
    ) -> list[int]:
        """Compact the files of the dead pids in ``batch``, remove their locks, empty it."""
        try:
            incomplete = self._compact(batch, files)
            reaped = []
            for pid, fd in batch.items():
                if pid not in incomplete:
                    self._remove_lock(locks[pid], fd)
                    reaped.append(int(pid))
            return reaped
        finally:
            for fd in batch.values():
                with contextlib.suppress(OSError):
                    os.close(fd)
            batch.clear()

    def _lock_if_dead(self, name: str) -> int | None:
        """An fd holding ``name``'s lock when its owner is dead, else ``None``."""
        try:
            fd = os.open(name, LOCK_FLAGS, dir_fd=self.dir)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EISDIR):
                self._quarantine(name, db=False)
                raise _NotALock from None
            self.errors += 1
            return None
        try:
            st = os.fstat(fd)
        except OSError:
            os.close(fd)
            self.errors += 1
            return None
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            self._quarantine(name, db=False)
            raise _NotALock
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                self.errors += 1
            return None  # held: alive
        if not self._still(name, st):
            os.close(fd)  # replaced by a new process with the same pid
            return None
        return fd

    def _compact(self, dead: dict[str, int], files: dict[str, list[tuple[str, str]]]) -> set[str]:
        """Merge or delete the dead pids' files; the pids whose files were not all handled."""
        groups: dict[str, list[tuple[str, str]]] = defaultdict(list)  # prefix -> [(pid, name)]
        incomplete: set[str] = set()
        for pid in dead:
            for prefix, name in files.get(pid, ()):
                how = rule(prefix)
                if how == DELETE:
                    done = self._unlink(name)
                elif how == KEEP:  # per pid by design: kept, if sound
                    done = self._keep_if_sound(name)
                else:
                    groups[prefix].append((pid, name))
                    continue
                if not done:
                    incomplete.add(pid)
        for prefix, members in groups.items():
            incomplete |= self._merge_group(prefix, members)
        return incomplete

    def _keep_if_sound(self, name: str) -> bool:
        """A kept file (``gauge_all``) of a dead pid stays if sound, else it is moved aside."""
        try:
            if metric_file(name) is None:
                raise CorruptFile(f"{name}: not a metric file name")
            read_db(name, dir_fd=self.dir)
        except CorruptFile as exc:
            logger.warning("otel_agents: moved aside %s", exc)
            return self._quarantine(name)
        except FileNotFoundError:
            pass
        except OSError:
            self.errors += 1
            return False
        return True

    def _read_compacted(self, target: str) -> list[tuple[str, float, float]] | None:
        """The entries of compacted file ``target`` (``[]`` when absent, or just moved aside
        for not parsing); ``None`` when it cannot be read now."""
        try:
            return read_db(target, dir_fd=self.dir)
        except FileNotFoundError:
            return []
        except CorruptFile as exc:
            logger.warning("otel_agents: moved aside %s", exc)
            return [] if self._quarantine(target) else None
        except OSError as exc:
            logger.warning("otel_agents: cannot read %s: %s", target, exc)
            self.errors += 1
            return None

    def _merge_group(self, prefix: str, members: list[tuple[str, str]]) -> set[str]:
        how = rule(prefix)
        target = f"{prefix}_{COMPACTED}.db"
        values: dict[str, tuple[float, float]] = {}
        base = self._read_compacted(target)
        if base is None:
            return {pid for pid, _ in members}
        existed = self._exists(target)
        merge(how, values, base)
        merged: set[str] = set()
        incomplete: set[str] = set()
        for pid, name in members:
            try:
                merge(how, values, read_db(name, dir_fd=self.dir))
                merged.add(name)
            except CorruptFile as exc:
                logger.warning("otel_agents: moved aside %s", exc)
                if not self._quarantine(name):
                    incomplete.add(pid)
            except FileNotFoundError:
                pass
            except OSError:
                self.errors += 1
                incomplete.add(pid)
        if values or existed:
            if not self._replace(target, encode_db((k, v, t) for k, (v, t) in values.items())):
                self.errors += 1
                return {pid for pid, _ in members}
            self.db_delta += not existed
        for pid, name in members:
            if name in merged:
                self.merged += 1
                if not self._unlink(name):
                    incomplete.add(pid)
        return incomplete

    def _remove_lock(self, name: str, fd: int) -> None:
        try:
            if self._still(name, os.fstat(fd)):
                os.unlink(name, dir_fd=self.dir)
        except FileNotFoundError:
            pass
        except OSError:
            self.errors += 1


def _is_regular(fd: int) -> bool:
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        return False


def _is_compaction_temp(name: str) -> bool:
    """``.counter_compacted.db.<random>.tmp`` (and the older ``.counter_compacted.tmp``)."""
    return name.startswith(".") and name.endswith(".tmp") and f"_{COMPACTED}." in name
