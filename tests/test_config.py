"""Bad input gets a clear error naming the variable, the value and what is expected."""

from __future__ import annotations

import pytest

from otel_agents import _config


def resolve(env: dict[str, str] | None = None, **kwargs: object) -> _config.Settings:
    args: dict[str, object] = {
        "service_name": None,
        "otlp_endpoint": None,
        "metrics_port": None,
        "metrics_host": "127.0.0.1",
        "silence_timeout": None,
        "capture_messages": None,
    }
    args.update(kwargs)
    return _config.resolve(env=env or {}, **args)  # type: ignore[arg-type]


def test_defaults() -> None:
    assert resolve() == _config.Settings(
        service_name="livekit-agent",
        otlp_endpoint=None,
        metrics_port=None,
        metrics_host="127.0.0.1",
        silence_timeout=8.0,
        capture_messages=True,
    )


def test_env_fallbacks_and_argument_precedence() -> None:
    env = {
        "OTEL_SERVICE_NAME": "voice",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/",
        "OTEL_AGENTS_METRICS_PORT": "9464",
        "OTEL_AGENTS_SILENCE_TIMEOUT": "2.5",
        "OTEL_AGENTS_CAPTURE_MESSAGES": "false",
    }
    s = resolve(env)
    assert (s.service_name, s.otlp_endpoint, s.metrics_port) == (
        "voice",
        "http://collector:4318",
        9464,
    )
    assert (s.silence_timeout, s.capture_messages) == (2.5, False)
    s = resolve(env, service_name="other", metrics_port=9000, silence_timeout=1)
    assert (s.service_name, s.metrics_port, s.silence_timeout) == ("other", 9000, 1.0)


@pytest.mark.parametrize(
    ("env", "kwargs", "message"),
    [
        (
            {"OTEL_AGENTS_SILENCE_TIMEOUT": "abc"},
            {},
            "OTEL_AGENTS_SILENCE_TIMEOUT='abc': expected a positive number of seconds",
        ),
        ({"OTEL_AGENTS_SILENCE_TIMEOUT": "-1"}, {}, "OTEL_AGENTS_SILENCE_TIMEOUT='-1'"),
        ({"OTEL_AGENTS_SILENCE_TIMEOUT": "nan"}, {}, "OTEL_AGENTS_SILENCE_TIMEOUT='nan'"),
        ({}, {"silence_timeout": -3.0}, "silence_timeout=-3.0: expected a positive number"),
        ({}, {"silence_timeout": 0}, "silence_timeout=0"),
        (
            {"OTEL_AGENTS_METRICS_PORT": "70000"},
            {},
            "OTEL_AGENTS_METRICS_PORT='70000': expected a TCP port number from 1 to 65535",
        ),
        ({"OTEL_AGENTS_METRICS_PORT": "http"}, {}, "OTEL_AGENTS_METRICS_PORT='http'"),
        ({}, {"metrics_port": 0}, "metrics_port=0: expected a TCP port"),
        ({}, {"metrics_port": True}, "metrics_port=True"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"},
            {},
            "OTEL_EXPORTER_OTLP_ENDPOINT='collector:4318': expected an http:// or https:// URL",
        ),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://"}, {}, "OTEL_EXPORTER_OTLP_ENDPOINT='http://'"),
        ({}, {"otlp_endpoint": "http://host:99999"}, "otlp_endpoint='http://host:99999'"),
        ({}, {"otlp_endpoint": "ftp://host"}, "otlp_endpoint='ftp://host'"),
        (
            {"OTEL_AGENTS_CAPTURE_MESSAGES": "maybe"},
            {},
            "OTEL_AGENTS_CAPTURE_MESSAGES='maybe': expected true or false",
        ),
        ({}, {"capture_messages": "yes"}, "capture_messages='yes': expected True or False"),
        ({}, {"service_name": ""}, "service_name='': expected a non-empty string"),
        ({}, {"metrics_host": " "}, "metrics_host=' '"),
    ],
)
def test_invalid_values_name_the_source_value_and_expectation(
    env: dict[str, str], kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=r"^otel_agents: invalid ") as info:
        resolve(env, **kwargs)
    assert message in str(info.value)


def test_sdk_disabled_parsing() -> None:
    assert _config.sdk_disabled({"OTEL_SDK_DISABLED": "TRUE"})
    assert not _config.sdk_disabled({"OTEL_SDK_DISABLED": "false"})
    assert not _config.sdk_disabled({})
    with pytest.raises(ValueError, match="OTEL_SDK_DISABLED='sometimes'"):
        _config.sdk_disabled({"OTEL_SDK_DISABLED": "sometimes"})
