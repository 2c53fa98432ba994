"""A generated credential of any class, in any encoding, in any surrounding text, never leaves
the process (docs/architecture.md, "Secrets stay in").

The classes (``CREDENTIALS``): provider keys in their real formats (``tests/credentials.py``);
values of names that say credential, in every naming style (snake, kebab, camel, upper, dotted,
spaced), rendered as JSON, a Python ``repr``, header lines, a query string, environment lines or
``(name, value)`` pairs; ``Authorization`` values of one to three words after any scheme word;
cookies; PEM blocks; XML credential elements; URL userinfo whose password holds ``@`` and
``:``; JWTs; and high-entropy words as the stated rule defines them (``redact`` module
docstring, 8). Each is then encoded whole (``ENCODINGS``: as is, JSON-escaped once or twice,
with ``\\/`` escapes, URL-encoded with ``%20`` or ``+``, HTML-escaped) and put between random
words.

Asserted: no 8-character piece of the credential, raw or encoded as it was planted, is in what
leaves:

* the redactor's output, whole or cut by an upstream truncation (``clean_message``,
  ``clean_repeated``, ``clean_name``), and ``redact`` is idempotent on it;
* every channel, after the text went through livekit's real retry loop (``ScriptedLLM``,
  ``APIConnectOptions(max_retry=1)``) as the message of a real openai or anthropic SDK error
  built from an HTTP response, of a ``RuntimeError`` under livekit's ``APIConnectionError``, of
  the inference TTS ``returned error: {...}`` path, as every field of a LiveKit Inference quota
  body, as an exception class name and as the provider's name: otel-agents' spans, livekit's
  own spans (attributes, events, status, stack traces), the ``otel_agents`` log records, the
  Prometheus exposition and the OTel metrics;
* livekit's stack-trace attribute, with the credential on a message's later lines and at the
  start of the kept window;
* with ``capture_messages=False``: no message, quota hint, type, category or remaining limit
  at all on spans and logs.

Examples are derandomized (the same inputs on every run); set ``derandomize=False`` locally for
a wider search.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
import random
import traceback
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import anthropic
import credentials as cr
import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from livekit.agents import APIConnectionError, APIConnectOptions, APIError, APIStatusError, llm
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY, generate_latest

import otel_agents
from otel_agents import names as n
from otel_agents import testing
from otel_agents._export import span_redaction
from otel_agents._export.redact import (
    MAX_MESSAGE_CHARS,
    clean_message,
    clean_name,
    clean_repeated,
    redact,
)

from scripted import ScriptedLLM, gateway_status_error

SETTINGS = {
    "deadline": None,
    "database": None,
    "derandomize": True,
    "suppress_health_check": list(HealthCheck),
}
PIECE = 8

# --- credentials ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Planted:
    """A text that carries credentials, and the credentials."""

    text: str
    secrets: tuple[str, ...]
    kind: str


def _seeded(build: Callable[[random.Random], Planted]) -> st.SearchStrategy[Planted]:
    # keys are drawn from a seeded generator, like real keys: hypothesis chooses the seed (its
    # shrinking would otherwise walk a key towards "AAAA...", which no provider issues)
    return st.integers(0, 2**32 - 1).map(lambda seed: build(random.Random(seed)))


def _prefixed_key(rng: random.Random) -> Planted:
    fmt = rng.choice(cr.KEY_FORMATS)
    key = fmt.make(rng)
    return Planted(key, (key,), f"key: {fmt.provider}")


SECRET_CHARS = cr.B62 + "._~+/=:-"
QUOTED_CHARS = SECRET_CHARS + " !#$%()*,;@[]^`{|}"


def _secret_value(rng: random.Random, chars: str = SECRET_CHARS, low: int = 12) -> str:
    value = "".join(rng.choice(chars) for _ in range(rng.randint(low, 48)))
    value = value.strip()
    # a value that is all mask characters, or null/none/true/false, is not a credential
    if len(value) < low or not value.lower().strip("*x\u2022") or value.startswith(("{", "[", "(")):
        value = "Zq" + cr.body(rng, cr.B62, low)
    return value


NAME_PREFIXES = (
    (),
    ("api",),
    ("x", "api"),
    ("openai", "api"),
    ("livekit", "api"),
    ("client",),
    ("aws", "secret", "access"),
    ("session",),
    ("private",),
    ("ocp", "apim", "subscription"),
    ("xi", "api"),
    ("x", "goog", "api"),
    ("refresh",),
    ("access",),
    ("db",),
    ("webhook",),
    ("x", "livekit", "worker"),
)
NAME_WORDS = (
    "key",
    "apikey",
    "token",
    "secret",
    "password",
    "passwd",
    "pwd",
    "auth",
    "credential",
    "credentials",
    "signature",
    "sig",
    "passphrase",
    "jwt",
)
NAME_STYLES: dict[str, Callable[[list[str]], str]] = {
    "snake": lambda w: "_".join(w),
    "upper": lambda w: "_".join(w).upper(),
    "kebab": lambda w: "-".join(w),
    "title-kebab": lambda w: "-".join(x.title() for x in w),
    "camel": lambda w: w[0] + "".join(x.title() for x in w[1:]),
    "pascal": lambda w: "".join(x.title() for x in w),
    "dotted": lambda w: ".".join(w),
    "spaced": lambda w: " ".join(w),
}


def _name(rng: random.Random) -> str:
    words = [*rng.choice(NAME_PREFIXES), rng.choice(NAME_WORDS)]
    return NAME_STYLES[rng.choice(sorted(NAME_STYLES))](words)


def _named(rng: random.Random) -> Planted:
    name = _name(rng)
    other = ("model", "gpt-4o-mini")
    shape = rng.choice(("json", "repr", "header", "query", "env", "kwargs", "pair", "yaml"))
    quoted = shape in ("json", "repr", "pair")
    value = _secret_value(rng, QUOTED_CHARS if quoted and rng.random() < 0.5 else SECRET_CHARS)
    if shape == "json":
        text = json.dumps({other[0]: other[1], name: value, "n": 1})
    elif shape == "repr":
        text = repr({name: value, other[0]: other[1]})
    elif shape == "pair":
        text = repr([(other[0], other[1]), (name, value)])
    elif shape == "header":
        text = f"POST /v1/x HTTP/1.1\r\nHost: api.example.com\r\n{name}: {value}\r\nAccept: */*"
    elif shape == "query":
        query = urllib.parse.urlencode({"voice": "a", name: value, "fmt": "pcm"})
        value = urllib.parse.quote_plus(value)
        text = f"GET https://tts.example.com/v1/speak?{query}"
    elif shape == "env":
        text = f"settings error: {name.replace(' ', '_')}={value} is not valid"
    elif shape == "yaml":
        text = f"config:\n  {name}: {value}\n  model: gpt-4o-mini"
    else:
        text = f"Client({other[0]}='{other[1]}', {name.replace(' ', '_')}='{value}')"
    return Planted(text, (value,), f"named {shape}: {name}")


SCHEMES = (
    "Bearer",
    "Basic",
    "Token",
    "Key",
    "Api-Key",
    "DeepL-Auth-Key",
    "Klaviyo-API-Key",
    "AWS4-HMAC-SHA256",
    "SSWS",
    "Digest",
)


def _authorization(rng: random.Random) -> Planted:
    scheme = rng.choice(SCHEMES)
    words = [_secret_value(rng) for _ in range(rng.randint(1, 3))]
    value = f"{scheme} {' '.join(words)}"
    header = rng.choice(("Authorization", "authorization", "Proxy-Authorization"))
    shape = rng.choice(("line", "repr", "json", "pair"))
    if shape == "line":
        text = f"{header}: {value}\r\nContent-Type: application/json"
    elif shape == "repr":
        text = repr({"headers": {header: value, "Accept": "*/*"}})
    elif shape == "json":
        text = json.dumps({"headers": {header: value}})
    else:
        text = repr([(header, value), ("accept", "*/*")])
    return Planted(text, tuple(words), f"authorization {shape}: {scheme}")


def _cookie(rng: random.Random) -> Planted:
    values = [_secret_value(rng, cr.B64URL) for _ in range(rng.randint(1, 3))]
    pairs = "; ".join(
        f"{rng.choice(('sid', 'session', '__Secure-token', 'csrftoken'))}={v}" for v in values
    )
    shape = rng.choice(("cookie", "set-cookie", "repr"))
    if shape == "cookie":
        text = f"Cookie: {pairs}\nUser-Agent: livekit"
    elif shape == "set-cookie":
        text = f"Set-Cookie: {pairs}; Path=/; HttpOnly; Secure"
    else:
        text = repr({"cookie": pairs})
    return Planted(text, tuple(values), f"cookie {shape}")


PEM_KINDS = ("PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY")


def _pem(rng: random.Random) -> Planted:
    kind = rng.choice(PEM_KINDS)
    lines = [cr.body(rng, cr.B64, 64) for _ in range(rng.randint(1, 4))]
    block = f"-----BEGIN {kind}-----\n" + "\n".join(lines) + f"\n-----END {kind}-----\n"
    if rng.random() < 0.3:
        block = block.split("-----END")[0]  # cut before its end marker
    shape = rng.choice(("raw", "json"))
    text = (
        block if shape == "raw" else json.dumps({"type": "service_account", "private_key": block})
    )
    return Planted(text, tuple(lines), f"pem {shape}")


XML_TAGS = ("SecretAccessKey", "SessionToken", "Password", "ClientSecret", "SignatureProvided")


def _xml(rng: random.Random) -> Planted:
    tag = rng.choice(XML_TAGS)
    value = _secret_value(rng, cr.B64)
    text = (
        f"<Error><Code>Denied</Code><{tag}>{value}</{tag}><RequestId>4442587F</RequestId></Error>"
    )
    return Planted(text, (value,), f"xml {tag}")


def _userinfo(rng: random.Random) -> Planted:
    user = rng.choice(("admin", "svc-agent", "agents", ""))
    password = _secret_value(rng, cr.B62 + "@:!$&*+,;=._~-")
    scheme = rng.choice(("https", "postgres", "redis", "wss", "amqp"))
    text = f"connect {scheme}://{user}:{password}@db.internal.example:5432/agents refused"
    return Planted(text, (password,), "url userinfo")


def _jwt(rng: random.Random) -> Planted:
    token = cr.KeyFormat("jwt", cr._jwt).make(rng)
    _, payload, signature = token.split(".")
    return Planted(f"participant token {token} rejected", (payload, signature), "jwt")


def _high_entropy(rng: random.Random) -> Planted:
    """A word the stated rule calls random (module docstring of ``redact``, 8)."""
    kind = rng.choice(("base62", "hex", "base64", "lower-digits"))
    if kind == "hex":
        token = cr.body(rng, cr.HEX, rng.randint(40, 64))
    elif kind == "lower-digits":
        token = cr.body(rng, cr.B36, rng.randint(24, 48))
    else:
        # runs of one or two characters of one class, the class changing at every run: a
        # class change at half the positions or more
        classes = [cr.UPPER, cr.LOWER, cr.DIGITS]
        chars = []
        previous = None
        while len(chars) < rng.randint(32, 60):
            pool = rng.choice([c for c in classes if c is not previous])
            chars += [rng.choice(pool) for _ in range(rng.randint(1, 2))]
            previous = pool
            if kind == "base64" and rng.random() < 0.08:
                chars.append(rng.choice("+/"))
        token = "".join(chars)
    return Planted(f"secret {token} leaked", (token,), f"high-entropy {kind}")


CLASSES: dict[str, Callable[[random.Random], Planted]] = {
    "prefixed key": _prefixed_key,
    "named value": _named,
    "authorization": _authorization,
    "cookie": _cookie,
    "pem": _pem,
    "xml": _xml,
    "userinfo": _userinfo,
    "jwt": _jwt,
    "high entropy": _high_entropy,
}


def _as_is(text: str) -> str:
    return text


def _json_string(text: str) -> str:
    return json.dumps(text)[1:-1]


ENCODINGS: dict[str, Callable[[str], str]] = {
    "as is": _as_is,
    "json-escaped": _json_string,
    "json-escaped twice": lambda t: _json_string(_json_string(t)),
    "slashes escaped": lambda t: _json_string(t).replace("/", "\\/"),
    "url-encoded": lambda t: urllib.parse.quote(t, safe=""),
    "form-encoded": lambda t: urllib.parse.quote_plus(t, safe=""),
    "html-escaped": html.escape,
}

WORDS = (
    "upstream",
    "request",
    "failed",
    "error",
    "503",
    "retry",
    "model",
    "gpt-4o-mini",
    "session",
    "closed",
    "at",
    "the",
    "req_011CSHoEeqs5C35K2UUqR7Fy",
    "0af7651916cd43dd8448eb211c80319c",
    "https://api.openai.com/v1/chat/completions",
    "(status_code=401)",
    "token",
    "key",
    "auth:",
    "x" * 40,
)
surrounding = st.lists(st.sampled_from(WORDS), max_size=30).map(" ".join)


@dataclass(frozen=True)
class Carrier:
    """A credential planted in a text: the text, and every form of the credential that must
    not leave (raw, and as encoded in the text)."""

    text: str
    forms: tuple[str, ...]
    kind: str


@st.composite
def carriers(draw: st.DrawFn, classes: tuple[str, ...] = tuple(CLASSES)) -> Carrier:
    cls = draw(st.sampled_from(classes))
    planted = draw(_seeded(CLASSES[cls]))
    encoding = draw(st.sampled_from(sorted(ENCODINGS)))
    encode = ENCODINGS[encoding]
    before, after = draw(surrounding), draw(surrounding)
    text = f"{before} {encode(planted.text)} {after}".strip()
    forms = {s for secret in planted.secrets for s in (secret, encode(secret))}
    return Carrier(text, tuple(sorted(forms)), f"{planted.kind} ({encoding})")


def pieces(forms: tuple[str, ...], context: str = "") -> list[str]:
    """Every 8-character piece of every form, but those ordinary text holds anyway."""
    out = set()
    for form in forms:
        for i in range(max(1, len(form) - PIECE + 1)):
            piece = form[i : i + PIECE]
            if piece not in context:
                out.add(piece)
    return sorted(out)


def leaked(forms: tuple[str, ...], exported: str, context: str = "") -> list[str]:
    return [p for p in pieces(forms, context) if p in exported]


def context_of(carrier: Carrier) -> str:
    """What the carrier holds besides its credentials: a piece found there is no leak."""
    text = carrier.text
    for form in sorted(carrier.forms, key=len, reverse=True):
        text = text.replace(form, " ")
    return text + " ".join(WORDS)


# --- 1. the redactor ------------------------------------------------------------------------------


@settings(max_examples=3000, **SETTINGS)
@given(carrier=carriers(), cut_at=st.integers(MAX_MESSAGE_CHARS, 2000))
def test_no_generated_credential_survives_the_redactor(carrier: Carrier, cut_at: int) -> None:
    context = context_of(carrier)
    for name, cleaned in (
        ("clean_message", clean_message(carrier.text)),
        ("clean_repeated", clean_repeated(carrier.text)),
        ("clean_name", clean_name(carrier.text)),
        ("cut upstream", clean_message(carrier.text[:cut_at], cut=True)),
        ("redact", redact(carrier.text)),
    ):
        found = leaked(carrier.forms, cleaned, context)
        assert not found, f"{carrier.kind} via {name}: {found} in {cleaned!r}"
        if name == "redact":
            assert redact(cleaned) == cleaned, f"{carrier.kind}: not idempotent"
        else:
            assert len(cleaned) <= MAX_MESSAGE_CHARS


@settings(max_examples=400, **SETTINGS)
@given(carrier=carriers(), lines=st.integers(1, 3), frames=st.integers(1, 300))
def test_no_generated_credential_survives_a_stack_trace(
    carrier: Carrier, lines: int, frames: int
) -> None:
    """livekit records ``traceback.format_exc()``: the credential on a message's later lines,
    in a chained exception, and, with many frames, at the start of the 8 KiB window."""
    message = "\n".join([carrier.text] * lines)
    text = (
        carrier.text
        + "\n" * (frames % 7)
        + "\n".join(
            f'  File "/srv/agent/x{i}.py", line {i}, in f\n    call({carrier.text!r})'
            for i in range(frames)
        )
    )
    trace = (
        f"{text}\nTraceback (most recent call last):\n"
        f'  File "/srv/agent/agent.py", line 12, in run\n    await llm.chat()\n'
        f"openai.AuthenticationError: {message}\n\n"
        "The above exception was the direct cause of the following exception:\n\n"
        f"livekit.agents.APIStatusError: {message}\n"
    )
    cleaned = span_redaction._clean_stacktrace(trace)
    found = leaked(carrier.forms, cleaned, context_of(carrier))
    assert not found, f"{carrier.kind}: {found} in {cleaned[-600:]!r}"
    assert cleaned.endswith(
        "openai.AuthenticationError\n"
        "The above exception was the direct cause of the following exception\n"
        "livekit.agents.APIStatusError"
    )


# --- 2. every channel, after livekit's retry loop -------------------------------------------------


@dataclass
class Channels:
    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    log: list[logging.LogRecord]

    def clear(self) -> None:
        self.exporter.clear()
        self.log.clear()
        testing.reset_metrics()

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def texts(self, livekit_spans: bool = True) -> dict[str, str]:
        out = {}
        for s in self.spans():
            scope = s.instrumentation_scope.name if s.instrumentation_scope else ""
            if livekit_spans or scope == "otel_agents":
                out[f"{scope} span {s.name} {s.context.span_id:016x}"] = s.to_json(indent=None)
        for i, record in enumerate(self.log):
            out[f"log record {i} {record.getMessage()}"] = (
                f"{record.getMessage()} {record.__dict__}"
            )
        out["prometheus"] = generate_latest(REGISTRY).decode()
        data = self.reader.get_metrics_data()
        out["otel metrics"] = data.to_json(indent=None) if data is not None else ""
        return out


class _Records(logging.Handler):
    def __init__(self, into: list[logging.LogRecord]) -> None:
        super().__init__(logging.DEBUG)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record)


@contextlib.contextmanager
def channels(*, capture_messages: bool) -> Iterator[Channels]:
    """otel-agents initialised as an agent would be, everything it exports captured."""
    otel_agents.shutdown()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    records: list[logging.LogRecord] = []
    handler = _Records(records)
    log = logging.getLogger(n.LOGGER_NAME)
    level = log.level
    log.setLevel(logging.DEBUG)
    log.addHandler(handler)
    otel_agents.init(
        tracer_provider=provider,
        meter_provider=meter_provider,
        capture_messages=capture_messages,
    )
    try:
        yield Channels(exporter, reader, records)
    finally:
        otel_agents.shutdown()
        provider.shutdown()
        meter_provider.shutdown()
        log.removeHandler(handler)
        log.setLevel(level)


_ANTHROPIC = anthropic.Anthropic(api_key="unused", base_url="https://api.anthropic.com")
_ANTHROPIC_REQUEST = httpx2.Request("POST", "https://api.anthropic.com/v1/messages")


def _openai_error(text: str) -> Callable[[], None]:
    return gateway_status_error(503, {"error": {"message": text, "type": "server_error"}})


def _anthropic_error(text: str) -> Callable[[], None]:
    def raise_it() -> None:
        response = httpx2.Response(
            529,
            json={"type": "error", "error": {"type": "overloaded_error", "message": text}},
            request=_ANTHROPIC_REQUEST,
        )
        try:
            raise _ANTHROPIC._make_status_error_from_response(response)
        except anthropic.APIStatusError as e:
            raise APIStatusError(e.message, status_code=529, body=e.body, retryable=True) from e

    return raise_it


def _connection_error(text: str) -> Callable[[], None]:
    def raise_it() -> None:
        try:
            raise RuntimeError(text)
        except RuntimeError as e:
            raise APIConnectionError(retryable=True) from e

    return raise_it


def _tts_returned_error(text: str) -> Callable[[], None]:
    def raise_it() -> None:
        payload = {"type": "error", "message": text, "session_id": "tts_session_fake_1"}
        raise APIError(f"LiveKit Inference TTS returned error: {json.dumps(payload)}")

    return raise_it


def _quota_fields(text: str) -> Callable[[], None]:
    body = {
        "type": "inference_quota_exceeded",
        "error": f"quota exceeded, category: MaxGatewayCredits; {text}",
        "quota_type": f"llm {text}",
        "category": f"MaxGatewayCredits {text}",
        "hint": text,
        "remaining_limit": f"0 {text}",
    }
    return gateway_status_error(429, body)


def _class_named(text: str) -> Callable[[], None]:
    def raise_it() -> None:
        cls = type(text, (RuntimeError,), {"__module__": "vendor"})
        try:
            raise cls("boom")
        except RuntimeError as e:
            raise APIConnectionError(retryable=True) from e

    return raise_it


PATHS: dict[str, Callable[[str], Callable[[], None]]] = {
    "openai status error": _openai_error,
    "anthropic status error": _anthropic_error,
    "connection error cause": _connection_error,
    "tts returned error": _tts_returned_error,
    "quota body fields": _quota_fields,
    "exception class name": _class_named,
}


async def _one_request(provider: str, step: Callable[[], None]) -> None:
    model = ScriptedLLM([step], provider=provider)
    with contextlib.suppress(APIError):
        async for _ in model.chat(
            chat_ctx=llm.ChatContext.empty(),
            conn_options=APIConnectOptions(max_retry=1, retry_interval=0.0, timeout=5.0),
        ):
            pass


def _run(carrier: Carrier, path: str, provider_is_secret: bool) -> None:
    provider = carrier.text if provider_is_secret else "openai"
    asyncio.run(_one_request(provider, PATHS[path](carrier.text)))


def _assert_nothing_leaked(
    chan: Channels, carrier: Carrier, path: str, livekit_spans: bool = True
) -> dict[str, str]:
    texts = chan.texts(livekit_spans)
    context = context_of(carrier)
    found = {name: leaked(carrier.forms, text, context) for name, text in texts.items()}
    found = {name: pieces for name, pieces in found.items() if pieces}
    assert not found, f"{carrier.kind} via {path}: {found}"
    return texts


def test_no_generated_credential_reaches_any_channel() -> None:
    seen: set[str] = set()
    with channels(capture_messages=True) as chan:

        @settings(max_examples=250, **SETTINGS)
        @given(
            carrier=carriers(),
            path=st.sampled_from(sorted(PATHS)),
            provider_is_secret=st.booleans(),
        )
        def one(carrier: Carrier, path: str, provider_is_secret: bool) -> None:
            chan.clear()
            _run(carrier, path, provider_is_secret)
            spans = chan.spans()
            attempts = [s for s in spans if s.name == n.SPAN_ATTEMPT_FAILED]
            # not vacuous: both attempts recorded, livekit's spans exported, with their errors
            assert len(attempts) == 2, [s.name for s in spans]
            assert any(s.events for s in spans if s.name not in (n.SPAN_ATTEMPT_FAILED,))
            # livekit puts the provider's name on its spans as it is (its content, not an
            # error's text): with a credential for a name, only otel-agents' spans are read
            _assert_nothing_leaked(chan, carrier, path, livekit_spans=not provider_is_secret)
            seen.add(path)

        one()
    assert seen == set(PATHS)


def test_without_capture_messages_no_foreign_text_is_exported() -> None:
    with channels(capture_messages=False) as chan:

        @settings(max_examples=60, **SETTINGS)
        @given(carrier=carriers(), path=st.sampled_from(sorted(PATHS)))
        def one(carrier: Carrier, path: str) -> None:
            chan.clear()
            _run(carrier, path, provider_is_secret=False)
            _assert_nothing_leaked(chan, carrier, path)
            for span in chan.spans():
                attributes = dict(span.attributes or {})
                for key in (
                    n.A_ROOT_CAUSE_MESSAGE,
                    n.A_QUOTA_HINT,
                    n.A_QUOTA_TYPE,
                    n.A_QUOTA_CATEGORY,
                    n.A_QUOTA_REMAINING,
                    "exception.message",
                    "exception.stacktrace",
                ):
                    assert key not in attributes, (span.name, key)
                assert span.status.description is None, span.name
                for event in span.events:
                    assert "exception.message" not in (event.attributes or {})
            for record in chan.log:
                for key in (
                    "root_cause_message",
                    "quota_hint",
                    "quota_type",
                    "quota_category",
                    "quota_remaining_limit",
                ):
                    assert getattr(record, key, None) is None, key

        one()


# --- 3. livekit's spans on the host's global provider ---------------------------------------------


def test_livekit_spans_on_the_hosts_global_provider_are_cleaned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A host that set a global TracerProvider before ``init()`` (and gives none to it): livekit's
    spans reach that provider, and ``init()`` cleans them there too."""
    from livekit.agents import telemetry
    from opentelemetry import trace

    otel_agents.shutdown()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    telemetry.set_tracer_provider(provider)  # what the host did for livekit
    rng = random.Random(7)
    carrier = Carrier(
        f"Authorization: Bearer {cr.KEY_FORMATS[0].make(rng)}\nsecond line {'x' * 3}",
        (),
        "bearer",
    )
    key = carrier.text.split()[2]
    otel_agents.init(service_name="global-provider")
    try:
        asyncio.run(_one_request("openai", _connection_error(carrier.text)))
    finally:
        otel_agents.shutdown()
        telemetry.set_tracer_provider(trace.NoOpTracerProvider())
    spans = exporter.get_finished_spans()
    ours = [s for s in spans if s.name == n.SPAN_ATTEMPT_FAILED]
    livekit = [s for s in spans if s.name != n.SPAN_ATTEMPT_FAILED and s.events]
    assert len(ours) == 2, [s.name for s in spans]
    assert livekit, [s.name for s in spans]
    exported = "".join(s.to_json(indent=None) for s in spans)
    assert not leaked((key,), exported)
    assert any(
        isinstance(p, span_redaction.RedactingSpanProcessor)
        for p in provider._active_span_processor._span_processors
    )


# --- 4. configuration errors ----------------------------------------------------------------------


@settings(max_examples=300, **SETTINGS)
@given(planted=_seeded(_userinfo), key=_seeded(_prefixed_key), name=st.sampled_from(NAME_WORDS))
def test_a_config_error_echoes_no_credential(planted: Planted, key: Planted, name: str) -> None:
    from otel_agents import _config

    password = planted.secrets[0]
    value = (
        f"ftp://svc:{password}@collector:4318/v1?{name}={key.text}&x={key.text[::-1]}#{key.text}"
    )
    with pytest.raises(ValueError, match="expected an http") as raised:
        _config.parse_endpoint(_config.ENV_OTLP_ENDPOINT, value)
    message = str(raised.value)
    assert _config.ENV_OTLP_ENDPOINT in message
    assert not leaked((password, key.text, key.text[::-1]), message, "ftp://svc:collector:4318/v1")


def test_traceback_format_of_a_real_exception_is_what_the_cleaner_expects() -> None:
    """The stack-trace cleaner reads ``traceback`` output: check the shapes it relies on."""
    try:
        try:
            raise RuntimeError("first line\nsecond line sk-proj-abcdefghijklmnop12345")
        except RuntimeError as e:
            raise APIConnectionError(retryable=True) from e
    except APIConnectionError:
        text = traceback.format_exc()
    cleaned = span_redaction._clean_stacktrace(text)
    assert "second line" not in cleaned
    assert "sk-proj" not in cleaned
    assert cleaned.splitlines()[0] == "Traceback (most recent call last)"
    assert "RuntimeError" in cleaned.splitlines()
    assert cleaned.splitlines()[-1] == "livekit.agents._exceptions.APIConnectionError"
