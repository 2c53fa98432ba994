"""Timeouts are ``timeout``, and plumbing artefacts are never root causes.

Two artefacts end up as the deepest link of real chains: the ``CancelledError`` of the cancel
scope httpx2/anyio (and ``asyncio.wait_for``) use to enforce a deadline, and the
``StopAsyncIteration`` livekit's stream ``__anext__`` leaves as the ``__context__`` of an error it
re-raised (an exception object raised again on a later request still carries it). Here the real
``livekit.agents.inference.LLM`` times out against the fake gateway (directly and through a real
``AgentSession``), the openai SDK times out on its own transport and on a socket that never
answers, and scripted providers raise one exception object on every attempt of several requests.

Chains observed (livekit-agents 1.8.9, openai on httpx2/httpcore2, Python 3.11), outermost first:

* inference.LLM, the reply slower than ``APIConnectOptions.timeout``, at emit time (both through
  ``LLM.chat()`` and through a session): ``livekit.agents.APITimeoutError`` (``from None``) <-
  ``openai.APITimeoutError`` <- ``httpx2.ReadTimeout`` <- ``httpcore2.ReadTimeout`` <-
  ``TimeoutError`` (empty message) <- ``asyncio.exceptions.CancelledError`` ("Cancelled via cancel
  scope ...; reason: deadline exceeded"). Root cause ``TimeoutError``, class ``timeout``.
* the same error as the caller of ``LLM.chat()`` gets it without retries (livekit re-raised it in
  ``except StopAsyncIteration``): ``livekit.agents.APITimeoutError`` <- ``StopAsyncIteration``.
  Root cause ``livekit.agents.APITimeoutError``, class ``timeout``.
* the openai SDK on a socket that never answers: ``openai.APITimeoutError`` <-
  ``httpx2.ReadTimeout`` <- ``httpcore2.ReadTimeout`` <- ``TimeoutError`` <- ``CancelledError``;
  on an ``httpx2.MockTransport`` raising ``httpx2.ReadTimeout``: ``openai.APITimeoutError`` <-
  ``httpx2.ReadTimeout``.
* ``asyncio.wait_for`` and ``asyncio.timeout()``: ``TimeoutError`` <- ``CancelledError``.

Everything runs on 127.0.0.1 and is bounded by ``asyncio.wait_for``; nothing asserts timings.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx2
import openai
import pytest
from livekit.agents import (
    Agent,
    AgentSession,
    APIConnectionError,
    APIConnectOptions,
    APITimeoutError,
    inference,
    llm,
)
from livekit.agents.voice.agent_session import SessionConnectOptions

from otel_agents import names as n
from otel_agents._classify import classify, exception_chain, type_name
from otel_agents.demo.gateway import FakeGateway, ok

from netfaults import BlackHole
from scripted import ScriptedLLM, ScriptedSTT, ScriptedTTS, audio_frame, raising

BOUND = 20.0
CREDS: dict[str, Any] = {"api_key": "devkey", "api_secret": "devsecret-devsecret-devsecret-0123"}
LLM_MODEL = "openai/gpt-4.1-mini"
PROVIDER = "livekit"
#: a reply that starts after 2 s, against a 0.3 s client timeout
SLOW = 2.0
TIMING_OUT = APIConnectOptions(max_retry=1, retry_interval=0.01, timeout=0.3)
TIMING_OUT_NO_RETRY = APIConnectOptions(max_retry=0, retry_interval=0.01, timeout=0.3)
NO_RETRY = APIConnectOptions(max_retry=0, retry_interval=0.01)
ONE_RETRY = APIConnectOptions(max_retry=1, retry_interval=0.01)
TWO_RETRIES = APIConnectOptions(max_retry=2, retry_interval=0.01)

#: what inference.LLM emits for an attempt that timed out (see the module docstring)
INFERENCE_TIMEOUT_CHAIN = [
    "livekit.agents.APITimeoutError",
    "openai.APITimeoutError",
    "httpx2.ReadTimeout",
    "httpcore2.ReadTimeout",
    "TimeoutError",
    "asyncio.exceptions.CancelledError",
]
TIMEOUT_ROOT = "TimeoutError"


async def bounded(scenario: Callable[[], Awaitable[None]]) -> None:
    await asyncio.wait_for(scenario(), BOUND)


def names(exc: BaseException) -> list[str]:
    return [type_name(type(e)) for e in exception_chain(exc)]


def attrs(telemetry: Any) -> list[dict[str, Any]]:
    return [dict(s.attributes or {}) for s in telemetry.attempt_spans()]


def series(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return (name, tuple(sorted(labels.items())))


def chat_ctx() -> llm.ChatContext:
    ctx = llm.ChatContext.empty()
    ctx.add_message(role="user", content="Say something.")
    return ctx


async def chat(model: llm.LLM, conn_options: APIConnectOptions) -> None:
    async with model.chat(chat_ctx=chat_ctx(), conn_options=conn_options) as stream:
        async for _ in stream:
            pass


def capture_chains(model: Any) -> list[list[str]]:
    """The chain of every emitted error, read at emit time (after otel-agents' own hook)."""
    chains: list[list[str]] = []
    model.on("error", lambda ev: chains.append(names(ev.error)))
    return chains


def timeout_attempt(gateway: FakeGateway, attempt: int, final: bool) -> dict[str, Any]:
    """The exact attributes of an attempt of inference.LLM that timed out (against
    ``gateway``: its address and port are the span's server)."""
    return {
        n.A_COMPONENT: "llm",
        n.A_PROVIDER: PROVIDER,
        n.A_OPERATION: "chat",
        n.A_GEN_AI_PROVIDER: "livekit",
        n.A_MODEL: LLM_MODEL,
        n.A_SERVER_ADDRESS: "127.0.0.1",
        n.A_SERVER_PORT: gateway.port,
        n.A_ATTEMPT: attempt,
        n.A_FINAL: final,
        n.A_ERROR_TYPE: "livekit.agents.APITimeoutError",
        n.A_ERROR_CLASS: "timeout",
        n.A_ROOT_CAUSE_TYPE: TIMEOUT_ROOT,
        n.A_ROOT_CAUSE_MESSAGE: "",  # anyio's TimeoutError says nothing
        n.A_FIRST_ROOT_CAUSE_TYPE: TIMEOUT_ROOT,
        n.A_MASKED: False,
        n.A_TERMINAL: False,
    }


def timeout_series(*finals: bool) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for final in finals:
        key = series(
            n.ATTEMPT_FAILURES,
            component="llm",
            provider=PROVIDER,
            error_class="timeout",
            root_cause=TIMEOUT_ROOT,
            final="true" if final else "false",
        )
        out[key] = out.get(key, 0) + 1
    out[series(n.REQUESTS, component="llm", provider=PROVIDER, outcome="failed")] = 1
    return out


# --- 1. the real inference.LLM times out against the fake gateway --------------------------------


@pytest.mark.asyncio
async def test_inference_llm_timeout_through_chat(telemetry) -> None:
    raised: list[BaseException] = []

    gateway = FakeGateway()  # its port stays known after it stops

    async def scenario() -> None:
        async with gateway:
            gateway.llm.push(ok("too late", delay=SLOW), ok("too late", delay=SLOW))
            model = inference.LLM(LLM_MODEL, base_url=gateway.url, **CREDS)
            chains = capture_chains(model)
            try:
                with pytest.raises(APIConnectionError, match="after 2 attempts") as caught:
                    await chat(model, TIMING_OUT)
                raised.append(caught.value)
            finally:
                await model.aclose()
            assert gateway.requests["llm"] == 2
            # the real chain ends in the cancel scope that enforced the deadline
            assert chains == [INFERENCE_TIMEOUT_CHAIN, INFERENCE_TIMEOUT_CHAIN]

    await bounded(scenario)

    assert attrs(telemetry) == [
        timeout_attempt(gateway, 0, False),
        timeout_attempt(gateway, 1, True),
    ]
    assert telemetry.series() == timeout_series(False, True)
    # livekit's "after 2 attempts" wrapper, as the caller gets it, is a timeout too
    (error,) = raised
    assert names(error) == ["livekit.agents.APIConnectionError", *INFERENCE_TIMEOUT_CHAIN]
    c = classify(error)
    assert (c.error_class, c.root_cause_type, c.terminal) == ("timeout", TIMEOUT_ROOT, False)


@pytest.mark.asyncio
async def test_inference_llm_timeout_without_retries_as_the_caller_gets_it(telemetry) -> None:
    raised: list[BaseException] = []

    gateway = FakeGateway()  # its port stays known after it stops

    async def scenario() -> None:
        async with gateway:
            gateway.llm.push(ok("too late", delay=SLOW))
            model = inference.LLM(LLM_MODEL, base_url=gateway.url, **CREDS)
            chains = capture_chains(model)
            try:
                with pytest.raises(APITimeoutError) as caught:
                    await chat(model, TIMING_OUT_NO_RETRY)
                raised.append(caught.value)
            finally:
                await model.aclose()
            assert chains == [INFERENCE_TIMEOUT_CHAIN]

    await bounded(scenario)

    assert attrs(telemetry) == [timeout_attempt(gateway, 0, True)]
    assert telemetry.series() == timeout_series(True)
    # re-raised by __anext__ inside `except StopAsyncIteration`: the SDK chain is gone and a
    # StopAsyncIteration took its place; the livekit timeout itself is the root cause
    (error,) = raised
    assert names(error) == ["livekit.agents.APITimeoutError", "StopAsyncIteration"]
    c = classify(error)
    assert (c.error_class, c.root_cause_type) == ("timeout", "livekit.agents.APITimeoutError")
    assert c.root is error


@pytest.mark.asyncio
async def test_inference_llm_timeout_through_a_session(telemetry) -> None:
    raised: list[BaseException] = []

    gateway = FakeGateway()  # its port stays known after it stops

    async def scenario() -> None:
        async with gateway:
            gateway.llm.push(ok("too late", delay=SLOW), ok("too late", delay=SLOW))
            model = inference.LLM(LLM_MODEL, base_url=gateway.url, **CREDS)
            chains = capture_chains(model)
            session: AgentSession = AgentSession(
                llm=model,
                vad=None,
                aec_warmup_duration=None,
                conn_options=SessionConnectOptions(
                    llm_conn_options=TIMING_OUT, max_unrecoverable_errors=0
                ),
            )
            try:
                await session.start(agent=Agent(instructions="t"))
                try:
                    await session.run(user_input="hello")
                except Exception as e:
                    raised.append(e)
            finally:
                await session.aclose()
            assert gateway.requests["llm"] == 2
            assert chains == [INFERENCE_TIMEOUT_CHAIN, INFERENCE_TIMEOUT_CHAIN]

    await bounded(scenario)

    assert attrs(telemetry) == [
        timeout_attempt(gateway, 0, False),
        timeout_attempt(gateway, 1, True),
    ]
    (request,) = telemetry.spans("llm_request")
    for span in telemetry.attempt_spans():
        assert span.parent is not None
        assert span.parent.span_id == request.context.span_id
    assert telemetry.value(n.REQUESTS, component="llm", provider=PROVIDER, outcome="failed") == 1
    for final in ("false", "true"):
        labels = {"error_class": "timeout", "root_cause": TIMEOUT_ROOT, "final": final}
        assert (
            telemetry.value(n.ATTEMPT_FAILURES, component="llm", provider=PROVIDER, **labels) == 1
        )
    assert not [key for key in telemetry.series() if ("error_class", "cancelled") in key[1]]
    (error,) = raised
    assert isinstance(error, APIConnectionError)
    assert classify(error).error_class == "timeout"


# --- 2. the openai SDK's own timeout chains ------------------------------------------------------


def _completion(client: openai.AsyncOpenAI, *, stream: bool) -> Awaitable[object]:
    return client.chat.completions.create(  # type: ignore[call-overload,no-any-return]
        model="m", messages=[{"role": "user", "content": "hi"}], stream=stream
    )


async def sdk_error(client: openai.AsyncOpenAI, *, stream: bool = False) -> BaseException:
    try:
        await asyncio.wait_for(_completion(client, stream=stream), BOUND)
    except openai.APIError as e:
        return e
    raise AssertionError("the request did not fail")


def wrapped_like_livekit(err: BaseException) -> BaseException:
    """``except openai.APITimeoutError: raise APITimeoutError(...) from None``
    (``livekit/agents/inference/llm.py``)."""
    try:
        try:
            raise err
        except openai.APITimeoutError:
            raise APITimeoutError(retryable=True) from None
    except APITimeoutError as e:
        return e


@pytest.mark.asyncio
async def test_openai_sdk_timeout_on_a_mock_transport() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ReadTimeout("read timed out", request=request)

    client = openai.AsyncOpenAI(
        api_key="sk-test",
        base_url="http://127.0.0.1:9/v1",
        max_retries=0,
        http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(handler)),
    )
    try:
        err = await sdk_error(client)
    finally:
        await client.close()
    assert names(err) == ["openai.APITimeoutError", "httpx2.ReadTimeout"]
    c = classify(err)
    assert (c.error_class, c.root_cause_type, c.status_code) == (
        "timeout",
        "httpx2.ReadTimeout",
        None,
    )
    wrapped = wrapped_like_livekit(err)
    assert names(wrapped) == ["livekit.agents.APITimeoutError", *names(err)]
    c = classify(wrapped)
    assert (c.error_class, c.root_cause_type) == ("timeout", "httpx2.ReadTimeout")


@pytest.mark.asyncio
@pytest.mark.parametrize("stream", [False, True])
async def test_openai_sdk_timeout_on_a_socket_that_never_answers(stream: bool) -> None:
    hole = BlackHole()
    client = openai.AsyncOpenAI(
        api_key="sk-test", base_url=f"http://127.0.0.1:{hole.port}/v1", max_retries=0, timeout=0.2
    )
    try:
        err = await sdk_error(client, stream=stream)
    finally:
        await client.close()
        hole.close()
    assert names(err) == INFERENCE_TIMEOUT_CHAIN[1:]
    c = classify(err)
    assert (c.error_class, c.root_cause_type, c.terminal) == ("timeout", TIMEOUT_ROOT, False)
    assert type(c.root) is TimeoutError
    c = classify(wrapped_like_livekit(err))
    assert (c.error_class, c.root_cause_type) == ("timeout", TIMEOUT_ROOT)


# --- 3. asyncio's own deadlines -------------------------------------------------------------------


async def _wait_for() -> None:
    await asyncio.wait_for(asyncio.sleep(BOUND), 0.01)


async def _timeout_block() -> None:
    async with asyncio.timeout(0.01):
        await asyncio.sleep(BOUND)


@pytest.mark.asyncio
@pytest.mark.parametrize("deadline", [_wait_for, _timeout_block])
async def test_asyncio_deadlines_are_timeouts(deadline: Callable[[], Awaitable[None]]) -> None:
    with pytest.raises(TimeoutError) as caught:
        await deadline()
    err = caught.value
    assert names(err) == ["TimeoutError", "asyncio.exceptions.CancelledError"]
    c = classify(err)
    assert (c.error_class, c.root_cause_type) == ("timeout", "TimeoutError")
    assert c.root is err
    # as a plugin would wrap it
    try:
        raise APIConnectionError(retryable=True) from err
    except APIConnectionError as e:
        c = classify(e)
    assert (c.error_class, c.root_cause_type) == ("timeout", "TimeoutError")


# --- 4. one exception object raised on every attempt of several requests --------------------------


def _connection_error() -> BaseException:
    return APIConnectionError("upstream refused", retryable=True)


def _final_connection_error() -> BaseException:
    return APIConnectionError("upstream refused", retryable=False)


def _plugin_bug() -> BaseException:
    return RuntimeError("plugin bug")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("make", "conn_options", "error_class", "attempts", "caller_gets_it"),
    [
        # re-raised by __anext__ itself: the object keeps a StopAsyncIteration context
        (_connection_error, NO_RETRY, "connection", 1, True),
        (_final_connection_error, TWO_RETRIES, "connection", 1, True),
        (_plugin_bug, TWO_RETRIES, "internal", 1, True),
        # retried, then wrapped "after N attempts": the object itself is raised on every attempt
        (_connection_error, ONE_RETRY, "connection", 2, False),
    ],
)
async def test_llm_one_error_object_on_every_request(
    telemetry,
    make: Callable[[], BaseException],
    conn_options: APIConnectOptions,
    error_class: str,
    attempts: int,
    caller_gets_it: bool,
) -> None:
    error = make()
    model = ScriptedLLM([raising(error)])
    requests = 3
    for _ in range(requests):
        with pytest.raises(type(error) if caller_gets_it else APIConnectionError) as caught:
            await asyncio.wait_for(chat(model, conn_options), BOUND)
        assert (caught.value is error) is caller_gets_it
        if caller_gets_it:
            # the precondition of the bug: a stale context the next request's chain starts with
            assert isinstance(error.__context__, StopAsyncIteration)
    assert model.calls == requests * attempts

    expected = type_name(type(error))
    got = attrs(telemetry)
    assert len(got) == requests * attempts
    assert [(a[n.A_ATTEMPT], a[n.A_FINAL]) for a in got] == [
        (i, i == attempts - 1) for _ in range(requests) for i in range(attempts)
    ]
    for a in got:
        assert (a[n.A_ERROR_TYPE], a[n.A_ERROR_CLASS], a[n.A_ROOT_CAUSE_TYPE]) == (
            expected,
            error_class,
            expected,
        )
        assert a[n.A_FIRST_ROOT_CAUSE_TYPE] == expected
        assert a[n.A_MASKED] is False
    for labels in telemetry.series():
        assert ("root_cause", "StopAsyncIteration") not in labels[1]


async def synthesize(model: ScriptedTTS) -> None:
    async with model.synthesize("hi", conn_options=NO_RETRY) as stream:
        async for _ in stream:
            pass


async def recognize(model: ScriptedSTT) -> None:
    stream = model.stream(conn_options=ONE_RETRY)
    stream.push_frame(audio_frame())
    async with stream:
        async for _ in stream:
            pass


@pytest.mark.asyncio
async def test_tts_one_error_object_on_every_request(telemetry) -> None:
    error = APIConnectionError("tts refused", retryable=True)
    model = ScriptedTTS([raising(error)])
    for _ in range(3):
        with pytest.raises(APIConnectionError) as caught:
            await asyncio.wait_for(synthesize(model), BOUND)
        assert caught.value is error
        assert isinstance(error.__context__, StopAsyncIteration)
    got = [(a[n.A_COMPONENT], a[n.A_ERROR_CLASS], a[n.A_ROOT_CAUSE_TYPE]) for a in attrs(telemetry)]
    assert got == [("tts", "connection", "livekit.agents.APIConnectionError")] * 3


@pytest.mark.asyncio
async def test_stt_one_error_object_on_every_request(telemetry) -> None:
    # a plain exception (not an APIError) is not retried: the caller gets it from __anext__
    error = RuntimeError("stt plugin bug")
    model = ScriptedSTT([raising(error)], streaming=True)
    for _ in range(3):
        with pytest.raises(RuntimeError) as caught:
            await asyncio.wait_for(recognize(model), BOUND)
        assert caught.value is error
        assert isinstance(error.__context__, StopAsyncIteration)
    got = [(a[n.A_COMPONENT], a[n.A_ERROR_CLASS], a[n.A_ROOT_CAUSE_TYPE]) for a in attrs(telemetry)]
    assert got == [("stt", "internal", "RuntimeError")] * 3
