"""Rendering the multiprocess directory for ``/metrics``: reap, then collect, plus self-metrics.

:func:`render` (and :class:`DirectorySource`, what the sidecar's server holds) first reaps the
dead processes' files (:mod:`.reap`), then reads every metric file left and merges them as
prometheus_client's ``MultiProcessCollector`` does (same samples, same values), plus the
sidecar's own ``otel_agents_sidecar_*`` metrics. Reap and render are serialised per directory,
so a render never counts a dead process twice.

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
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import Final, Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from .. import names as n
from .dbfile import CorruptFile, MetricFile, metric_file, open_db, parse_key, read_fd
from .reap import ReapReport, is_compacted, reap

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


# --- reading and merging the files, as MultiProcessCollector does ----------------------------

#: the sidecar's own metrics: a file naming one would make the exposition name it twice
_RESERVED: Final = n.PREFIX + "_sidecar"
_MINMAX_SUM_RECENT: Final = frozenset(
    ("min", "livemin", "max", "livemax", "sum", "livesum", "mostrecent", "livemostrecent")
)


Labels = tuple[tuple[str, str], ...]
#: a sample as read: sample name, labels (sorted pairs), value, timestamp
_Raw = tuple[str, Labels, float, float]


class _Merger:
    """prometheus_client's ``MultiProcessCollector.merge(files, accumulate=True)``, fed one
    checked file at a time: a file whose samples cannot be merged is refused whole before any
    of it is added."""

    def __init__(self) -> None:
        self.metrics: dict[str, Metric] = {}
        self._raw: dict[str, list[_Raw]] = {}  # metric name -> its samples, as read
        self._modes: dict[str, str] = {}  # gauge metric -> multiprocess mode

    def add(self, kind: MetricFile, entries: list[tuple[str, float, float]]) -> None:
        """Add one file's entries; :class:`CorruptFile` (and nothing added) when they cannot
        be merged (a metric name prometheus_client refuses or the sidecar's own, a histogram
        bucket whose ``le`` is not a number)."""
        typ = kind.typ
        new: dict[str, Metric] = {}
        parsed: list[tuple[str, str, Labels, float, float]] = []
        for key, value, timestamp in entries:
            metric_name, name, _labels, labels_key, help_text = parse_key(key)
            if metric_name.startswith(_RESERVED) or name.startswith(_RESERVED):
                raise CorruptFile(f"{metric_name}: a name of the sidecar's own metrics")
            metric = self.metrics.get(metric_name) or new.get(metric_name)
            if metric is None:
                try:
                    metric = new[metric_name] = Metric(metric_name, help_text, typ)
                except ValueError:
                    raise CorruptFile(f"bad metric name {metric_name!r}") from None
            if metric.type == "histogram":
                for label, text in labels_key:
                    if label == "le":
                        try:
                            float(text)
                        except ValueError:
                            raise CorruptFile(f"bad bucket bound {text!r}") from None
            parsed.append((metric_name, name, labels_key, value, timestamp))
        for metric_name in new:
            self._raw[metric_name] = []
        self.metrics.update(new)
        raw = self._raw
        if typ == "gauge":
            pid = (("pid", kind.pid),)
            for metric_name, name, labels_key, value, timestamp in parsed:
                self._modes[metric_name] = kind.mode
                raw[metric_name].append((name, labels_key + pid, value, timestamp))
        else:
            for metric_name, name, labels_key, value, timestamp in parsed:
                raw[metric_name].append((name, labels_key, value, timestamp))

    def families(self) -> list[Metric]:
        """Every family, its samples merged (``_accumulate_metrics`` with accumulate)."""
        for name, metric in self.metrics.items():
            metric.samples = _accumulate(metric, self._modes.get(name, ""), self._raw[name])
        return list(self.metrics.values())


def _accumulate(metric: Metric, mode: str, raw: list[_Raw]) -> list[Sample]:
    samples: defaultdict[Labels, defaultdict[tuple[str, Labels], float]]
    samples = defaultdict(lambda: defaultdict(float))
    timestamps: defaultdict[Labels, defaultdict[str, float]]
    timestamps = defaultdict(lambda: defaultdict(float))
    buckets: defaultdict[Labels, defaultdict[float, float]]
    buckets = defaultdict(lambda: defaultdict(float))
    gauge = metric.type == "gauge"
    histogram = metric.type == "histogram"
    for name, labels, value, timestamp in raw:
        if gauge:
            if mode in _MINMAX_SUM_RECENT:
                labels = tuple(p for p in labels if p[0] != "pid")
            by_labels = samples[labels]
            key = (name, labels)
            if mode in ("min", "livemin"):
                current = by_labels.setdefault(key, value)
                if value < current:
                    by_labels[key] = value
            elif mode in ("max", "livemax"):
                current = by_labels.setdefault(key, value)
                if value > current:
                    by_labels[key] = value
            elif mode in ("sum", "livesum"):
                by_labels[key] += value
            elif mode in ("mostrecent", "livemostrecent"):
                ts = float(timestamp or 0)
                if timestamps[labels][name] < ts:
                    by_labels[key] = value
                    timestamps[labels][name] = ts
            else:  # all, liveall
                by_labels[key] = value
        elif histogram:
            for label, text in labels:
                if label == "le":
                    without_le = tuple(p for p in labels if p[0] != "le")
                    buckets[without_le][float(text)] += value
                    break
            else:  # _sum, _count
                samples[labels][(name, labels)] += value
        else:  # counter, summary
            samples[labels][(name, labels)] += value
    if histogram:
        for labels, values in buckets.items():
            acc = 0.0
            for bound, value in sorted(values.items()):
                acc += value
                le = (("le", floatToGoString(bound)),)  # type: ignore[no-untyped-call]
                samples[labels][(metric.name + "_bucket", labels + le)] = acc
            samples[labels][(metric.name + "_count", labels)] = acc
    return [
        Sample(name, dict(labels), value)
        for by_labels in samples.values()
        for (name, labels), value in by_labels.items()
    ]


#: a file the render skipped: its name and why
Skipped = tuple[str, str]


def collect(dir_fd: int) -> tuple[list[Metric], list[Skipped]]:
    """Every sound metric file of the directory open at ``dir_fd``, merged; and the files
    skipped, with why."""
    merger = _Merger()
    skipped: list[Skipped] = []
    with os.scandir(dir_fd) as it:
        names = [entry.name for entry in it if entry.name.endswith(".db")]
    for name in names:
        kind = metric_file(name)
        try:
            if kind is None:
                raise CorruptFile(f"{name}: not a metric file name")
            fd, st = open_db(name, dir_fd)
            try:
                entries = read_fd(fd, st.st_size, name)
            finally:
                os.close(fd)
            try:
                merger.add(kind, entries)
            except CorruptFile as exc:
                raise CorruptFile(f"{name}: {exc}") from None
        except FileNotFoundError:
            continue  # gone since the listing (a process's mark_process_dead): nothing to add
        except CorruptFile as exc:
            skipped.append((name, str(exc)))
        except OSError as exc:
            skipped.append((name, f"{name}: {why(exc)}"))
    return merger.families(), skipped


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

    def _render(self, encoder: Encoder, extra: Iterable[Collector]) -> bytes:
        start = time.perf_counter()
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
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Families(families))
        registry.register(self._self)
        for collector in extra:
            registry.register(collector)
        body = encoder(registry)
        self._self.render_seconds = time.perf_counter() - start
        return body

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
