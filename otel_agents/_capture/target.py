"""What a provider instance is asked for and where it sends it: its model and its base URL, for
the semantic conventions on its failed attempts' spans (``gen_ai.request.model``,
``server.address``, ``server.port``; the recorder cleans both).

livekit's base classes name the model (``model``, ``"unknown"`` when a plugin does not say) but
not the endpoint: plugins keep it in their options (``_opts.base_url``: LiveKit Inference, the
realtime models) or in an OpenAI-compatible client (``_client.base_url``). Both are read the way
livekit's own plugins hold them; anything else is no endpoint. Never raises.

A :class:`Target` reads them only when a span needs them (the metrics path never does): the
model at each failure (``update_options`` may change it), the base URL once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

_UNKNOWN: Final = "unknown"
#: where plugins keep their base URL: (attribute, attribute of it or "")
_BASE_URL_PATHS: Final = (("_opts", "base_url"), ("_client", "base_url"), ("_base_url", ""))
#: the URL types of the HTTP clients plugins use (their ``str()`` is the URL)
_URL_TYPES: Final = frozenset({("httpx", "URL"), ("httpx._urls", "URL"), ("yarl", "URL")})


def _source(owner: Any) -> Any:
    """A realtime session's model holds what the session uses."""
    if not hasattr(type(owner), "model") and hasattr(owner, "realtime_model"):
        return owner.realtime_model
    return owner


def model_of(owner: object) -> str | None:
    """The model ``owner`` names now (``update_options`` may change it), else ``None``."""
    try:
        model = _source(owner).model
    except Exception:
        return None
    if type(model) is str and model and model != _UNKNOWN:
        return model
    return None


def base_url_of(owner: object) -> str | None:
    """The base URL ``owner`` sends its requests to, as it holds it, else ``None``."""
    try:
        source = _source(owner)
        for name, attribute in _BASE_URL_PATHS:
            value = getattr(source, name, None)
            if value is not None and attribute:
                value = getattr(value, attribute, None)
            if type(value) is str:
                return value or None
            if value is not None and (type(value).__module__, type(value).__name__) in _URL_TYPES:
                return str(value)
    except Exception:
        return None
    return None


class Target:
    """The model and base URL of one provider instance, held weakly (``records.Target``)."""

    __slots__ = ("_base_url", "_base_url_read", "_owner")

    def __init__(self, owner: Callable[[], object | None]) -> None:
        self._owner = owner
        self._base_url: str | None = None
        self._base_url_read = False

    def model(self) -> str | None:
        owner = self._owner()
        return None if owner is None else model_of(owner)

    def base_url(self) -> str | None:
        if not self._base_url_read:
            owner = self._owner()
            self._base_url = None if owner is None else base_url_of(owner)
            self._base_url_read = owner is not None
        return self._base_url


def _nothing() -> None:
    return None


#: the target of a wrapper (FallbackAdapter...): its own failures are no one provider's
NO_TARGET: Final = Target(_nothing)
