"""An agent script that never imports otel-agents, run by ``tests/test_instrumentor.py`` under
``opentelemetry-instrument``: one text-only ``AgentSession`` (no room, no VAD) whose scripted LLM
fails its first attempt (a TLS error) and answers the retry, one user turn, then the session is
closed. Whatever otel-agents records here comes from the ``opentelemetry_instrumentor`` entry
point and the providers the OpenTelemetry distro configured from ``OTEL_*`` variables."""

import asyncio

from livekit.agents import Agent, AgentSession, APIConnectOptions
from livekit.agents.voice.agent_session import SessionConnectOptions

from scripted import ScriptedLLM, ssl_connection_error

TIMEOUT = 20.0


async def main() -> None:
    session: AgentSession[None] = AgentSession(
        llm=ScriptedLLM([ssl_connection_error, "hello there"]),
        vad=None,
        aec_warmup_duration=None,
        conn_options=SessionConnectOptions(
            llm_conn_options=APIConnectOptions(max_retry=2, retry_interval=0.01)
        ),
    )
    async with asyncio.timeout(TIMEOUT):
        await session.start(agent=Agent(instructions="You are a brief voice agent."))
        await session.run(user_input="hi")
        await session.aclose()


if __name__ == "__main__":
    asyncio.run(main())
