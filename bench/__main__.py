"""``make bench``: run every benchmark, print one table, write ``bench/results/*.json`` and the
README's results table (between ``<!-- bench:begin -->`` and ``<!-- bench:end -->``).

    python -m bench                  # everything (a few minutes on 2 cores)
    BENCH_QUICK=1 python -m bench    # smoke sizes (well under a minute); README left alone
    python -m bench hook_cost ...    # some benchmarks only; README left alone

``BENCH_README=1`` writes the README even for a quick or partial run, ``BENCH_README=0`` never.
Sizes: ``BENCH_<NAME>=n`` (see each module). A benchmark that fails is reported and the others
still run; the exit status is then 1. Missed targets do not fail the run: they are findings.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from bench import _common as c

#: in running order: the timed benchmarks first, the memory one (parallel children) last
MODULES = (
    "hook_cost",
    "hook_instructions",
    "quota_headers",
    "redact_cost",
    "turn_cost",
    "session_cost",
    "scrape_cost",
    "job_start",
    "otlp_streams",
    "rule_cost",
    "memory_cost",
)
README = Path(__file__).resolve().parent.parent / "README.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def table_rows(figures: list[c.Figure]) -> list[list[str]]:
    rows = []
    for f in figures:
        baseline = f"{c.fmt(f.baseline, f.unit)} ({f.baseline_label})" if f.baseline_label else ""
        met = {True: "yes", False: "NO", None: "—"}[f.met]
        rows.append(
            [f.name, c.fmt(f.value, f.unit), baseline, c.fmt(f.ratio, "x"), f.target_text(), met]
        )
    return rows


HEADER = ["figure", "value", "baseline (same run)", "ratio", "target", "met?"]


def print_table(figures: list[c.Figure]) -> None:
    rows = [HEADER, *table_rows(figures)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    for n, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def _md(cell: str) -> str:
    return cell.replace("|", "\\|")


def markdown(summary: dict[str, Any], figures: list[c.Figure]) -> str:
    m = summary["machine"]
    lines = [
        f"Measured by `make bench` on {c.machine_line(m)}; the whole run took "
        f"{summary['seconds']:.0f} s. Generated: edit `bench/`, not this table.",
        "",
        "| " + " | ".join(h.capitalize() for h in HEADER) + " |",
        "|" + "|".join(["---", "---:", "---", "---:", "---", "---"]) + "|",
    ]
    for row in table_rows(figures):
        lines.append("| " + " | ".join(_md(cell) for cell in row) + " |")
    if any(f.note for f in figures):
        lines.append("")
        lines.append("Notes:")
        lines.append("")
        for f in figures:
            if f.note:
                lines.append(f"- *{_md(f.name)}*: {f.note}")
    if summary.get("failed"):
        lines.append("")
        lines.append(f"Failed to run: {', '.join(summary['failed'])} (see the output of the run).")
    return "\n".join(lines)


def write_readme(text: str) -> bool:
    readme = README.read_text()
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(readme):
        print(f"README.md has no {BEGIN} ... {END} markers: table not written", file=sys.stderr)
        return False
    README.write_text(pattern.sub(lambda _: f"{BEGIN}\n{text}\n{END}", readme, count=1))
    return True


def main(argv: list[str]) -> int:
    unknown = [a for a in argv if a not in MODULES]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(MODULES)}")
        return 2
    selected = [m for m in MODULES if m in argv] if argv else list(MODULES)
    started = time.monotonic()
    machine = c.machine()
    print(f"bench: {c.machine_line(machine)}", flush=True)
    figures: list[c.Figure] = []
    failed: list[str] = []
    timings: dict[str, float] = {}
    for name in selected:
        print(f"\n== {name}", flush=True)
        began = time.monotonic()
        try:
            module = importlib.import_module(f"bench.{name}")
            result = module.run()
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        timings[name] = time.monotonic() - began
        result["seconds"] = timings[name]
        result["machine"] = machine
        c.write_result(name, c.jsonable(result))
        c.print_figures(c.figures_of(result))
        print(f"   ({timings[name]:.0f} s)", flush=True)
        figures += c.figures_of(result)
    summary = {
        "machine": machine,
        "seconds": time.monotonic() - started,
        "seconds_per_benchmark": timings,
        "benchmarks": selected,
        "failed": failed,
        "figures": [f.as_dict() for f in figures],
    }
    c.RESULTS.mkdir(exist_ok=True)
    (c.RESULTS / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")

    print(f"\n{c.machine_line(machine)}; {summary['seconds']:.0f} s\n")
    print_table(figures)
    met = [f.met for f in figures]
    print(
        f"\n{met.count(True)} targets met, {met.count(False)} missed, "
        f"{met.count(None)} figures for reference; results in {c.RESULTS}/"
    )
    readme = os.environ.get("BENCH_README", "")
    complete = selected == list(MODULES) and not failed
    if readme == "1" or (readme != "0" and complete and not c.QUICK):
        if write_readme(markdown(summary, figures)):
            print(f"README.md results table rewritten ({BEGIN} ... {END})")
    else:
        print("README.md left alone (a quick, partial or failed run; BENCH_README=1 forces it)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
