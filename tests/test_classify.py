"""``otel_agents._classify``: root causes, quota bodies, terminal rules and error classes.

Provider errors are built by the providers' own SDK code wherever it is installed (the openai
SDK's ``_make_status_error_from_response`` from a real ``httpx2.Response``, the anthropic SDK's
likewise, openai realtime events through ``RealtimeErrorEvent.construct`` as livekit does) and
re-raised the way the livekit plugins re-raise them. The JSON shapes are the providers' real
ones; each is quoted with its source next to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import ssl
import string
import tracemalloc
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, ClassVar

import aiohttp
import httpx2
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from livekit.agents import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    create_api_error_from_http,
)
from multidict import CIMultiDict, CIMultiDictProxy
from openai.types.realtime import RealtimeErrorEvent, ResponseDoneEvent
from yarl import URL

from otel_agents import names as n
from otel_agents._classify import (
    CREDIT_CATEGORIES,
    MAX_CHAIN,
    MAX_SCAN_CHARS,
    PROVIDER_TERMINAL_CODES,
    QUOTA_BODY_TYPE,
    Classification,
    Quota,
    classify,
    exception_chain,
    find_quota,
    is_credit_category,
    root_index,
    safe_str,
    type_name,
)
from otel_agents._classify import quota as quota_module
from otel_agents._classify.quota import _MAX_JSON_STARTS as MAX_JSON_STARTS

from scripted import gateway_status_error, openai_status_error, ssl_connection_error

MODULE = __name__  # "tests.test_classify" or "test_classify", as pytest imported it
_REQUEST = httpx2.Request("POST", "https://agent-gateway.livekit.cloud/v1/chat/completions")

# --- helpers ---------------------------------------------------------------------------------


def caught(raise_it: Callable[[], object]) -> BaseException:
    """The exception ``raise_it`` raises, with the chain Python gave it."""
    try:
        raise_it()
    except BaseException as e:
        return e
    raise AssertionError("nothing was raised")


def raising(exc: BaseException) -> Callable[[], None]:
    def raise_it() -> None:
        raise exc

    return raise_it


def linked(*excs: BaseException) -> BaseException:
    """``excs[0]`` caused by ``excs[1]`` caused by ... (``raise a from b``)."""
    for outer, inner in itertools.pairwise(excs):
        outer.__cause__ = inner
    return excs[0]


def gateway_body(category: str | None, *, quota_type: str = "llm") -> dict[str, Any]:
    """The gateway's 429 body (the LiveKit Inference gateway's, as quoted in
    livekit/agents PR #6012): ``error`` is a bare string, the quota fields sit at the top."""
    body: dict[str, Any] = {
        "error": f"LLM token credit quota exceeded, category: {category}, remaining: 0",
        "type": QUOTA_BODY_TYPE,
        "quota_type": quota_type,
        "hint": "Wait for the next billing cycle or upgrade your plan.",
        "remaining_limit": "0",
    }
    if category is not None:
        body["category"] = category
    return body


def openai_error_body(message: str, type_: str, code: str | None) -> dict[str, Any]:
    """OpenAI's error JSON: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def realtime_error(error: dict[str, Any]) -> Any:
    """The ``body`` livekit's openai realtime session puts on its ``APIError``: the event's
    ``error`` object, built by ``RealtimeErrorEvent.construct(**event)`` (openai.py:1277)."""
    event = RealtimeErrorEvent.construct(type="error", event_id="event_1", error=error)
    return event.error


def wrapped_like_livekit(err: openai.APIStatusError) -> APIStatusError:
    """As ``livekit/agents/inference/llm.py:616-625`` (the openai plugin's base): ``from None``."""
    return caught(lambda: _reraise(err))  # type: ignore[return-value]


def _reraise(err: openai.APIStatusError) -> None:
    try:
        raise err
    except openai.APIStatusError as e:
        raise APIStatusError(
            e.message, status_code=e.status_code, request_id=e.request_id, body=e.body
        ) from None


class APIQuotaExceededError(APIStatusError):
    """The typed error livekit/agents PR #6012 adds, as a test double: quota fields
    and ``terminal`` on the error itself, derived from the category unless given."""

    def __init__(
        self,
        message: str = "quota exceeded",
        *,
        body: object = None,
        quota_type: object = None,
        category: object = None,
        hint: object = None,
        remaining_limit: object = None,
        terminal: object = None,
    ) -> None:
        credits = category in CREDIT_CATEGORIES if isinstance(category, str) else False
        super().__init__(message, status_code=429, body=body, retryable=not credits)
        self.quota_type = quota_type
        self.category = category
        self.hint = hint
        self.remaining_limit = remaining_limit
        self.terminal = credits if terminal is None else terminal


class Boom(Exception):
    pass


def boom(*_args: object, **_kwargs: object) -> Any:
    raise Boom("hostile")


class Hostile:
    """A value every dunder of which raises (incl. ``__class__``, read by ``isinstance``)."""

    __hash__ = boom  # type: ignore[assignment]
    __eq__ = boom  # type: ignore[assignment]
    __ne__ = boom  # type: ignore[assignment]
    __str__ = boom
    __repr__ = boom
    __len__ = boom
    __iter__ = boom
    __bool__ = boom
    __getattr__ = boom
    __class__ = property(boom)  # type: ignore[assignment]


class HostileStr(str):
    """A string whose own methods all raise: only ``str``'s C slots may touch it."""

    __hash__ = boom  # type: ignore[assignment]
    __eq__ = boom  # type: ignore[assignment]
    __len__ = boom
    __getitem__ = boom
    __contains__ = boom
    __str__ = boom
    lower = boom
    find = boom
    split = boom


class HostileMeta(type):
    """Classes that cannot be hashed or compared (dict-cache lookups raise)."""

    __hash__ = boom  # type: ignore[assignment]
    __eq__ = boom  # type: ignore[assignment]


def assert_sane(c: Classification) -> None:
    assert c.error_class in n.ERROR_CLASSES
    assert type(c.terminal) is bool
    assert c.status_code is None or (type(c.status_code) is int and 100 <= c.status_code <= 599)
    assert type(c.error_type) is str
    assert type(c.root_cause_type) is str
    if c.quota is not None:
        for value in (c.quota.quota_type, c.quota.category, c.quota.hint, c.quota.remaining_limit):
            assert value is None or type(value) is str
        assert c.error_class in ("quota_exhausted", "rate_limited")


#: plumbing, never a cause at the bottom of a chain (by class name, anywhere in the MRO)
ARTEFACTS = frozenset({"CancelledError", "StopAsyncIteration", "StopIteration"})


def is_artefact(exc: object) -> bool:
    return not ARTEFACTS.isdisjoint(k.__name__ for k in type(exc).__mro__)


def expected_root(chain: list[BaseException]) -> BaseException:
    """The rule, restated: the deepest link that is not an artefact, else the deepest link."""
    for exc in reversed(chain):
        if not is_artefact(exc):
            return exc
    return chain[-1]


@dataclass
class Work:
    """What one call did, counted rather than timed (a timing is flaky on a loaded machine)."""

    #: the length of every text handed to the JSON decoder, from where it starts decoding
    decoded: list[int]
    #: the most memory the call held at once, as tracemalloc traced it
    peak_bytes: int
    #: the exceptions of the input whose cause or context was read
    links_read: int


class Counted(ValueError):
    """An exception that counts the reads of its ``__cause__`` and ``__context__``."""

    reads: ClassVar[Counter[int]] = Counter()

    def __getattribute__(self, name: str) -> Any:
        if name in ("__cause__", "__context__"):
            Counted.reads[id(self)] += 1
        return super().__getattribute__(name)


def work(fn: Callable[[], object], monkeypatch: pytest.MonkeyPatch) -> Work:
    """Run ``fn`` once to warm the caches, then once more, counting its work."""
    decoded: list[int] = []
    real = quota_module._DECODER

    class CountingDecoder:
        def raw_decode(self, s: str, idx: int = 0) -> tuple[Any, int]:
            decoded.append(len(s) - idx)
            return real.raw_decode(s, idx)

    monkeypatch.setattr(quota_module, "_DECODER", CountingDecoder())
    fn()
    decoded.clear()
    Counted.reads.clear()
    tracemalloc.start()
    try:
        fn()
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return Work(decoded, peak, len(Counted.reads))


#: a call on a 10 MB input holds at most this much memory: it never copies, decodes or parses
#: the input whole (a copy alone would be 10 MB)
MAX_PEAK_BYTES = 512 * 1024


# --- type_name and safe_str ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "name"),
    [
        (TimeoutError, "TimeoutError"),
        (ssl.SSLCertVerificationError, "ssl.SSLCertVerificationError"),
        (openai.RateLimitError, "openai.RateLimitError"),  # openai._exceptions
        (APIStatusError, "livekit.agents.APIStatusError"),  # livekit.agents._exceptions
        (httpx2.ConnectError, "httpx2.ConnectError"),
        (aiohttp.WSServerHandshakeError, "aiohttp.client_exceptions.WSServerHandshakeError"),
        (asyncio.CancelledError, "asyncio.exceptions.CancelledError"),
    ],
)
def test_type_name(cls: type, name: str) -> None:
    assert type_name(cls) == name
    assert type_name(cls) == name  # cached


def test_type_name_of_hostile_classes() -> None:
    private = type("Err", (Exception,), {"__module__": "_private.mod"})
    assert type_name(private) == "Err"
    weird_module = type("Err", (Exception,), {"__module__": 42})
    assert type_name(weird_module) == "unknown"
    unhashable = HostileMeta("Unhashable", (Exception,), {})
    assert type_name(unhashable) == f"{MODULE}.Unhashable"


def test_safe_str() -> None:
    assert safe_str(ValueError("plain")) == "plain"

    class BadStr(Exception):
        __str__ = boom

    assert safe_str(BadStr("x")) == "BadStr('x')"

    class BadBoth(Exception):
        __str__ = boom
        __repr__ = boom

    assert safe_str(BadBoth("x")) == f"<unprintable {MODULE}.test_safe_str.<locals>.BadBoth>"

    class SubclassStr(Exception):
        def __str__(self) -> str:
            return HostileStr("sneaky")

    text = safe_str(SubclassStr())
    assert type(text) is str
    assert str.__eq__(text, "sneaky")

    class NotAStr(Exception):
        def __str__(self) -> str:
            return 42  # type: ignore[return-value]

    assert safe_str(NotAStr("y")) == "NotAStr('y')"


# --- the chain and the root cause --------------------------------------------------------------


def test_cause_is_preferred_over_context() -> None:
    def raise_it() -> None:
        try:
            raise KeyError("context")
        except KeyError:
            raise ValueError("outer") from OSError("cause")

    exc = caught(raise_it)
    assert isinstance(exc.__context__, KeyError)
    chain = exception_chain(exc)
    assert [type(e) for e in chain] == [ValueError, OSError]
    c = classify(exc)
    assert c.root is chain[-1]
    assert c.root_cause_type == "OSError"
    assert c.error_type == "ValueError"


def test_context_is_followed_when_there_is_no_cause() -> None:
    def raise_it() -> None:
        try:
            raise ssl.SSLError("handshake")
        except ssl.SSLError:
            raise APIConnectionError() from None  # __suppress_context__ = True

    exc = caught(raise_it)
    assert exc.__suppress_context__ is True
    assert exc.__cause__ is None
    c = classify(exc)
    assert c.root_cause_type == "ssl.SSLError"
    assert c.error_class == "connection"
    assert [type(e) for e in exception_chain(exc)] == [APIConnectionError, ssl.SSLError]


def test_implicit_context() -> None:
    def raise_it() -> None:
        try:
            raise TimeoutError
        except TimeoutError:
            raise RuntimeError("while handling")  # noqa: B904

    c = classify(caught(raise_it))
    assert (c.error_type, c.root_cause_type, c.error_class) == (
        "RuntimeError",
        "TimeoutError",
        "timeout",
    )


def test_the_realistic_ssl_chain() -> None:
    exc = caught(ssl_connection_error)
    c = classify(exc)
    assert [type_name(type(e)) for e in exception_chain(exc)] == [
        "livekit.agents.APIConnectionError",
        "openai.APIConnectionError",
        "httpx2.ConnectError",
        "ssl.SSLCertVerificationError",
    ]
    assert c == Classification(
        error_type="livekit.agents.APIConnectionError",
        status_code=None,
        root=c.root,
        root_cause_type="ssl.SSLCertVerificationError",
        error_class="connection",
        quota=None,
        terminal=False,
    )


def test_cycles_terminate() -> None:
    a, b = ValueError("a"), KeyError("b")
    a.__cause__, b.__cause__ = b, a
    assert exception_chain(a) == [a, b]
    assert classify(a).root is b

    c, d = ValueError("c"), KeyError("d")
    c.__context__, d.__context__ = d, c
    assert exception_chain(c) == [c, d]

    selfish = RuntimeError("me")
    selfish.__cause__ = selfish
    assert exception_chain(selfish) == [selfish]
    assert classify(selfish).root is selfish

    # a cause cycle whose members also carry contexts elsewhere
    e, f, g = OSError("e"), OSError("f"), OSError("g")
    e.__cause__, f.__cause__, g.__cause__ = f, g, f
    e.__context__ = g
    assert exception_chain(e) == [e, f, g]


def test_a_2000_deep_chain_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    excs: list[BaseException] = [Counted(str(i)) for i in range(2000)]
    top = linked(*excs)
    chain = exception_chain(top)
    assert len(chain) == MAX_CHAIN
    assert chain == excs[:MAX_CHAIN]
    assert exception_chain(top, limit=3) == excs[:3]
    c = classify(top)
    assert c.root is excs[MAX_CHAIN - 1]
    assert c.error_class == "internal"
    done = work(lambda: classify(top), monkeypatch)
    assert done.links_read <= MAX_CHAIN  # never past the bound, whatever the depth


def test_an_unreadable_cause_falls_back_to_the_context() -> None:
    class BadCause(Exception):
        @property  # type: ignore[misc]
        def __cause__(self) -> BaseException:  # type: ignore[override]
            raise Boom

    exc = BadCause()
    exc.__context__ = TimeoutError()
    assert [type(e) for e in exception_chain(exc)] == [BadCause, TimeoutError]
    c = classify(exc)
    assert c.error_class == "timeout"


def test_junk_links_end_the_chain() -> None:
    class JunkCause(Exception):
        __cause__ = "not an exception"  # type: ignore[assignment]

    exc = JunkCause()
    assert exception_chain(exc) == [exc]
    exc.__context__ = KeyError()
    assert [type(e) for e in exception_chain(exc)] == [JunkCause, KeyError]

    class HostileContext(Exception):
        __cause__ = None  # type: ignore[assignment]
        __context__ = property(boom)  # type: ignore[assignment]

    assert len(exception_chain(HostileContext())) == 1

    class HostileLink(Exception):
        __cause__ = Hostile()  # type: ignore[assignment]

    assert len(exception_chain(HostileLink())) == 1
    assert_sane(classify(HostileLink()))


@pytest.mark.parametrize(
    "make", [lambda: None, lambda: "str", lambda: 42, object, Hostile, lambda: [1], lambda: b"b"]
)
def test_classify_of_non_exceptions(make: Callable[[], Any]) -> None:
    junk = make()
    c = classify(junk)
    assert_sane(c)
    assert c.root is junk
    assert c.error_class == "unknown"
    assert c.quota is None
    assert c.terminal is False


# --- artefacts at the bottom of a chain are never the root cause --------------------------------


def reraised_in_stop_async_iteration(err: BaseException) -> Callable[[], None]:
    """As livekit's stream ``__anext__`` re-raises its task's exception (``llm/llm.py``,
    ``tts/tts.py``, ``stt/stt.py``): inside ``except StopAsyncIteration``."""

    def raise_it() -> None:
        try:
            raise StopAsyncIteration
        except StopAsyncIteration:
            raise err  # noqa: B904

    return raise_it


def over_a_cancel_scope(err: BaseException) -> Callable[[], None]:
    """``err`` raised while a deadline's ``CancelledError`` is handled (anyio's cancel scopes,
    ``asyncio.wait_for``): the ``CancelledError`` becomes its ``__context__``."""

    def raise_it() -> None:
        try:
            raise asyncio.CancelledError("Cancelled via cancel scope 1; reason: deadline exceeded")
        except asyncio.CancelledError:
            raise err  # noqa: B904

    return raise_it


def test_a_bare_cancelled_error_stays_cancelled() -> None:
    c = classify(caught(raising(asyncio.CancelledError())))
    assert (c.error_class, c.root_cause_type) == ("cancelled", "asyncio.exceptions.CancelledError")

    async def cancelled_task() -> BaseException:
        task = asyncio.ensure_future(asyncio.sleep(10))
        await asyncio.sleep(0)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError as e:
            return e
        raise AssertionError("not cancelled")

    exc = asyncio.run(cancelled_task())
    chain = exception_chain(exc)
    assert all(is_artefact(e) for e in chain)
    c = classify(exc)
    assert (c.error_class, c.root) == ("cancelled", chain[-1])


def test_a_connection_error_over_a_cancel_scope() -> None:
    def raise_it() -> None:
        try:
            over_a_cancel_scope(httpx2.ConnectError("connect failed", request=_REQUEST))()
        except httpx2.ConnectError as e:
            raise APIConnectionError(retryable=True) from e

    exc = caught(raise_it)
    assert [type_name(type(e)) for e in exception_chain(exc)] == [
        "livekit.agents.APIConnectionError",
        "httpx2.ConnectError",
        "asyncio.exceptions.CancelledError",
    ]
    c = classify(exc)
    assert (c.error_class, c.root_cause_type, c.terminal) == (
        "connection",
        "httpx2.ConnectError",
        False,
    )
    assert root_index(exception_chain(exc)) == 1


def test_a_timeout_over_a_cancel_scope() -> None:
    # httpcore2 on anyio: ReadTimeout <- TimeoutError <- CancelledError
    def raise_it() -> None:
        try:
            over_a_cancel_scope(TimeoutError())()
        except TimeoutError as e:
            raise httpx2.ReadTimeout("", request=_REQUEST) from e

    c = classify(caught(raise_it))
    assert (c.error_class, c.root_cause_type) == ("timeout", "TimeoutError")
    # a wrapper that says nothing lets the cause speak; the artefact never does
    c = classify(caught(over_a_cancel_scope(Boom())))
    assert (c.error_class, c.root_cause_type) == ("unknown", f"{MODULE}.Boom")


@pytest.mark.parametrize(
    ("err", "error_class"),
    [
        (APIConnectionError("refused", retryable=True), "connection"),
        (APITimeoutError(), "timeout"),
        (RuntimeError("plugin bug"), "internal"),
        (openai.APITimeoutError(request=_REQUEST), "timeout"),
    ],
)
def test_an_error_reraised_by_a_stream_keeps_its_own_root_cause(
    err: Exception, error_class: str
) -> None:
    exc = caught(reraised_in_stop_async_iteration(err))
    assert exc is err
    assert type(exc.__context__) is StopAsyncIteration
    c = classify(exc)
    assert (c.root, c.root_cause_type, c.error_class) == (err, type_name(type(err)), error_class)
    # raised again later, as livekit's test fakes raise one stored exception: the stale
    # context is still there (a raise outside any handler leaves __context__ as it is)
    again = caught(raising(err))
    assert type(again.__context__) is StopAsyncIteration
    assert classify(again).root_cause_type == type_name(type(err))


def test_a_status_error_over_artefacts_keeps_its_status() -> None:
    exc = caught(reraised_in_stop_async_iteration(APIStatusError("x", status_code=503)))
    c = classify(exc)
    assert (c.error_class, c.status_code, c.root_cause_type) == (
        "server_error",
        503,
        "livekit.agents.APIStatusError",
    )


@pytest.mark.parametrize(
    ("raise_it", "error_class", "root"),
    [
        (raising(StopAsyncIteration()), "internal", "StopAsyncIteration"),
        (raising(StopIteration()), "internal", "StopIteration"),
        # a CancelledError re-raised by a stream: the chain is all plumbing, kept as it is
        (
            reraised_in_stop_async_iteration(asyncio.CancelledError()),
            "internal",
            "StopAsyncIteration",
        ),
        (
            over_a_cancel_scope(StopAsyncIteration()),
            "cancelled",
            "asyncio.exceptions.CancelledError",
        ),
    ],
)
def test_chains_of_artefacts_only_keep_their_deepest_link(
    raise_it: Callable[[], None], error_class: str, root: str
) -> None:
    exc = caught(raise_it)
    chain = exception_chain(exc)
    assert all(is_artefact(e) for e in chain)
    c = classify(exc)
    assert (c.error_class, c.root_cause_type, c.root) == (error_class, root, chain[-1])
    assert root_index(chain) == len(chain) - 1


def test_several_trailing_artefacts_are_skipped_and_only_trailing_ones() -> None:
    def stacked() -> None:  # RuntimeError <- StopAsyncIteration <- CancelledError
        try:
            over_a_cancel_scope(StopAsyncIteration())()
        except StopAsyncIteration:
            raise RuntimeError("cannot reuse already awaited coroutine")  # noqa: B904

    exc = caught(stacked)
    assert len(exception_chain(exc)) == 3
    c = classify(exc)
    assert (c.error_class, c.root_cause_type, c.root) == ("internal", "RuntimeError", exc)

    def in_between() -> None:  # APIConnectionError <- StopAsyncIteration <- ssl.SSLError
        try:
            try:
                raise ssl.SSLError("handshake")
            except ssl.SSLError:
                raise StopAsyncIteration  # noqa: B904
        except StopAsyncIteration:
            raise APIConnectionError()  # noqa: B904

    c = classify(caught(in_between))
    assert (c.error_class, c.root_cause_type) == ("connection", "ssl.SSLError")


def test_any_class_named_cancelled_error_is_an_artefact() -> None:
    import concurrent.futures

    grpc_like = type("CancelledError", (Exception,), {"__module__": "grpc_like"})
    subclass = type("ScopeCancelled", (asyncio.CancelledError,), {"__module__": "anyio_like"})
    named = type("Named", (StopIteration,), {"__module__": "lib"})
    for artefact in (concurrent.futures.CancelledError(), grpc_like(), subclass(), named()):

        def raise_it(artefact: BaseException = artefact) -> None:
            try:
                raise artefact
            except BaseException:
                raise RuntimeError("x")  # noqa: B904

        c = classify(caught(raise_it))
        assert (c.error_class, c.root_cause_type) == ("internal", "RuntimeError")
        alone = classify(artefact)
        assert alone.root is artefact
    # a name that merely contains it is not one
    near = type("NotCancelledErrorAtAll", (Exception,), {"__module__": "lib"})
    c = classify(linked(APIConnectionError(), near()))
    assert c.root_cause_type == "lib.NotCancelledErrorAtAll"


def test_hostile_artefacts() -> None:
    # an unhashable class named CancelledError is still recognised (the cache cannot hold it)
    unhashable = HostileMeta("CancelledError", (Exception,), {})
    c = classify(linked(APIConnectionError(), unhashable()))
    assert (c.error_class, c.root_cause_type) == ("connection", "livekit.agents.APIConnectionError")

    class NoMro(type):
        def __getattribute__(cls, name: str) -> Any:
            if name in ("__mro__", "__name__"):
                raise Boom
            return super().__getattribute__(name)

    opaque = NoMro("Opaque", (Exception,), {})
    c = classify(linked(APIConnectionError(), opaque()))
    assert_sane(c)
    assert type(c.root) is opaque  # not known to be an artefact: it is the root cause

    class LyingClass(StopAsyncIteration):
        __class__ = property(boom)  # type: ignore[assignment]

    c = classify(linked(TimeoutError(), LyingClass()))
    assert (c.error_class, c.root_cause_type) == ("timeout", "TimeoutError")
    for junk in (Hostile(), "not an exception", None):
        exc = APIConnectionError()
        with contextlib.suppress(Exception):
            exc.__context__ = junk  # type: ignore[assignment]
        assert_sane(classify(exc))


def test_a_chain_of_artefacts_up_to_the_bound() -> None:
    tail: list[BaseException] = [StopAsyncIteration() for _ in range(2 * MAX_CHAIN)]
    exc = linked(APITimeoutError(), *tail)
    assert len(exception_chain(exc)) == MAX_CHAIN
    c = classify(exc)
    assert (c.error_class, c.root) == ("timeout", exc)
    c = classify(tail[0])  # artefacts all the way down to the cut: the deepest one read
    assert (c.error_class, c.root) == ("internal", tail[MAX_CHAIN - 1])


# --- quota body locations (docs/livekit.md) ----------------------------------------------------


def test_quota_from_the_errors_own_attributes() -> None:
    exc = APIQuotaExceededError(
        quota_type="llm",
        category="MaxGatewayCredits",
        hint="Wait for the next billing cycle",
        remaining_limit="0",
    )
    c = classify(exc)
    assert c.quota == Quota("llm", "MaxGatewayCredits", "Wait for the next billing cycle", "0")
    assert (c.error_class, c.terminal, c.status_code) == ("quota_exhausted", True, 429)
    assert c.error_type == f"{MODULE}.APIQuotaExceededError"


def test_attributes_need_a_category_or_quota_type() -> None:
    assert find_quota([APIQuotaExceededError(hint="only a hint")]) is None
    assert find_quota([APIQuotaExceededError(quota_type="stt")]) == Quota("stt", None, None, None)
    # non-str fields are dropped (an unhashable category must not crash anything)
    exc = APIQuotaExceededError(category=["MaxGatewayCredits"], quota_type={"a": 1}, terminal=None)
    assert find_quota([exc]) is None
    exc = APIQuotaExceededError(category="MaxGatewayCredits", hint=["x"], remaining_limit=12)
    assert find_quota([exc]) == Quota(None, "MaxGatewayCredits", None, "12")


def test_quota_from_a_dict_body_at_the_top_level() -> None:
    exc = APIStatusError("quota", status_code=429, body=gateway_body("MaxConcurrentGatewayLLMRpm"))
    c = classify(exc)
    assert c.quota == Quota(
        "llm",
        "MaxConcurrentGatewayLLMRpm",
        "Wait for the next billing cycle or upgrade your plan.",
        "0",
    )
    assert (c.error_class, c.terminal) == ("rate_limited", False)


def test_quota_from_a_dict_body_nested_under_error() -> None:
    body = {
        "error": {"type": QUOTA_BODY_TYPE, "quota_type": "tts", "category": "MaxGatewayCredits"}
    }
    c = classify(APIStatusError("quota", status_code=429, body=body))
    assert c.quota == Quota("tts", "MaxGatewayCredits", None, None)
    assert (c.error_class, c.terminal) == ("quota_exhausted", True)


def test_a_marker_without_fields_is_still_a_quota_error() -> None:
    c = classify(APIStatusError("quota", status_code=429, body={"type": QUOTA_BODY_TYPE}))
    assert c.quota == Quota(None, None, None, None)
    assert (c.error_class, c.terminal) == ("rate_limited", False)  # unknown category: transient


def test_numbers_in_the_body_become_strings() -> None:
    body = {"type": QUOTA_BODY_TYPE, "category": "MaxGatewayCredits", "remaining_limit": 0}
    assert find_quota([APIError("q", body=body)]) == Quota(None, "MaxGatewayCredits", None, "0")
    body = {"type": QUOTA_BODY_TYPE, "remaining_limit": 1.5, "hint": True, "quota_type": None}
    assert find_quota([APIError("q", body=body)]) == Quota(None, None, None, "1.5")


def test_the_openai_sdk_narrows_body_and_the_response_keeps_it() -> None:
    # the openai SDK's own _make_status_error: body = body.get("error", body)
    err = openai_status_error(429, gateway_body("MaxGatewayCredits"))
    assert isinstance(err, openai.RateLimitError)
    assert err.body == "LLM token credit quota exceeded, category: MaxGatewayCredits, remaining: 0"
    assert err.message == "Error code: 429"
    c = classify(err)
    assert c.quota == Quota(
        "llm", "MaxGatewayCredits", "Wait for the next billing cycle or upgrade your plan.", "0"
    )
    assert (c.error_class, c.terminal, c.status_code) == ("quota_exhausted", True, 429)
    assert c.error_type == c.root_cause_type == "openai.RateLimitError"


@pytest.mark.parametrize(
    ("category", "error_class", "terminal"),
    [
        ("MaxGatewayCredits", "quota_exhausted", True),
        ("MaxConcurrentGatewayLLMRpm", "rate_limited", False),
        ("MaxConcurrentGatewayLLMTpm", "rate_limited", False),
    ],
)
def test_the_gateway_429_as_livekit_emits_it(
    category: str, error_class: str, terminal: bool
) -> None:
    exc = caught(gateway_status_error(429, gateway_body(category)))
    # livekit re-raises `from None`: the quota is on the hidden __context__ only
    assert type(exc) is APIStatusError
    assert exc.__cause__ is None
    assert exc.__suppress_context__
    assert isinstance(exc.__context__, openai.RateLimitError)
    assert isinstance(exc.body, str)
    c = classify(exc)
    assert c.quota is not None
    assert c.quota.category == category
    assert c.quota.quota_type == "llm"
    assert (c.error_class, c.terminal, c.status_code) == (error_class, terminal, 429)
    assert c.error_type == "livekit.agents.APIStatusError"
    assert c.root_cause_type == "openai.RateLimitError"


def test_without_the_context_only_the_category_fragment_is_left() -> None:
    # livekit later re-raises the error inside `except StopAsyncIteration`, which overwrites
    # __context__: the string body's "category: X" fragment is all that is left
    exc = caught(gateway_status_error(429, gateway_body("MaxGatewayCredits")))
    exc.__context__ = StopAsyncIteration()
    c = classify(exc)
    assert c.quota == Quota(None, "MaxGatewayCredits", None, None)
    assert (c.error_class, c.terminal) == ("quota_exhausted", True)
    # and that StopAsyncIteration is an artefact, not the root cause
    assert (c.root, c.root_cause_type) == (exc, "livekit.agents.APIStatusError")


def test_quota_from_an_object_body_the_realtime_path() -> None:
    body = realtime_error(
        {
            "type": QUOTA_BODY_TYPE,
            "code": "quota_exceeded",
            "message": "LLM credit quota exceeded",
            "quota_type": "llm",
            "category": "MaxGatewayCredits",
            "hint": "Wait for the next billing cycle",
        }
    )
    assert body.category == "MaxGatewayCredits"  # an extra field of the openai model
    exc = APIError("OpenAI Realtime API returned an error", body=body, retryable=True)
    c = classify(exc)
    assert c.quota == Quota("llm", "MaxGatewayCredits", "Wait for the next billing cycle", None)
    assert (c.error_class, c.terminal, c.status_code) == ("quota_exhausted", True, None)

    plain = SimpleNamespace(type=QUOTA_BODY_TYPE, category="MaxConcurrentGatewayLLMTpm")
    c = classify(APIError("realtime", body=plain))
    assert c.quota == Quota(None, "MaxConcurrentGatewayLLMTpm", None, None)
    assert (c.error_class, c.terminal) == ("rate_limited", False)

    # an object body without the marker is not a quota
    other = SimpleNamespace(type="server_error", category="MaxGatewayCredits")
    assert classify(APIError("realtime", body=other)).quota is None


def test_quota_from_json_inside_the_message_the_tts_path() -> None:
    # inference/tts.py:780: APIError(f"LiveKit Inference TTS returned error: {msg.data}")
    payload = {
        "type": "error",
        "error": {"type": QUOTA_BODY_TYPE, "quota_type": "tts", "category": "MaxGatewayCredits"},
    }
    exc = APIError(f"LiveKit Inference TTS returned error: {json.dumps(payload)}")
    c = classify(exc)
    assert c.quota == Quota("tts", "MaxGatewayCredits", None, None)
    assert (c.error_class, c.terminal, c.status_code) == ("quota_exhausted", True, None)

    flat = {**gateway_body("MaxConcurrentGatewayTTS", quota_type="tts"), "hint": "slow down"}
    exc = APIError(f"LiveKit Inference TTS returned error: {json.dumps(flat)} (retrying)")
    assert find_quota([exc]) == Quota("tts", "MaxConcurrentGatewayTTS", "slow down", "0")


def test_a_websocket_error_payload_names_its_quota_by_quota_type() -> None:
    # a {"type": "error"} websocket message cannot also say type=inference_quota_exceeded; the
    # STT plugin logs its quota_type/category (docs/livekit.md), the TTS one embeds it
    payload = {"type": "error", "code": 429, "quota_type": "tts", "category": "MaxGatewayCredits"}
    exc = APIError(f"LiveKit Inference TTS returned error: {json.dumps(payload)}")
    assert find_quota([exc]) == Quota("tts", "MaxGatewayCredits", None, None)
    assert classify(exc).terminal is True


def test_json_in_the_message_is_searched_from_several_openings() -> None:
    inner = json.dumps({"type": QUOTA_BODY_TYPE, "category": "MaxBargeInRPM"})
    exc = APIError("bad {json here, then {" + inner)  # the outer object never closes
    assert find_quota([exc]) == Quota(None, "MaxBargeInRPM", None, None)
    # a message in args[0] only (no .message attribute)
    assert find_quota([RuntimeError("TTS error: " + inner)]) == Quota(
        None, "MaxBargeInRPM", None, None
    )


def test_the_category_fragment_is_the_last_resort() -> None:
    exc = APIStatusError(
        "Error code: 429",
        status_code=429,
        body="LLM token credit quota exceeded, category: MaxGatewayCredits, remaining: 0",
    )
    c = classify(exc)
    assert c.quota == Quota(None, "MaxGatewayCredits", None, None)
    assert (c.error_class, c.terminal) == ("quota_exhausted", True)
    # quoted, python-repr and key=value spellings
    for text in (
        "quota: {'category': 'MaxConcurrentGatewaySTT'}",
        'quota exceeded {"category": "MaxConcurrentGatewaySTT"',
        "quota exceeded Category=MaxConcurrentGatewaySTT",
    ):
        assert find_quota([RuntimeError(text)]) == Quota(
            None, "MaxConcurrentGatewaySTT", None, None
        ), text
    # a category that is not about a quota is not a quota
    assert find_quota([ValueError("invalid category: violence")]) is None
    assert classify(APIStatusError("invalid category: x", status_code=400)).error_class == (
        "bad_request"
    )


def test_location_precedence_across_the_chain() -> None:
    attrs = APIQuotaExceededError(category="MaxConcurrentGatewaySTT", quota_type="stt")
    body = APIStatusError("b", status_code=429, body=gateway_body("MaxGatewayCredits"))
    response = openai_status_error(429, gateway_body("MaxConcurrentGatewayLLMTpm"))
    message = APIError(
        "x " + json.dumps({"type": QUOTA_BODY_TYPE, "category": "MaxBargeInRequests"})
    )
    fragment = RuntimeError("quota exceeded, category: MaxBargeInRPM")

    def category(*chain: BaseException) -> str | None:
        quota = find_quota(list(chain))
        return None if quota is None else quota.category

    # location order wins over position in the chain: attributes, body, response, message,
    # fragment, whichever exception of the chain carries them
    assert category(fragment, message, response, body, attrs) == "MaxConcurrentGatewaySTT"
    assert category(fragment, message, response, body) == "MaxGatewayCredits"
    assert category(fragment, message, response) == "MaxConcurrentGatewayLLMTpm"
    assert category(fragment, message) == "MaxBargeInRequests"
    assert category(fragment) == "MaxBargeInRPM"
    # within one location the outermost exception wins
    other = APIStatusError("c", status_code=429, body=gateway_body("MaxConcurrentGatewayTTS"))
    assert category(other, body) == "MaxConcurrentGatewayTTS"
    # and classify reads the chain the same way
    c = classify(linked(RuntimeError("quota, category: MaxBargeInRPM"), body))
    assert c.quota is not None
    assert c.quota.category == "MaxGatewayCredits"


# --- terminal rules ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "category",
    [
        "MaxGatewayCredits",
        "MaxBargeInRequests",
        "MaxFutureCredits",
        "monthly_credit_cap",
        "CREDITS",
        "SttCreditLimit",
    ],
)
def test_rule_2_credit_categories_are_terminal(category: str) -> None:
    assert is_credit_category(category)
    exc = caught(gateway_status_error(429, gateway_body(category)))
    c = classify(exc)
    assert c.quota is not None
    assert c.quota.category == category
    assert (c.error_class, c.terminal) == ("quota_exhausted", True)


@pytest.mark.parametrize(
    "category",
    [
        "MaxConcurrentGatewayLLMRpm",
        "MaxConcurrentGatewayLLMTpm",
        "MaxConcurrentGatewaySTT",
        "MaxConcurrentGatewayTTS",
        "MaxBargeInRPM",
        "SomeFutureCategory",
        None,
    ],
)
def test_rule_2_rate_and_unknown_categories_are_transient(category: str | None) -> None:
    assert not is_credit_category(category)
    exc = caught(gateway_status_error(429, gateway_body(category)))
    c = classify(exc)
    assert c.quota is not None
    assert c.quota.category == category
    assert (c.error_class, c.terminal) == ("rate_limited", False)


def test_rule_1_the_errors_own_terminal_flag_wins() -> None:
    # True on a rate-limit category
    exc = APIQuotaExceededError(category="MaxConcurrentGatewayLLMRpm", terminal=True)
    assert (classify(exc).terminal, classify(exc).error_class) == (True, "quota_exhausted")
    # False on a credit category
    exc = APIQuotaExceededError(category="MaxGatewayCredits", terminal=False)
    assert (classify(exc).terminal, classify(exc).error_class) == (False, "rate_limited")
    # False wins over rule 3 too (an error that says it is not terminal is believed)
    auth = APIStatusError("bad key", status_code=401)
    auth.terminal = False  # type: ignore[attr-defined]
    assert (classify(auth).terminal, classify(auth).error_class) == (False, "auth")
    # True on an error that is otherwise transient, found deep in the chain
    inner = TimeoutError()
    inner.terminal = True  # type: ignore[attr-defined]
    c = classify(linked(APIConnectionError(), inner))
    assert (c.terminal, c.error_class) == (True, "timeout")


@pytest.mark.parametrize("make", [lambda: 1, lambda: 0, lambda: "true", lambda: None, Hostile])
def test_rule_1_ignores_non_bool_flags(make: Callable[[], object]) -> None:
    flag = make()
    exc = APIQuotaExceededError(category="MaxGatewayCredits")
    exc.terminal = flag
    assert classify(exc).terminal is True  # rule 2 decides
    exc = APIQuotaExceededError(category="MaxBargeInRPM")
    exc.terminal = flag
    assert classify(exc).terminal is False


def test_rule_1_reads_a_terminal_property_safely() -> None:
    class Raising(APIStatusError):
        terminal = property(boom)

    c = classify(Raising("x", status_code=403))
    assert (c.terminal, c.error_class) == (True, "auth")  # rule 3 decides


@pytest.mark.parametrize(("status", "terminal"), [(429, False), (500, False), (400, False)])
def test_rule_4_otherwise_not_terminal(status: int, terminal: bool) -> None:
    assert classify(create_api_error_from_http("x", status=status)).terminal is terminal


# --- provider signals (rule 3), verified against each provider's real error shape -------------

# OpenAI: shapes from the API as users reported them verbatim, e.g.
#   429 insufficient_quota: github.com/langchain-ai/chat-langchain/issues/428,
#     github.com/ChatGPTNextWeb/NextChat/issues/3664 ("code": "insufficient_quota"), and the
#     older `"code": null` variant: github.com/ayaka14732/ChatGPTAPIFree/issues/16
#   400 billing_hard_limit_reached (type invalid_request_error):
#     github.com/dfinke/PowerShellAI/issues/127, github.com/Decryptu/DecryptGPT/issues/1
#   401 account_deactivated (type invalid_request_error):
#     github.com/ChatGPTNextWeb/NextChat/issues/4175, github.com/nat/openplayground/issues/143
#   401 invalid_api_key (type invalid_request_error): platform.openai.com error codes guide
OPENAI_CASES = [
    pytest.param(
        429,
        openai_error_body(
            "You exceeded your current quota, please check your plan and billing details.",
            "insufficient_quota",
            "insufficient_quota",
        ),
        "quota_exhausted",
        openai.RateLimitError,
        id="insufficient_quota",
    ),
    pytest.param(
        429,
        openai_error_body(
            "You exceeded your current quota, please check your plan and billing details.",
            "insufficient_quota",
            None,
        ),
        "quota_exhausted",
        openai.RateLimitError,
        id="insufficient_quota-code-null",
    ),
    pytest.param(
        400,
        openai_error_body(
            "Billing hard limit has been reached",
            "invalid_request_error",
            "billing_hard_limit_reached",
        ),
        "quota_exhausted",
        openai.BadRequestError,
        id="billing_hard_limit_reached",
    ),
    pytest.param(
        401,
        openai_error_body(
            "Incorrect API key provided: sk-abc***. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            "invalid_api_key",
        ),
        "auth",
        openai.AuthenticationError,
        id="invalid_api_key",
    ),
    pytest.param(
        401,
        openai_error_body(
            "The OpenAI account associated with this API key has been deactivated.",
            "invalid_request_error",
            "account_deactivated",
        ),
        "auth",
        openai.AuthenticationError,
        id="account_deactivated",
    ),
]


@pytest.mark.parametrize(("status", "body", "error_class", "sdk_class"), OPENAI_CASES)
def test_openai_signals_through_the_real_sdk(
    status: int, body: dict[str, Any], error_class: str, sdk_class: type
) -> None:
    err = openai_status_error(status, body)
    assert type(err) is sdk_class
    # the SDK narrows body to the inner error object and copies code/type onto the error
    assert err.body == body["error"]
    assert err.type == body["error"]["type"]
    assert err.code == body["error"]["code"]
    c = classify(err)
    assert (c.error_class, c.terminal, c.status_code, c.quota) == (error_class, True, status, None)

    wrapped = wrapped_like_livekit(err)
    assert wrapped.__cause__ is None
    assert wrapped.__context__ is err
    c = classify(wrapped)
    assert (c.error_class, c.terminal, c.status_code, c.quota) == (error_class, True, status, None)
    # the signal sits on the livekit error's (narrowed, dict) body: it survives a lost context
    wrapped.__context__ = None
    assert classify(wrapped).error_class == error_class
    assert classify(wrapped).terminal is True


def test_a_plain_openai_rate_limit_is_transient() -> None:
    body = openai_error_body(
        "Rate limit reached for gpt-4o in organization org-x on tokens per min (TPM)",
        "tokens",
        "rate_limit_exceeded",
    )
    c = classify(wrapped_like_livekit(openai_status_error(429, body)))
    assert (c.error_class, c.terminal, c.quota) == ("rate_limited", False, None)


# Anthropic: "Your credit balance is too low" is an HTTP 400 invalid_request_error, body
#   {"type": "error", "error": {"type": "invalid_request_error", "message": "Your credit
#   balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or
#   purchase credits."}, "request_id": "req_..."}
# as the API returns it verbatim (github.com/anthropics/claude-code/issues/66314,
# github.com/anthropics/claude-quickstarts/issues/229); error shapes: docs.anthropic.com
# /claude/reference/errors-and-rate-limits ("Errors are always returned as JSON, with a
# top-level error object that always includes a type and message"). HTTP 402 is
# "billing_error" (anthropic SDK: types/shared/error_type.py, PaymentRequiredError).
ANTHROPIC_CREDIT_BODY = {
    "type": "error",
    "error": {
        "type": "invalid_request_error",
        "message": "Your credit balance is too low to access the Anthropic API. Please go to "
        "Plans & Billing to upgrade or purchase credits.",
    },
    "request_id": "req_011CbrFTcXhtiMzr3s6EocF7",
}


def anthropic_status_error(status: int, body: object) -> Any:
    """An anthropic SDK error as the SDK builds it from an HTTP response."""
    anthropic = pytest.importorskip("anthropic")
    request = httpx2.Request("POST", "https://api.anthropic.com/v1/messages")
    response = httpx2.Response(status, json=body, request=request)
    client = anthropic.AsyncAnthropic(api_key="sk-ant-test")
    return client._make_status_error_from_response(response)


def wrap_anthropic(err: Any, *, suppress: bool) -> BaseException:
    """livekit-plugins-anthropic re-raises SDK status errors as livekit ``APIStatusError``."""

    def raise_it() -> None:
        try:
            raise err
        except Exception as e:
            new = APIStatusError(
                e.message, status_code=e.status_code, request_id=e.request_id, body=e.body
            )
            if suppress:
                raise new from None
            raise new from e

    return caught(raise_it)


@pytest.mark.parametrize(
    ("status", "body", "error_class", "terminal", "sdk_class"),
    [
        (400, ANTHROPIC_CREDIT_BODY, "quota_exhausted", True, "BadRequestError"),
        (
            402,
            {"type": "error", "error": {"type": "billing_error", "message": "Payment required"}},
            "quota_exhausted",
            True,
            "PaymentRequiredError",
        ),
        (
            401,
            {"type": "error", "error": {"type": "authentication_error", "message": "invalid"}},
            "auth",
            True,
            "AuthenticationError",
        ),
        (
            429,
            {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}},
            "rate_limited",
            False,
            "RateLimitError",
        ),
        (
            529,
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
            "server_error",
            False,
            "OverloadedError",
        ),
        (
            400,
            {"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}},
            "bad_request",
            False,
            "BadRequestError",
        ),
    ],
)
def test_anthropic_through_the_real_sdk(
    status: int, body: dict[str, Any], error_class: str, terminal: bool, sdk_class: str
) -> None:
    err = anthropic_status_error(status, body)
    assert type(err).__name__ == sdk_class
    assert err.body == body  # the anthropic SDK does not narrow the body
    assert err.type == body["error"]["type"]
    c = classify(err)
    assert (c.error_class, c.terminal, c.status_code, c.quota) == (
        error_class,
        terminal,
        status,
        None,
    )
    assert c.error_type == f"anthropic.{sdk_class}"
    for suppress in (False, True):
        c = classify(wrap_anthropic(err, suppress=suppress))
        assert (c.error_class, c.terminal, c.status_code) == (error_class, terminal, status)


def test_anthropic_credit_shape_by_hand() -> None:
    # without the SDK: the documented JSON in a livekit error, and only in its message
    exc = APIStatusError("credit", status_code=400, body=ANTHROPIC_CREDIT_BODY)
    assert (classify(exc).error_class, classify(exc).terminal) == ("quota_exhausted", True)
    text = "Error code: 400 - " + repr(ANTHROPIC_CREDIT_BODY)
    exc = APIStatusError(text, status_code=400)
    assert (classify(exc).error_class, classify(exc).terminal) == ("quota_exhausted", True)


@pytest.mark.parametrize(
    ("status", "error_class"), [(401, "auth"), (402, "quota_exhausted"), (403, "auth")]
)
def test_terminal_statuses(status: int, error_class: str) -> None:
    for exc in (
        create_api_error_from_http("nope", status=status),
        openai_status_error(status, {"error": {"message": "no", "type": "x", "code": None}}),
        wrapped_like_livekit(openai_status_error(status, "plain text body")),
    ):
        c = classify(exc)
        assert (c.error_class, c.terminal, c.status_code) == (error_class, True, status)


# livekit's openai realtime session: _FATAL_ERROR_CODES (llm/_realtime/openai.py:289-309)
REALTIME_FATAL_CODES = {
    "insufficient_quota",
    "credit_balance_exhausted",
    "invalid_api_key",
    "account_deactivated",
    "billing_hard_limit_reached",
}


def test_livekits_realtime_fatal_codes_are_all_known() -> None:
    from livekit.agents.llm._realtime import openai as realtime_openai

    assert set(realtime_openai._FATAL_ERROR_CODES) == REALTIME_FATAL_CODES
    assert set(PROVIDER_TERMINAL_CODES) >= REALTIME_FATAL_CODES


@pytest.mark.parametrize("code", sorted(REALTIME_FATAL_CODES))
def test_realtime_fatal_codes(code: str) -> None:
    expected = PROVIDER_TERMINAL_CODES[code]
    # _handle_error: APIError(body=event.error) with a RealtimeError object
    body = realtime_error({"type": "invalid_request_error", "code": code, "message": "no"})
    exc = APIError("OpenAI Realtime API returned an error", body=body, retryable=False)
    c = classify(exc)
    assert (c.error_class, c.terminal, c.status_code, c.quota) == (expected, True, None, None)
    # livekit matches the type too (#7805: OpenAI changed the code, kept the type)
    body = realtime_error({"type": code, "code": None, "message": "no"})
    assert classify(APIError("realtime", body=body)).terminal is True
    # _handle_response_done: body = response.status_details.error
    event = ResponseDoneEvent.construct(
        type="response.done",
        event_id="e",
        response={
            "id": "r",
            "status": "failed",
            "status_details": {"type": "failed", "error": {"type": code, "code": code}},
        },
    )
    error_body = event.response.status_details.error
    c = classify(APIError("response failed", body=error_body))
    assert (c.error_class, c.terminal) == (expected, True)
    # _main_task raises it on: APIConnectionError(...) from e
    c = classify(linked(APIConnectionError("exhausted"), exc))
    assert (c.error_class, c.terminal) == (expected, True)


def test_a_transient_realtime_error() -> None:
    body = realtime_error({"type": "server_error", "code": None, "message": "try again"})
    c = classify(APIError("OpenAI Realtime API returned an error", body=body))
    assert (c.error_class, c.terminal, c.quota) == ("server_error", False, None)


# --- error classes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, "bad_request"),
        (404, "bad_request"),
        (409, "bad_request"),
        (422, "bad_request"),
        (401, "auth"),
        (403, "auth"),
        (402, "quota_exhausted"),
        (429, "rate_limited"),
        (408, "timeout"),
        (504, "timeout"),
        (499, "cancelled"),
        (500, "server_error"),
        (502, "server_error"),
        (503, "server_error"),
        (529, "server_error"),
    ],
)
def test_error_class_by_status(status: int, error_class: str) -> None:
    for exc in (
        create_api_error_from_http("boom", status=status),
        openai_status_error(status, {"error": {"message": "m", "type": "t", "code": None}}),
        wrapped_like_livekit(openai_status_error(status, {"detail": "x"})),
    ):
        c = classify(exc)
        assert (c.error_class, c.status_code) == (error_class, status)
        assert c.terminal is (status in (401, 402, 403))


@pytest.mark.parametrize("status", [-1, 0, 99, 600, 10_000, True, 429.0, "429", None])
def test_non_http_statuses_are_ignored(status: object) -> None:
    exc = APIError("x")
    exc.status_code = status  # type: ignore[attr-defined]
    c = classify(exc)
    assert c.status_code is None
    assert c.error_class == "server_error"


def _openai_timeout() -> None:
    try:
        raise httpx2.ReadTimeout("read timed out", request=_REQUEST)
    except httpx2.ReadTimeout:
        raise openai.APITimeoutError(request=_REQUEST)  # noqa: B904


def _livekit_timeout_from_none() -> None:  # inference/llm.py:610-611
    try:
        _openai_timeout()
    except openai.APITimeoutError:
        raise APITimeoutError() from None


def _seed_003() -> None:  # a plugin bug surfacing as a connection error on retry
    try:
        raise RuntimeError("cannot reuse already awaited coroutine")
    except RuntimeError as e:
        raise APIConnectionError(retryable=True) from e


def _aiohttp_server_timeout() -> None:
    raise aiohttp.ServerTimeoutError("Timeout on reading data from socket")


@pytest.mark.parametrize(
    ("raise_it", "error_class", "root"),
    [
        (ssl_connection_error, "connection", "ssl.SSLCertVerificationError"),
        (raising(linked(APIConnectionError(), ConnectionResetError())), "connection", None),
        (raising(TimeoutError()), "timeout", "TimeoutError"),
        (raising(APITimeoutError()), "timeout", "livekit.agents.APITimeoutError"),
        (_livekit_timeout_from_none, "timeout", "httpx2.ReadTimeout"),
        (raising(openai.APITimeoutError(request=_REQUEST)), "timeout", "openai.APITimeoutError"),
        (raising(httpx2.ReadTimeout("t", request=_REQUEST)), "timeout", "httpx2.ReadTimeout"),
        (raising(httpx2.ConnectTimeout("t")), "timeout", "httpx2.ConnectTimeout"),
        (raising(httpx2.PoolTimeout("t")), "timeout", "httpx2.PoolTimeout"),
        (_aiohttp_server_timeout, "timeout", "aiohttp.client_exceptions.ServerTimeoutError"),
        (raising(asyncio.CancelledError()), "cancelled", "asyncio.exceptions.CancelledError"),
        (_seed_003, "internal", "RuntimeError"),
        (raising(APIError("provider said no")), "server_error", "livekit.agents.APIError"),
        (raising(Exception()), "unknown", "Exception"),
        (raising(Boom()), "unknown", f"{MODULE}.Boom"),
    ],
)
def test_error_class_by_type(
    raise_it: Callable[[], object], error_class: str, root: str | None
) -> None:
    c = classify(caught(raise_it))
    assert (c.error_class, c.terminal, c.quota, c.status_code) == (error_class, False, None, None)
    if root is not None:
        assert c.root_cause_type == root


def test_an_unknown_root_walks_outwards() -> None:
    # the root says nothing: the nearest known kind on the way out decides
    c = classify(linked(APIConnectionError(), Boom()))
    assert (c.error_class, c.root_cause_type) == ("connection", f"{MODULE}.Boom")
    c = classify(linked(Boom(), Boom(), TimeoutError()))
    assert c.error_class == "timeout"


def _request_info() -> aiohttp.RequestInfo:
    url = URL("wss://agent-gateway.livekit.cloud/stt")
    return aiohttp.RequestInfo(url, "GET", CIMultiDictProxy(CIMultiDict()), url)


def _handshake_error(status: int, request_info: object = None) -> aiohttp.WSServerHandshakeError:
    # aiohttp/client.py: raised for any non-101 reply, without reading the body
    return aiohttp.WSServerHandshakeError(
        request_info or _request_info(),  # type: ignore[arg-type]
        (),
        status=status,
        message="Invalid response status",
        headers=CIMultiDictProxy(CIMultiDict({"X-LiveKit-Inference-Credits-Used": "100"})),
    )


def _wrapped_handshake(status: int) -> BaseException:
    def raise_it() -> None:  # inference/stt.py:1352-1353 and tts.py:539-540
        try:
            raise _handshake_error(status)
        except aiohttp.ClientResponseError as e:
            raise create_api_error_from_http(e.message, status=e.status) from e

    return caught(raise_it)


def test_the_websocket_handshake_429() -> None:
    raw = _handshake_error(429)
    with warnings.catch_warnings(record=True) as caught_warnings:
        # aiohttp's ClientResponseError.code is a deprecated property: never read it
        warnings.simplefilter("always")
        c = classify(raw)
        assert (c.error_class, c.terminal, c.quota, c.status_code) == (
            "rate_limited",
            False,
            None,
            429,
        )
        assert c.error_type == "aiohttp.client_exceptions.WSServerHandshakeError"
        c = classify(_wrapped_handshake(429))
        assert (c.error_class, c.terminal, c.quota, c.status_code) == (
            "rate_limited",
            False,
            None,
            429,
        )
        assert c.error_type == "livekit.agents.APIStatusError"
        assert c.root_cause_type == "aiohttp.client_exceptions.WSServerHandshakeError"
        assert classify(_wrapped_handshake(401)).error_class == "auth"
        assert classify(_handshake_error(0)).error_class == "connection"  # status 0: no status
    assert [str(w.message) for w in caught_warnings] == []


def test_a_handshake_error_whose_str_raises() -> None:
    class BadInfo:
        @property
        def real_url(self) -> str:
            raise Boom

    exc = _handshake_error(429, request_info=BadInfo())
    with pytest.raises(Boom):
        str(exc)
    c = classify(exc)
    assert (c.error_class, c.terminal, c.quota) == ("rate_limited", False, None)
    assert type(safe_str(exc)) is str


# --- hostile inputs ----------------------------------------------------------------------------

TEN_MB = 10 * 1024 * 1024


def test_a_10_mb_body_string_is_not_scanned_past_a_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    head = "LLM token credit quota exceeded, category: MaxGatewayCredits, "
    exc = APIStatusError("Error code: 429", status_code=429, body=head + "x" * TEN_MB)
    done = work(lambda: classify(exc), monkeypatch)
    assert done.peak_bytes < MAX_PEAK_BYTES
    assert all(n <= MAX_SCAN_CHARS for n in done.decoded), done.decoded
    assert classify(exc).quota == Quota(None, "MaxGatewayCredits", None, None)

    # a marker past the scanned prefix is not found
    late = "x" * (MAX_SCAN_CHARS + 10) + json.dumps(gateway_body("MaxGatewayCredits"))
    exc = APIError(late + "y" * TEN_MB)
    done = work(lambda: classify(exc), monkeypatch)
    assert done.peak_bytes < MAX_PEAK_BYTES
    assert done.decoded == []
    assert classify(exc).quota is None


def test_a_10_mb_json_message_is_not_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    big = json.dumps({"type": QUOTA_BODY_TYPE, "pad": "p" * TEN_MB, "category": "X"})
    exc = APIError("TTS returned error: " + big)
    done = work(lambda: classify(exc), monkeypatch)
    assert done.peak_bytes < MAX_PEAK_BYTES
    assert 0 < len(done.decoded) <= MAX_JSON_STARTS
    assert all(n <= MAX_SCAN_CHARS for n in done.decoded), done.decoded
    assert classify(exc).quota is None  # the object does not close within the scanned prefix


def test_a_10_mb_response_is_not_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    content = json.dumps({**gateway_body("MaxGatewayCredits"), "pad": "p" * TEN_MB}).encode()
    response = httpx2.Response(429, content=content, request=_REQUEST)
    err = openai.RateLimitError("Error code: 429", response=response, body="too big")
    done = work(lambda: classify(err), monkeypatch)
    assert done.peak_bytes < MAX_PEAK_BYTES
    assert all(n <= MAX_SCAN_CHARS for n in done.decoded), done.decoded
    c = classify(err)
    assert (c.quota, c.error_class, c.status_code) == (None, "rate_limited", 429)


def test_deep_and_repetitive_json_in_a_message(monkeypatch: pytest.MonkeyPatch) -> None:
    deep = '{"a":' * 5000 + QUOTA_BODY_TYPE
    assert classify(APIError(deep)).quota is None
    braces = "{" * 5000 + json.dumps({"type": QUOTA_BODY_TYPE})
    done = work(lambda: classify(APIError(braces)), monkeypatch)
    # a few candidate objects tried, each within the scanned prefix: never one per brace
    assert 0 < len(done.decoded) <= MAX_JSON_STARTS
    assert all(n <= MAX_SCAN_CHARS for n in done.decoded), done.decoded
    assert_sane(classify(APIError(braces)))


@pytest.mark.parametrize(
    "body",
    [
        [],
        [gateway_body("MaxGatewayCredits")],
        0,
        -1,
        1.5,
        float("nan"),
        None,
        True,
        "",
        "{}",
        b"bytes",
        bytearray(b"x"),
        {"error": None},
        {"error": []},
        {"error": {"error": {"type": QUOTA_BODY_TYPE}}},
        {"type": ["list"]},
        {"type": {"nested": QUOTA_BODY_TYPE}},
        {"type": QUOTA_BODY_TYPE, "category": ["unhashable"], "quota_type": {"a": 1}},
        {"type": QUOTA_BODY_TYPE, "category": 10**5000},
        {1: 2, (3,): 4},
        {
            "code": ["insufficient_quota"],
            "type": {"x": 1},
            "message": ["credit balance is too low"],
        },
        Hostile,
        lambda: HostileStr("inference_quota_exceeded category: MaxGatewayCredits"),
    ],
)
def test_bodies_of_every_shape(body: object) -> None:
    if callable(body):
        body = body()
    for exc in (APIError("x", body=body), APIStatusError("x", status_code=429, body=body)):
        c = classify(exc)
        assert_sane(c)


def test_a_nested_marker_two_levels_down_is_not_a_quota() -> None:
    body = {"error": {"error": {"type": QUOTA_BODY_TYPE}}}
    assert find_quota([APIError("x", body=body)]) is None


def test_unhashable_and_odd_category_values() -> None:
    for category in (["MaxGatewayCredits"], {"a": 1}, {1, 2}, None, True, b"MaxGatewayCredits"):
        body = {"type": QUOTA_BODY_TYPE, "category": category}
        c = classify(APIStatusError("q", status_code=429, body=body))
        assert c.quota == Quota(None, None, None, None)
        assert (c.terminal, c.error_class) == (False, "rate_limited")
    c = classify(
        APIStatusError("q", status_code=429, body={"type": QUOTA_BODY_TYPE, "category": 7})
    )
    assert c.quota == Quota(None, "7", None, None)
    # an over-long value is cut (it may end up in a label)
    body = {"type": QUOTA_BODY_TYPE, "category": "MaxGatewayCredits" + "z" * 10_000}
    quota = find_quota([APIError("q", body=body)])
    assert quota is not None
    assert quota.category is not None
    assert len(quota.category) == 256
    # str subclasses are copied as plain str before use
    body = {"type": QUOTA_BODY_TYPE, "category": HostileStr("MaxGatewayCredits")}
    c = classify(APIError("q", body=body))
    assert c.quota is not None
    assert type(c.quota.category) is str
    assert c.terminal is True


class RaisingMapping(Mapping[str, Any]):
    def __getitem__(self, key: str) -> Any:
        raise Boom

    def __iter__(self) -> Iterator[str]:
        raise Boom

    def __len__(self) -> int:
        raise Boom

    def get(self, key: str, default: Any = None) -> Any:
        raise Boom


class PartlyRaisingMapping(dict[str, Any]):
    """A real dict subclass whose ``get`` raises only for some keys."""

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        if key in ("hint", "code"):
            raise Boom
        return super().get(key, default)


def test_a_body_mapping_whose_get_raises() -> None:
    c = classify(APIStatusError("x", status_code=429, body=RaisingMapping()))
    assert (c.quota, c.error_class, c.terminal) == (None, "rate_limited", False)
    body = PartlyRaisingMapping(gateway_body("MaxGatewayCredits"))
    c = classify(APIStatusError("x", status_code=429, body=body))
    # a body that raises half-way is no quota body (and nothing else breaks)
    assert (c.quota, c.error_class, c.terminal) == (None, "rate_limited", False)


class RaisingContentResponse:
    @property
    def content(self) -> bytes:
        raise httpx2.ResponseNotRead()

    def json(self) -> Any:
        raise Boom

    status_code = 429


class JsonRaisingResponse:
    content = json.dumps(gateway_body("MaxGatewayCredits")).encode()

    def json(self) -> Any:
        raise Boom


def test_a_response_whose_content_or_json_raises() -> None:
    err = APIStatusError("Error code: 429", status_code=429, body="too many")
    err.response = RaisingContentResponse()  # type: ignore[attr-defined]
    c = classify(err)
    assert (c.quota, c.error_class) == (None, "rate_limited")
    # .json() is never called: the bounded content is parsed instead
    err.response = JsonRaisingResponse()  # type: ignore[attr-defined]
    quota = classify(err).quota
    assert quota is not None
    assert quota.category == "MaxGatewayCredits"
    # an unread streaming httpx2 response
    stream = httpx2.Response(429, stream=httpx2.ByteStream(b"{}"), request=_REQUEST)
    err.response = stream  # type: ignore[attr-defined]
    assert classify(err).quota is None
    for junk in (Hostile(), "a string", b"bytes", 42):
        err.response = junk  # type: ignore[attr-defined]
        assert_sane(classify(err))


_GATEWAY_JSON = json.dumps(gateway_body("MaxGatewayCredits")).encode()


@pytest.mark.parametrize(
    ("content", "found"),
    [
        (_GATEWAY_JSON, True),
        (b"\xef\xbb\xbf" + _GATEWAY_JSON, True),  # a UTF-8 byte order mark
        (b" \n" + _GATEWAY_JSON, True),
        (_GATEWAY_JSON + b" \r\n\t", True),
        (_GATEWAY_JSON + b" x", False),  # what json.loads calls extra data
        (_GATEWAY_JSON + _GATEWAY_JSON, False),
        (_GATEWAY_JSON.replace(b"Wait", b"W\xffit"), False),  # not UTF-8
        (_GATEWAY_JSON.replace(b"Wait", b"W\xed\xa0\x80it"), True),  # a lone surrogate
        (_GATEWAY_JSON[:-1], False),  # cut short
        (bytearray(_GATEWAY_JSON), True),
        # the marker is looked for in the bytes: another encoding does not carry it
        (json.dumps(gateway_body("MaxGatewayCredits")).encode("utf-16"), False),
    ],
)
def test_a_response_body_is_read_as_json_loads_reads_it(content: bytes, found: bool) -> None:
    err = APIStatusError("Error code: 429", status_code=429, body="too many")
    err.response = SimpleNamespace(content=content)  # type: ignore[attr-defined]
    quota = find_quota([err])
    assert (quota is not None) is found
    assert quota is None or quota.category == "MaxGatewayCredits"
    assert classify(err).quota == quota


class CountingResponse:
    def __init__(self, content: bytes) -> None:
        self.raw = content
        self.reads = 0

    @property
    def content(self) -> bytes:
        self.reads += 1
        return self.raw


def test_classification_reads_each_exception_once() -> None:
    """One pass: the status, the terminal flag, the provider signal and the quota search share
    one reading of each exception of the chain, and a response body is read (and parsed) once."""
    reads: Counter[str] = Counter()

    def counted(name: str, value: object) -> property:
        def get(self: object) -> object:
            reads[name] += 1
            return value

        return property(get)

    response = CountingResponse(json.dumps(gateway_body("MaxConcurrentGatewayLLMRpm")).encode())
    inner = openai_status_error(500, {"error": {"message": "upstream", "type": "server_error"}})
    attrs = {
        "message": counted("message", "Error code: 429"),
        "status_code": counted("status_code", 429),
        "response": counted("response", response),
        "terminal": counted("terminal", None),
    }
    cls = type("CountedStatusError", (APIStatusError,), attrs)
    exc = cls.__new__(cls)
    exc.__cause__ = inner
    c = classify(exc)
    assert c.quota == Quota(
        "llm",
        "MaxConcurrentGatewayLLMRpm",
        "Wait for the next billing cycle or upgrade your plan.",
        "0",
    )
    assert (c.error_class, c.terminal, c.status_code) == ("rate_limited", False, 429)
    assert reads == {"message": 1, "status_code": 1, "response": 1, "terminal": 1}
    assert response.reads == 1


def test_a_response_body_seen_before_gives_the_same_quota() -> None:
    """A small response body already parsed is remembered by its bytes, within a bound: every
    body still yields its own quota, however many distinct ones come and go."""
    from otel_agents._classify import quota as quota_locations

    def quota_of(body: dict[str, Any]) -> Quota | None:
        err = APIStatusError("Error code: 429", status_code=429, body="too many")
        err.response = SimpleNamespace(content=json.dumps(body).encode())  # type: ignore[attr-defined]
        return classify(err).quota

    for remaining in [*range(200), *range(200)]:
        body = gateway_body("MaxConcurrentGatewayLLMRpm") | {"remaining_limit": remaining}
        assert quota_of(body) == Quota(
            "llm",
            "MaxConcurrentGatewayLLMRpm",
            "Wait for the next billing cycle or upgrade your plan.",
            str(remaining),
        )
        assert len(quota_locations._memo) <= quota_locations._MEMO_MAX_ENTRIES
    # a body that is not a quota after all is remembered as such
    not_quota = {"error": {"message": "inference_quota_exceeded", "type": "server_error"}}
    assert quota_of(not_quota) is None
    assert quota_of(not_quota) is None


ATTRIBUTES = (
    "body",
    "message",
    "status_code",
    "status",
    "response",
    "terminal",
    "category",
    "quota_type",
    "hint",
    "remaining_limit",
    "code",
    "type",
    "args",
)


@pytest.mark.parametrize("attr", ATTRIBUTES)
def test_attributes_that_raise_on_access(attr: str) -> None:
    cls = type("Raising_" + attr, (APIStatusError,), {attr: property(boom)})
    exc = cls.__new__(cls)
    exc.__cause__ = APIStatusError("q", status_code=429, body=gateway_body("MaxGatewayCredits"))
    c = classify(exc)
    assert_sane(c)
    assert c.quota is not None
    assert c.quota.category == "MaxGatewayCredits"
    assert c.terminal is True


@pytest.mark.parametrize("attr", ATTRIBUTES)
def test_attributes_that_are_hostile_values(attr: str) -> None:
    for value in (Hostile(), HostileStr("inference_quota_exceeded, quota category: MaxBargeInRPM")):
        exc = APIStatusError("x", status_code=503)
        setattr(exc, attr, (value,) if attr == "args" else value)
        c = classify(exc)
        assert_sane(c)
        assert c.status_code == (None if attr == "status_code" else 503)


def test_a_deprecated_code_property_is_never_run() -> None:
    class Warns(Exception):
        @property
        def code(self) -> str:
            warnings.warn("code is deprecated", DeprecationWarning, stacklevel=2)
            return "insufficient_quota"

    with warnings.catch_warnings(record=True) as caught_warnings:
        warnings.simplefilter("always")
        c = classify(Warns())
    assert caught_warnings == []
    assert (c.error_class, c.terminal) == ("unknown", False)
    # a plain class-level code is still read
    plain = type("Plain", (Exception,), {"code": "invalid_api_key"})
    assert classify(plain()).error_class == "auth"


def test_hostile_classes() -> None:
    unhashable = HostileMeta("Unhashable", (TimeoutError,), {})
    c = classify(unhashable())
    assert (c.error_class, c.error_type) == ("timeout", f"{MODULE}.Unhashable")

    class BadMessage(Exception):
        message = property(boom)
        args = property(boom)  # type: ignore[assignment]
        __str__ = boom
        __repr__ = boom

    assert_sane(classify(BadMessage()))

    class LyingClass(Exception):
        __class__ = property(boom)  # type: ignore[assignment]

    assert_sane(classify(LyingClass()))


def test_the_result_never_depends_on_str() -> None:
    class Loud(APIStatusError):
        def __str__(self) -> str:
            raise AssertionError("classify must not call str()")

        __repr__ = __str__

    c = classify(Loud("m", status_code=429, body=gateway_body("MaxGatewayCredits")))
    assert (c.error_class, c.terminal) == ("quota_exhausted", True)


# --- property test: nothing an exception can be makes classify raise ---------------------------

_INTERESTING = [
    QUOTA_BODY_TYPE,
    "error",
    *n.QUOTA_CATEGORIES,
    *PROVIDER_TERMINAL_CODES,
    "rate_limit_exceeded",
    "Your credit balance is too low to access the Anthropic API.",
    "category: MaxGatewayCredits quota",
    "llm",
    "tts",
    "{",
    "}",
]
_KEYS = [
    "type",
    "error",
    "category",
    "quota_type",
    "hint",
    "remaining_limit",
    "code",
    "message",
    "status",
]
_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(_INTERESTING)
)
json_values = st.recursive(
    _leaves,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=6,
)
messages = st.one_of(
    st.text(max_size=40),
    st.sampled_from(_INTERESTING),
    st.tuples(st.text(max_size=20), json_values).map(lambda p: p[0] + json.dumps(p[1])),
    st.tuples(st.text(max_size=10), json_values, st.integers(0, 40)).map(
        lambda p: (p[0] + json.dumps(p[1]))[: p[2]]  # cut JSON
    ),
)
attribute_values = st.one_of(
    json_values,
    messages,
    st.integers(-5, 1000),
    st.builds(Hostile),
    st.builds(HostileStr, st.sampled_from(_INTERESTING)),
    st.builds(
        lambda v: SimpleNamespace(type=v[0], code=v[1], category=v[2]),
        st.tuples(st.sampled_from(_INTERESTING), st.sampled_from(_INTERESTING), json_values),
    ),
    st.builds(
        lambda c: httpx2.Response(429, content=c, request=_REQUEST),
        json_values.map(lambda v: json.dumps(v).encode()),
    ),
)
_BASES: list[type[BaseException]] = [
    Exception,
    OSError,
    TimeoutError,
    RuntimeError,
    KeyError,
    asyncio.CancelledError,
    APIError,
    APIStatusError,
    APIConnectionError,
    APITimeoutError,
    openai.RateLimitError,
    aiohttp.WSServerHandshakeError,
    httpx2.ConnectError,
    ssl.SSLError,
]
_NAMES = st.one_of(
    st.text(alphabet=string.ascii_letters + "_.<> -", max_size=24),
    st.sampled_from(
        [
            "TimeoutError",
            "APIConnectionError",
            "RuntimeError",
            "CancelledError",
            "APIStatusError",
            "SSLError",
            "",
        ]
    ),
)


class Case:
    """Holds a drawn exception out of hypothesis' reach (its printer would hash and compare
    the hostile classes)."""

    def __init__(self, exc: BaseException, spec: list[str]) -> None:
        self.exc = exc
        self.spec = spec

    def __repr__(self) -> str:
        return "Case(" + "; ".join(self.spec) + ")"


_raising_attrs = st.sets(st.sampled_from([*ATTRIBUTES, "__str__", "__cause__"]), max_size=3)
_metas = st.sampled_from([type, HostileMeta])
_bases = st.sampled_from(_BASES)
_args = st.lists(messages, max_size=1)
_values = st.dictionaries(st.sampled_from(ATTRIBUTES), attribute_values, max_size=3)
_links = {
    count: st.tuples(
        st.none() | st.integers(0, count - 1), st.none() | st.integers(0, count - 1), st.booleans()
    )
    for count in range(1, 5)
}


@st.composite
def hostile_exceptions(draw: st.DrawFn) -> Case:
    count = draw(st.integers(1, 4))
    excs: list[BaseException] = []
    spec: list[str] = []
    for _ in range(count):
        base = draw(_bases)
        raising = draw(_raising_attrs)
        meta = draw(_metas)
        name = draw(_NAMES)
        cls = meta(name, (base,), {attr: property(boom) for attr in raising})
        exc = cls.__new__(cls)
        with contextlib.suppress(Exception):
            BaseException.__init__(exc, *draw(_args))
        values = draw(_values)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # aiohttp's deprecated `code` setter
            for attr, value in values.items():
                with contextlib.suppress(Exception):
                    setattr(exc, attr, value)
        spec.append(
            f"{meta.__name__}({name!r}, {base.__name__}, {sorted(raising)}, {sorted(values)})"
        )
        excs.append(exc)
    for i, exc in enumerate(excs):
        cause, context, suppress = draw(_links[count])
        spec.append(f"{i}: cause={cause} context={context} suppress={suppress}")
        for link, target in (("__cause__", cause), ("__context__", context)):
            with contextlib.suppress(Exception):
                setattr(exc, link, None if target is None else excs[target])
        with contextlib.suppress(Exception):
            exc.__suppress_context__ = suppress
    return Case(excs[0], spec)


@settings(max_examples=2000, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(hostile_exceptions())
def test_classify_never_raises(case: Case) -> None:
    exc = case.exc
    c = classify(exc)
    assert_sane(c)
    chain = exception_chain(exc)
    assert c.root is expected_root(chain)
    assert c.root is chain[root_index(chain)]
    assert 1 <= len(chain) <= MAX_CHAIN
    assert len({id(e) for e in chain}) == len(chain)
    assert type(safe_str(exc)) is str
    assert find_quota(chain) == c.quota
