"""Rendering the multiprocess directory for ``/metrics``: reap, then collect, plus self-metrics.

:func:`render` (and :class:`DirectorySource`, what the sidecar's server holds) first reaps the
dead processes' files (:mod:`.reap`), then reads every metric file left and merges them as
prometheus_client's ``MultiProcessCollector`` does (same samples, same values), plus the
sidecar's own ``otel_agents_sidecar_*`` metrics. Reap and render are serialised per directory,
so a render never counts a dead process twice. The reading and merging is :mod:`.collect`.

Each file is read and checked on its own (:func:`.dbfile.read_fd`, opened without following a
symbolic link): a file that is not a sound metric file (garbage, a symbolic link, a directory
named ``*.db``, a size beyond bounds, a name the collector cannot read, samples that would break
the merge) is skipped for that render and counted (``otel_agents_sidecar_skipped_files_total``),
``/healthz`` says ``degraded``, and every other file's series are served. A dead process's
unsound file, or an unsound compacted file, is then moved aside by the reaper.

A directory that cannot be read raises :class:`Unavailable`.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Final, Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from .. import names as n
from .collect import Skipped, collect, why
from .reap import ReapReport, is_compacted, reap

#: what other modules import from here (``collect`` and ``why`` live in :mod:`.collect`)
__all__ = [
    "Collector",
    "Encoder",
    "Unavailable",
    "collect",
    "directory_problem",
    "render",
    "source",
    "why",
]

logger = logging.getLogger("otel_agents.sidecar")

#: renders a registry in one exposition format (prometheus_client's ``generate_latest``...)
Encoder = Callable[[CollectorRegistry], bytes]
#: how often a render that skips files may say so in the log
SKIP_LOG_INTERVAL_S: Final = 60.0


class Collector(Protocol):
    def collect(self) -> Iterable[Metric]: ...


class Unavailable(Exception):
    """The source cannot be scraped now.

    ``str()`` is a one-line reason without paths, fit for an unauthenticated client;
    ``detail`` is the same with the path, for the log.
    """

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(reason)
        self.detail = detail or reason


def directory_problem(directory: str) -> str | None:
    """A one-line reason why ``directory`` cannot be scraped, or ``None``."""
    try:
        st = os.stat(directory)
    except OSError as exc:
        return f"multiprocess directory {directory}: {why(exc)}"
    if not stat.S_ISDIR(st.st_mode):
        return f"multiprocess directory {directory}: not a directory"
    if not os.access(directory, os.R_OK | os.X_OK):
        return f"multiprocess directory {directory}: permission denied"
    return None


def _without_path(problem: str) -> str:
    """``multiprocess directory /x: no such file...`` -> ``multiprocess directory: no such...``"""
    return "multiprocess directory: " + problem.rpartition(": ")[2]


class _SelfMetrics:
    """The sidecar's own metrics, appended to each scrape of the directory."""

    def __init__(self) -> None:
        self.render_seconds = 0.0
        self.live_processes = 0
        self.db_files = 0
        self.reaped = 0
        self.reap_errors = 0
        self.skipped = 0
        self.quarantined = 0

    def update(self, report: ReapReport) -> None:
        self.live_processes = report.live_processes
        self.db_files = report.db_files
        self.reaped += len(report.dead_pids)
        self.reap_errors += report.errors
        self.quarantined += report.files_quarantined

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
        yield CounterMetricFamily(
            n.SIDECAR_SKIPPED_FILES,
            "Files in the multiprocess directory a render skipped because they are not sound "
            "metric files (unreadable, unparsable, a symbolic link, not a regular file), "
            "counted at each render.",
            value=self.skipped,
        )
        yield CounterMetricFamily(
            n.SIDECAR_QUARANTINED_FILES,
            "Unsound files of dead processes and unsound compacted files the sidecar renamed "
            "to *.corrupt.",
            value=self.quarantined,
        )


class _Families:
    """Metric families already collected."""

    def __init__(self, metrics: Iterable[Metric]) -> None:
        self.metrics = metrics

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        return self.metrics


# --- the source --------------------------------------------------------------------------------


class DirectorySource:
    """Renders a multiprocess directory: reap, then collect every file, plus self-metrics.

    Reap and render are serialised per source, so this source never double counts.
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._self = _SelfMetrics()
        self._lock = threading.Lock()
        self._last_skipped: list[Skipped] = []
        self._last_reap_errors = 0
        self._failed = False
        self._logged_skips: frozenset[str] = frozenset()
        self._skip_logged_at = -SKIP_LOG_INTERVAL_S

    def problem(self) -> str | None:
        return directory_problem(self.directory)

    def health(self) -> tuple[bool, str]:
        """``(serving, text)`` for ``/healthz``: ``ok``, ``degraded: <why>`` (serving, with
        something to look at), or ``unavailable: <why>``. Never a path or a file name."""
        problem = self.problem()
        if problem is not None:
            return False, "unavailable: " + _without_path(problem)
        reasons = []
        if self._failed:
            reasons.append("the last render failed")
        if skipped := len(self._last_skipped):
            files = "file" if skipped == 1 else "files"
            reasons.append(f"{skipped} unreadable metric {files} skipped at the last render")
        if errors := self._last_reap_errors:
            reasons.append(f"{errors} reap error{'s' if errors > 1 else ''} at the last render")
        return True, "degraded: " + "; ".join(reasons) if reasons else "ok"

    def render(self, encoder: Encoder, extra: Iterable[Collector] = ()) -> bytes:
        with self._lock:
            try:
                body = self._render(encoder, extra)
            except Unavailable:
                raise
            except BaseException:
                self._failed = True
                raise
            self._failed = False
            return body

    def families(self) -> list[Metric]:
        """Reap, then every process's metrics merged (what a render serves, without the
        sidecar's own): the OTLP pusher's read. Serialised with the renders."""
        with self._lock:
            return self._reap_and_collect()

    def _render(self, encoder: Encoder, extra: Iterable[Collector]) -> bytes:
        start = time.perf_counter()
        families = self._reap_and_collect()
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Families(families))
        registry.register(self._self)
        for collector in extra:
            registry.register(collector)
        body = encoder(registry)
        self._self.render_seconds = time.perf_counter() - start
        return body

    def _reap_and_collect(self) -> list[Metric]:
        problem = self.problem()
        if problem is not None:
            raise Unavailable(_without_path(problem), problem)
        try:
            dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            detail = f"multiprocess directory {self.directory}: {why(exc)}"
            raise Unavailable(_without_path(detail), detail) from exc
        try:
            suspects = [name for name, _ in self._last_skipped if is_compacted(name)]
            report = reap(self.directory, dir_fd=dir_fd, suspects=suspects)
            self._self.update(report)
            self._last_reap_errors = report.errors
            families, skipped = collect(dir_fd)
        except OSError as exc:
            detail = f"multiprocess directory {self.directory}: {why(exc)}"
            raise Unavailable(_without_path(detail), detail) from exc
        finally:
            os.close(dir_fd)
        self._skipped(skipped)
        return families

    def _skipped(self, skipped: list[Skipped]) -> None:
        """Count the files skipped; say so in the log when they change, at most once a minute."""
        self._last_skipped = skipped
        self._self.skipped += len(skipped)
        names = frozenset(name for name, _ in skipped)
        if not names or names <= self._logged_skips:
            return
        now = time.monotonic()
        if now - self._skip_logged_at < SKIP_LOG_INTERVAL_S:
            return
        self._skip_logged_at = now
        self._logged_skips = names
        first = "; ".join(reason for _, reason in skipped[:3])
        more = f" (and {len(skipped) - 3} more)" if len(skipped) > 3 else ""
        logger.warning(
            "otel-agents sidecar: skipped %d unsound metric file%s in %s: %s%s",
            len(skipped),
            "" if len(skipped) == 1 else "s",
            self.directory,
            first,
            more,
        )


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
