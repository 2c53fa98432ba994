"""The Grafana dashboards of otel-agents, built with grafana-foundation-sdk.

``python -m dashboards.dashboards`` writes ``dashboards/overview.json`` and
``dashboards/errors.json`` (deterministic: sorted keys, 2-space indent, trailing newline); the
JSON is committed and ``tests/test_dashboards.py`` fails when it is stale. Each dashboard is
built in its own module (``overview``, ``errors``) from the panel library (``panels``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from .errors import errors
from .overview import overview

HERE: Final = Path(__file__).resolve().parent

#: file name -> builder of every dashboard
DASHBOARDS: Final[dict[str, Callable[[], db.Dashboard]]] = {
    "overview.json": overview,
    "errors.json": errors,
}


def to_json(builder: db.Dashboard) -> dict[str, Any]:
    """The dashboard as plain JSON data."""
    data: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    return data


def render(builder: db.Dashboard) -> str:
    """The committed form: sorted keys, 2-space indent, trailing newline."""
    return json.dumps(to_json(builder), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def generated() -> dict[Path, str]:
    """``{path: text}`` of every dashboard, as ``main`` writes them."""
    return {HERE / name: render(build()) for name, build in DASHBOARDS.items()}


def load(name: str) -> dict[str, Any]:
    """A committed dashboard, e.g. ``load("overview.json")``."""
    data: dict[str, Any] = json.loads((HERE / name).read_text(encoding="utf-8"))
    return data


def main(argv: Sequence[str] | None = None) -> int:
    for path, text in generated().items():
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
