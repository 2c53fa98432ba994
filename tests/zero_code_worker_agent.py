"""An agent module that never imports otel-agents, run by ``tests/test_instrumentor.py`` as
``opentelemetry-instrument python zero_code_worker_agent.py start``: livekit's own CLI,
``AgentServer`` and its default executor (forkserver job processes on Linux).

As ``tests/worker_agent.py`` (whose offline concessions it shares): ``OfflineServer.run`` passes
``unregistered=True`` and dispatches one fake job per room named in ``WORKER_TEST_ROOMS``. Each
job's LLM is a scripted one that fails its first attempt (a TLS error) and answers the retry;
the job runs one user turn, writes its pid to ``WORKER_TEST_PID_DIR/<room>`` and shuts down."""

import asyncio
import contextlib
import os
from pathlib import Path

from livekit.agents import (
    Agent,
    AgentServer,
    AgentSession,
    APIConnectOptions,
    JobContext,
    cli,
)
from livekit.agents.voice.agent_session import SessionConnectOptions

from scripted import ScriptedLLM, ssl_connection_error

TURN_TIMEOUT = 30.0


class OfflineServer(AgentServer):
    async def run(self, *, devmode: bool = False, unregistered: bool = False) -> None:
        rooms = [r for r in os.environ.get("WORKER_TEST_ROOMS", "").split(",") if r]
        dispatched: list[asyncio.Future[None]] = []

        @self.once("worker_started")
        def _dispatch() -> None:
            for room in rooms:
                dispatched.append(asyncio.ensure_future(self.simulate_job(room, fake_job=True)))

        await super().run(devmode=devmode, unregistered=True)


server = OfflineServer(port=0)


@server.rtc_session()
async def entrypoint(ctx: JobContext) -> None:
    session: AgentSession[None] = AgentSession(
        llm=ScriptedLLM([ssl_connection_error, "hello there"]),
        vad=None,
        aec_warmup_duration=None,
        conn_options=SessionConnectOptions(
            llm_conn_options=APIConnectOptions(max_retry=2, retry_interval=0.01)
        ),
    )
    await session.start(agent=Agent(instructions="You are a brief voice agent."))
    with contextlib.suppress(Exception):
        await asyncio.wait_for(session.run(user_input="hi"), TURN_TIMEOUT)
    pid_file = Path(os.environ["WORKER_TEST_PID_DIR"], ctx.job.room.name)
    await asyncio.to_thread(pid_file.write_text, str(os.getpid()))
    ctx.shutdown(reason="zero-code test done")


if __name__ == "__main__":
    cli.run_app(server)
