"""Classification of a provider error, at the moment it is emitted (pure: no OTel, no I/O).

Given the exception livekit emits for one failed attempt, :func:`classify` finds its root
cause, HTTP status, LiveKit Inference quota fields, error class and terminal flag. Every foreign
object is treated as hostile: attribute access, ``str()``, ``json()`` and iteration may raise or
be huge; nothing here formats a traceback or imports a provider SDK (classes are recognised by
name).

One concern per module:

* :mod:`.values`: reading foreign values without trusting them;
* :mod:`.render`: class names and messages rendered safely (:func:`type_name`,
  :func:`safe_str`, :func:`safe_message`);
* :mod:`.chain`: the exception chain, its root cause, artefacts, what a class means by name;
* :mod:`.link`: what is read from one exception of the chain, read once;
* :mod:`.quota`: the five places a quota body is looked for, and its JSON;
* :mod:`.classification`: the status, the terminal rules, the error class, and :func:`classify`.
"""

from .chain import MAX_CHAIN, exception_chain, root_index
from .classification import PROVIDER_TERMINAL_CODES, TERMINAL_STATUSES, Classification, classify
from .quota import (
    CREDIT_CATEGORIES,
    MAX_JSON_BYTES,
    QUOTA_BODY_TYPE,
    Quota,
    find_quota,
    is_credit_category,
)
from .render import safe_message, safe_str, type_name
from .values import MAX_SCAN_CHARS

__all__ = [
    "CREDIT_CATEGORIES",
    "MAX_CHAIN",
    "MAX_JSON_BYTES",
    "MAX_SCAN_CHARS",
    "PROVIDER_TERMINAL_CODES",
    "QUOTA_BODY_TYPE",
    "TERMINAL_STATUSES",
    "Classification",
    "Quota",
    "classify",
    "exception_chain",
    "find_quota",
    "is_credit_category",
    "root_index",
    "safe_message",
    "safe_str",
    "type_name",
]
