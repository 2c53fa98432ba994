"""An agent module as a user writes it, run by ``tests/test_worker.py`` with
``python worker_agent.py start``: livekit's own CLI, ``AgentServer`` and job executors.

The only concessions to running offline:

* ``OfflineServer.run`` passes ``unregistered=True`` (no LiveKit server to register with), and
  on ``worker_started`` it dispatches one fake job per room named in ``WORKER_TEST_ROOMS`` with
  livekit's own ``simulate_job(room, fake_job=True)``: the real process pool runs them;
* each room's LLM is livekit's ``inference.LLM`` pointed at the fake LiveKit Inference gateway
  the test runs for that room (``WORKER_TEST_GATEWAYS``, a JSON object room -> base URL).

Everything otel-agents needs comes from the environment, as in a deployment:
``OTEL_EXPORTER_OTLP_ENDPOINT``, ``PROMETHEUS_MULTIPROC_DIR``, ``OTEL_SERVICE_NAME``...
"""

import otel_agents

otel_agents.init()  # first, before models and sessions are built (in every job process too)

import asyncio  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
from pathlib import Path  # noqa: E402

from livekit.agents import (  # noqa: E402
    Agent,
    AgentServer,
    AgentSession,
    APIConnectOptions,
    JobContext,
    JobExecutorType,
    cli,
    inference,
)
from livekit.agents.voice.agent_session import SessionConnectOptions  # noqa: E402

from worker_scenarios import (  # noqa: E402
    CLOSES_ITSELF,
    LLM_TIMEOUT,
    MAX_RETRY,
    RETRY_INTERVAL,
    TURNS,
    shutdown_reason,
)

TURN_TIMEOUT = 30.0


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise SystemExit(f"worker_agent.py: {name} is not set")
    return value


class OfflineServer(AgentServer):
    """livekit's ``AgentServer``, run without a LiveKit server: jobs come from simulate_job."""

    async def run(self, *, devmode: bool = False, unregistered: bool = False) -> None:
        rooms = [r for r in os.environ.get("WORKER_TEST_ROOMS", "").split(",") if r]

        dispatched: list[asyncio.Future[None]] = []

        @self.once("worker_started")
        def _dispatch() -> None:
            for room in rooms:
                dispatched.append(asyncio.ensure_future(self.simulate_job(room, fake_job=True)))

        await super().run(devmode=devmode, unregistered=True)


# livekit's default executor (forkserver job processes on Linux), or its thread executor
executor = os.environ.get("WORKER_TEST_EXECUTOR", "default")
server = OfflineServer(
    prometheus_port=int(_env("WORKER_TEST_PROMETHEUS_PORT")),
    port=0,  # livekit's health-check server: any free port
    **({"job_executor_type": JobExecutorType.THREAD} if executor == "thread" else {}),
)

if os.environ.get("WORKER_TEST_FLUSH_LOG"):
    # the host's own logging, as a user would add it: otel-agents' debug records, one JSON
    # object per line, so the test can read whether each process's exit flush completed
    class _JsonLines(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if hasattr(record, "exit_flush_seconds"):
                line = {
                    "pid": os.getpid(),
                    "seconds": record.exit_flush_seconds,
                    # WARNING: it gave up at exit_flush_timeout; DEBUG: everything was flushed
                    "complete": record.levelno < logging.WARNING,
                }
                with open(os.environ["WORKER_TEST_FLUSH_LOG"], "a") as f:
                    f.write(json.dumps(line) + "\n")

    logging.getLogger("otel_agents").addHandler(_JsonLines(logging.DEBUG))
    logging.getLogger("otel_agents").setLevel(logging.DEBUG)


@server.rtc_session()
async def entrypoint(ctx: JobContext) -> None:
    room = ctx.job.room.name  # a fake job's ctx.room is a mock named "console"
    gateways = json.loads(_env("WORKER_TEST_GATEWAYS"))
    pid_dir = os.environ.get("WORKER_TEST_PID_DIR")
    if pid_dir:  # the test needs each job's pid (to SIGKILL one mid-request)
        await asyncio.to_thread(Path(pid_dir, room).write_text, str(os.getpid()))
    model = inference.LLM(
        "openai/gpt-4.1-mini",
        base_url=gateways[room],
        api_key="worker-test-key",
        api_secret="worker-test-secret-0123456789abcdef",
    )
    session: AgentSession[None] = AgentSession(
        llm=model,
        vad=None,
        aec_warmup_duration=None,
        conn_options=SessionConnectOptions(
            llm_conn_options=APIConnectOptions(
                max_retry=MAX_RETRY, retry_interval=RETRY_INTERVAL, timeout=LLM_TIMEOUT
            )
        ),
    )
    closed = asyncio.Event()
    session.on("close", lambda _: closed.set())
    await session.start(agent=Agent(instructions="You are a helpful, brief voice agent."))
    for text in TURNS[room]:
        # a dead turn raises livekit's wrapper to the caller: otel-agents has recorded it
        with contextlib.suppress(Exception):
            await asyncio.wait_for(session.run(user_input=text), TURN_TIMEOUT)
    if room in CLOSES_ITSELF:
        await asyncio.wait_for(closed.wait(), TURN_TIMEOUT)
    ctx.shutdown(reason=shutdown_reason(room))


if __name__ == "__main__":
    cli.run_app(server)
