"""A hypothesis fuzz of the classification and hook path (docs/architecture.md).

10,000 generated hostile inputs in all, each drawn as a recipe and built fresh where it is used
(raising an exception changes it):

* exception classes made with ``type()`` (or with a metaclass whose classes cannot be hashed or
  compared), with hostile names and ``__module__`` values (any text, non-strings), over livekit's,
  the SDKs' and the builtin bases, some with ``__str__``/``__repr__``, ``__class__``,
  ``__cause__``/``__context__`` or ``__getattribute__`` that raise, and attributes that raise;
  instances made without running a constructor (any state is possible);
* chains linked at random through ``__cause__``/``__context__`` (cycles, self-loops,
  ``__suppress_context__``), some with a deep tail (up to 2,000 links);
* messages of random text (control characters, bidi overrides, astral characters, lone
  surrogates), planted secrets, huge text (to 2 MB), embedded and cut-short JSON;
* bodies of random JSON-ish values (nan, infinities, huge ints, nesting), LiveKit Inference quota
  bodies whose fields have the wrong types, odd objects, HTTP responses (100 kB, not UTF-8);
  status codes of every type; provider names of random text.

The leaves (texts, JSON values, names) come from pools drawn once at import with a seeded
generator; hypothesis combines them into exceptions and chains with a few choices each, which
keeps 10,000 examples near 50 s on a 2-core machine.

They go through ``_classify`` directly (and the record built from it), and through the real
hooks: emitted on LLM, STT, TTS and realtime instances exactly as livekit emits them, raised
inside livekit's own retry loop, and raised in a real ``AgentSession`` turn, the last two
compared with the same run without otel-agents. Asserted: nothing escapes a hook, the host sees
exactly what it sees without otel-agents (the same exception object, the same attempts, the same
events), every emitted error is recorded, no internal error is needed to contain any of it, and
afterwards the series count stays within the bound (at most 500 per process, see
``_metrics.SERIES_BUDGET``) and the registry still renders. What the inputs made the classifier
and livekit do is tallied, so that a fuzz that stopped reaching a corner fails.

Examples are derandomized: the same inputs on every run (a suite that fails only sometimes helps
no one). For a wider search, set ``derandomize=False`` in ``FUZZ`` locally and raise the counts.

Provider names and class names carry no lone surrogate here: that case, found by this fuzz (a
label that cannot be encoded broke every later scrape), has its own regression test,
``test_a_label_that_cannot_be_encoded_never_breaks_the_scrape``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import math
import random
import ssl
import string
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import aiohttp
import httpx2
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from livekit.agents import (
    Agent,
    AgentSession,
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    TurnHandlingOptions,
    llm,
    stt,
    tts,
)
from livekit.agents.types import APIConnectOptions
from livekit.agents.voice.agent_session import SessionConnectOptions
from livekit.agents.voice.run_result import ChatMessageEvent
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from prometheus_client import REGISTRY, generate_latest

import otel_agents
from otel_agents import _classify, _runtime
from otel_agents import names as n
from otel_agents._export import metrics as _metrics
from otel_agents._export.fields import attempt_fields
from otel_agents._export.records import AttemptRecord
from otel_agents._export.spans import span_attributes

from conftest import reset_metrics
from scripted import ScriptedLLM, ScriptedRealtimeModel, ScriptedSTT, ScriptedTTS
from test_classify import Hostile, HostileMeta, HostileStr, boom, expected_root

SERIES_BOUND = sum(b + 1 for b in _metrics.SERIES_BUDGET.values())
FUZZ = {"deadline": None, "database": None, "derandomize": True}


#: threads of earlier tests' export pipelines that may still be retrying a collector that was
#: down: their backoff draws from the global random module, which hypothesis reads as a strategy
#: using it (and then fails rendering the hostile values of these strategies)
_EXPORT_THREADS = ("otel_agents.", "OtelPeriodicExportingMetricReader")


@pytest.fixture(autouse=True)
def _no_export_still_retrying() -> None:
    deadline = time.monotonic() + 15.0
    for thread in threading.enumerate():
        if thread.name.startswith(_EXPORT_THREADS) and thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))


#: generated inputs per test: 10,000 in all (about 50 s on a 2-core machine)
EXAMPLES_CLASSIFY, EXAMPLES_EMIT, EXAMPLES_RETRY, EXAMPLES_SESSION = 4750, 3000, 2000, 250
TIMEOUT = 10.0
REQUEST = httpx2.Request("POST", "https://agent-gateway.livekit.cloud/v1/chat/completions")


# --- hostile values ----------------------------------------------------------------------------


# Boom, boom, Hostile, HostileStr, HostileMeta: the hostile values of tests/test_classify.py


_INTERESTING = [
    "inference_quota_exceeded",
    "MaxGatewayCredits",
    "MaxConcurrentGatewayLLMRpm",
    "MaxBargeInRequests",
    "insufficient_quota",
    "invalid_api_key",
    "billing_error",
    "Your credit balance is too low to access the Anthropic API.",
    "category: MaxGatewayCredits quota exceeded",
    "quota_type",
    "error",
    "{",
    "}",
    "",
]
_SECRETS = [
    "Authorization: Bearer tok_8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c",
    "Incorrect API key provided: sk-A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0U1v2W3x4",
    "wss://user:hunter2@agent-gateway.livekit.cloud/v1?api_key=AIzaSyA1234567890abcdefghij",
    "token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZ2VudCJ9.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQ",
]
_KEYS = ["type", "error", "category", "quota_type", "hint", "remaining_limit", "code", "message"]

# Leaves come from pools drawn once, with a seeded generator, at import: hypothesis then
# combines them (which value where, which class, which chain) with a few choices per example.
# Drawing every character and every JSON node through hypothesis cost ten times as much, for
# inputs no more hostile.
_rng = random.Random(20_251_122)  # the same pools on every run
_ALPHABETS = [
    string.ascii_letters + string.digits + " _-.:/",
    string.punctuation,
    "\n\t\r\x00\x1b\x7f\x85\u2028",
    "éøßñçü€£µ",
    "中文日本語한국어",
    "🙂🔥\U0001f600\U00010000",
    "\u0301\u200b\u200f\u202e\ufeff",  # combining, zero-width, bidi overrides, BOM
    "\ud800\udbff\udc00\udfff",  # lone surrogates: surrogateescape, or a JSON "\ud800"
]


def _text(max_len: int, alphabets: list[str] = _ALPHABETS) -> str:
    return "".join(_rng.choice(_rng.choice(alphabets)) for _ in range(_rng.randint(0, max_len)))


def _leaf() -> object:
    return _rng.choice(
        [
            lambda: None,
            lambda: _rng.random() < 0.5,
            lambda: _rng.randint(-1000, 1000),
            lambda: _rng.choice([10**400, -(2**63), 2**64]),
            lambda: _rng.uniform(-1e6, 1e6),
            lambda: _rng.choice([math.nan, math.inf, -math.inf, -0.0, 5e-324]),
            lambda: _text(12),
            lambda: _rng.choice(_INTERESTING),
        ]
    )()


def _json(depth: int = 0) -> object:
    roll = _rng.random()
    if depth >= 3 or roll < 0.45:
        return _leaf()
    if roll < 0.7:
        return [_json(depth + 1) for _ in range(_rng.randint(0, 3))]
    keys = [_rng.choice(_KEYS) if _rng.random() < 0.7 else _text(4) for _ in range(4)]
    return {key: _json(depth + 1) for key in keys[: _rng.randint(0, 4)]}


def _quota_body() -> dict[str, Any]:
    """A LiveKit Inference quota body whose fields have random (often wrong) types."""
    kind = _rng.choice(["inference_quota_exceeded", "inference_quota_exceeded", "error"])
    body: dict[str, Any] = {"type": kind if _rng.random() < 0.8 else _json(1)}
    for key in _KEYS[1:]:
        if _rng.random() < 0.5:
            body[key] = _rng.choice(_INTERESTING) if _rng.random() < 0.4 else _json(1)
    for _ in range(_rng.choice([0, 0, 1, 2])):
        body = {"error": body}
    return body


def _message() -> str:
    return _rng.choice(
        [
            lambda: _text(40),
            lambda: _rng.choice(_INTERESTING + _SECRETS),
            lambda: _text(10) + _rng.choice(_SECRETS) + _text(10),
            lambda: _text(10) + json.dumps(_rng.choice([_json(), _quota_body()])),
            lambda: _text(10) + json.dumps(_quota_body(), ensure_ascii=False),
            lambda: (_text(5) + json.dumps(_json()))[: _rng.randint(0, 60)],  # JSON cut short
        ]
    )()


JSON_VALUES = [_json() for _ in range(600)]
QUOTA_BODIES = [_quota_body() for _ in range(300)]
MESSAGES = (
    [_message() for _ in range(800)]
    + [
        # huge: 50 kB to 2 MB, a marker at the start, in the middle or nowhere
        (marker + " ") * (size // (len(marker) + 1))
        for marker in ("x", "inference_quota_exceeded", '{"category": "MaxGatewayCredits"')
        for size in (50_000, 2_000_000)
    ]
    + ["y" * 1_000_000 + json.dumps(QUOTA_BODIES[0]) + "z" * 1_000_000]
)
RESPONSES = [
    httpx2.Response(429, content=content, request=REQUEST)
    for content in [json.dumps(v).encode() for v in QUOTA_BODIES[:40] + JSON_VALUES[:20]]
    + [_text(30, _ALPHABETS[:-1]).encode() for _ in range(10)]
    + [b'{"type": "inference_quota_exceeded", "pad": "' + b"p" * 100_000 + b'"}', b"\xff\xfe"]
]
STATUSES = [
    *range(-1, 1001, 7),
    *(401, 402, 403, 408, 429, 499, 500, 503, 504, 10**400) * 5,
    *("429", 429.0, True, None, b"429", [429]),
]
OBJECT_BODIES = [
    SimpleNamespace(
        type=_rng.choice(_INTERESTING), code=_rng.choice(_INTERESTING), message=_message()
    )
    for _ in range(20)
]
_NAME_ALPHABETS = [a.replace("\x00", "") for a in _ALPHABETS[:-1]]  # type() refuses these
NAMES = [_text(12, _NAME_ALPHABETS) for _ in range(300)] + [
    "TimeoutError",
    "APIConnectionError",
    "CancelledError",
    "RateLimitError",
    "x" * 300,
]
MODULES: list[object] = [_text(12, _NAME_ALPHABETS) for _ in range(100)] + [
    "builtins",
    "openai._exceptions",
    "_private.x",
    "a..b",
    "",
    "livekit.plugins",
    None,
    7,
    b"bytes",
    Hostile(),
]
PROVIDERS = (
    [_text(20, _NAME_ALPHABETS) for _ in range(300)]
    + [_text(200, _NAME_ALPHABETS) for _ in range(20)]
    + ["openai", "deepgram", "unknown", "", "livekit", "x" * 129]
)


def _pick(pool: list[Any]) -> st.SearchStrategy[Any]:
    """One value of ``pool`` (drawn by index: hypothesis hashes what it samples, and some of
    these values raise on ``hash()``)."""
    return st.integers(0, len(pool) - 1).map(pool.__getitem__)


#: every value an attribute of an exception is given, in one pool (one choice per value)
VALUES: list[object] = [
    *JSON_VALUES,
    *QUOTA_BODIES,
    *MESSAGES,
    *STATUSES,
    *OBJECT_BODIES,
    *RESPONSES,
    Hostile(),
    *(HostileStr(v) for v in _INTERESTING),
]
#: what each attribute usually holds (right type, any content)
_CODES = [*_INTERESTING, "rate_limit_exceeded", "server_error", *(_text(8) for _ in range(20))]
TYPED: dict[str, list[object]] = {
    "body": [*JSON_VALUES, *QUOTA_BODIES, *OBJECT_BODIES, *MESSAGES[:100]],
    "message": MESSAGES,
    "status_code": STATUSES,
    "status": STATUSES,
    "response": RESPONSES,
    "terminal": [True, False, True, False, None, "true", 1],
    "category": [*_INTERESTING, *(_text(10) for _ in range(20)), None, 7],
    "quota_type": ["llm", "tts", "stt", "inference", *(_text(6) for _ in range(10)), None],
    "hint": MESSAGES[:200],
    "remaining_limit": ["0", 0, 1.5, -1, None, *(_text(5) for _ in range(10))],
    "code": _CODES,
    "type": _CODES,
    "retryable": [True, False, None, "yes"],
}
names = _pick(NAMES)
modules = _pick(MODULES)
providers = _pick(PROVIDERS)
ATTRIBUTES = [
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
    "retryable",
]
#: bases: livekit's, the SDKs', the builtins classification names; BaseException ones only
#: where they can be emitted (livekit's error events require an ``Exception``)
BASES: list[type[BaseException]] = [
    Exception,
    OSError,
    TimeoutError,
    ConnectionResetError,
    RuntimeError,
    ValueError,
    KeyError,
    APIError,
    APIStatusError,
    APIConnectionError,
    APITimeoutError,
    openai.RateLimitError,
    openai.APIConnectionError,
    httpx2.ConnectError,
    aiohttp.WSServerHandshakeError,
    ssl.SSLError,
]
BASE_EXCEPTIONS: list[type[BaseException]] = [asyncio.CancelledError, KeyboardInterrupt]

HOSTILE_PARTS = ["__str__", "__repr__", "__getattribute__", "__class__", "__cause__", "__context__"]


@dataclasses.dataclass
class Link:
    """The recipe of one exception of a chain."""

    cls: type[BaseException]
    args: tuple[Any, ...]
    values: dict[str, Any]
    describe: str

    def build(self) -> BaseException:
        exc = self.cls.__new__(self.cls)  # no constructor runs: any state is possible
        with contextlib.suppress(Exception):
            BaseException.__init__(exc, *self.args)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # aiohttp's deprecated `code` setter
            for attr, value in {**_defaults(self.cls), **self.values}.items():
                with contextlib.suppress(Exception):
                    object.__setattr__(exc, attr, value)
        return exc


def _defaults(cls: type[BaseException]) -> dict[str, object]:
    """What livekit's own constructors would have set (the drawn values override it)."""
    if not issubclass(cls, APIError):  # (not isinstance: a hostile __class__ raises)
        return {}
    defaults: dict[str, object] = {"message": "provider error", "body": None}
    if issubclass(cls, APIStatusError):
        defaults.update(status_code=503, request_id=None)
    return defaults


@functools.cache
def _tail(depth: int) -> BaseException:
    """A chain ``depth`` deep, built once: nothing the hooks or livekit do changes it (only the
    head of a chain is raised)."""
    top: BaseException = TimeoutError("the bottom")
    for i in range(depth - 1):
        outer = APIError(f"link {i}", retryable=False) if i % 2 else ConnectionError(str(i))
        outer.__cause__ = top
        top = outer
    return top


@dataclasses.dataclass
class Recipe:
    """A drawn chain: its links, how they point at each other, and a deep tail. ``build()``
    makes a fresh chain each time (raising one changes its traceback and context)."""

    links: list[Link]
    pointers: list[tuple[int | None, int | None, bool]]
    tail: int

    def build(self) -> BaseException:
        excs = [link.build() for link in self.links]
        for exc, (cause, context, suppress) in zip(excs, self.pointers, strict=True):
            for attr, target in (("__cause__", cause), ("__context__", context)):
                with contextlib.suppress(Exception):
                    BaseException.__dict__[attr].__set__(
                        exc, None if target is None else excs[target]
                    )
            with contextlib.suppress(Exception):
                BaseException.__dict__["__suppress_context__"].__set__(exc, suppress)
        if self.tail:
            with contextlib.suppress(Exception):
                BaseException.__dict__["__cause__"].__set__(excs[-1], _tail(self.tail))
        return excs[0]

    def __repr__(self) -> str:  # hypothesis prints this for a failing example
        return f"Recipe({[link.describe for link in self.links]}, {self.pointers}, {self.tail})"


def _class(
    meta: type, name: str, base: type[BaseException], module: object, hostile: set[str]
) -> type[BaseException]:
    namespace: dict[str, Any] = {"__module__": module}
    for part in hostile:
        if part in ("__str__", "__repr__", "__getattribute__"):
            namespace[part] = boom
        else:
            namespace[part] = property(boom)
    for attempt in (name, "Fuzzed"):
        try:
            return meta(attempt, (base,), namespace)  # type: ignore[no-any-return]
        except Exception:  # a name type() refuses, or a base that refuses the namespace
            namespace = {"__module__": "fuzz"}
    raise AssertionError("unreachable")


@dataclasses.dataclass(frozen=True)
class Profile:
    """How hostile one exception class is."""

    meta: type
    hostile: frozenset[str]  # dunders that raise
    raising: frozenset[str]  # attributes that are properties raising on access


_profile_rng = random.Random(7)
PROFILES = [Profile(type, frozenset(), frozenset())] * 40 + [
    Profile(
        _profile_rng.choice([type, type, HostileMeta]),
        frozenset(_profile_rng.sample(HOSTILE_PARTS, _profile_rng.randint(0, 2))),
        frozenset(_profile_rng.sample(ATTRIBUTES, _profile_rng.randint(0, 2))),
    )
    for _ in range(40)
]
#: which attributes an exception is given (the values come from TYPED, or from VALUES)
ATTRIBUTE_SETS = [()] * 10 + [
    tuple(_profile_rng.sample(ATTRIBUTES, _profile_rng.randint(1, 3))) for _ in range(90)
]
_NO_ARGS = object()


def _link(
    base: type[BaseException],
    name: str,
    module: object,
    profile: Profile,
    attributes: tuple[str, ...],
    picks: tuple[int, int, int],
    wrong_types: bool,
    arg: object,
    message: object,
) -> Link:
    cls = _class(profile.meta, name, base, module, set(profile.hostile))
    for attr in profile.raising:
        with contextlib.suppress(Exception):
            setattr(cls, attr, property(boom))
    # each attribute's value from the pool of what it usually holds, or from everything (a
    # status that is a dict, a body that is a response...)
    given: dict[str, object] = {}
    for attr, pick in zip(attributes, picks, strict=False):
        pool = VALUES if wrong_types else TYPED[attr]
        given[attr] = pool[pick % len(pool)]
    if message is not None:  # a message attribute, as livekit's and the SDKs' errors carry
        given["message"] = message
    describe = (
        f"{profile.meta.__name__}({name!r}, {base.__name__}, module={type(module).__name__}, "
        f"hostile={sorted(profile.hostile)}, raising={sorted(profile.raising)}, "
        f"values={sorted(given)}, wrong_types={wrong_types})"
    )
    return Link(cls, () if arg is _NO_ARGS else (arg,), given, describe)


_picks = st.integers(0, 2**16)


# Strategies are built once, here (building them inside a draw costs more than the draw), and
# each part of an exception is one choice: about ten per exception.
def _links(bases: list[type[BaseException]]) -> st.SearchStrategy[Link]:
    return st.builds(
        _link,
        st.sampled_from(bases),
        names,
        modules,
        _pick(PROFILES),
        _pick(ATTRIBUTE_SETS),
        st.tuples(_picks, _picks, _picks),
        _pick([False, False, False, True]),
        _pick([_NO_ARGS, *MESSAGES[:200], *VALUES[::7]]),
        _pick([None] * 200 + MESSAGES),
    )


_tails = st.sampled_from([0] * 8 + [3, 63, 64, 65, 2000])


def _pointers(count: int) -> list[tuple[tuple[int | None, int | None, bool], ...]]:
    """How the exceptions of a chain point at each other (__cause__, __context__,
    __suppress_context__): every combination for one exception, a sample for more."""
    one = [(c, x, s) for c in (None, 0) for x in (None, 0) for s in (False, True)]
    if count == 1:
        return [(p,) for p in one]
    rng = random.Random(count)
    index = [None, *range(count)]
    return [
        tuple((rng.choice(index), rng.choice(index), rng.random() < 0.3) for _ in range(count))
        for _ in range(200)
    ]


def _recipes(bases: list[type[BaseException]]) -> st.SearchStrategy[Recipe]:
    links = _links(bases)
    return st.one_of(
        [
            st.builds(
                Recipe,
                st.tuples(*[links] * count).map(list),
                _pick(_pointers(count)).map(list),
                _tails,
            )
            for count in (1, 2, 3)
        ]
    )


#: chains of exceptions livekit can emit (``Exception``), and of any exception at all
RECIPES = _recipes(BASES)
#: livekit's retry loop retries its own errors only: more of those
RETRY_RECIPES = _recipes(
    [APIError, APIStatusError, APIConnectionError, APITimeoutError] * 4 + BASES
)
ANY_RECIPES = _recipes(BASES + BASE_EXCEPTIONS)


# --- helpers -----------------------------------------------------------------------------------


class _Discard(SpanExporter):
    def export(self, spans: Any) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class _Count(logging.Handler):
    def __init__(self, accept: Callable[[logging.LogRecord], bool]) -> None:
        super().__init__(logging.DEBUG)
        self.accept = accept
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if self.accept(record):
            self.count += 1


@contextlib.contextmanager
def _logger(name: str, level: int, handler: logging.Handler) -> Iterator[None]:
    logger = logging.getLogger(name)
    old = logger.level, logger.propagate
    logger.setLevel(level)
    logger.propagate = False
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old[0])
        logger.propagate = old[1]


@dataclasses.dataclass
class Fuzzing:
    records: _Count  # otel_agents attempt_failed log records
    emit_failures: _Count  # livekit's emitter: "failed to emit event" (a hook raised)


@contextlib.contextmanager
def _fuzzing(tracer: bool) -> Iterator[Fuzzing]:
    """otel-agents with every export on: metrics, the otel_agents log records (counted, not
    kept) and, with ``tracer``, spans (made, exported and dropped). livekit's own logs are
    silenced: they would render every huge message."""
    reset_metrics()
    otel_agents.shutdown()
    provider = None
    if tracer:
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_Discard()))
    records = _Count(lambda r: r.msg == n.LOG_ATTEMPT_FAILED)
    emit_failures = _Count(lambda r: str(r.msg).startswith("failed to emit event"))
    with (
        _logger(n.LOGGER_NAME, logging.DEBUG, records),
        _logger("livekit", logging.ERROR, emit_failures),
        _logger("livekit.agents", logging.CRITICAL, logging.NullHandler()),
    ):
        otel_agents.init(tracer_provider=provider)
        try:
            yield Fuzzing(records, emit_failures)
        finally:
            otel_agents.shutdown()


@pytest.fixture
def fuzzing() -> Iterator[Fuzzing]:
    """Tracer, metrics and logs: for the hook driven directly."""
    with _fuzzing(tracer=True) as f:
        yield f


@pytest.fixture
def fuzzing_untraced() -> Iterator[Fuzzing]:
    """Metrics and logs, no tracer provider: for runs through livekit's own code, whose tracing
    then stays off (with it on, livekit formats two tracebacks per failed attempt, and calls
    ``str()`` on the exception unguarded: see ``tests/test_faults.py``)."""
    with _fuzzing(tracer=False) as f:
        yield f


def counted(family: _metrics.Family) -> float:
    return sum(
        s.value
        for metric in family._metric.collect()
        for s in metric.samples
        if s.name.endswith("_total")
    )


def attempts() -> float:
    return counted(_metrics.get_metrics().attempt_failures)


def internal_errors() -> float:
    return counted(_metrics.get_metrics().internal_errors)


def assert_bounded_and_renders() -> None:
    """After a run: the series within the bound, and the registry still renders (a label value
    that cannot be encoded would break every scrape)."""
    series = sum(
        1
        for metric in REGISTRY.collect()
        for s in metric.samples
        if s.name.startswith(n.PREFIX) and s.name.endswith("_total")
    )
    assert series <= SERIES_BOUND <= 500
    assert b"otel_agents_attempt_failures_total" in generate_latest(REGISTRY)
    assert internal_errors() == 0


def assert_sane(c: _classify.Classification, exc: BaseException) -> None:
    assert c.error_class in n.ERROR_CLASSES
    assert type(c.terminal) is bool
    assert c.status_code is None or (type(c.status_code) is int and 100 <= c.status_code <= 599)
    assert type(c.error_type) is str
    assert type(c.root_cause_type) is str
    chain = _classify.exception_chain(exc)
    assert c.root is expected_root(chain)
    assert 1 <= len(chain) <= _classify.MAX_CHAIN
    if c.quota is not None:
        assert c.error_class in ("quota_exhausted", "rate_limited")
        for value in c.quota:
            assert value is None or (type(value) is str and len(value) <= 256)


# --- 1. _classify, directly --------------------------------------------------------------------


def test_classify_and_the_record_never_raise() -> None:
    """4,750 chains, BaseException bases included, classified directly, then turned into the
    record's fields and span attributes as the recorder does (messages captured and cleaned).
    What the inputs made the classifier do is tallied: the fuzz must reach every corner."""
    seen: Counter[str] = Counter()

    @settings(max_examples=EXAMPLES_CLASSIFY, suppress_health_check=list(HealthCheck), **FUZZ)
    @given(recipe=ANY_RECIPES, final=st.booleans(), attempt=st.integers(0, 5))
    def classify_one(recipe: Recipe, final: bool, attempt: int) -> None:
        exc = recipe.build()
        c = _classify.classify(exc)
        assert_sane(c, exc)
        chain = _classify.exception_chain(exc)
        assert _classify.find_quota(chain) == c.quota
        record = AttemptRecord("llm", "fuzz", attempt, final, c.root_cause_type, False, c, 0)
        for capture in (True, False):
            fields = attempt_fields(record, capture)
            message = fields["root_cause_message"]
            assert (message is None) is not capture
            # truncated to 256 chars, then redacted (a cut secret's "[REDACTED]" may be longer)
            assert message is None or (type(message) is str and len(message) <= 2 * 256)
            assert all(v is not None for v in span_attributes(fields, record).values())
        seen[c.error_class] += 1
        seen["quota"] += c.quota is not None
        seen["terminal"] += c.terminal
        seen["status"] += c.status_code is not None
        seen["chain_cut_at_max"] += len(chain) == _classify.MAX_CHAIN
        seen["root_type_unknown"] += c.root_cause_type == "unknown"
        seen["unprintable_root"] += _classify.safe_str(c.root).startswith("<unprintable")
        seen["hostile_metaclass"] += any(type(type(e)) is HostileMeta for e in chain)

    classify_one()
    print(f"\nwhat {EXAMPLES_CLASSIFY} chains made the classifier do: {dict(seen)}")
    assert all(seen[error_class] for error_class in n.ERROR_CLASSES)
    assert all(seen[corner] for corner in ("quota", "terminal", "status", "chain_cut_at_max"))
    assert all(seen[corner] for corner in ("root_type_unknown", "unprintable_root"))
    assert seen["hostile_metaclass"]


# --- 2. the error hook, emitted as livekit emits --------------------------------------------------


def _llm(provider: str) -> tuple[Any, Callable[..., Any]]:
    return ScriptedLLM(["x"], provider=provider), llm.LLMError


def _stt(provider: str) -> tuple[Any, Callable[..., Any]]:
    return ScriptedSTT(["x"], provider=provider), stt.STTError


def _tts(provider: str) -> tuple[Any, Callable[..., Any]]:
    return ScriptedTTS(["x"], provider=provider), tts.TTSError


def _realtime(provider: str) -> tuple[Any, Callable[..., Any]]:
    return ScriptedRealtimeModel(provider=provider).session(), llm.RealtimeModelError


COMPONENTS = {"llm": _llm, "stt": _stt, "tts": _tts, "realtime": _realtime}


def test_every_hostile_emit_is_recorded_and_nothing_escapes(fuzzing: Fuzzing) -> None:
    """3,000 requests' error events (one to three each), emitted on LLM, STT, TTS and realtime
    instances with random provider names, recoverable or final, exactly as livekit's retry loops
    emit them; tracer, metrics and logs all on. Each emit is quick (a generous bound)."""

    @settings(max_examples=EXAMPLES_EMIT, suppress_health_check=list(HealthCheck), **FUZZ)
    @given(
        recipe=RECIPES,
        component=st.sampled_from(list(COMPONENTS)),
        provider=providers,
        recoverable=st.lists(st.booleans(), min_size=1, max_size=3),
    )
    def emit(recipe: Recipe, component: str, provider: str, recoverable: list[bool]) -> None:
        emitter, event = COMPONENTS[component](provider)
        before = fuzzing.records.count, fuzzing.emit_failures.count
        for flag in recoverable:
            error = recipe.build()
            assert isinstance(error, Exception)
            # livekit's emitter re-raises a TypeError from a handler: it would surface here
            # (what an emit costs is bench/hook_cost.py's: no timing is asserted here)
            emitter.emit(
                "error", event(timestamp=time.time(), label="fuzz", error=error, recoverable=flag)
            )
        # every attempt recorded, nothing logged as escaped, nothing contained internally
        assert fuzzing.records.count - before[0] == len(recoverable)
        assert fuzzing.emit_failures.count == before[1]
        assert internal_errors() == 0

    emit()
    assert attempts() == fuzzing.records.count  # the metrics counted every record too
    assert_bounded_and_renders()


# --- 3. livekit's retry loop: the host sees exactly what it would without otel-agents ------------


@dataclasses.dataclass(frozen=True)
class NoWaitRetries(APIConnectOptions):
    """livekit's retry loop without its fixed 0.1 s wait before the first retry."""

    def _interval_for_retry(self, num_retries: int) -> float:
        return 0.0


@contextlib.contextmanager
def _uninstrumented() -> Iterator[None]:
    """Build the control model with otel-agents' constructor hook inert, so that no handler
    is attached to it (the hooks themselves stay installed for everything else)."""
    runtime = _runtime.current
    _runtime.current = None
    try:
        yield
    finally:
        _runtime.current = runtime


def _cause(exc: object) -> object:
    """``exc.__cause__`` read from its slot (a hostile class may shadow it with a property)."""
    if not isinstance(exc, BaseException):
        return None
    return BaseException.__dict__["__cause__"].__get__(exc)


@dataclasses.dataclass
class Run:
    raised: type[BaseException] | None  # the exception type the caller got
    which: str  # how it relates to the raised ones: "attempt k", "caused by attempt k", "other"
    calls: int
    emitted: list[tuple[str, bool]]  # (which, recoverable) of every error event

    @property
    def never_an_event(self) -> int:
        """1 when the request failed and livekit emitted no final error for it (e.g. its loop
        itself broke on a hostile exception): otel-agents records that failure once more."""
        return int(self.raised is not None and all(recoverable for _, recoverable in self.emitted))


async def _run(model: ScriptedLLM, errors: list[BaseException], conn: APIConnectOptions) -> Run:
    def which(exc: object) -> str:
        if exc is None:
            return "none"
        for k, error in enumerate(errors):
            if exc is error:
                return f"attempt {k}"
        cause = _cause(exc)
        for k, error in enumerate(errors):
            if cause is error:
                return f"caused by attempt {k}"
        return "other"

    emitted: list[tuple[str, bool]] = []
    model.on("error", lambda ev: emitted.append((which(ev.error), ev.recoverable)))
    raised: BaseException | None = None
    try:
        async with asyncio.timeout(TIMEOUT):
            async for _ in model.chat(chat_ctx=llm.ChatContext.empty(), conn_options=conn):
                pass
    except Exception as e:
        raised = e
    return Run(type(raised) if raised else None, which(raised), model.calls, emitted)


def _script(errors: list[BaseException], succeeds: bool) -> list[Any]:
    steps: list[Any] = []
    for error in errors:

        def raise_it(error: BaseException = error) -> None:
            raise error

        steps.append(raise_it)
    return [*steps, "ok"] if succeeds else steps


def test_livekits_retry_loop_sees_exactly_what_it_would_without_otel_agents(
    fuzzing_untraced: Fuzzing,
) -> None:
    """2,000 requests whose attempts raise hostile exceptions inside livekit's own retry loop
    (``LLMStream._main_task``), each run twice from the same recipes: on an instrumented model
    and on a control model without otel-agents' handlers. The caller gets the same exception
    (the same object: the raised one, or livekit's wrapper of it), the loop makes the same
    attempts and emits the same events, and otel-agents records every one of them, and the
    failure livekit never emitted (its loop broken by the hostile object) once."""
    loop = asyncio.new_event_loop()
    seen: Counter[str] = Counter()

    @settings(max_examples=EXAMPLES_RETRY, suppress_health_check=list(HealthCheck), **FUZZ)
    @given(
        chain=st.lists(RETRY_RECIPES, min_size=1, max_size=2),
        max_retry=st.integers(0, 3),
        succeeds=st.booleans(),
        retryable=st.lists(st.booleans(), min_size=3, max_size=3),
    )
    def request(chain: list[Recipe], max_retry: int, succeeds: bool, retryable: list[bool]) -> None:
        conn = NoWaitRetries(max_retry=max_retry)
        runs = []
        for instrumented in (True, False):
            errors = [recipe.build() for recipe in chain]
            for error, flag in zip(errors, retryable, strict=False):
                with contextlib.suppress(Exception):  # a class whose `retryable` raises
                    object.__setattr__(error, "retryable", flag)
            with contextlib.nullcontext() if instrumented else _uninstrumented():
                model = ScriptedLLM(_script(errors, succeeds))
            before = fuzzing_untraced.records.count, fuzzing_untraced.emit_failures.count
            runs.append(loop.run_until_complete(_run(model, errors, conn)))
            recorded = fuzzing_untraced.records.count - before[0]
            assert fuzzing_untraced.emit_failures.count == before[1]
            if instrumented:
                assert recorded == len(runs[-1].emitted) + runs[-1].never_an_event
            else:
                assert recorded == 0
        with_otel_agents, without = runs
        assert with_otel_agents == without
        assert internal_errors() == 0
        seen[with_otel_agents.which.rsplit(" ", 1)[0]] += 1
        seen["retried"] += len(with_otel_agents.emitted) > 1

    try:
        request()
    finally:
        loop.close()
    print(f"\nwhat the caller got back in {EXAMPLES_RETRY} requests: {dict(seen)}")
    # the raised exception itself, livekit's wrapper of it, something livekit raised instead,
    # and no exception at all (a success after retries, or livekit's silent 499)
    assert all(seen[k] for k in ("attempt", "caused by attempt", "other", "none", "retried"))
    assert attempts() == fuzzing_untraced.records.count
    assert_bounded_and_renders()


# --- 4. a real session turn ----------------------------------------------------------------------


def _session(model: llm.LLM) -> AgentSession:
    return AgentSession(
        llm=model,
        vad=None,
        aec_warmup_duration=None,
        turn_handling=TurnHandlingOptions(turn_detection=None),
        user_away_timeout=None,
        conn_options=SessionConnectOptions(
            llm_conn_options=NoWaitRetries(max_retry=0), max_unrecoverable_errors=10**6
        ),
    )


@dataclasses.dataclass
class Turn:
    raised: type[BaseException] | None
    which: str  # "the error", "caused by the error", "other", "none"
    answered: bool  # the next turn was answered


def test_a_real_session_survives_a_run_of_hostile_turns(fuzzing_untraced: Fuzzing) -> None:
    """250 turns of a real ``AgentSession`` (livekit's tolerance for consecutive failed turns
    raised, so that it keeps going), each failing with a hostile exception, then one answered;
    the same turns on a control session without otel-agents. The host gets back what it gets
    without otel-agents (the very exception raised, unless livekit itself turns it into
    another), the agent carries on, every emitted error is recorded, and so is, once, a failure
    livekit never emitted as final."""
    loop = asyncio.new_event_loop()
    models: dict[bool, ScriptedLLM] = {}
    sessions: dict[bool, AgentSession] = {}
    emitted = {True: 0, False: 0}
    finals = {True: 0, False: 0}  # emitted with recoverable=False
    never_events = 0  # failed turns whose failure livekit never emitted as final
    seen: Counter[str] = Counter()

    def on_error(instrumented: bool, ev: Any) -> None:
        emitted[instrumented] += 1
        finals[instrumented] += ev.recoverable is not True

    async def setup() -> None:
        for instrumented in (True, False):
            with contextlib.nullcontext() if instrumented else _uninstrumented():
                models[instrumented] = model = ScriptedLLM(["hello"])
                sessions[instrumented] = session = _session(model)
                model.on("error", functools.partial(on_error, instrumented))
                async with asyncio.timeout(TIMEOUT):
                    await session.start(agent=Agent(instructions="fuzz"))

    async def turn(instrumented: bool, error: BaseException) -> Turn:
        model, session = models[instrumented], sessions[instrumented]
        model.script, model.calls = [lambda: _raise(error), "still here"], 0
        raised: BaseException | None = None
        try:
            await asyncio.wait_for(session.run(user_input="hello?"), TIMEOUT)
        except Exception as e:
            raised = e
        result = await asyncio.wait_for(session.run(user_input="are you there?"), TIMEOUT)
        which = (
            "none"
            if raised is None
            else "the error"
            if raised is error
            else "caused by the error"
            if _cause(raised) is error
            else "other"
        )
        answered = any(isinstance(ev, ChatMessageEvent) for ev in result.events)
        return Turn(type(raised) if raised else None, which, answered)

    @settings(max_examples=EXAMPLES_SESSION, suppress_health_check=list(HealthCheck), **FUZZ)
    @given(recipe=RECIPES)
    def hostile_turn(recipe: Recipe) -> None:
        nonlocal never_events
        before = fuzzing_untraced.records.count, emitted[True], finals[True]
        with_otel_agents = loop.run_until_complete(turn(True, recipe.build()))
        with _uninstrumented():
            without = loop.run_until_complete(turn(False, recipe.build()))
        assert with_otel_agents == without
        assert with_otel_agents.answered
        # every emitted error, and once more the failure livekit never emitted as final (its
        # loop broken by the hostile object)
        never = int(with_otel_agents.raised is not None and finals[True] == before[2])
        never_events += never
        assert fuzzing_untraced.records.count - before[0] == emitted[True] - before[1] + never
        assert internal_errors() == 0
        seen[with_otel_agents.which] += 1

    try:
        loop.run_until_complete(setup())
        hostile_turn()
        for session in sessions.values():
            loop.run_until_complete(asyncio.wait_for(session.aclose(), TIMEOUT))
    finally:
        loop.close()
    print(f"\nwhat the host got back in {EXAMPLES_SESSION} failed turns: {dict(seen)}")
    assert seen["the error"] > EXAMPLES_SESSION // 2
    assert emitted[True] == emitted[False] > 0
    assert emitted[True] + never_events == fuzzing_untraced.records.count == attempts()
    assert counted(_metrics.get_metrics().user_turns) == 2 * EXAMPLES_SESSION
    assert counted(_metrics.get_metrics().dead_turns) == EXAMPLES_SESSION
    assert counted(_metrics.get_metrics().sessions_started) == 1
    assert_bounded_and_renders()


def _raise(error: BaseException) -> None:
    raise error


# --- a finding, fixed -------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["provider", "exception_module"])
def test_a_label_that_cannot_be_encoded_never_breaks_the_scrape(
    where: str, fuzzing: Fuzzing
) -> None:
    provider = "bad\ud800provider" if where == "provider" else "fine"
    module = "bad\ud800module" if where == "exception_module" else "fine"
    error = type("ProviderError", (Exception,), {"__module__": module})("boom")
    model = ScriptedLLM(["x"], provider=provider)
    model.emit("error", llm.LLMError(timestamp=0.0, label="x", error=error, recoverable=False))
    assert attempts() == 1
    text = generate_latest(REGISTRY).decode()
    assert "\ud800" not in text
