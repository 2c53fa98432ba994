"""The OpenTelemetry semantic conventions on otel-agents' spans, computed cheaply.

- ``gen_ai.provider.name``: the GenAI registry's value for a provider it lists, else the
  provider's own name (which the convention allows). livekit's plugins report ``provider`` as a
  display name (``Google``, ``AWS Bedrock``) or, for OpenAI-compatible clients, as their base
  URL's host (``api.openai.com``): both map, by host first, then by the name reduced to
  lower-case letters and digits, the same way livekit maps them on its own spans (one trace
  shows one provider name). The values are the convention package's constants; what maps to
  them is ours.
- ``server.address``, ``server.port``: the host and port of a base URL, never its userinfo,
  path or query; the host redacted like every foreign name.
- ``gen_ai.conversation.id``: the LiveKit room's sid inside a job, as livekit puts it on its
  own spans (the convention forbids inventing one).

Every result is cached per distinct input: a process sees a handful of providers and URLs.
"""

from __future__ import annotations

import functools
import re
import weakref
from typing import Any, Final
from urllib.parse import urlsplit

from opentelemetry.semconv._incubating.attributes.gen_ai_attributes import (
    GenAiProviderNameValues as _P,
)

from .redact import clean_name

#: provider names, as lower-case letters and digits -> the registry's value
BY_NAME: Final[dict[str, str]] = {
    "openai": _P.OPENAI.value,
    "anthropic": _P.ANTHROPIC.value,
    "google": _P.GCP_GEN_AI.value,
    "googlegenai": _P.GCP_GEN_AI.value,
    "googlecloudplatform": _P.GCP_GEN_AI.value,
    "gemini": _P.GCP_GEMINI.value,
    "vertexai": _P.GCP_VERTEX_AI.value,
    "vertexaimodelgarden": _P.GCP_VERTEX_AI.value,
    "cohere": _P.COHERE.value,
    "azureaiinference": _P.AZURE_AI_INFERENCE.value,
    "azureopenai": _P.AZURE_AI_OPENAI.value,
    "ibmwatsonxai": _P.IBM_WATSONX_AI.value,
    "watsonx": _P.IBM_WATSONX_AI.value,
    "amazon": _P.AWS_BEDROCK.value,
    "amazonbedrock": _P.AWS_BEDROCK.value,
    "awsbedrock": _P.AWS_BEDROCK.value,
    "bedrock": _P.AWS_BEDROCK.value,
    "perplexity": _P.PERPLEXITY.value,
    "xai": _P.X_AI.value,
    "deepseek": _P.DEEPSEEK.value,
    "groq": _P.GROQ.value,
    "mistral": _P.MISTRAL_AI.value,
    "mistralai": _P.MISTRAL_AI.value,
}
#: API hosts (an OpenAI-compatible client's ``provider``) -> the registry's value
BY_HOST: Final[dict[str, str]] = {
    "api.openai.com": _P.OPENAI.value,
    "api.anthropic.com": _P.ANTHROPIC.value,
    "generativelanguage.googleapis.com": _P.GCP_GEMINI.value,
    "api.cohere.ai": _P.COHERE.value,
    "api.cohere.com": _P.COHERE.value,
    "api.deepseek.com": _P.DEEPSEEK.value,
    "api.groq.com": _P.GROQ.value,
    "api.mistral.ai": _P.MISTRAL_AI.value,
    "api.perplexity.ai": _P.PERPLEXITY.value,
    "api.x.ai": _P.X_AI.value,
}
BY_HOST_SUFFIX: Final = (
    (".openai.azure.com", _P.AZURE_AI_OPENAI.value),
    (".services.ai.azure.com", _P.AZURE_AI_INFERENCE.value),
    (".aiplatform.googleapis.com", _P.GCP_VERTEX_AI.value),
)
_NOT_ALNUM: Final = re.compile(r"[^a-z0-9]+")
#: distinct inputs each cache keeps (then it starts again): a process sees a few
CACHE_LIMIT: Final = 256
_providers: dict[str, str] = {}


def gen_ai_provider(provider: str) -> str:
    """``gen_ai.provider.name`` of a provider's (cleaned) own name."""
    mapped = _providers.get(provider)
    if mapped is None:
        if len(_providers) >= CACHE_LIMIT:
            _providers.clear()
        mapped = _providers[provider] = _gen_ai_provider(provider)
    return mapped


def _gen_ai_provider(provider: str) -> str:
    lower = provider.strip().lower()
    mapped = BY_HOST.get(lower)
    if mapped is not None:
        return mapped
    for suffix, value in BY_HOST_SUFFIX:
        if lower.endswith(suffix):
            return value
    if lower.startswith("bedrock") and lower.endswith(".amazonaws.com"):
        return _P.AWS_BEDROCK.value
    return BY_NAME.get(_NOT_ALNUM.sub("", lower), provider)


_DEFAULT_PORTS: Final = {"http": 80, "ws": 80, "https": 443, "wss": 443}
#: a host name or an IP address (IPv6 without its brackets): anything else is not exported
_HOST: Final = re.compile(r"[a-z0-9._:-]{1,253}")


@functools.lru_cache(maxsize=64)
def server(url: str) -> tuple[str, int | None] | None:
    """``(server.address, server.port)`` of a base URL, or ``None`` when it names no host. The
    port is the URL's, else its scheme's default (``None`` for an unknown scheme)."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname  # lower-case, without userinfo, port or brackets
        port = parts.port
    except ValueError:  # a malformed port or IPv6 literal
        return None
    if not host or not _HOST.fullmatch(host):
        return None
    if port is None:
        port = _DEFAULT_PORTS.get(parts.scheme.lower())
    return clean_name(host), port


_job_context: Any = None
#: the last job context seen (weakly: a finished job must not stay alive) and its room's sid
_last_job: tuple[weakref.ref[Any] | None, str | None] = (None, None)


def conversation_id() -> str | None:
    """The room sid of the livekit job running in this context, else ``None``. Never raises."""
    global _job_context, _last_job
    try:
        if _job_context is None:
            from livekit.agents import get_job_context

            _job_context = get_job_context
        ctx = _job_context(required=False)
        if ctx is None:
            return None
        ref, sid = _last_job
        if ref is not None and ref() is ctx:
            return sid
        raw = ctx.job.room.sid
        if not isinstance(raw, str) or not raw:
            return None
        sid = clean_name(raw)
        _last_job = (weakref.ref(ctx), sid)
        return sid
    except Exception:
        return None
