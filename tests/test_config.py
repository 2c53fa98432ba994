"""Bad input gets a clear error naming the variable, the value and what is expected."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

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
            "OTEL_AGENTS_METRICS_PORT='70000': expected a TCP port number from 0 to 65535",
        ),
        ({"OTEL_AGENTS_METRICS_PORT": "http"}, {}, "OTEL_AGENTS_METRICS_PORT='http'"),
        ({}, {"metrics_port": -1}, "metrics_port=-1: expected a TCP port number from 0 to"),
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


# --- empty means unset; 0 means any free port; signal paths; the multiprocess directory -------

#: every variable resolve() reads, with a valid non-default value
VARIABLES = {
    "OTEL_SERVICE_NAME": ("voice", "service_name", "livekit-agent"),
    "OTEL_EXPORTER_OTLP_ENDPOINT": ("http://collector:4318", "otlp_endpoint", None),
    "OTEL_AGENTS_METRICS_PORT": ("9464", "metrics_port", None),
    "OTEL_AGENTS_SILENCE_TIMEOUT": ("2.5", "silence_timeout", 8.0),
    "OTEL_AGENTS_CAPTURE_MESSAGES": ("false", "capture_messages", True),
    "OTEL_AGENTS_EXIT_FLUSH_TIMEOUT": ("0.5", "exit_flush_timeout", 2.0),
    "OTEL_AGENTS_OTLP_METRICS": ("sidecar", "otlp_metrics", "process"),
    "PROMETHEUS_MULTIPROC_DIR": (None, "multiproc_dir", None),
}


@pytest.mark.parametrize("blank", ["", "   ", "\t"])
@pytest.mark.parametrize("name", sorted(VARIABLES))
def test_an_empty_value_means_unset(name: str, blank: str) -> None:
    _value, field, default = VARIABLES[name]
    assert getattr(resolve({name: blank}), field) == default
    assert not _config.sdk_disabled({"OTEL_SDK_DISABLED": blank})


@pytest.mark.parametrize("name", sorted(k for k, v in VARIABLES.items() if v[0] is not None))
def test_a_value_is_read(name: str) -> None:
    value, field, default = VARIABLES[name]
    assert getattr(resolve({name: value}), field) not in (default, None)


def test_port_zero_means_any_free_port_from_the_argument_and_the_environment() -> None:
    assert resolve({"OTEL_AGENTS_METRICS_PORT": "0"}).metrics_port == 0
    assert resolve(metrics_port=0).metrics_port == 0


@pytest.mark.parametrize("signal", ["/v1/traces", "/v1/metrics", "/v1/logs", "/v1/traces/"])
@pytest.mark.parametrize("source", ["OTEL_EXPORTER_OTLP_ENDPOINT", "otlp_endpoint"])
def test_a_generic_endpoint_ending_in_a_signal_path_is_refused(source: str, signal: str) -> None:
    raw = f"http://user:hunter2@collector:4318/otel{signal}"
    env, kwargs = ({source: raw}, {}) if source.isupper() else ({}, {source: raw})
    with pytest.raises(ValueError, match=r"expected the base URL without /v1/") as info:
        resolve(env, **kwargs)
    message = str(info.value)
    assert f"invalid {source}=" in message
    assert "e.g. http://collector:4318/otel" in message
    assert "hunter2" not in message


def test_a_base_url_with_a_path_prefix_is_kept() -> None:
    assert resolve(otlp_endpoint="http://c:4318/otel/").otlp_endpoint == "http://c:4318/otel"


def test_a_missing_multiprocess_directory_is_made(tmp_path: Path) -> None:
    directory = tmp_path / "a" / "b"
    assert resolve({"PROMETHEUS_MULTIPROC_DIR": str(directory)}).multiproc_dir == str(directory)
    assert directory.is_dir()


def test_a_multiprocess_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(ValueError, match=r"invalid PROMETHEUS_MULTIPROC_DIR=.*a directory"):
        resolve({"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "f")})


@pytest.mark.parametrize("shape", ["unwritable", "uncreatable"])
def test_an_unwritable_multiprocess_directory_makes_init_raise_saying_what_to_do(
    shape: str,
) -> None:
    """As the Dockerfile's user would meet it: a root-owned directory the agent cannot write
    (or a missing one under it), and ``init()`` raises ``ValueError`` naming the variable and
    what to do, instead of prometheus_client's ``DuplicateTimeseries``."""
    # outside pytest's private tmp tree, which another user could not even traverse
    owned = Path(tempfile.mkdtemp(prefix="otel-agents-root-owned-"))
    owned.chmod(0o755)
    directory = owned if shape == "unwritable" else owned / "metrics"
    # as root, the child drops to nobody (the directory is root's) once its modules are loaded
    drop = "os.setgroups([]); os.setgid(65534); os.setuid(65534)" if os.getuid() == 0 else ""
    if not drop:
        owned.chmod(0o555)
    script = (
        "import os, otel_agents, otel_agents._instrumentor\n"
        f"{drop}\n"
        "try:\n"
        "    otel_agents.init()\n"
        "except ValueError as exc:\n"
        "    print(exc)\n"
        "else:\n"
        "    print('no error')\n"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        owned.chmod(0o755)
        shutil.rmtree(owned)
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip()
    assert line.startswith(f"otel_agents: invalid PROMETHEUS_MULTIPROC_DIR='{directory}'"), line
    assert "DuplicateTimeseries" not in done.stdout + done.stderr
    assert "chown" in line, line
    assert "owner" in line, line
    if shape == "uncreatable":
        assert "can create or write to (Permission denied): create it" in line, line
    else:
        assert "can write to (permission denied): make uid" in line, line


def test_a_directory_no_one_can_write_is_refused_in_process() -> None:
    # /proc: creating a file there fails for root too
    with pytest.raises(ValueError, match=r"PROMETHEUS_MULTIPROC_DIR='/proc': expected a directory"):
        resolve({"PROMETHEUS_MULTIPROC_DIR": "/proc"})


class _Unhashable:
    """An argument whose __hash__ and __eq__ raise something other than TypeError."""

    def __hash__(self) -> int:
        raise RuntimeError("no hash")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no eq")


def test_a_hostile_argument_gets_the_settings_error_not_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the forked-child cache of resolve() hashes and compares the arguments: a hostile one is
    # resolved afresh, and judged there
    defaults = {
        "otlp_endpoint": None,
        "metrics_port": None,
        "metrics_host": "127.0.0.1",
        "silence_timeout": None,
        "capture_messages": None,
    }
    settings = _config.resolve(service_name=None, **defaults)  # type: ignore[arg-type]
    monkeypatch.setattr(_config, "_resolved", (-1, _config._resolved[1], settings))  # type: ignore[index]
    with pytest.raises(ValueError, match="service_name"):
        _config.resolve(service_name=_Unhashable(), **defaults)  # type: ignore[arg-type]
