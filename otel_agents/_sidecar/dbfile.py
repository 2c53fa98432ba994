"""prometheus_client's metric files (``<kind>_<pid>.db``): reading, writing, and merging them.

Each file is a ``prometheus_client.mmap_dict``: an 8-byte header holding the bytes in use, then
entries of a length-prefixed UTF-8 key padded to 8 bytes and two doubles (value, timestamp). A
key is ``json.dumps([metric_name, sample_name, labels, help])``.

The directory is writable by every job process (and in Kubernetes it is a shared volume), so
what is in it is read as hostile: :func:`open_db` never follows a symbolic link and accepts only
a regular file; :func:`read_fd` checks the size the header declares against the file's real
size and :data:`MAX_DB_BYTES`, reads in chunks as it parses (a sparse file claiming a huge size
fails at its first entry), and checks every bound and every key, so a truncated, hostile or
garbage file raises :class:`CorruptFile` instead of looping, reading out of range, or breaking
the exposition later. :func:`encode_db` makes the bytes of a file (the reaper's compacted
files); :func:`write_db` writes one through prometheus_client itself (real files for tests and
benchmarks).

The merge rules say what the reaper does with a dead process's file of each kind: counters,
histograms, summaries and ``gauge_sum`` are summed, ``gauge_max``/``gauge_min`` keep the
extreme, ``gauge_mostrecent`` keeps the latest timestamp, the ``gauge_live*`` files are deleted
(their values die with their process) and ``gauge_all`` files stay (they are per pid by
design). Sums are re-associated, so a total is bit-identical for integers and binary fractions
and may differ in the last ulp otherwise.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from prometheus_client.mmap_dict import MmapedDict

# --- reading and writing ---------------------------------------------------------------------

_INT = struct.Struct("i")
#: a file shorter than its header is still being created: it has no samples yet
HEADER_BYTES: Final = 8
#: the largest size a file may declare. prometheus_client's own files start at 1 MiB and hold
#: a few hundred series (the series budget); a compacted file holds the union of every dead
#: process's series. Anything larger is not read.
MAX_DB_BYTES: Final = 32 << 20
_CHUNK: Final = 256 << 10
_TWO_DOUBLES = struct.Struct("dd")
#: open for reading: never through a symbolic link, never blocking on a FIFO
_READ_FLAGS: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC

#: a parsed key: metric name, sample name, labels, labels as sorted pairs, help
Key = tuple[str, str, dict[str, str], tuple[tuple[str, str], ...], str]
_keys: dict[str, Key] = {}
_MAX_KEYS: Final = 20_000
_METRIC_NAME: Final = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


class CorruptFile(ValueError):
    """A ``.db`` entry that is not a prometheus_client metric file: content that does not
    parse, a size beyond bounds, a symbolic link, a directory or any other non-regular file."""


def open_db(name: str, dir_fd: int | None = None) -> tuple[int, os.stat_result]:
    """Open ``name`` (relative to ``dir_fd``) for reading: ``(fd, fstat)``.

    Raises :class:`CorruptFile` for a symbolic link or anything but a regular file,
    ``FileNotFoundError`` when it is gone, other ``OSError`` as they come.
    """
    try:
        fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CorruptFile(f"{name}: a symbolic link") from None
        if exc.errno in (errno.ENXIO, errno.ENODEV, errno.EISDIR):  # a socket, a device...
            raise CorruptFile(f"{name}: not a regular file") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CorruptFile(f"{name}: not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def read_db(path: str, *, dir_fd: int | None = None) -> list[tuple[str, float, float]]:
    """``(key, value, timestamp)`` of every entry of a prometheus_client mmap file.

    ``path`` is opened without following a symbolic link (relative to ``dir_fd`` when given).
    Raises :class:`CorruptFile` for anything that is not a sound metric file. An empty file
    (a process killed while creating it) has no entries.
    """
    fd, st = open_db(path, dir_fd)
    try:
        return read_fd(fd, st.st_size, path)
    finally:
        os.close(fd)


def read_fd(fd: int, size: int, name: str = "") -> list[tuple[str, float, float]]:
    """The entries of the open metric file ``fd`` of ``size`` bytes (see :func:`read_db`)."""
    head = os.pread(fd, HEADER_BYTES, 0)
    if len(head) < HEADER_BYTES:
        return []  # being created
    used = _INT.unpack_from(head, 0)[0]
    if used == 0:
        return []
    if used < HEADER_BYTES:
        raise CorruptFile(f"{name}: bad used size {used}")
    if used > size:
        raise CorruptFile(f"{name}: declares {used} bytes, the file has {size}")
    if used > MAX_DB_BYTES:
        raise CorruptFile(f"{name}: declares {used} bytes, more than {MAX_DB_BYTES}")
    data = bytearray(head)

    def more(end: int) -> None:
        """Read on until ``data`` holds the file up to offset ``end`` (``<= used``)."""
        while len(data) < end:
            want = min(max(end, len(data) + _CHUNK), used) - len(data)
            chunk = os.pread(fd, want, len(data))
            if not chunk:
                raise CorruptFile(f"{name}: shorter than the {used} bytes it declares")
            data.extend(chunk)

    more(min(used, HEADER_BYTES + _CHUNK))
    out = []
    pos = HEADER_BYTES
    while pos < used:
        if pos + 4 > used:
            raise CorruptFile(f"{name}: truncated entry at {pos}")
        length = _INT.unpack_from(data, pos)[0]
        if length <= 0 or pos + 4 + length > used:
            raise CorruptFile(f"{name}: bad key length {length} at {pos}")
        pos += 4
        end = pos + length + (8 - (length + 4) % 8) + 16  # keys are padded to 8 bytes
        if end > used:
            raise CorruptFile(f"{name}: truncated value at {pos}")
        if end > len(data):
            more(end)
        try:
            key = data[pos : pos + length].decode()
        except UnicodeDecodeError:
            raise CorruptFile(f"{name}: key is not UTF-8 at {pos}") from None
        value, timestamp = _TWO_DOUBLES.unpack_from(data, end - 16)
        pos = end
        if key not in _keys:
            try:
                parse_key(key)
            except CorruptFile as exc:
                raise CorruptFile(f"{name}: {exc}") from None
        out.append((key, value, timestamp))
    return out


def parse_key(key: str) -> Key:
    """A key's parts; :class:`CorruptFile` when it is not
    ``json.dumps([metric_name, sample_name, labels, help])`` with Prometheus's classic names
    (``[a-zA-Z_:][a-zA-Z0-9_:]*``, labels ``[a-zA-Z_][a-zA-Z0-9_]*`` not starting with ``__``)
    and text that encodes: once merged, anything else would break every later scrape."""
    found = _keys.get(key)
    if found is not None:
        return found
    try:
        parsed = json.loads(key)
    except ValueError:
        raise CorruptFile("key is not JSON") from None
    if not (
        isinstance(parsed, list)
        and len(parsed) == 4
        and isinstance(parsed[0], str)
        and isinstance(parsed[1], str)
        and isinstance(parsed[2], dict)
        and all(isinstance(v, str) for v in parsed[2].values())
        and isinstance(parsed[3], str)
    ):
        raise CorruptFile("key is not [metric, name, labels, help]")
    metric, sample, labels, help_text = parsed
    # names the text format carries as they are: escaped, others could clash or come out
    # reserved ("0:" becomes "__"), and one bad line fails the whole scrape at Prometheus
    if not (_METRIC_NAME.fullmatch(metric) and _METRIC_NAME.fullmatch(sample)):
        raise CorruptFile("key has a bad metric name")
    if not all(_LABEL_NAME.fullmatch(label) and label[:2] != "__" for label in labels):
        raise CorruptFile("key has a bad label name")
    if "\\u" in key:  # an escaped lone surrogate decodes, and fails the exposition's encoding
        try:
            for text in (help_text, *labels.values()):
                text.encode()
        except UnicodeEncodeError:
            raise CorruptFile("key is not UTF-8") from None
    parts: Key = (metric, sample, labels, tuple(sorted(labels.items())), help_text)
    if len(_keys) >= _MAX_KEYS:
        _keys.clear()
    _keys[key] = parts
    return parts


def encode_db(entries: Iterable[tuple[str, float, float]]) -> bytes:
    """The bytes of a metric file holding ``entries``, as prometheus_client lays them out."""
    out = bytearray(HEADER_BYTES)
    for key, value, timestamp in entries:
        raw = key.encode()
        out += _INT.pack(len(raw))
        out += raw
        out += b" " * (8 - (len(raw) + 4) % 8)
        out += _TWO_DOUBLES.pack(value, timestamp)
    _INT.pack_into(out, 0, len(out))
    return bytes(out)


def write_db(path: str, entries: Iterable[tuple[str, float, float]]) -> None:
    """Write entries to a new file at ``path`` through prometheus_client's own ``MmapedDict``
    (replacing any file there): a real process's file, for tests and benchmarks."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    mmap = MmapedDict(path)  # type: ignore[no-untyped-call]
    try:
        for key, value, timestamp in entries:
            mmap.write_value(key, value, timestamp)  # type: ignore[no-untyped-call]
    finally:
        mmap.close()  # type: ignore[no-untyped-call]


# --- file names ------------------------------------------------------------------------------

#: prometheus_client's gauge modes (``Gauge(multiprocess_mode=...)``)
GAUGE_MODES: Final = frozenset(
    {"all", "liveall", "min", "livemin", "max", "livemax"}
    | {"sum", "livesum", "mostrecent", "livemostrecent"}
)
_KINDS: Final = frozenset(("counter", "histogram", "summary"))


@dataclass(frozen=True)
class MetricFile:
    """What a metric file's name says: its type, its gauge mode, and the ``pid`` label
    prometheus_client gives a gauge's samples."""

    typ: str
    mode: str = ""
    pid: str = ""


def metric_file(name: str) -> MetricFile | None:
    """``gauge_livesum_123.db`` -> ``MetricFile("gauge", "livesum", "123")``; ``None`` for a
    name prometheus_client's collector cannot read (it would fail the whole scrape on it)."""
    if not name.endswith(".db"):
        return None
    typ, _, rest = name[:-3].partition("_")
    if typ in _KINDS:
        return MetricFile(typ) if rest else None
    if typ == "gauge":
        mode, _, ident = rest.partition("_")
        if mode in GAUGE_MODES and ident:
            return MetricFile(typ, mode, name.split("_")[2][:-3])  # prometheus_client's pid
    return None


def parse_db_name(name: str) -> tuple[str, str] | None:
    """``gauge_livesum_123.db`` -> ``("gauge_livesum", "123")``; ``None`` for non-``.db``."""
    if not name.endswith(".db"):
        return None
    prefix, sep, pid = name[:-3].rpartition("_")
    return (prefix, pid) if sep and prefix else None


# --- merge rules -----------------------------------------------------------------------------

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
