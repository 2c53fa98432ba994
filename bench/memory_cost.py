"""Bounded memory: bytes retained per closed session after 10,000 sessions, and the number of
series after 100,000 random error inputs.

**Retained per closed session.** Two child processes run side by side, one with otel-agents
(``init()`` with an SDK tracer provider whose spans are made, ended and dropped, so livekit's
spans and ours are real), one without. Each runs ``SESSIONS`` sessions one after the other (text
mode, one answered turn each, then ``aclose()``) after a warm-up, and reads the bytes the process
has in use before and after: the children run with ``PYTHONMALLOC=malloc``, so every allocation,
the interpreter's small objects included, goes through glibc's malloc, whose ``mallinfo2()``
counts the bytes in use exactly (chunk headers included) at no cost per allocation, unlike
tracemalloc, which would make 10,000 sessions take minutes. Before each reading, livekit's
bounded caches are emptied and the garbage collector runs (as
``tests/test_session_lifecycle.py`` does). The figure is what the run with otel-agents retained
per session beyond the run without. Target (docs/architecture.md): under 100 bytes.

**Series after 100,000 random errors.** A third child, alongside, feeds ``ERRORS`` failed
attempts of random exception types (fresh classes), messages, status codes, quota bodies, causes
and providers (200 of them) to the failed-attempt hook, as ``tests/test_bounds.py`` does, and
counts the ``otel_agents_*_total`` series along the way. Target: no family past its budget (one
series more holds what is folded beyond it), their sum within the bound (docs/architecture.md: at
most 500 per process), and a family that reached its budget does not move after it.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import json
import os
import subprocess
import sys
import time
import typing
from pathlib import Path
from typing import Any

from bench import _common as c

SESSIONS = c.size("memory_sessions", 10_000, 1_000)
WARM_UP = c.size("memory_warm_up", 100, 50)
CHECKPOINTS = 5
ERRORS = c.size("series_errors", 100_000, 10_000)
ROOT = Path(__file__).resolve().parent.parent


# --- the children -------------------------------------------------------------------------------


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _mallinfo() -> Any:
    libc = ctypes.CDLL(None)
    mallinfo2 = libc.mallinfo2
    mallinfo2.restype = _MallInfo2
    return mallinfo2


def _in_use(mallinfo2: Any) -> int:
    # livekit fills bounded caches on every reply (typing's lru caches of Chan[...] aliases,
    # the interpreter's method cache): their churn is not a leak
    for clear in getattr(typing, "_cleanups", ()):
        clear()
    sys._clear_type_cache()
    gc.collect()
    info = mallinfo2()
    return int(info.uordblks + info.hblkhd)


async def _sessions(count: int) -> None:
    from livekit.agents import Agent

    from bench.turn_cost import ANSWER, new_session, run_turn
    from tests.scripted import ScriptedLLM

    for _ in range(count):
        session = new_session(ScriptedLLM([ANSWER]))
        await session.start(agent=Agent(instructions="bench"))
        await run_turn(session, "hello there")
        await session.aclose()


async def _retained(with_otel: bool) -> dict[str, Any]:
    import otel_agents
    from otel_agents._capture import attempts as _hooks
    from otel_agents._capture import sessions as _session

    c.configure_logging()
    mallinfo2 = _mallinfo()
    provider = c.discard_provider(batch=False) if with_otel else None
    if with_otel:
        otel_agents.init(tracer_provider=provider)
    await _sessions(WARM_UP)
    start = _in_use(mallinfo2)
    began = time.monotonic()
    readings = []
    for i in range(CHECKPOINTS):
        await _sessions(SESSIONS // CHECKPOINTS + (SESSIONS % CHECKPOINTS if i == 0 else 0))
        readings.append(_in_use(mallinfo2))
    seconds = time.monotonic() - began
    left = {
        "open_sessions": len(_session._open),
        "sessions_by_object": len(_session._by_session),
        "instrumented_models": len(_hooks._attached),
    }
    if with_otel:
        otel_agents.shutdown()
    return {
        "with_otel": with_otel,
        "sessions": SESSIONS,
        "warm_up": WARM_UP,
        "in_use_start": start,
        "in_use_readings": readings,
        "retained_per_session": (readings[-1] - start) / SESSIONS,
        "seconds": seconds,
        "left": left,
    }


def _series_child() -> dict[str, Any]:
    import logging
    import random

    from livekit.agents import llm
    from prometheus_client import REGISTRY

    import otel_agents
    from otel_agents import names as n
    from otel_agents._export import metrics as _metrics
    from tests.scripted import ScriptedLLM, random_error, random_word

    logging.getLogger(n.LOGGER_NAME).setLevel(logging.CRITICAL)
    otel_agents.init()

    def series() -> int:
        return sum(
            1
            for metric in REGISTRY.collect()
            for s in metric.samples
            if s.name.startswith(n.PREFIX) and s.name.endswith("_total")
        )

    rng = random.Random(1234)
    models = [ScriptedLLM(["x"], provider=random_word(rng)) for _ in range(200)]
    marks = sorted({ERRORS // 100, ERRORS // 10, ERRORS // 4, ERRORS // 2, ERRORS})
    counts: dict[int, int] = {}
    families: dict[int, dict[str, int]] = {}
    budgets = {f.name: _metrics.SERIES_BUDGET[f.name] for f in _metrics.get_metrics().families}
    began = time.monotonic()
    for i in range(1, ERRORS + 1):
        error = random_error(rng, i)
        rng.choice(models).emit(
            "error",
            llm.LLMError(
                timestamp=time.time(), label="x", error=error, recoverable=rng.random() < 0.6
            ),
        )
        if i in marks:
            counts[i] = series()
            families[i] = {f.name: f.series for f in _metrics.get_metrics().families}
    attempts = sum(
        s.value
        for metric in REGISTRY.collect()
        for s in metric.samples
        if s.name == n.ATTEMPT_FAILURES
    )
    bound = sum(b + 1 for b in _metrics.SERIES_BUDGET.values())
    otel_agents.shutdown()
    return {
        "errors": ERRORS,
        "series_at": counts,
        "families_at": families,
        "budgets": budgets,
        "bound": bound,
        "attempts_counted": attempts,
        "seconds": time.monotonic() - began,
    }


def child(what: str) -> None:
    out = _series_child() if what == "series" else asyncio.run(_retained(what == "with"))
    print(json.dumps(out))


# --- the parent ---------------------------------------------------------------------------------


def _spawn(what: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONMALLOC": "malloc", "PYTHONPATH": str(ROOT)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return subprocess.Popen(
        [sys.executable, "-m", "bench.memory_cost", "--child", what],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )


def _collect(proc: subprocess.Popen[str], what: str) -> dict[str, Any]:
    out, _ = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"bench.memory_cost child {what!r} exited {proc.returncode}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def run() -> dict[str, Any]:
    # the children side by side: memory is not timed
    procs = {what: _spawn(what) for what in ("with", "without", "series")}
    retained = {what: _collect(procs[what], what) for what in ("with", "without")}
    series = _collect(procs["series"], "series")
    series["series_at"] = {int(k): v for k, v in series["series_at"].items()}
    series["families_at"] = {int(k): v for k, v in series["families_at"].items()}

    with_, without = retained["with"], retained["without"]
    added = with_["retained_per_session"] - without["retained_per_session"]
    marks = sorted(series["series_at"])
    first, last = series["series_at"][marks[0]], series["series_at"][marks[-1]]
    tenth = series["series_at"].get(ERRORS // 10, first)
    half = series["series_at"].get(ERRORS // 2, last)
    # a family holds at most its budget, plus one series where everything beyond it is folded
    budgets = series["budgets"]
    at_half = series["families_at"].get(ERRORS // 2, series["families_at"][marks[-1]])
    at_end = series["families_at"][marks[-1]]
    within = all(count <= budgets[name] + 1 for name, count in at_end.items())
    full = [name for name, count in at_half.items() if count >= budgets[name]]
    stayed = all(at_end[name] == at_half[name] for name in full)
    figures = [
        c.Figure(
            key="memory.session",
            name=f"retained per closed session, after {SESSIONS:,} sessions",
            value=added,
            unit="B",
            baseline=without["retained_per_session"],
            baseline_label="retained per session without otel-agents",
            ratio=with_["in_use_readings"][-1] / without["in_use_readings"][-1],
            on="value",
            op="<",
            limit=100.0,
            note="ratio: bytes in use after the run, with / without; left behind: "
            + ", ".join(f"{k} {v}" for k, v in with_["left"].items()),
        ),
        c.Figure(
            key="memory.series",
            name=f"series after {ERRORS:,} random error inputs",
            value=float(last),
            unit="series",
            baseline=float(tenth),
            baseline_label=f"after {ERRORS // 10:,}",
            ratio=last / tenth,
            on="value",
            op="<=",
            limit=float(min(series["bound"], 500)),
            also=within and stayed,
            also_text="no family past its budget, full ones unchanged",
            note=f"{half:,} after {ERRORS // 2:,}; families at their budget: "
            + ", ".join(f"{name.removeprefix('otel_agents_')} {at_end[name]}" for name in full)
            + f"; every attempt counted ({series['attempts_counted']:,.0f})",
        ),
    ]
    return {"retained": retained, "series": series, "figures": figures}


def main() -> dict[str, Any]:
    result = run()
    print("memory_cost")
    c.print_figures(c.figures_of(result))
    c.write_result("memory_cost", c.jsonable(result))
    return result


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(sys.argv[2])
    else:
        main()
