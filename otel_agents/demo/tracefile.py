"""Spans to a local file in the OTLP JSON format.

One ``ExportTraceServiceRequest`` per line, in the OTLP/JSON encoding of the OpenTelemetry
protocol specification (lowerCamelCase field names, enums as integers, trace and span ids as
hex strings). That is the file format the OpenTelemetry Collector's ``otlpjsonfile`` receiver
reads, so the demo's traces can be replayed into any backend; :func:`read_spans` reads it back.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

__all__ = ["OtlpJsonFileExporter", "read_spans"]

#: the protobuf JSON mapping writes bytes as base64; OTLP/JSON wants these as hex
_HEX_ID_FIELDS = ("traceId", "spanId", "parentSpanId")


class OtlpJsonFileExporter(SpanExporter):
    """Append each exported batch to ``path`` as one line of OTLP/JSON.

    The file is opened (and truncated) by the constructor, so an unwritable path fails at
    once with :class:`OSError` rather than at the first export. With ``max_bytes``, a line
    that would take the file past it first rotates the file to ``<path>.1`` (replacing the
    previous one), so the two files hold at most twice ``max_bytes`` however long it runs. A
    batch whose line alone is longer is written a span per line; a single span longer than
    ``max_bytes`` gets a file of its own.
    """

    def __init__(self, path: str | Path, *, max_bytes: int | None = None) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self._file: IO[bytes] | None = self.path.open("wb")
        self._size = 0
        self._lock = threading.Lock()
        self.spans_written = 0
        self.rotations = 0

    @property
    def rotated_path(self) -> Path:
        return self.path.with_name(self.path.name + ".1")

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = [_line(spans)]
        if self.max_bytes is not None and len(lines[0]) > self.max_bytes and len(spans) > 1:
            lines = [_line([span]) for span in spans]  # a batch past the cap: a line per span
        with self._lock:
            if self._file is None:
                return SpanExportResult.FAILURE
            try:
                for line in lines:
                    if self._past_cap(len(line)):
                        self._rotate()
                    self._file.write(line)
                    self._size += len(line)
                self._file.flush()
            except OSError:
                return SpanExportResult.FAILURE
            self.spans_written += len(spans)
        return SpanExportResult.SUCCESS

    def _past_cap(self, more: int) -> bool:
        return self.max_bytes is not None and self._size > 0 and self._size + more > self.max_bytes

    def _rotate(self) -> None:
        assert self._file is not None
        self._file.close()
        self._file = None
        os.replace(self.path, self.rotated_path)
        self._file = self.path.open("wb")
        self._size = 0
        self.rotations += 1

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True  # every export is flushed as it is written

    def shutdown(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def _line(spans: Sequence[ReadableSpan]) -> bytes:
    return (json.dumps(_to_otlp_json(spans), separators=(",", ":")) + "\n").encode()


def _to_otlp_json(spans: Sequence[ReadableSpan]) -> dict[str, Any]:
    message = MessageToDict(encode_spans(spans), use_integers_for_enums=True)
    for resource_spans in message.get("resourceSpans", ()):
        for scope_spans in resource_spans.get("scopeSpans", ()):
            for span in scope_spans.get("spans", ()):
                _hex_ids(span)
                for link in span.get("links", ()):
                    _hex_ids(link)
    return message


def _hex_ids(item: dict[str, Any]) -> None:
    for key in _HEX_ID_FIELDS:
        if key in item:
            item[key] = base64.b64decode(item[key]).hex()


def read_spans(path: str | Path) -> Iterator[dict[str, Any]]:
    """Every span in an OTLP/JSON file, with its attributes flattened to ``{key: value}``
    under ``"attrs"`` and its resource's under ``"resource"``."""
    with Path(path).open(encoding="utf-8") as file:
        for line in file:
            if not line.strip():
                continue
            for resource_spans in json.loads(line).get("resourceSpans", ()):
                resource = _attributes(resource_spans.get("resource", {}).get("attributes", ()))
                for scope_spans in resource_spans.get("scopeSpans", ()):
                    for span in scope_spans.get("spans", ()):
                        span["attrs"] = _attributes(span.get("attributes", ()))
                        span["resource"] = resource
                        yield span


def _attributes(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {item["key"]: _value(item.get("value", {})) for item in items}


def _value(value: dict[str, Any]) -> Any:
    if "stringValue" in value:
        return value["stringValue"]
    if "boolValue" in value:
        return value["boolValue"]
    if "intValue" in value:
        return int(value["intValue"])  # int64 is a decimal string in the JSON mapping
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "arrayValue" in value:
        return [_value(v) for v in value["arrayValue"].get("values", ())]
    return None
