"""The redactor against real-shaped credentials of every provider, and against ordinary messages.

Figures (deterministic: seeded generators), printed by each test and stated in its budget:

* every key format of ``tests/credentials.py`` (69 providers and platforms), 300 keys each,
  bare in four kinds of message: 0 survive;
* every provider's header or parameter (``credentials.HEADERS``) with keys of every format and
  the keys only a header tells from an id (32 hex digits, a UUID): 0 survive;
* raw keys with no prefix, fully random (no digit or case forced), 20,000 of each shape: what
  the high-entropy rule misses (``RAW_MISS_BUDGET``);
* 162 ordinary error messages of livekit, its providers' SDKs (built with the real openai and
  anthropic classes) and their transports, with request ids, trace ids, UUIDs, model names,
  URLs and quota bodies: how many the redactor changes (``FALSE_POSITIVE_BUDGET``);
* the names of every exception class of livekit, its SDKs and transports and the standard
  library: how many ``clean_name`` changes (``CLASS_NAME_BUDGET``).
"""

from __future__ import annotations

import importlib
import json
import random
import sys
import uuid

import credentials as cr
import pytest

from otel_agents._classify import type_name
from otel_agents._export.redact import REDACTED, clean_message, clean_name, redact

#: keys of each format
PER_FORMAT = 300
#: fully random keys of each raw shape
RAW = 20_000
#: misses of the high-entropy rule per RAW keys, as measured (seed 2024); a change that
#: raises one fails here
RAW_MISS_BUDGET = {
    "base62 x24": 20,
    "base62 x32 (Mistral, Speechmatics)": 5,
    "base62 x44 (LiveKit Cloud API secret)": 0,
    "base64 x40 (AWS secret access key)": 2,
    "base64url x43": 5,
    "hex x40 (Deepgram key, GCP key id)": 0,
    "hex x64 (self-hosted LiveKit secret)": 0,
    "base36 x48": 0,
    "API + base57 x12 (LiveKit API key)": 25,
}
RAW_SHAPES = {
    "base62 x24": (cr.B62, 24, ""),
    "base62 x32 (Mistral, Speechmatics)": (cr.B62, 32, ""),
    "base62 x44 (LiveKit Cloud API secret)": (cr.B62, 44, ""),
    "base64 x40 (AWS secret access key)": (cr.B64, 40, ""),
    "base64url x43": (cr.B64URL, 43, ""),
    "hex x40 (Deepgram key, GCP key id)": (cr.HEX, 40, ""),
    "hex x64 (self-hosted LiveKit secret)": (cr.HEX, 64, ""),
    "base36 x48": (cr.B36, 48, ""),
    "API + base57 x12 (LiveKit API key)": (cr.B57, 12, "API"),
}
#: ordinary messages the redactor may change (none today)
FALSE_POSITIVE_BUDGET = 2
#: exception class names clean_name may change (6 of 648 today: email's
#: "InvalidBase64...Defect" and pydantic's "PydanticDeprecatedSince2x": long CamelCase with
#: digits, as random keys are)
CLASS_NAME_BUDGET = 8

MESSAGES = (
    "Incorrect API key provided: {}. You can find your API key in your dashboard.",
    '{{"error": {{"message": "invalid credentials", "detail": "{}"}}}}',
    "GET https://api.example.com/v1/keys/{}/usage failed with status 401",
    "upstream rejected it (was: {}).",
)


def gone(secret: str, text: str, size: int = 8) -> bool:
    return not any(secret[i : i + size] in text for i in range(max(1, len(secret) - size + 1)))


@pytest.mark.parametrize("fmt", cr.KEY_FORMATS, ids=lambda f: f.provider)
def test_every_key_format_is_redacted_wherever_it_is(fmt: cr.KeyFormat) -> None:
    rng = random.Random(f"{fmt.provider}-{PER_FORMAT}")
    survived = []
    for _ in range(PER_FORMAT):
        key = fmt.make(rng)
        for template in MESSAGES:
            text = template.format(key)
            if not gone(key, clean_message(text)):
                survived.append(text)
    assert not survived, f"{len(survived)} of {PER_FORMAT * len(MESSAGES)}: {survived[:3]}"


@pytest.mark.parametrize(("provider", "template"), cr.HEADERS, ids=[h[0] for h in cr.HEADERS])
def test_keys_behind_each_providers_header(provider: str, template: str) -> None:
    rng = random.Random(provider)
    survived = []
    for fmt in (*cr.CONTEXT_ONLY_FORMATS, *cr.KEY_FORMATS):
        key = fmt.make(rng)
        text = "request failed: " + template.format(key) + " (status 401)"
        cleaned = clean_message(text)
        if not gone(key, cleaned):
            survived.append((fmt.provider, cleaned))
        assert REDACTED in cleaned
    assert not survived, survived[:3]


@pytest.mark.parametrize("shape", sorted(RAW_SHAPES))
def test_raw_keys_the_high_entropy_rule_misses(shape: str) -> None:
    alphabet, length, prefix = RAW_SHAPES[shape]
    rng = random.Random(2024)
    missed = 0
    for _ in range(RAW):
        key = prefix + "".join(rng.choice(alphabet) for _ in range(length))
        if not gone(key, redact(f"provider said: {key} is not valid")):
            missed += 1
    print(f"\n{shape}: {missed} of {RAW} fully random keys missed")
    assert missed <= RAW_MISS_BUDGET[shape]


def test_false_positive_budget_on_ordinary_messages() -> None:
    messages = cr.ordinary_messages()
    changed = [(m, redact(m)) for m in messages if redact(m) != m]
    print(f"\n{len(changed)} of {len(messages)} ordinary messages changed")
    for before, after in changed:
        print(f"  {before!r}\n  -> {after!r}")
    assert len(messages) >= 150
    assert len(changed) <= FALSE_POSITIVE_BUDGET


@pytest.mark.parametrize(
    "readable",
    [*cr.REQUEST_IDS, *cr.MODELS, *cr.URLS],
)
def test_ids_model_names_and_urls_stay_readable(readable: str) -> None:
    for text in (
        f"upstream error on {readable} (retrying)",
        json.dumps({"error": {"message": "overloaded", "id": readable}}),
        f"request_id={readable}",
    ):
        assert readable in clean_message(text), text


def test_trace_ids_and_uuids_stay_readable() -> None:
    rng = random.Random(5)
    for _ in range(2000):
        trace_id = f"{rng.getrandbits(128):032x}"
        span_id = f"{rng.getrandbits(64):016x}"
        request = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        text = f"trace {trace_id} span {span_id} request {request}"
        assert redact(text) == text


#: the packages whose exception classes are read (the standard library's too)
PACKAGES = ("livekit", "openai", "anthropic", "httpx2", "httpcore2", "aiohttp", "pydantic")


def _exception_classes() -> list[str]:
    for module in ("livekit.agents", "livekit.agents.inference", *PACKAGES[1:]):
        importlib.import_module(module)
    seen: list[type] = []
    stack: list[type] = [BaseException]
    seen_ids: set[int] = set()
    while stack:
        # by identity, through type's own methods: a hostile metaclass may raise in __hash__
        for sub in type.__subclasses__(stack.pop()):
            if id(sub) not in seen_ids:
                seen_ids.add(id(sub))
                seen.append(sub)
                stack.append(sub)
    roots = {*PACKAGES, *sys.stdlib_module_names}
    # not the classes other tests of the same run made (hostile metaclasses, names made of
    # credentials): only the packages' own
    names = set()
    for cls in seen:
        try:
            module = type.__dict__["__dict__"].__get__(cls).get("__module__")
        except Exception:
            continue
        if type(module) is str and module.split(".")[0] in roots:
            names.add(type_name(cls))
    return sorted(names)


def test_exception_class_names_stay_readable() -> None:
    names = _exception_classes()
    changed = [(name, clean_name(name)) for name in names if clean_name(name) != name]
    print(f"\n{len(changed)} of {len(names)} exception class names changed: {changed}")
    assert len(names) >= 300
    assert len(changed) <= CLASS_NAME_BUDGET
