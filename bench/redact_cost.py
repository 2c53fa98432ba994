"""Cost of the redactor, per message, as a ratio to the redactor it replaced.

The baseline is ``bench/_redact_before.py``: the previous redactor, verbatim (truncate to 256
characters, then 13 patterns). Both clean the same texts, alternating round by round:

* ordinary error messages (``tests/credentials.py``: 162 messages of livekit, the openai and
  anthropic SDKs, transports and provider bodies, none with a credential);
* messages with credentials (a key of every provider format, and every provider's header);
* a 2 KiB error body (the new redactor reads 1 KiB of it, the old one 256 characters);
* pathological inputs (long runs the patterns could backtrack on): the slowest of them;
* a livekit stack trace of 8 KiB (``span_redaction``, line by line, uncached).

Target: ordinary messages at most 1.5x the old redactor's cost (every failed attempt pays it
on the event loop), the slowest pathological input under 1 ms.
"""

from __future__ import annotations

import random
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import _common as c
from bench import _redact_before as before
from otel_agents._export import redact as after
from otel_agents._export import span_redaction

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import credentials

ROUNDS = c.size("redact_rounds", 15, 3)
REPEAT = c.size("redact_repeat", 20, 2)


def _secret_messages() -> list[str]:
    rng = random.Random(11)
    out = [f"Incorrect API key provided: {f.make(rng)}." for f in credentials.KEY_FORMATS]
    keys = [f.make(rng) for f in credentials.CONTEXT_ONLY_FORMATS]
    out += [
        "request failed: " + template.format(keys[i % len(keys)])
        for i, (_, template) in enumerate(credentials.HEADERS)
    ]
    return out


PATHOLOGICAL = (
    "https://" + "a" * 1000,
    "https://" + "a:" * 500,
    "token=" + "=" * 1000,
    "eyJ" + "a." * 500,
    "Bearer " + "a" * 1000,
    '"api_key": "' + "x" * 1000,
    "sk-" + "-" * 1000,
    "://" * 340,
    "key=" * 250,
    '\\"' * 500,
    "%2F" * 340,
    "-----BEGIN A-----" * 60,
    "<a>" * 340,
    "Aa1" * 340,
    "a " * 512,
)


def _stacktrace() -> str:
    def nest(depth: int) -> None:
        if depth:
            nest(depth - 1)
        raise RuntimeError("Error code: 401 - Incorrect API key provided: sk-proj-abc123\nmore")

    try:
        nest(60)
    except RuntimeError:
        return traceback.format_exc()
    return ""


def _per_text(clean: Callable[[str], str], texts: list[str]) -> float:
    """Microseconds per text, over ``REPEAT`` passes."""
    start = time.perf_counter_ns()
    for _ in range(REPEAT):
        for text in texts:
            clean(text)
    return (time.perf_counter_ns() - start) / (REPEAT * len(texts)) / 1000.0


def _pair(texts: list[str], old: Callable[[str], str], new: Callable[[str], str]) -> dict[str, Any]:
    rounds = c.alternate(
        {"before": lambda: _per_text(old, texts), "after": lambda: _per_text(new, texts)}, ROUNDS
    )
    return {
        "texts": len(texts),
        "before_us": c.median(rounds["before"]),
        "after_us": c.median(rounds["after"]),
        "ratio": c.paired_ratio(rounds["after"], rounds["before"]),
    }


def run() -> dict[str, Any]:
    ordinary = credentials.ordinary_messages()
    body = ("Error code: 503 - " + ordinary[0] + " ") * 8
    stack = _stacktrace()

    def uncached(text: str) -> str:
        after._name_cached.cache_clear()  # every frame line redacted anew
        span_redaction._clean_window.cache_clear()
        return span_redaction._clean_stacktrace(text)

    with c.quiet_gc():
        result: dict[str, Any] = {
            "rounds": ROUNDS,
            "repeat": REPEAT,
            "ordinary": _pair(ordinary, before.clean_message, after.clean_message),
            "secrets": _pair(_secret_messages(), before.clean_message, after.clean_message),
            "body_2k": _pair([body[:2048]], before.clean_message, after.clean_message),
            "stacktrace": _pair([stack], before.clean_stacktrace, uncached),
        }
        worst: dict[str, float] = {}
        for text in PATHOLOGICAL:
            pair = _pair([text], before.clean_message, after.clean_message)
            worst[text[:12]] = pair["after_us"]
            if pair["after_us"] >= max(worst.values()):
                result["pathological_worst"] = {"text": text[:20], **pair}
        result["pathological"] = worst
    figures = [
        c.Figure(
            key="redact.ordinary",
            name=f"redactor, ordinary error message ({result['ordinary']['texts']} messages)",
            value=result["ordinary"]["after_us"],
            unit="µs",
            baseline=result["ordinary"]["before_us"],
            baseline_label="the previous redactor",
            ratio=result["ordinary"]["ratio"],
            on="ratio",
            op="<=",
            limit=1.5,
        ),
        c.Figure(
            key="redact.secrets",
            name=f"redactor, message with a credential ({result['secrets']['texts']} formats)",
            value=result["secrets"]["after_us"],
            unit="µs",
            baseline=result["secrets"]["before_us"],
            baseline_label="the previous redactor",
            ratio=result["secrets"]["ratio"],
        ),
        c.Figure(
            key="redact.body_2k",
            name="redactor, 2 KiB error body (1 KiB read, was 256 chars)",
            value=result["body_2k"]["after_us"],
            unit="µs",
            baseline=result["body_2k"]["before_us"],
            baseline_label="the previous redactor",
            ratio=result["body_2k"]["ratio"],
        ),
        c.Figure(
            key="redact.pathological",
            name=f"redactor, slowest pathological input ({result['pathological_worst']['text']!r})",
            value=result["pathological_worst"]["after_us"],
            unit="µs",
            baseline=result["pathological_worst"]["before_us"],
            baseline_label="the previous redactor",
            ratio=result["pathological_worst"]["ratio"],
            on="value",
            op="<",
            limit=1000.0,
        ),
        c.Figure(
            key="redact.stacktrace",
            name="livekit span: 8 KiB stack trace, line by line (uncached)",
            value=result["stacktrace"]["after_us"],
            unit="µs",
            baseline=result["stacktrace"]["before_us"],
            baseline_label="frames kept unredacted",
            ratio=result["stacktrace"]["ratio"],
        ),
    ]
    result["figures"] = figures
    return result


def main() -> dict[str, Any]:
    result = run()
    print(f"redact_cost: per text, medians of {ROUNDS} alternating rounds")
    c.print_figures(c.figures_of(result))
    c.write_result("redact_cost", c.jsonable(result))
    return result


if __name__ == "__main__":
    main()
