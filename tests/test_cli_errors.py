"""Every bad value, from an option or the environment, gets one line and exit status 2, in every
``otel-agents`` command, run as a user runs it (a subprocess); ``init()`` raises ``ValueError``
naming the variable for any value of any variable it reads, and never anything else."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otel_agents import _config

from conftest import clean_env

RUN_TIMEOUT = 120.0

#: every variable an ``otel-agents`` command or ``init()`` reads, emptied
VARIABLES = (
    "OTEL_SERVICE_NAME",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_AGENTS_METRICS_PORT",
    "OTEL_AGENTS_SILENCE_TIMEOUT",
    "OTEL_AGENTS_CAPTURE_MESSAGES",
    "OTEL_AGENTS_EXIT_FLUSH_TIMEOUT",
    "OTEL_AGENTS_OTLP_METRICS",
    "OTEL_SDK_DISABLED",
    "PROMETHEUS_MULTIPROC_DIR",
)


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "otel_agents", *args]


def _cases(tmp: Path) -> dict[str, tuple[list[str], dict[str, str], str]]:
    """what -> (argv, environment, the fragment the one line must hold)."""
    a_file = tmp / "a-file"
    a_file.write_text("")
    directory = tmp / "multiproc"
    directory.mkdir()
    demo = ("demo", "-s", "healthy", "--metrics-port", "0", "--trace-file", str(tmp / "t.jsonl"))
    sidecar = ("sidecar", "--multiproc-dir", str(directory), "--port", "0")
    cases: dict[str, tuple[list[str], dict[str, str], str]] = {}
    bad_env = {
        "OTEL_AGENTS_METRICS_PORT": "70000",
        "OTEL_AGENTS_SILENCE_TIMEOUT": "abc",
        "OTEL_AGENTS_CAPTURE_MESSAGES": "maybe",
        "OTEL_SDK_DISABLED": "maybe",
        "OTEL_AGENTS_EXIT_FLUSH_TIMEOUT": "-1",
        "OTEL_AGENTS_OTLP_METRICS": "both",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/v1/traces",
        "PROMETHEUS_MULTIPROC_DIR": str(a_file),
    }
    for name, value in bad_env.items():
        # no --metrics-port: it would win over $OTEL_AGENTS_METRICS_PORT
        cases[f"demo {name}={value}"] = (command(*demo[:3]), {name: value}, f"invalid {name}=")
    for option, value in [
        ("--metrics-port", "x"),
        ("--metrics-host", " "),
        ("--trace-file-max-mb", "0"),
        ("--pause", "-1"),
        ("--drain-pace", "abc"),
        ("--otlp-endpoint", "http://c:4318/v1/metrics"),
    ]:
        cases[f"demo {option} {value}"] = (
            command(*demo, option, value),
            {},
            f"invalid {option}=",
        )
    cases["demo -s nope"] = (command(*demo, "-s", "nope"), {}, "unknown scenario 'nope'")
    cases["demo --bogus"] = (command(*demo, "--bogus"), {}, "unrecognized arguments: --bogus")
    cases["sidecar without a directory"] = (
        command("sidecar", "--port", "0"),
        {},
        "set --multiproc-dir or PROMETHEUS_MULTIPROC_DIR",
    )
    cases["sidecar PROMETHEUS_MULTIPROC_DIR=a file"] = (
        command("sidecar", "--port", "0"),
        {"PROMETHEUS_MULTIPROC_DIR": str(a_file)},
        "not a directory",
    )
    # /proc: a directory no one can create a file in, root included
    cases["sidecar, an unwritable directory"] = (
        command("sidecar", "--multiproc-dir", "/proc", "--port", "0"),
        {},
        "--multiproc-dir: /proc: not writable by uid",
    )
    cases["demo PROMETHEUS_MULTIPROC_DIR unwritable"] = (
        command(*demo[:3]),
        {"PROMETHEUS_MULTIPROC_DIR": "/proc"},
        "invalid PROMETHEUS_MULTIPROC_DIR='/proc': expected a directory uid",
    )
    cases["sidecar OTEL_AGENTS_OTLP_METRICS=both"] = (
        command(*sidecar),
        {"OTEL_AGENTS_OTLP_METRICS": "both"},
        "OTEL_AGENTS_OTLP_METRICS: both: expected process or sidecar",
    )
    cases["sidecar endpoint with a signal path"] = (
        command(*sidecar),
        {
            "OTEL_AGENTS_OTLP_METRICS": "sidecar",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c/v1/metrics",
        },
        "expected the base URL without /v1/metrics",
    )
    cases["sidecar empty bearer token"] = (
        command(*sidecar),
        {"OTEL_AGENTS_SIDECAR_BEARER_TOKEN": ""},
        "OTEL_AGENTS_SIDECAR_BEARER_TOKEN: (empty)",
    )
    for option, value in [
        ("--port", "x"),
        ("--max-connections", "0"),
        ("--header-timeout", "abc"),
        ("--otlp-interval", "-1"),
        ("--otlp-endpoint", "ftp://x"),
        ("--bearer-token-file", str(tmp / "missing")),
    ]:
        cases[f"sidecar {option} {value}"] = (command(*sidecar, option, value), {}, option)
    cases["sidecar --bogus"] = (command(*sidecar, "--bogus"), {}, "unrecognized arguments")
    cases["no command"] = (command(), {}, "the following arguments are required: COMMAND")
    cases["unknown command"] = (command("nope"), {}, "invalid choice: 'nope'")
    return cases


def test_every_bad_value_is_one_line_and_exit_status_2(tmp_path: Path) -> None:
    cases = _cases(tmp_path)
    procs = {}
    # a few at a time: each demo run imports livekit
    pending = list(cases.items())
    results: dict[str, tuple[int, str, str]] = {}
    while pending:
        batch, pending = pending[:6], pending[6:]
        procs = {
            what: subprocess.Popen(
                argv,
                cwd=tmp_path,
                env=clean_env(**env),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for what, (argv, env, _fragment) in batch
        }
        for what, proc in procs.items():
            out, err = proc.communicate(timeout=RUN_TIMEOUT)
            results[what] = (proc.returncode, out, err)
    for what, (argv, _env, fragment) in cases.items():
        code, out, err = results[what]
        prog = "otel-agents " + argv[3] if len(argv) > 3 and argv[3] in ("demo", "sidecar") else ""
        assert code == 2, (what, err)
        assert err.count("\n") == 1, (what, err)
        assert "Traceback" not in err, (what, err)
        assert err.startswith(f"{prog or 'otel-agents'}: "), (what, err)
        assert fragment in err, (what, err)
        assert out == "", (what, out)


def test_the_demo_with_its_port_in_the_environment_binds_it_once(tmp_path: Path) -> None:
    """``OTEL_AGENTS_METRICS_PORT`` is the demo's own ``/metrics`` port: ``init()`` inside the
    demo does not try to bind it a second time; empty variables mean unset."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    empties = dict.fromkeys(VARIABLES, "")
    done = subprocess.run(
        command("demo", "-s", "healthy", "-v"),
        cwd=tmp_path,
        env=clean_env(**{**empties, "OTEL_AGENTS_METRICS_PORT": str(port)}),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"serving http://127.0.0.1:{port}/metrics" in done.stdout
    assert "cannot serve /metrics" not in done.stderr
    assert "Traceback" not in done.stderr
    # init() said where its records go (the demo's -v shows INFO records)
    assert "otel_agents: recording; service.name='otel-agents-demo'" in done.stderr


# --- init(): any value of any variable is read or refused by name, never a traceback ---------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from([v for v in VARIABLES if v != "PROMETHEUS_MULTIPROC_DIR"]),
    value=st.one_of(
        st.text(max_size=40),
        st.from_regex(r"\s*-?[0-9]{0,6}(\.[0-9]{0,3})?\s*", fullmatch=True),
        st.sampled_from(["true", "FALSE", "on", "off", "nan", "inf", "0", "http://c:4318/v1/logs"]),
    ),
)
def test_any_value_is_accepted_or_refused_naming_the_variable(name: str, value: str) -> None:
    env = {name: value}
    error: _config.InvalidSetting | None = None
    try:
        _config.sdk_disabled(env)
        settings_ = _config.resolve(
            service_name=None,
            otlp_endpoint=None,
            metrics_port=None,
            metrics_host="127.0.0.1",
            silence_timeout=None,
            capture_messages=None,
            env=env,
        )
    except _config.InvalidSetting as exc:
        error = exc
    if error is not None:
        assert str(error).startswith(f"otel_agents: invalid {name}="), str(error)
        assert "\n" not in str(error)
        assert value.strip(), "an empty value means unset: never refused"
        return
    if not value.strip():  # empty: the default
        assert settings_ == _config.resolve(
            service_name=None,
            otlp_endpoint=None,
            metrics_port=None,
            metrics_host="127.0.0.1",
            silence_timeout=None,
            capture_messages=None,
            env={},
        )


@pytest.mark.parametrize("value", ["0", " 0 "])
def test_init_with_port_zero_serves_on_a_free_port_and_says_where(
    value: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import logging
    import urllib.request

    import otel_agents

    monkeypatch.setenv("OTEL_AGENTS_METRICS_PORT", value)
    otel_agents.shutdown()
    with caplog.at_level(logging.INFO, logger="otel_agents"):
        otel_agents.init(service_name="port-zero")
    try:
        (line,) = [r.getMessage() for r in caplog.records if "recording;" in r.getMessage()]
        assert "service.name='port-zero'" in line
        url = line.split("metrics at ", 1)[1].split(";", 1)[0]
        assert not url.endswith(":0/metrics"), url
        with urllib.request.urlopen(url, timeout=10) as response:
            assert b"otel_agents_" in response.read()
    finally:
        otel_agents.shutdown()


def test_the_line_naming_the_otlp_endpoint_keeps_its_credentials_in(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    import otel_agents

    secret = "s3cr3t-collector-passw0rd"
    otel_agents.shutdown()
    with caplog.at_level(logging.INFO, logger="otel_agents"):
        # a closed port on loopback: nothing is exported before shutdown
        otel_agents.init(service_name="creds", otlp_endpoint=f"http://otel:{secret}@127.0.0.1:9")
    try:
        (line,) = [r.getMessage() for r in caplog.records if "recording;" in r.getMessage()]
        assert "OTLP traces and metrics to http://127.0.0.1:9;" in line + ";"
        assert secret not in line
        assert "otel:" not in line
    finally:
        otel_agents.shutdown(timeout=0.5)
