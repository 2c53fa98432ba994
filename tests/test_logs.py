"""The attempt_failed log record: renderable as JSON with structlog (the README's recipe), and
init() leaves the host's logging and structlog configuration alone."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog
from livekit.agents import APIConnectionError, llm
from livekit.agents.types import APIConnectOptions

import otel_agents
from otel_agents import names as n

from scripted import ScriptedLLM, ssl_connection_error


def test_init_does_not_touch_host_logging_or_structlog() -> None:
    otel_agents.shutdown()
    root = logging.getLogger()
    before = (list(root.handlers), root.level, structlog.get_config())
    ours = logging.getLogger(n.LOGGER_NAME)
    our_before = (ours.level, ours.propagate, list(ours.handlers))
    otel_agents.init()
    try:
        assert (list(root.handlers), root.level, structlog.get_config()) == before
        assert (ours.level, ours.propagate, list(ours.handlers)) == our_before
    finally:
        otel_agents.shutdown()


@pytest.mark.asyncio
async def test_attempt_failed_renders_as_json_with_structlog(telemetry) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.ExtraAdder()],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    logging.getLogger(n.LOGGER_NAME).addHandler(handler)
    try:
        with pytest.raises(APIConnectionError):
            async for _ in ScriptedLLM([ssl_connection_error]).chat(
                chat_ctx=llm.ChatContext.empty(), conn_options=APIConnectOptions(max_retry=0)
            ):
                pass
    finally:
        logging.getLogger(n.LOGGER_NAME).removeHandler(handler)

    (line,) = stream.getvalue().splitlines()
    record = json.loads(line)
    (span,) = telemetry.attempt_spans()
    assert record == {
        "event": "attempt_failed",
        "component": "llm",
        "provider": "scripted",
        "attempt": 0,
        "final": True,
        "error_type": "livekit.agents.APIConnectionError",
        "status_code": None,
        "error_class": "connection",
        "root_cause_type": "ssl.SSLCertVerificationError",
        "root_cause_message": "[SSL: CERTIFICATE_VERIFY_FAILED] failed",
        "first_root_cause_type": "ssl.SSLCertVerificationError",
        "masked": False,
        "terminal": False,
        "quota_type": None,
        "quota_category": None,
        "quota_hint": None,
        "quota_remaining_limit": None,
        "trace_id": format(span.context.trace_id, "032x"),
        "span_id": format(span.context.span_id, "016x"),
    }
