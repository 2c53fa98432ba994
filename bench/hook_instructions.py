"""The failed-attempt hook's cost counted in machine instructions, where time is noise.

``hook_cost`` times the hook against livekit's own emit; on a loaded machine those times swing
by tens of percent between runs. This benchmark runs the same two emits under valgrind's
callgrind, which counts the instructions executed, identical from run to run: the baseline is
livekit's ``EventEmitter.emit`` of an ``LLMError`` to a no-op listener, the measured case the
same emit with otel-agents' hook as the listener (metrics path: no tracer, ``otel_agents``
logger quiet), over fresh error chains built the way the real plugins raise them.

Only the emits are counted: each process drives them through ``itertools.starmap`` and
callgrind collects inside ``starmap_next`` alone (``--toggle-collect``), so the imports, the
chain building and the interpreter's start and exit are left out. Per emit = instructions /
emits. valgrind comes from the system, else from Debian's ``valgrind`` package, unpacked into
the same cache as the Prometheus tools (``tests/prometheus_bin.py``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench import _common as c

EMITS = c.size("hook_instr_emits", 1000, 200)
CHAINS = {"ssl": "TLS connection error chain", "quota": "gateway 429 quota body"}
MODES = ("base", "hooked")
#: the target of ``hook_cost``'s metrics path, judged here on instructions
LIMIT = 1.5
TIMEOUT_S = 1800

#: the process callgrind runs: one chain, one mode, EMITS emits through starmap
DRIVER = """
import asyncio, collections, itertools, logging, sys
import otel_agents
from bench.hook_cost import ERRORS, _events
from tests.scripted import ScriptedLLM

chain, mode, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
logging.getLogger("otel_agents").setLevel(logging.CRITICAL)  # the metrics path alone
baseline = ScriptedLLM(["x"])  # built before init(): no hook attached
baseline.on("error", lambda ev: None)
otel_agents.init()
hooked = ScriptedLLM(["x"])  # built after init(): the hook is its one listener
target = hooked if mode == "hooked" else baseline
warm, events = _events(ERRORS[chain], 50), _events(ERRORS[chain], count)


async def emit_all():
    for ev in warm:  # first calls (caches, specialisation) are not what a retry storm pays
        target.emit("error", ev)
    # callgrind counts inside starmap_next only: these emits and nothing else
    collections.deque(itertools.starmap(target.emit, [("error", ev) for ev in events]), 0)


asyncio.run(emit_all())
otel_agents.shutdown()
"""


def valgrind() -> tuple[Path, dict[str, str]]:
    """The valgrind launcher, and the environment it needs (``VALGRIND_LIB`` for an unpack)."""
    found = shutil.which("valgrind")
    if found:
        return Path(found), {}
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests import prometheus_bin as debs

    root = debs._package_dir(debs.Deb("valgrind", "usr/bin/valgrind"))
    return root / "usr" / "bin" / "valgrind", {"VALGRIND_LIB": str(root / "usr/libexec/valgrind")}


def count(chain: str, mode: str, tool: Path, env: dict[str, str]) -> float:
    """Instructions per emit of ``mode`` on ``chain``."""
    repo = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        subprocess.run(
            [
                str(tool),
                "--tool=callgrind",
                "--collect-atstart=no",
                "--toggle-collect=starmap_next",
                f"--callgrind-out-file={out}",
                sys.executable,
                "-c",
                DRIVER,
                chain,
                mode,
                str(EMITS),
            ],
            cwd=repo,
            env={**os.environ, **env, "PYTHONHASHSEED": "0", "PYTHONPATH": str(repo)},
            check=True,
            capture_output=True,
            timeout=TIMEOUT_S,
        )
        totals = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.MULTILINE)
    if totals is None:
        raise RuntimeError(f"callgrind wrote no totals for {chain}/{mode}")
    return int(totals.group(1)) / EMITS


def run() -> dict[str, Any]:
    tool, env = valgrind()
    cases = [(chain, mode) for chain in CHAINS for mode in MODES]
    with ThreadPoolExecutor(max_workers=max(1, min(len(cases), os.cpu_count() or 1))) as pool:
        counted = dict(
            zip(cases, pool.map(lambda case: count(*case, tool, env), cases), strict=True)
        )
    result: dict[str, Any] = {"emits": EMITS, "instructions_per_emit": {}}
    figures = []
    for chain, label in CHAINS.items():
        base, hooked = counted[(chain, "base")], counted[(chain, "hooked")]
        result["instructions_per_emit"][chain] = {"base": base, "hooked": hooked}
        figures.append(
            c.Figure(
                key=f"hook.instructions.{chain}",
                name=f"failed-attempt hook, metrics path, instructions ({label})",
                value=hooked,
                unit="instr",
                baseline=base,
                baseline_label="livekit emit to a no-op listener",
                ratio=hooked / base,
                on="ratio",
                op="<=",
                limit=LIMIT,
                note=f"+{hooked - base:,.0f} instructions per failed attempt (callgrind)",
            )
        )
    result["figures"] = figures
    return result


def main() -> dict[str, Any]:
    result = run()
    print(f"hook_instructions: instructions per emit under callgrind, {EMITS} emits each")
    c.print_figures(c.figures_of(result))
    c.write_result("hook_instructions", c.jsonable(result))
    return result


if __name__ == "__main__":
    main()
