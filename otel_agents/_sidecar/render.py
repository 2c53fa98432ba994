"""Rendering the multiprocess directory for ``/metrics``: reap, then collect, plus self-metrics.

:func:`render` (and :class:`DirectorySource`, what the sidecar's server holds) first reaps the
dead processes' files (:mod:`.reap`), then renders every file left with prometheus_client's
``MultiProcessCollector``, plus the sidecar's own ``otel_agents_sidecar_*`` metrics. Reap and
render are serialised per directory, so a render never counts a dead process twice.
A directory that cannot be read raises :class:`Unavailable` with a one-line reason.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Final

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from .. import names as n
from .dbfile import HEADER_BYTES
from .reap import ReapReport, reap

#: renders a registry in one exposition format (prometheus_client's ``generate_latest``...)
Encoder = Callable[[CollectorRegistry], bytes]


class Unavailable(Exception):
    """The source cannot be scraped now; the message is a one-line reason."""


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


def why(exc: OSError) -> str:
    """An ``OSError`` as a short phrase: ``no such file or directory``."""
    text = exc.strerror or str(exc) or type(exc).__name__
    return text[:1].lower() + text[1:]


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

    prometheus_client creates a process's file, then sizes it: ``MultiProcessCollector`` fails
    the whole scrape on a file caught in between, empty. A file too short to hold the header has
    no samples yet; skip it. A file deleted between listing and reading
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
                if entry.is_file() and entry.stat().st_size >= HEADER_BYTES:
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
                raise Unavailable(f"multiprocess directory {self.directory}: {why(exc)}") from exc
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
