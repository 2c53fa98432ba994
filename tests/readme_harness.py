"""Run one python block of the README as a user would paste it, then an offline session.

``python tests/readme_harness.py BLOCK_FILE MODE``, in a fresh interpreter (``init()``, logging
and prometheus_client are process-wide). ``MODE`` is ``script`` (the block is run as a script's
top) or ``module`` (an agent module fragment: run as the module ``agent``, the way livekit
imports it, and its ``entrypoint`` coroutine, if it defines one, is called with a fake job
context). Then a real ``AgentSession`` runs on a scripted LLM whose first attempt fails on TLS
and whose retry answers (no network, no keys), and the last line of stdout is a JSON summary:
whether ``init()`` ran, and what otel-agents counted.
"""

from __future__ import annotations

import asyncio
import json
import sys
import types
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

TIMEOUT = 20.0


def _run_block(source: str, mode: str) -> dict[str, Any]:
    code = compile(source, "README.md", "exec")
    if mode == "module":
        module = types.ModuleType("agent")
        sys.modules["agent"] = module
        exec(code, module.__dict__)
        return module.__dict__
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(code, namespace)
    return namespace


class _FakeJobContext:
    """What an ``entrypoint(ctx)`` of a README fragment may touch, offline."""

    def __init__(self) -> None:
        self.room = types.SimpleNamespace(name="readme-room")
        self.proc = types.SimpleNamespace(userdata={})

    async def connect(self, *args: Any, **kwargs: Any) -> None:
        return None

    def add_shutdown_callback(self, callback: Any) -> None:
        self.shutdown_callbacks = [*getattr(self, "shutdown_callbacks", []), callback]


async def _offline_session() -> None:
    from livekit.agents import Agent, AgentSession, TurnHandlingOptions
    from livekit.agents.types import APIConnectOptions
    from livekit.agents.voice.agent_session import SessionConnectOptions

    from scripted import ScriptedLLM, ssl_connection_error

    class NoWait(APIConnectOptions):
        def _interval_for_retry(self, num_retries: int) -> float:
            return 0.0

    session: AgentSession = AgentSession(
        llm=ScriptedLLM([ssl_connection_error, "hello, how can I help?"]),
        vad=None,
        aec_warmup_duration=None,
        turn_handling=TurnHandlingOptions(turn_detection=None),
        user_away_timeout=None,
        conn_options=SessionConnectOptions(llm_conn_options=NoWait(max_retry=2)),
    )
    async with asyncio.timeout(TIMEOUT):
        await session.start(agent=Agent(instructions="readme agent"))
        try:
            await session.run(user_input="hello there")
        finally:
            await session.aclose()


def _counted(name: str) -> float:
    from prometheus_client import REGISTRY

    return sum(s.value for metric in REGISTRY.collect() for s in metric.samples if s.name == name)


def main(argv: list[str]) -> int:
    source = Path(argv[1]).read_text()
    mode = argv[2]
    namespace = _run_block(source, mode)
    entrypoint = namespace.get("entrypoint")
    if mode == "module" and asyncio.iscoroutinefunction(entrypoint):
        asyncio.run(entrypoint(_FakeJobContext()))
    asyncio.run(_offline_session())

    import otel_agents
    from otel_agents import _runtime
    from otel_agents import names as n

    initialised = _runtime.current is not None
    summary = {
        "initialised": initialised,
        "attempt_failures": _counted(n.ATTEMPT_FAILURES),
        "sessions_closed": _counted(n.SESSIONS_CLOSED),
    }
    otel_agents.shutdown()
    sys.stderr.flush()
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
