"""An OTLP/HTTP receiver on 127.0.0.1 for the tests: it decodes the traces and metrics it is
sent (protobuf, as the SDK's HTTP exporters post them) into plain values."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue


def value_of(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return None if kind is None else getattr(value, kind)


def attributes_of(pairs: Any) -> dict[str, Any]:
    return {pair.key: value_of(pair.value) for pair in pairs if isinstance(pair, KeyValue)}


@dataclass(frozen=True)
class Span:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    status_code: int  # 0 unset, 1 ok, 2 error
    resource: dict[str, Any]


@dataclass(frozen=True)
class Point:
    """One data point of one metric of one export: a sum's value, a histogram's count."""

    metric: str
    attributes: dict[str, Any]
    value: float
    resource: dict[str, Any]


class OtlpReceiver:
    """Receives ``/v1/traces`` and ``/v1/metrics`` on a thread of its own (answers 200)."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        #: one list of points per metrics request
        self.metric_exports: list[list[Point]] = []
        self.requests: Counter[str] = Counter()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver._receive(self.path, body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _receive(self, path: str, body: bytes) -> None:
        spans: list[Span] = []
        points: list[Point] = []
        if path == "/v1/traces":
            for rs in ExportTraceServiceRequest.FromString(body).resource_spans:
                resource = attributes_of(rs.resource.attributes)
                for ss in rs.scope_spans:
                    spans.extend(
                        Span(
                            s.name,
                            s.trace_id.hex(),
                            s.span_id.hex(),
                            s.parent_span_id.hex(),
                            attributes_of(s.attributes),
                            s.status.code,
                            resource,
                        )
                        for s in ss.spans
                    )
        elif path == "/v1/metrics":
            for rm in ExportMetricsServiceRequest.FromString(body).resource_metrics:
                resource = attributes_of(rm.resource.attributes)
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        points.extend(_points(metric, resource))
        with self._lock:
            self.requests[path] += 1
            self.spans.extend(spans)
            if path == "/v1/metrics":
                self.metric_exports.append(points)

    def spans_named(self, name: str) -> list[Span]:
        with self._lock:
            return [s for s in self.spans if s.name == name]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> OtlpReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _points(metric: Any, resource: dict[str, Any]) -> list[Point]:
    kind = metric.WhichOneof("data")
    data = getattr(metric, kind)
    out = []
    for p in data.data_points:
        if kind == "histogram":
            value = float(p.count)
        else:
            value = float(p.as_int if p.WhichOneof("value") == "as_int" else p.as_double)
        out.append(Point(metric.name, attributes_of(p.attributes), value, resource))
    return out
