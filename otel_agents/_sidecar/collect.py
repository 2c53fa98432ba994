"""Reading the metric files of the directory and merging them, as ``MultiProcessCollector`` does.

:func:`collect` reads each ``*.db`` file on its own (:func:`.dbfile.read_fd`, opened without
following a symbolic link) and merges the sound ones into the same samples, with the same
values, as prometheus_client's ``MultiProcessCollector``. A file that is not a sound metric file
is refused whole, before any of it is added, and returned with why: :mod:`.render` counts and
reports it.
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Final

from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from .. import names as n
from .dbfile import CorruptFile, MetricFile, metric_file, open_db, parse_key, read_fd


def why(exc: OSError) -> str:
    """An ``OSError`` as a short phrase: ``no such file or directory``."""
    text = exc.strerror or str(exc) or type(exc).__name__
    return text[:1].lower() + text[1:]


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
