"""The demo's trace file stays bounded: ``--serve`` runs for days under compose, so the file
is rotated past its cap (``--trace-file-max-mb``), counted in bytes, not timed."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from otel_agents.demo.tracefile import OtlpJsonFileExporter, read_spans

from conftest import clean_env

CAP = 20_000


def _spans(provider: TracerProvider, round_no: int, count: int) -> None:
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("round", attributes={"round": round_no}):
        for i in range(count):
            with tracer.start_as_current_span("work", attributes={"i": i, "pad": "x" * 200}):
                pass


def test_the_file_and_its_one_rotation_stay_under_the_cap(tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl"
    exporter = OtlpJsonFileExporter(path, max_bytes=CAP)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    sizes = []
    for round_no in range(200):
        _spans(provider, round_no, 5)
        sizes.append(
            (path.stat().st_size, exporter.rotated_path.stat().st_size if exporter.rotations else 0)
        )
    provider.shutdown()
    assert exporter.rotations >= 10  # ~200 rounds of ~1.8 KB: the cap was met many times
    assert max(s for s, _ in sizes) <= CAP
    assert max(r for _, r in sizes) <= CAP
    assert sorted(p.name for p in tmp_path.iterdir()) == ["traces.jsonl", "traces.jsonl.1"]
    # nothing torn: every line of both files is a whole OTLP/JSON request, the newest rounds
    rounds = [
        s["attrs"]["round"]
        for file in (exporter.rotated_path, path)
        for s in read_spans(file)
        if s["name"] == "round"
    ]
    assert rounds == sorted(rounds)
    assert rounds[-1] == 199
    assert exporter.spans_written == 200 * 6


def test_a_batch_larger_than_the_cap_is_written_a_span_per_line(tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl"
    exporter = OtlpJsonFileExporter(path, max_bytes=CAP)
    provider = TracerProvider()
    spans = []

    class Keep(SimpleSpanProcessor):
        def on_end(self, span):  # type: ignore[no-untyped-def]
            spans.append(span)

    provider.add_span_processor(Keep(exporter))
    _spans(provider, 0, 200)  # ~50 KB as one batch
    exporter.export(spans)
    exporter.shutdown()
    for file in (path, exporter.rotated_path):
        assert file.stat().st_size <= CAP
        for line in file.read_text().splitlines():
            json.loads(line)
    assert exporter.rotations >= 2


def test_serve_rotates_its_trace_file(tmp_path: Path) -> None:
    """``otel-agents demo --serve`` as compose runs it, with a small cap: after a few rounds
    the file has been rotated, and neither file is past the cap."""
    cap_mb = 0.02
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "otel_agents",
            "demo",
            "--serve",
            "--pause",
            "0",
            "-s",
            "healthy",
            "--metrics-port",
            "0",
            "--trace-file-max-mb",
            str(cap_mb),
        ],
        cwd=tmp_path,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    path = tmp_path / "otel-agents-demo-traces.jsonl"
    rotated = tmp_path / "otel-agents-demo-traces.jsonl.1"
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("round 4 done"):
                break
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rotated.exists(), sorted(p.name for p in tmp_path.iterdir())
    assert path.stat().st_size <= cap_mb * 1e6
    assert rotated.stat().st_size <= cap_mb * 1e6
    # both are whole OTLP/JSON files, the rotated one the older spans
    assert list(read_spans(rotated))
    assert list(read_spans(path))
