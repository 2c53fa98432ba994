"""Process liveness and dead-process compaction for ``PROMETHEUS_MULTIPROC_DIR``.

livekit runs every job in its own process, and each process writes prometheus_client's mmap
files (``counter_<pid>.db``, ``histogram_<pid>.db``, ``gauge_livesum_<pid>.db``...) into the
multiprocess directory. Two things go wrong over a worker's lifetime:

* a job process killed abruptly (SIGKILL, OOM) never calls ``mark_process_dead``, so its
  ``live*`` gauge files keep its values (``otel_agents_sessions_active``) forever;
* hundreds of short-lived processes leave hundreds of files, and every scrape reads them all.

**Liveness.** :func:`register_process` makes each process hold an exclusive POSIX record lock
(``fcntl.lockf``) on ``otel_agents_alive_<pid>.lock`` for its whole life. The kernel drops the
lock when the process dies, however it dies; the lock is not inherited by fork (a forked child
registers itself again); and it works across containers that share a local volume. A pid is
dead only when the reaper can take that lock itself. Nothing is guessed from ``os.kill(pid, 0)``
(a sidecar may not share the pid namespace), and files of pids without a lock file are never
touched. The lock file is deliberately left behind at a clean exit: it is what tells the
reaper that this process's files can be compacted. One POSIX trap: a process loses its locks on
a file when it closes *any* descriptor of that file, so nothing in a registered process may
open its own lock file (the reaper skips its own pid for that reason).

**Reaping.** :func:`reap` deletes a dead pid's ``gauge_live*`` files (what
``mark_process_dead`` does) and merges its other files into one ``<kind>_compacted.db`` per
kind, which ``MultiProcessCollector`` reads like any process file: counters, histograms,
summaries and ``gauge_sum`` are summed, ``gauge_max``/``gauge_min`` keep the extreme,
``gauge_mostrecent`` keeps the latest timestamp; ``gauge_all`` files stay (they are per pid by
design). The merged file is written under a temporary name, ``os.replace``-d into place, and
only then are the dead pid's files and its lock file removed. Sums are re-associated, so a
total is bit-identical for integers and binary fractions and may differ in the last ulp
otherwise. A dead pid's file that does not parse is renamed ``*.corrupt`` (out of the
collector's ``*.db`` glob, where it would fail every scrape) rather than merged. Reapers in
several processes take turns through ``otel_agents_reaper.lock``.

**The one race.** A reader in *another* process (livekit's own ``/metrics`` handler) that lists
the directory just before a reap and reads the files just after it can, for that one scrape,
see a dead process's values twice (the new compacted file and the not-yet-deleted pid file) or
fail on a pid file that vanished between its listing and its read. The sidecar runs reap and
render one after the other on one thread, so its own scrapes never do. (A pid reused by a new
process while the old one's files are still unreaped is prometheus_client's own problem: the
new process reopens the old files; the reaper only checks that the lock file it locked is still
the one at that path.)

:func:`render` reaps, then renders the directory plus the sidecar's own metrics.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import logging
import os
import secrets
import stat
import struct
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Final

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector

from . import names as n

logger = logging.getLogger(n.LOGGER_NAME)

LOCK_PREFIX: Final = "otel_agents_alive_"
LOCK_SUFFIX: Final = ".lock"
REAPER_LOCK: Final = "otel_agents_reaper.lock"
COMPACTED: Final = "compacted"
#: a registration temp file older than this, and unlocked, was left by a killed process
STALE_TMP_S: Final = 60.0

Encoder = Callable[[CollectorRegistry], bytes]


def multiproc_dir() -> str | None:
    """The multiprocess directory in force, or ``None`` when multiprocess mode is off."""
    return (
        os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        or os.environ.get("prometheus_multiproc_dir")  # noqa: SIM112  the legacy spelling
        or None
    )


# --- liveness --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Registration:
    pid: int
    fd: int
    path: str


_registration: _Registration | None = None
_registration_lock = threading.Lock()


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
        count_error()


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
        tmp = os.path.join(directory, f".{LOCK_PREFIX}{pid}.{secrets.token_hex(4)}.tmp")
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
        return not _same_file(os.stat(registration.path), os.fstat(registration.fd))
    except FileNotFoundError:
        return True


def after_fork_in_child() -> None:
    """``os.register_at_fork(after_in_child=...)``: the child has a new pid and no lock."""
    global _registration_lock
    _registration_lock = threading.Lock()  # another parent thread may have held it at fork
    register_process()


def count_error() -> None:
    with contextlib.suppress(Exception):
        from . import _labels
        from ._metrics import get_metrics

        get_metrics().internal_errors.inc((_labels.where(n.WHERE_LIVENESS),))


# --- reading and writing prometheus_client's mmap files ----------------------------------------

_INT = struct.Struct("i")
#: a file shorter than its header is still being created: it has no samples yet
_HEADER_BYTES: Final = 8
_TWO_DOUBLES = struct.Struct("dd")
_valid_keys: set[str] = set()


class CorruptFile(ValueError):
    """A ``.db`` file that does not parse as prometheus_client's mmap format."""


def read_db(path: str) -> list[tuple[str, float, float]]:
    """``(key, value, timestamp)`` of every entry of a prometheus_client mmap file.

    The layout of ``prometheus_client.mmap_dict``, read with bounds checks: a hostile or
    truncated file raises :class:`CorruptFile` instead of looping or reading out of range.
    An empty file (a process killed while creating it) has no entries.
    """
    with open(path, "rb") as f:
        head = f.read(8)
        if not head:
            return []
        if len(head) < 8:
            raise CorruptFile(f"{path}: truncated header")
        used = _INT.unpack_from(head, 0)[0]
        if used == 0:
            return []
        if used < 8:
            raise CorruptFile(f"{path}: bad used size {used}")
        data = head + f.read(used - 8)
    if len(data) < used:
        raise CorruptFile(f"{path}: used size {used} beyond the file")
    out = []
    pos = 8
    while pos < used:
        if pos + 4 > used:
            raise CorruptFile(f"{path}: truncated entry at {pos}")
        length = _INT.unpack_from(data, pos)[0]
        pos += 4
        if length < 0 or pos + length > used:
            raise CorruptFile(f"{path}: bad key length {length} at {pos - 4}")
        try:
            key = data[pos : pos + length].decode()
        except UnicodeDecodeError as exc:
            raise CorruptFile(f"{path}: key is not UTF-8 at {pos}") from exc
        pos += length + (8 - (length + 4) % 8)  # keys are padded to 8-byte alignment
        if pos + 16 > used:
            raise CorruptFile(f"{path}: truncated value at {pos}")
        value, timestamp = _TWO_DOUBLES.unpack_from(data, pos)
        pos += 16
        _check_key(path, key)
        out.append((key, value, timestamp))
    return out


def _check_key(path: str, key: str) -> None:
    """Keys are ``json.dumps([metric_name, sample_name, labels, help])``; anything else would
    break every later scrape once merged, so it is refused here."""
    if key in _valid_keys:
        return
    try:
        parsed = json.loads(key)
    except ValueError as exc:
        raise CorruptFile(f"{path}: key is not JSON") from exc
    if not (
        isinstance(parsed, list)
        and len(parsed) == 4
        and isinstance(parsed[0], str)
        and isinstance(parsed[1], str)
        and isinstance(parsed[2], dict)
        and all(isinstance(v, str) for v in parsed[2].values())
        and isinstance(parsed[3], str)
    ):
        raise CorruptFile(f"{path}: key is not [metric, name, labels, help]")
    if len(_valid_keys) < 100_000:
        _valid_keys.add(key)


def write_db(path: str, entries: Iterable[tuple[str, float, float]]) -> None:
    """Write entries to a new mmap file at ``path`` (replacing any file there)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    mmap = MmapedDict(path)  # type: ignore[no-untyped-call]
    try:
        for key, value, timestamp in entries:
            mmap.write_value(key, value, timestamp)  # type: ignore[no-untyped-call]
    finally:
        mmap.close()  # type: ignore[no-untyped-call]


# --- merge rules -------------------------------------------------------------------------------

SUM: Final = "sum"
MAX: Final = "max"
MIN: Final = "min"
MOSTRECENT: Final = "mostrecent"
DELETE: Final = "delete"  # live* gauges: gone with their process
KEEP: Final = "keep"  # gauge "all" (per pid by design) and anything unknown

_RULES: Final[dict[str, str]] = {
    "counter": SUM,
    "histogram": SUM,
    "summary": SUM,
    "gauge_sum": SUM,
    "gauge_max": MAX,
    "gauge_min": MIN,
    "gauge_mostrecent": MOSTRECENT,
    "gauge_all": KEEP,
    "gauge_liveall": DELETE,
    "gauge_livesum": DELETE,
    "gauge_livemax": DELETE,
    "gauge_livemin": DELETE,
    "gauge_livemostrecent": DELETE,
}


def rule(prefix: str) -> str:
    """What reaping does with a dead pid's ``<prefix>_<pid>.db``."""
    return _RULES.get(prefix, KEEP)


def parse_db_name(name: str) -> tuple[str, str] | None:
    """``gauge_livesum_123.db`` -> ``("gauge_livesum", "123")``; ``None`` for non-``.db``."""
    if not name.endswith(".db"):
        return None
    prefix, sep, pid = name[:-3].rpartition("_")
    return (prefix, pid) if sep and prefix else None


def merge(
    how: str, into: dict[str, tuple[float, float]], entries: Iterable[tuple[str, float, float]]
) -> None:
    """Fold ``entries`` into ``into`` (key -> (value, timestamp)) by the rule ``how``."""
    for key, value, ts in entries:
        old = into.get(key)
        if old is None:
            into[key] = (value, ts)
        elif how == SUM:
            into[key] = (old[0] + value, max(old[1], ts))
        elif how == MAX:
            if value > old[0]:
                into[key] = (value, ts)
        elif how == MIN:
            if value < old[0]:
                into[key] = (value, ts)
        elif how == MOSTRECENT:
            if ts > old[1]:
                into[key] = (value, ts)
        else:
            raise ValueError(f"not a merge rule: {how}")


# --- reaping -----------------------------------------------------------------------------------


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
    seconds: float = 0.0
    skipped: bool = False  # another reaper held the directory


_reap_lock = threading.Lock()  # POSIX locks do not exclude threads of one process


def reap(directory: str) -> ReapReport:
    """Compact the files of every dead registered process in ``directory``.

    Raises ``OSError`` only when the directory itself cannot be listed; every per-file
    problem is contained and counted in ``errors``.
    """
    start = time.perf_counter()
    with _reap_lock:
        try:
            guard = os.open(
                os.path.join(directory, REAPER_LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666
            )
        except (FileNotFoundError, NotADirectoryError):
            raise  # the directory itself is gone
        except OSError:  # a read-only directory: nothing can be reaped, the scrape still works
            return ReapReport(errors=1, skipped=True, seconds=time.perf_counter() - start)
        try:
            try:
                fcntl.lockf(guard, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # another sidecar is reaping this directory
                return ReapReport(skipped=True, seconds=time.perf_counter() - start)
            report = _Reaper(directory).run()
        finally:
            os.close(guard)
    return dataclasses.replace(report, seconds=time.perf_counter() - start)


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
                if name.startswith(LOCK_PREFIX) and name.endswith(LOCK_SUFFIX):
                    pid = name[len(LOCK_PREFIX) : -len(LOCK_SUFFIX)]
                    if pid.isdigit():
                        locks[pid] = entry.path
                elif name.endswith(".db"):
                    db_files += 1
                    parsed = parse_db_name(name)
                    if parsed is not None and parsed[1].isdigit():
                        files[parsed[1]].append((parsed[0], entry.path))
                elif name.startswith("." + LOCK_PREFIX) and name.endswith(".tmp"):
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
            if not _same_file(os.stat(path), os.fstat(fd)):
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
            if _same_file(os.stat(path), os.fstat(fd)):
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


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_ino, a.st_dev) == (b.st_ino, b.st_dev)


# --- rendering ---------------------------------------------------------------------------------


class Unavailable(Exception):
    """The source cannot be scraped now; the message is a one-line reason."""


def directory_problem(directory: str) -> str | None:
    """A one-line reason why ``directory`` cannot be scraped, or ``None``."""
    try:
        st = os.stat(directory)
    except OSError as exc:
        return f"multiprocess directory {directory}: {_why(exc)}"
    if not stat.S_ISDIR(st.st_mode):
        return f"multiprocess directory {directory}: not a directory"
    if not os.access(directory, os.R_OK | os.X_OK):
        return f"multiprocess directory {directory}: permission denied"
    return None


def _why(exc: OSError) -> str:
    why = exc.strerror or str(exc) or type(exc).__name__
    return why[:1].lower() + why[1:]


class _SelfMetrics:
    """The sidecar's own metrics, appended to each scrape of the directory."""

    def __init__(self) -> None:
        self.render_seconds = 0.0
        self.live_processes = 0
        self.db_files = 0
        self.reaped = 0
        self.reap_errors = 0

    def update(self, report: ReapReport) -> None:
        self.live_processes = report.live_processes
        self.db_files = report.db_files
        self.reaped += len(report.dead_pids)
        self.reap_errors += report.errors

    def describe(self) -> list[Metric]:
        return []  # no name checks against the directory's metrics

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            n.SIDECAR_RENDER_SECONDS,
            "Duration of the previous /metrics render of the sidecar, reaping included.",
            value=self.render_seconds,
        )
        yield GaugeMetricFamily(
            n.SIDECAR_LIVE_PROCESSES,
            "Processes holding a liveness lock in the multiprocess directory at the last reap.",
            value=self.live_processes,
        )
        yield GaugeMetricFamily(
            n.SIDECAR_DB_FILES,
            "Metric files in the multiprocess directory after the last reap.",
            value=self.db_files,
        )
        yield CounterMetricFamily(
            n.SIDECAR_REAPED_PROCESSES,
            "Dead processes whose metric files the sidecar compacted.",
            value=self.reaped,
        )
        yield CounterMetricFamily(
            n.SIDECAR_REAP_ERRORS,
            "Files the sidecar could not read, merge or remove while reaping.",
            value=self.reap_errors,
        )


class _ReadyFiles:
    """``MultiProcessCollector`` over the files that can be read now.

    prometheus_client creates a process's file, then sizes it: a scrape in between would
    fail as a whole on one empty file (prometheus/client_python#1199). A file too short to
    hold the header has no samples yet; skip it. A file deleted between listing and reading
    (a process exiting through ``mark_process_dead``) has nothing to add either: list again.
    """

    _ATTEMPTS: Final = 3

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        for attempt in range(self._ATTEMPTS):
            try:
                return MultiProcessCollector.merge(self._files(), accumulate=True)  # type: ignore[no-untyped-call,no-any-return]
            except FileNotFoundError:
                if attempt == self._ATTEMPTS - 1:
                    raise
        return []  # unreachable

    def _files(self) -> list[str]:
        files = []
        for entry in os.scandir(self.directory):
            if not entry.name.endswith(".db"):
                continue
            try:
                # a directory (or anything but a file) named *.db would fail the whole scrape
                if entry.is_file() and entry.stat().st_size >= _HEADER_BYTES:
                    files.append(entry.path)
            except FileNotFoundError:
                continue
        return files


class DirectorySource:
    """Renders a multiprocess directory: reap, then collect every file, plus self-metrics.

    Reap and render are serialised per source, so this source never double counts.
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.last_reap: ReapReport | None = None
        self._self = _SelfMetrics()
        self._lock = threading.Lock()

    def problem(self) -> str | None:
        return directory_problem(self.directory)

    def render(self, encoder: Encoder) -> bytes:
        with self._lock:
            start = time.perf_counter()
            problem = self.problem()
            if problem is not None:
                raise Unavailable(problem)
            try:
                report = reap(self.directory)
            except OSError as exc:
                raise Unavailable(f"multiprocess directory {self.directory}: {_why(exc)}") from exc
            self.last_reap = report
            self._self.update(report)
            registry = CollectorRegistry(auto_describe=False)
            try:
                registry.register(_ReadyFiles(self.directory))
                registry.register(self._self)
                body = encoder(registry)
            except (OSError, ValueError) as exc:
                problem = self.problem()  # the directory vanished mid-render?
                if problem is not None:
                    raise Unavailable(problem) from exc
                raise
            self._self.render_seconds = time.perf_counter() - start
            return body


_sources: dict[str, DirectorySource] = {}
_sources_lock = threading.Lock()


def source(directory: str) -> DirectorySource:
    """The process-wide source of ``directory`` (its self-metrics persist across renders)."""
    key = os.path.abspath(directory)
    with _sources_lock:
        found = _sources.get(key)
        if found is None:
            found = _sources[key] = DirectorySource(directory)
        return found


def render(directory: str, *, openmetrics: bool = False) -> bytes:
    """Reap ``directory``, then render every process's metrics and the sidecar's own.

    Raises :class:`Unavailable` (one-line reason) when the directory cannot be read.
    """
    from prometheus_client import exposition
    from prometheus_client.openmetrics import exposition as om

    encode: Encoder = om.generate_latest if openmetrics else exposition.generate_latest
    return source(directory).render(encode)
