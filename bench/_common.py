"""What every benchmark shares: sizes (``BENCH_QUICK=1`` for a smoke run, ``BENCH_<NAME>=n`` to
override one size), the figure record that ``make bench`` tabulates, alternating rounds, the
machine description, and small test doubles (a discarding span exporter, a closed port, a black
hole).

Every figure is a ratio to a baseline measured in the same run, with the absolute value for
reference: the machines this runs on are noisy, and only same-run comparisons mean anything.
"""

from __future__ import annotations

import datetime
import gc
import json
import os
import platform
import socket
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

RESULTS = Path(__file__).parent / "results"
QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")

T = TypeVar("T")


def size(name: str, full: int, quick: int) -> int:
    """A workload size: ``$BENCH_<NAME>`` if set, else ``quick`` under ``BENCH_QUICK=1``."""
    raw = os.environ.get(f"BENCH_{name.upper()}")
    if raw:
        try:
            value = int(raw)
        except ValueError:
            raise SystemExit(f"BENCH_{name.upper()}={raw!r}: expected an integer") from None
        if value < 1:
            raise SystemExit(f"BENCH_{name.upper()}={raw!r}: expected a positive integer")
        return value
    return quick if QUICK else full


# --- figures -----------------------------------------------------------------------------------


@dataclass
class Figure:
    """One row of the results table.

    ``value`` is the figure itself, in ``unit``; ``baseline`` is what it is compared with,
    measured in the same run (``baseline_label`` says what that is), and ``ratio`` is the figure
    over the baseline as defined by the benchmark (``None`` when there is no meaningful one).
    ``target`` is judged against ``value`` or ``ratio`` (``on``) with ``op`` and ``limit``;
    ``on="none"``: a figure reported for reference, with no target.
    """

    key: str
    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_label: str = ""
    ratio: float | None = None
    on: str = "none"  # "value", "ratio" or "none"
    op: str = ""  # "<", "<=", "==", ">="
    limit: float = 0.0
    note: str = ""
    also: bool | None = None  # a second condition of the target, judged by the benchmark
    also_text: str = ""

    @property
    def met(self) -> bool | None:
        if self.on == "none":
            return None
        x = self.value if self.on == "value" else self.ratio
        if x is None:
            return False
        ok = {
            "<": x < self.limit,
            "<=": x <= self.limit,
            "==": x == self.limit,
            ">=": x >= self.limit,
        }[self.op]
        return ok and self.also is not False

    def target_text(self) -> str:
        if self.on == "none":
            return "(reference)"
        limit = fmt(self.limit, self.unit if self.on == "value" else "x")
        op = {"<=": "≤", ">=": "≥", "==": "="}.get(self.op, self.op)
        text = f"{op} {limit}" if self.on == "value" else f"ratio {op} {limit}"
        return f"{text}, {self.also_text}" if self.also_text else text

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["met"] = self.met
        d["target"] = self.target_text()
        return d


def fmt(x: float | None, unit: str) -> str:
    """A number with its unit, at a precision that suits its magnitude."""
    if x is None:
        return "—"
    if unit == "x":
        return f"{x:.2f}x" if abs(x) < 100 else f"{x:.0f}x"
    if unit == "%":
        return f"{x:.1f}%"
    if unit in ("", "series", "renders", "spans", "objects"):
        return f"{x:,.0f}" + (f" {unit}" if unit else "")
    a = abs(x)
    digits = 2 if a < 10 else 1 if a < 100 else 0
    return f"{x:,.{digits}f} {unit}"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for a server a benchmark starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- measuring ----------------------------------------------------------------------------------


def alternate(cases: dict[str, Callable[[], T]], rounds: int) -> dict[str, list[T]]:
    """Run every case once per round, rotating the order each round, so that a slow stretch
    of the machine (or a position in the round) hits every case alike."""
    names = list(cases)
    out: dict[str, list[T]] = {name: [] for name in names}
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            out[name].append(cases[name]())
    return out


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def paired_ratio(measured: Sequence[float], baseline: Sequence[float]) -> float:
    """The median of the per-round ratios: rounds are paired, so drift cancels."""
    return statistics.median(m / b for m, b in zip(measured, baseline, strict=True))


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100), nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


class quiet_gc:  # a context manager, named like the function it stands for
    """Collect, then freeze what is alive: every run starts with the same (empty) young
    generations, and a full collection of livekit's long-lived objects (~200 ms on this heap)
    does not land at a random moment of one run only. Production agents often do the same
    (``gc.freeze()`` after imports)."""

    def __enter__(self) -> None:
        gc.collect()
        gc.freeze()

    def __exit__(self, *exc: object) -> None:
        gc.unfreeze()


_logging_configured = False


def configure_logging() -> None:
    """Logging as a host agent has it: the root logger formats every WARNING and above (here to
    /dev/null), livekit's warnings and otel-agents' log lines alike."""
    global _logging_configured
    if _logging_configured:
        return
    _logging_configured = True
    import logging

    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.WARNING)


def rss_bytes() -> int:
    """Resident set size of this process (Linux)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


# --- the machine --------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:
        return "?"


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def machine() -> dict[str, Any]:
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "livekit_agents": _version("livekit-agents"),
        "opentelemetry_sdk": _version("opentelemetry-sdk"),
        "prometheus_client": _version("prometheus-client"),
        "otel_agents": _version("otel-agents"),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average_at_start": _load(),
        "quick": QUICK,
    }


def machine_line(m: dict[str, Any]) -> str:
    return (
        f"{m['cpu']}, {m['cores']} cores, Python {m['python']}, livekit-agents "
        f"{m['livekit_agents']}, opentelemetry-sdk {m['opentelemetry_sdk']}, {m['date']}"
        + (
            f", load average {m['load_average_at_start']} at the start"
            if m.get("load_average_at_start") is not None
            else ""
        )
        + (" (BENCH_QUICK: smoke sizes)" if m.get("quick") else "")
    )


def write_result(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return path


def figures_of(result: dict[str, Any]) -> list[Figure]:
    return [f for f in result.get("figures", []) if isinstance(f, Figure)]


def jsonable(result: dict[str, Any]) -> dict[str, Any]:
    out = dict(result)
    out["figures"] = [f.as_dict() for f in figures_of(result)]
    return out


def print_figures(figures: Sequence[Figure]) -> None:
    for f in figures:
        met = {True: "yes", False: "NO", None: ""}[f.met]
        base = f"  vs {fmt(f.baseline, f.unit)} ({f.baseline_label})" if f.baseline_label else ""
        ratio = f"  {fmt(f.ratio, 'x')}" if f.ratio is not None else ""
        print(f"  {f.name}: {fmt(f.value, f.unit)}{base}{ratio}  [{f.target_text()}] {met}")


# --- test doubles -------------------------------------------------------------------------------


def discard_provider(*, batch: bool = True) -> Any:
    """An SDK tracer provider whose spans are made, ended, queued and then dropped."""
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SimpleSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class Discard(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    processor = BatchSpanProcessor(Discard()) if batch else SimpleSpanProcessor(Discard())
    provider.add_span_processor(processor)
    return provider
