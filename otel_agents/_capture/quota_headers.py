"""Provider quotas from response headers: ``otel_agents_quota_limit`` / ``_quota_used``.

Read on every response, success or error, through the openai SDK, which both livekit's own
``inference.LLM`` (an ``openai.AsyncClient`` on the gateway) and ``livekit-plugins-openai`` use:

* LiveKit Inference stamps ``X-LiveKit-Inference-{RPM,TPM,Credits}-{Limit,Used}`` on LLM
  completions, 429 rejections included (livekit's ``inference/_utils.py``
  ``QUOTA_HEADER_FIELDS``); a header the gateway leaves out means unknown, never zero;
* OpenAI-compatible APIs send ``x-ratelimit-{limit,remaining}-{requests,tokens}``: used is
  limit minus remaining.

Seams (``docs/livekit.md``): the constructor of the openai SDK's response wrapper
(``BaseAPIResponse``, what ``openai.APIResponse``/``openai.AsyncAPIResponse`` inherit theirs
from: every successful response, streamed or not, is wrapped in one before it is parsed), of its
legacy ``with_raw_response`` wrapper, and of ``openai.APIStatusError`` (every 4xx/5xx). Each is
handed the ``httpx`` response, whose headers are read once, in one pass.

The provider label is the livekit LLM's ``provider``: ``llm.LLMStream.__init__`` is wrapped to
set a context variable while it creates its tasks, which inherit it, so the SDK call inside the
stream's retry loop sees the provider of the innermost livekit LLM (a FallbackAdapter's child,
not the adapter). Without a livekit stream around the call: ``livekit`` for the gateway's
headers, ``openai`` for the others.
"""

from __future__ import annotations

import contextvars
import functools
import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from .. import _runtime
from .. import names as n

if TYPE_CHECKING:
    from .._export.metrics import PreparedSet
    from .._export.recorder import Recorder

#: the provider of the livekit LLM whose stream is running (inherited by its tasks)
_provider: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "otel_agents_quota_provider", default=None
)

_LIMIT: Final = 0
_USED: Final = 1
_REMAINING: Final = 2

#: the quota headers, lower-cased: (name, dimension, what its value is); a header's index here
#: is its field's. The ``remaining`` ones last (from ``_FIRST_REMAINING``): a use derived from
#: its limit in the same response, once every header is read.
_HEADERS: Final[tuple[tuple[bytes, n.QuotaDimension, int], ...]] = (
    (b"x-livekit-inference-rpm-limit", "rpm", _LIMIT),
    (b"x-livekit-inference-rpm-used", "rpm", _USED),
    (b"x-livekit-inference-tpm-limit", "tpm", _LIMIT),
    (b"x-livekit-inference-tpm-used", "tpm", _USED),
    (b"x-livekit-inference-credits-limit", "credits", _LIMIT),
    (b"x-livekit-inference-credits-used", "credits", _USED),
    (b"x-ratelimit-limit-requests", "requests", _LIMIT),
    (b"x-ratelimit-limit-tokens", "tokens", _LIMIT),
    (b"x-ratelimit-remaining-requests", "requests", _REMAINING),
    (b"x-ratelimit-remaining-tokens", "tokens", _REMAINING),
)
_FIELDS: Final[dict[bytes, int]] = {name: i for i, (name, _, _) in enumerate(_HEADERS)}
_FIRST_REMAINING: Final = 8
#: the fields of the dimensions whose use is derived (``remaining``), from ``_FIRST_LIMITED``
_FIRST_LIMITED: Final = 6
#: a ``remaining`` field's limit field
_LIMIT_OF: Final[dict[int, int]] = {
    i: _FIELDS[b"x-ratelimit-limit-" + name.rsplit(b"-", 1)[1]]
    for i, (name, _, kind) in enumerate(_HEADERS)
    if kind == _REMAINING
}
_LIVEKIT_DIMENSIONS: Final = frozenset({"rpm", "tpm", "credits"})
#: a value longer than this is not a number we record
_MAX_VALUE_BYTES: Final = 32
#: providers whose fields are kept (more: the cache starts over)
_MAX_TABLES: Final = 64


_INF: Final = float("inf")


def _number(raw: bytes) -> float | None:
    if len(raw) > _MAX_VALUE_BYTES:
        return None
    try:
        value = float(raw)  # surrounding whitespace allowed
    except ValueError:
        return None
    # nan, inf and negatives are not quotas
    return value if 0.0 <= value < _INF else None


def _triples_headers() -> tuple[type, ...]:
    """The ``Headers`` classes whose ``_list`` holds ``(raw name, lower-cased name, value)``
    bytes triples (httpx's, which the openai SDK uses): read as they are, no copy, no
    ``lower()``. Checked here on a sample, so a changed layout falls back to ``headers.raw``."""
    out = []
    for module in ("httpx2", "httpx"):
        try:
            headers = importlib.import_module(module).Headers({"X-Quota-Probe": "1"})
            if headers._list == [(b"X-Quota-Probe", b"x-quota-probe", b"1")]:
                out.append(type(headers))
        except Exception:
            continue
    return tuple(out)


_TRIPLES: Final = _triples_headers()


class _Field:
    """One quota header of one provider: the series it sets (prepared on its first value) and
    its last value parsed (headers repeat: a limit never changes, a use rarely)."""

    __slots__ = ("gauge", "index", "parsed", "provider")

    def __init__(self, provider: str | None, index: int) -> None:
        self.provider = provider
        self.index = index
        self.gauge: PreparedSet | None = None
        #: the last value seen and its number (one tuple: threads read it whole)
        self.parsed: tuple[bytes, float | None] = (b"", None)

    def prepare(self, recorder: Recorder) -> PreparedSet:
        _, dimension, kind = _HEADERS[self.index]
        provider = self.provider
        if provider is None:
            provider = "livekit" if dimension in _LIVEKIT_DIMENSIONS else "openai"
        gauge = self.gauge = recorder.quota_gauge(provider, dimension, used=kind != _LIMIT)
        return gauge


class _Cache:
    """The fields of each provider, for one recorder and one generation of its metrics."""

    __slots__ = ("generation", "recorder", "tables")

    def __init__(self, recorder: Recorder | None, generation: int) -> None:
        self.recorder = recorder
        self.generation = generation
        self.tables: dict[str | None, tuple[_Field, ...]] = {}


_cache = _Cache(None, -1)


def _fields(recorder: Recorder) -> tuple[_Field, ...]:
    """The fields of the provider of the running livekit LLM stream, if any."""
    provider = _provider.get()
    cache = _cache
    if cache.recorder is not recorder or cache.generation != recorder.metrics.generation:
        cache = _set_cache(recorder)
    fields = cache.tables.get(provider)
    if fields is None:
        if len(cache.tables) >= _MAX_TABLES:
            cache.tables.clear()
        fields = cache.tables[provider] = tuple(_Field(provider, i) for i in range(len(_HEADERS)))
    return fields


def _set_cache(recorder: Recorder) -> _Cache:
    global _cache
    cache = _cache = _Cache(recorder, recorder.metrics.generation)
    return cache


def capture(response: Any) -> None:
    """Record the quota headers of one ``httpx`` response (nothing when it carries none).
    Never raises; a failure is counted as ``quota_hook``.

    The hot path, on every response: one dict lookup per header; for a quota header, a bytes
    comparison with its last value (parsed again only when it changed), and a gauge set unless
    the series already holds that value and skipping cannot change what is read
    (``PreparedSet.held``)."""
    runtime = _runtime.current
    if runtime is None:
        return
    try:
        headers = response.headers
        items: Any = headers._list if type(headers) in _TRIPLES else _lowered(headers.raw)
        fields: tuple[_Field, ...] | None = None
        derived: list[tuple[int, float]] | None = None
        index_of = _FIELDS.get
        for item in items:
            index = index_of(item[1])  # the lower-cased name
            if index is None:
                continue
            if fields is None:
                fields = _fields(runtime.recorder)
            field = fields[index]
            value = item[2]
            parsed = field.parsed
            if parsed[0] == value:
                number = parsed[1]
            else:
                number = _number(value)
                field.parsed = (value, number)
            if number is None:
                continue
            if index >= _FIRST_LIMITED:
                if derived is None:
                    derived = []
                derived.append((index, number))
                if index >= _FIRST_REMAINING:
                    continue
            gauge = field.gauge
            if gauge is None:
                gauge = field.prepare(runtime.recorder)
            held = gauge.held
            if held is None or held._value != number:
                gauge.set(number)
        if derived is not None and fields is not None:
            _set_derived(runtime.recorder, fields, derived)
    except Exception:
        runtime.recorder.internal_error("quota_hook")


def _lowered(raw: Any) -> Any:
    return ((key, key.lower(), value) for key, value in raw)


def _set_derived(
    recorder: Recorder, fields: tuple[_Field, ...], derived: list[tuple[int, float]]
) -> None:
    """The uses stated as ``remaining``: limit minus remaining, when this response stated the
    limit too (a remaining alone is unknown use)."""
    limits = {index: number for index, number in derived if index < _FIRST_REMAINING}
    for index, remaining in derived:
        if index < _FIRST_REMAINING:
            continue
        limit = limits.get(_LIMIT_OF[index])
        if limit is None:
            continue
        used = max(0.0, limit - remaining)
        field = fields[index]
        gauge = field.gauge
        if gauge is None:
            gauge = field.prepare(recorder)
        held = gauge.held
        if held is None or held._value != used:
            gauge.set(used)


def _provider_of(llm: Any) -> str | None:
    try:
        name = llm.provider
    except Exception:
        return None
    if isinstance(name, str) and name and name != n.UNKNOWN:
        return name
    module = type(llm).__module__
    if module.startswith("livekit.plugins."):  # e.g. livekit.plugins.openai.llm -> openai
        return module.split(".")[2]
    return None


# --- wraps (``instrument.py``) ------------------------------------------------------------------


def wrap_llm_stream_init(original: Callable[..., None]) -> Callable[..., None]:
    """``llm.LLMStream.__init__`` that creates the stream's tasks with its LLM's provider in
    their context."""

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if _runtime.current is None:
            original(self, *args, **kwargs)
            return
        llm = args[0] if args else kwargs.get("llm")
        token = _provider.set(_provider_of(llm))
        try:
            original(self, *args, **kwargs)
        finally:
            _provider.reset(token)

    return __init__


def wrap_response_init(original: Callable[..., None]) -> Callable[..., None]:
    """An openai SDK response wrapper's ``__init__`` (its ``raw=`` is the httpx response)."""

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        raw = kwargs.get("raw")
        if raw is not None:
            capture(raw)

    return __init__


def wrap_status_error_init(original: Callable[..., None]) -> Callable[..., None]:
    """``openai.APIStatusError.__init__`` (its ``response=`` is the httpx response)."""

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        response = kwargs.get("response")
        if response is not None:
            capture(response)

    return __init__


_CANDIDATES: Final = (
    ("livekit.agents.llm", "LLMStream", wrap_llm_stream_init),
    ("openai._response", "BaseAPIResponse", wrap_response_init),
    ("openai._legacy_response", "LegacyAPIResponse", wrap_response_init),
    ("openai", "APIStatusError", wrap_status_error_init),
)


def wraps() -> list[tuple[str, str, str, Callable[[Callable[..., Any]], Callable[..., Any]]]]:
    """The ``(module, class, "__init__", wrap)`` entries for ``instrument``: only those whose
    class is importable and defines its own ``__init__`` (the openai SDK is optional)."""
    out: list[tuple[str, str, str, Callable[[Callable[..., Any]], Callable[..., Any]]]] = []
    for module, name, wrap in _CANDIDATES:
        try:
            cls = getattr(importlib.import_module(module), name)
        except Exception:
            continue
        if "__init__" in getattr(cls, "__dict__", {}):
            out.append((module, name, "__init__", wrap))
    return out
