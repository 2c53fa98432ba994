"""The classification of one emitted provider error: :func:`classify`.

Given the exception livekit emits for one failed attempt, :func:`classify` finds its root
cause, HTTP status, LiveKit Inference quota fields, error class and terminal flag. It runs
inside the ``"error"`` handler, on livekit's event loop, for every failed attempt: it must be
fast and must never raise on hostile objects. It must run there and then: livekit later re-raises
the same exception inside ``except StopAsyncIteration``, which overwrites its ``__context__`` and
loses the quota body.

One pass: the chain is walked once, each exception of it is read once (:func:`read_link`), and
that one reading serves the status, the terminal flag, the provider signal and the quota search;
the quota search runs only when some exception could hold a quota, which most errors cannot.

The status is the first ``status_code`` (else ``status``) in 100..599 along the chain.
Terminal (will not recover without operator action), by the first rule that applies:

1. an exception of the chain says so itself: a bool ``terminal`` attribute;
2. a quota was found: terminal when its category means credit exhaustion
   (:func:`is_credit_category`), not when it is a rate (concurrency, requests per minute);
3. a provider signal of exhausted billing or bad credentials (:data:`PROVIDER_TERMINAL_CODES`,
   or Anthropic's "credit balance is too low"), or an HTTP status in :data:`TERMINAL_STATUSES`.

The error class comes from the quota (``quota_exhausted`` or ``rate_limited``), else the
provider signal, else the status, else the names of the root cause's class and then of its
wrappers, outwards (the artefacts below the root are not read: a timeout's cancel scope must
not say "cancelled").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, NamedTuple, cast

from ..names import ErrorClass
from .chain import exception_chain, kind, root_index
from .link import read_links
from .quota import Quota, find_quota_in, is_credit_category
from .render import type_name
from .values import MAX_FIELD_CHARS, as_str, attr, data_attr, is_mapping

#: provider error codes meaning exhausted billing or bad credentials (rule 3), by error class
PROVIDER_TERMINAL_CODES: Final[Mapping[str, str]] = {
    # OpenAI (also the realtime API's fatal codes)
    "insufficient_quota": "quota_exhausted",
    "billing_hard_limit_reached": "quota_exhausted",
    "credit_balance_exhausted": "quota_exhausted",
    "invalid_api_key": "auth",
    "account_deactivated": "auth",
    # Anthropic's error type for HTTP 402
    "billing_error": "quota_exhausted",
}
#: HTTP statuses that will not recover without operator action (rule 3)
TERMINAL_STATUSES: Final = frozenset({401, 402, 403})
#: Anthropic's out-of-credits error is a plain HTTP 400 ``invalid_request_error`` whose message
#: says "Your credit balance is too low to access the Anthropic API. ..."
ANTHROPIC_CREDIT_TEXT: Final = "credit balance is too low"


class Classification(NamedTuple):
    """Everything otel-agents derives from one emitted exception."""

    error_type: str
    status_code: int | None
    #: the deepest link of the chain that is not an artefact (see :func:`root_index`)
    root: BaseException
    root_cause_type: str
    error_class: ErrorClass
    quota: Quota | None
    terminal: bool


#: builds a Classification from a tuple of its fields, at a third of the cost of keywords
_new_classification: Final = tuple.__new__


#: the fields the loop of :func:`classify` reads from a link; most exceptions of a chain have
#: none of them, and one set intersection tells so
_READ: Final = frozenset(
    {"status_code", "status", "terminal", "code", "type", "category", "quota_type", "response"}
)


def classify(exc: BaseException) -> Classification:
    """Classify one emitted exception. Raises only on a bug in this package."""
    chain = exception_chain(exc)
    links = read_links(chain)
    status: int | None = None
    own_terminal: bool | None = None
    signal: str | None = None
    maybe_quota = False
    for fields, body, texts in links:
        try:
            present = _READ.intersection(fields)
        except Exception:  # a hostile key in an instance dict: read every field the slow way
            present = _READ
        if present:
            if status is None and ("status_code" in present or "status" in present):
                value = fields.get("status_code")
                if type(value) is int and 100 <= value <= 599:
                    status = value
                else:
                    value = fields.get("status")
                    if type(value) is int and 100 <= value <= 599:
                        status = value
            if own_terminal is None and "terminal" in present:
                value = fields.get("terminal")
                if type(value) is bool:
                    own_terminal = value
        # Whether the quota search is worth running: a superset, true of every exception on
        # which some location could find a quota (a non-string body; a category, quota_type or
        # response; "quota_" is in both inference_quota_exceeded and "quota_type", and the
        # fragment location reads only a text with "ategory"). Inlined with the signal's first
        # tests: this loop runs for every exception of every failed attempt.
        odd_body = body is not None and type(body) is not str
        if signal is None:
            if odd_body or (
                present and (fields.get("code") is not None or fields.get("type") is not None)
            ):
                signal = _signal(fields, body, texts)
            else:
                for text in texts:
                    if ANTHROPIC_CREDIT_TEXT in text:
                        signal = "quota_exhausted"
                        break
        if not maybe_quota:
            if odd_body or (
                present
                and (
                    fields.get("category") is not None
                    or fields.get("quota_type") is not None
                    or fields.get("response") is not None
                )
            ):
                maybe_quota = True
            else:
                for text in texts:
                    if "quota_" in text or "ategory" in text:
                        maybe_quota = True
                        break
    quota = find_quota_in(links) if maybe_quota else None
    if own_terminal is not None:  # rule 1: the error says so itself
        terminal = own_terminal
    elif quota is not None:  # rule 2
        terminal = is_credit_category(quota.category)
    else:  # rule 3
        terminal = signal is not None or (status is not None and status in TERMINAL_STATUSES)
    index = root_index(chain)
    root = chain[index]
    return _new_classification(
        Classification,
        (
            type_name(type(exc)),
            status,
            root,
            type_name(type(root)),
            _error_class(chain, index, quota, terminal, signal, status),
            quota,
            terminal,
        ),
    )


# --- the provider signal (rule 3) -------------------------------------------------------------


def _signal(fields: dict[str, Any], body: object, texts: list[str]) -> str | None:
    """The error class a provider's billing/credential signal on this exception implies, if any:
    its ``code`` or ``type``, its messages, then its (non-string) body's codes and messages."""
    for value in (fields.get("code"), fields.get("type")):
        if value is not None and (signal := _signal_of_code(value)) is not None:
            return signal
    for text in texts:
        if ANTHROPIC_CREDIT_TEXT in text:
            return "quota_exhausted"
    if body is not None and type(body) is not str and as_str(body) is None:
        codes, body_texts = _body_codes(body)
        for value in codes:
            if value is not None and (signal := _signal_of_code(value)) is not None:
                return signal
        for value in body_texts:
            body_text = as_str(value) if value is not None else None
            if body_text is not None and ANTHROPIC_CREDIT_TEXT in body_text:
                return "quota_exhausted"
    return None


def _signal_of_code(value: object) -> str | None:
    code = value if type(value) is str else as_str(value, MAX_FIELD_CHARS)
    return None if code is None else PROVIDER_TERMINAL_CODES.get(code)


def _body_codes(body: object) -> tuple[list[object], list[object]]:
    """The error codes/types and messages of a mapping or object ``body``."""
    codes: list[object] = []
    texts: list[object] = []
    try:
        if is_mapping(body):
            codes += [body.get("code"), body.get("type")]
            texts.append(body.get("message"))
            inner = body.get("error")
            if is_mapping(inner):
                codes += [inner.get("code"), inner.get("type")]
                texts.append(inner.get("message"))
        else:
            codes += [data_attr(body, "code"), data_attr(body, "type")]
            texts.append(attr(body, "message"))
    except Exception:
        pass
    return codes, texts


# --- the error class --------------------------------------------------------------------------


def _error_class(
    chain: list[BaseException],
    root: int,
    quota: Quota | None,
    terminal: bool,
    signal: str | None,
    status: int | None,
) -> ErrorClass:
    if quota is not None:
        return "quota_exhausted" if terminal else "rate_limited"
    if signal is not None:
        return cast(ErrorClass, signal)  # one of the constants of PROVIDER_TERMINAL_CODES
    if status is not None:
        if status in (401, 403):
            return "auth"
        if status == 402:
            return "quota_exhausted"
        if status == 429:
            return "rate_limited"
        if status in (408, 504):
            return "timeout"
        if status == 499:
            return "cancelled"
        if status >= 500:
            return "server_error"
        if status >= 400:
            return "bad_request"
    # No status: the root cause says what went wrong; walk outwards if it says nothing.
    for i in range(root, -1, -1):
        found = kind(type(chain[i]))
        if found is not None:
            return cast(ErrorClass, found)  # one of the constants of KIND_ORDER
    return "unknown"
