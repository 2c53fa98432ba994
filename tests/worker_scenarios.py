"""The rooms of ``tests/worker_agent.py`` (what the caller says, livekit's retry settings), shared
by the agent module and the test that derives its expected totals from them. No side effects:
the agent module imports it after ``otel_agents.init()``."""

from __future__ import annotations

from typing import Final

#: livekit's retry settings of every room's LLM
MAX_RETRY: Final = 2
LLM_TIMEOUT: Final = 1.0
RETRY_INTERVAL: Final = 0.05
#: livekit's default: a session closes on its 4th unrecoverable LLM error
MAX_UNRECOVERABLE_ERRORS: Final = 3

#: what the caller says in each room: one user turn, one LLM request each
TURNS: Final[dict[str, tuple[str, ...]]] = {
    "healthy": ("Hi, where is my order?", "Thanks!"),
    "credits": ("Hello?", "Hello, anyone there?", "Can you hear me?", "Hello??"),
    "rate": ("Book me a table.",),
    "timeout": ("Are you there?",),
    "killed": ("Hello? Anyone?",),
}
#: rooms whose session livekit closes itself (too many failed requests): the job waits for it
CLOSES_ITSELF: Final = frozenset({"credits"})


#: the reason each job gives ``ctx.shutdown``
def shutdown_reason(room: str) -> str:
    return f"{room} done"
