"""prometheus_client's metric files (``<kind>_<pid>.db``): reading, writing, and merging them.

Each file is a ``prometheus_client.mmap_dict``: an 8-byte header holding the bytes in use, then
entries of a length-prefixed UTF-8 key padded to 8 bytes and two doubles (value, timestamp). A
key is ``json.dumps([metric_name, sample_name, labels, help])``. :func:`read_db` reads it with
bounds checks, so a truncated or hostile file raises :class:`CorruptFile` instead of looping or
reading out of range; :func:`write_db` writes one through prometheus_client itself.

The merge rules say what the reaper does with a dead process's file of each kind: counters,
histograms, summaries and ``gauge_sum`` are summed, ``gauge_max``/``gauge_min`` keep the
extreme, ``gauge_mostrecent`` keeps the latest timestamp, the ``gauge_live*`` files are deleted
(their values die with their process) and ``gauge_all`` files stay (they are per pid by
design). Sums are re-associated, so a total is bit-identical for integers and binary fractions
and may differ in the last ulp otherwise.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
from collections.abc import Iterable
from typing import Final

from prometheus_client.mmap_dict import MmapedDict

# --- reading and writing ---------------------------------------------------------------------

_INT = struct.Struct("i")
#: a file shorter than its header is still being created: it has no samples yet
HEADER_BYTES: Final = 8
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
