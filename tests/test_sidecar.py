"""``otel-agents sidecar`` and ``start_metrics_server`` (otel_agents._sidecar), against real
worker processes writing a real multiprocess directory, checked with the real promtool."""

from __future__ import annotations

import argparse
import asyncio
import base64
import gzip
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from otel_agents import names as n
from otel_agents._sidecar import cli
from otel_agents._sidecar.server import MetricsServer, start_metrics_server

from .prometheus_bin import promtool
from .test_multiproc_reap import TIMEOUT_S, Worker, _env, start_workers, stop_workers

# A worker process of an agent: otel_agents.init(), then one sample in every otel_agents metric.
AGENT = textwrap.dedent(
    """
    import os, sys
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = sys.argv[1]
    import otel_agents
    otel_agents.init()
    from otel_agents._export.metrics import get_metrics
    m = get_metrics()
    for family in m.families:
        family.inc(tuple("other" for _ in family._label_names))
    for histogram in m.histograms:
        histogram.observe(0.3, tuple("other" for _ in histogram._label_names))
    for gauge in m.gauges:
        gauge.add(1)
    print("ready", os.getpid(), flush=True)
    sys.stdin.readline()
    os._exit(0)
    """
)
HOST = "127.0.0.1"
TOKEN = "s3cret-token"
USER, PASSWORD = "prometheus", "pa:ss word"


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[Worker]]]:
    """Two live agent processes and one killed with its sessions gauge at 1."""
    directory = tmp_path_factory.mktemp("sidecar") / "prom"
    directory.mkdir()
    workers = start_workers(directory, 3, AGENT)
    workers[2].kill()
    try:
        yield directory, workers[:2]
    finally:
        stop_workers(workers)


@pytest_asyncio.fixture
async def server(populated: tuple[Path, list[Worker]]) -> AsyncIterator[MetricsServer]:
    srv = await start_metrics_server(host=HOST, port=0, directory=str(populated[0]))
    try:
        yield srv
    finally:
        await srv.aclose()


def client(*, decompress: bool = True, accept_encoding: bool = True) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=TIMEOUT_S),
        auto_decompress=decompress,
        skip_auto_headers=() if accept_encoding else ("Accept-Encoding",),
    )


async def get(
    url: str, headers: dict[str, str] | None = None, *, decompress: bool = True
) -> tuple[int, dict[str, str], bytes]:
    # no automatic Accept-Encoding: each test says what it accepts
    session = client(decompress=decompress, accept_encoding=False)
    async with session, session.get(url, headers=headers or {}) as r:
        return r.status, dict(r.headers), await r.read()


def stable(text: str) -> str:
    """The exposition without the one line that changes on every render."""
    return "\n".join(
        line for line in text.splitlines() if not line.startswith(n.SIDECAR_RENDER_SECONDS + " ")
    )


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    families = text_string_to_metric_families(text)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}


@pytest.mark.asyncio
async def test_scrape_sums_every_process_and_drops_the_dead_ones_live_gauge(
    server: MetricsServer,
) -> None:
    status, headers, body = await get(server.url)
    assert status == 200
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "Content-Encoding" not in headers
    got = samples(body.decode())
    assert got[(n.SESSIONS_STARTED, ())] == 3  # the killed process's count survives its death
    assert got[(n.SESSIONS_ACTIVE, ())] == 2  # its live gauge does not
    assert (
        got[
            (n.SESSION_DURATION.removesuffix("_seconds") + "_seconds_count", (("reason", "other"),))
        ]
        == 3
    )
    assert got[(n.SIDECAR_LIVE_PROCESSES, ())] == 2
    assert got[(n.SIDECAR_REAPED_PROCESSES, ())] >= 1
    assert got[(n.SIDECAR_REAP_ERRORS, ())] == 0


@pytest.mark.asyncio
async def test_concurrent_scrapes_share_one_render(server: MetricsServer) -> None:
    release = threading.Event()
    joined = asyncio.Event()
    count = 0

    def hold(render: Callable[[], bytes]) -> bytes:
        assert release.wait(TIMEOUT_S), "never released"
        return render()

    def on_join() -> None:
        nonlocal count
        count += 1
        if count == 20:
            joined.set()

    server._render_wrapper = hold
    server._on_join = on_join
    scrapes = [asyncio.ensure_future(get(server.url)) for _ in range(20)]
    try:
        await asyncio.wait_for(joined.wait(), TIMEOUT_S)  # all 20 are waiting on the render
    finally:
        release.set()
    results = await asyncio.wait_for(asyncio.gather(*scrapes), TIMEOUT_S)

    assert server.renders == 1
    assert {status for status, _, _ in results} == {200}
    bodies = {body for _, _, body in results}
    assert len(bodies) == 1
    assert samples(bodies.pop().decode())[(n.SESSIONS_ACTIVE, ())] == 2

    # a scrape after the render finished renders again: nothing is cached
    await get(server.url)
    assert server.renders == 2


@pytest.mark.asyncio
async def test_gzip_only_when_accepted(server: MetricsServer) -> None:
    _, plain_headers, plain = await get(server.url)
    assert "Content-Encoding" not in plain_headers
    status, headers, body = await get(
        server.url, {"Accept-Encoding": "deflate, gzip;q=0.8"}, decompress=False
    )
    assert status == 200
    assert headers["Content-Encoding"] == "gzip"
    assert stable(gzip.decompress(body).decode()) == stable(plain.decode())


@pytest.mark.asyncio
async def test_openmetrics_when_asked(server: MetricsServer) -> None:
    status, headers, body = await get(
        server.url, {"Accept": "application/openmetrics-text; version=1.0.0; charset=utf-8"}
    )
    assert status == 200
    assert headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    text = body.decode()
    assert text.endswith("# EOF\n")
    families = {f.name: f for f in openmetrics_families(text)}  # type: ignore[no-untyped-call]
    assert families[n.SESSIONS_STARTED.removesuffix("_total")].type == "counter"
    assert families[n.SIDECAR_REAPED_PROCESSES.removesuffix("_total")].type == "counter"

    # a malformed Accept (prometheus_client's negotiation raises on it) gets plain text
    status, headers, _ = await get(
        server.url, {"Accept": "application/openmetrics-text; version=x"}
    )
    assert status == 200
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"


@pytest.mark.asyncio
async def test_auth(populated: tuple[Path, list[Worker]]) -> None:
    srv = await start_metrics_server(
        host=HOST,
        port=0,
        directory=str(populated[0]),
        bearer_token=TOKEN,
        basic_auth=(USER, PASSWORD),
    )

    def basic(user: str, password: str) -> dict[str, str]:
        return {
            "Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        }

    try:
        assert (await get(srv.url))[0] == 401
        async with client() as s, s.get(srv.url) as r:
            assert r.headers.getall("WWW-Authenticate") == [
                'Bearer realm="otel-agents"',
                'Basic realm="otel-agents"',
            ]
        for wrong in (
            {"Authorization": "Bearer nope"},
            {"Authorization": f"Bearer {TOKEN}x"},
            {"Authorization": TOKEN},
            basic(USER, "wrong"),
            basic("someone", PASSWORD),
            {"Authorization": "Basic !!!not-base64"},
            {"Authorization": f"Basic {TOKEN}"},
        ):
            assert (await get(srv.url, wrong))[0] == 401, wrong
        assert (await get(srv.url, {"Authorization": f"Bearer {TOKEN}"}))[0] == 200
        assert (await get(srv.url, {"Authorization": f"bearer  {TOKEN} "}))[0] == 200
        assert (await get(srv.url, basic(USER, PASSWORD)))[0] == 200
        healthz = srv.url.replace("/metrics", "/healthz")
        assert (await get(healthz))[0] == 200  # never behind auth
    finally:
        await srv.aclose()


@pytest.mark.asyncio
async def test_a_removed_directory_answers_503_with_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "prom"
    directory.mkdir()
    start_workers(directory, 1, AGENT)[0].kill()  # a dead process's files
    srv = await start_metrics_server(host=HOST, port=0, directory=str(directory))
    healthz = srv.url.replace("/metrics", "/healthz")
    try:
        assert await get(healthz) == (200, (await get(healthz))[1], b"ok\n")
        assert (await get(srv.url))[0] == 200
        shutil.rmtree(directory)
        caplog.set_level(logging.WARNING, "otel_agents.sidecar")
        # no path for the client (healthz is never behind auth); the log has it
        reason = b"unavailable: multiprocess directory: no such file or directory\n"
        for _ in range(3):
            status, _, body = await get(srv.url)
            assert (status, body) == (503, reason)
        status, _, body = await get(healthz)
        assert (status, body) == (503, reason)
        # one log line for the problem, not one per scrape, and no traceback
        assert [r.getMessage() for r in caplog.records] == [
            "otel-agents sidecar: /metrics unavailable: "
            f"multiprocess directory {directory}: no such file or directory"
        ]
        assert not any(r.exc_info for r in caplog.records)
        directory.mkdir()  # back: serves again
        assert (await get(srv.url))[0] == 200
        assert (await get(healthz))[0] == 200
    finally:
        await srv.aclose()


@pytest.mark.asyncio
async def test_promtool_accepts_the_scrape(server: MetricsServer) -> None:
    tool = promtool()
    _, _, body = await get(server.url)
    text = body.decode()
    assert n.ATTEMPT_FAILURES in text
    assert n.SIDECAR_RENDER_SECONDS in text
    check = await asyncio.to_thread(
        subprocess.run,
        [str(tool), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert (check.returncode, check.stdout, check.stderr) == (0, "", "")


@pytest.mark.asyncio
async def test_registry_source_and_bad_arguments() -> None:
    registry = CollectorRegistry()
    Counter("demo_things", "Things.", registry=registry).inc(3)
    srv = await start_metrics_server(host=HOST, port=0, registry=registry)
    try:
        assert srv.port > 0
        assert srv.url == f"http://{HOST}:{srv.port}/metrics"
        status, _, body = await get(srv.url)
        assert status == 200
        assert samples(body.decode())[("demo_things_total", ())] == 3
        assert (await get(srv.url.replace("/metrics", "/healthz")))[2] == b"ok\n"
        with pytest.raises(OSError, match="address already in use"):
            await start_metrics_server(host=HOST, port=srv.port, registry=registry)
    finally:
        await srv.aclose()
    with pytest.raises(ValueError, match="exactly one"):
        await start_metrics_server(host=HOST, port=0)
    with pytest.raises(ValueError, match="exactly one"):
        await start_metrics_server(host=HOST, port=0, registry=registry, directory="/tmp")


# --- the CLI ---------------------------------------------------------------------------------


ENV_SECRETS = (cli.ENV_BEARER_TOKEN, cli.ENV_BASIC_AUTH)


def sidecar(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    base = {k: v for k, v in _env().items() if k not in ENV_SECRETS}
    return subprocess.Popen(
        [sys.executable, "-m", "otel_agents", "sidecar", *args],
        env={**base, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


CliCase = tuple[list[str], dict[str, str], str]  # arguments, environment, the stderr line


def cli_error_cases(tmp_path: Path, taken_port: int) -> list[CliCase]:
    prom = tmp_path / "prom"
    prom.mkdir()
    empty = tmp_path / "empty"
    empty.write_text("\n")
    secret = tmp_path / "basic"
    secret.write_text("no-colon-secret")
    d = ["--multiproc-dir", str(prom)]
    prefix = "otel-agents sidecar: "
    cases: list[CliCase] = [
        ([], {}, "--multiproc-dir: (unset): set --multiproc-dir or PROMETHEUS_MULTIPROC_DIR"),
        (
            ["--multiproc-dir", str(tmp_path / "missing")],
            {},
            f"--multiproc-dir: {tmp_path}/missing: no such file or directory",
        ),
        (["--multiproc-dir", str(empty)], {}, f"--multiproc-dir: {empty}: not a directory"),
        ([*d, "--port", "http"], {}, "--port: http: expected an integer from 0 to 65535"),
        ([*d, "--port", "65536"], {}, "--port: 65536: expected an integer from 0 to 65535"),
        ([*d, "--port", str(taken_port)], {}, f"--port: {taken_port}: address already in use"),
        (
            [*d, "--bearer-token-file", str(empty)],
            {},
            f"--bearer-token-file: {empty}: the file is empty",
        ),
        (
            [*d, "--bearer-token-file", str(tmp_path / "nope")],
            {},
            f"--bearer-token-file: {tmp_path}/nope: no such file or directory",
        ),
        (
            [*d, "--basic-auth-file", str(secret)],
            {},
            f"basic auth: {secret}: expected user:password",
        ),
        (
            d,
            {"OTEL_AGENTS_SIDECAR_BASIC_AUTH": "no-colon-secret"},
            "basic auth: $OTEL_AGENTS_SIDECAR_BASIC_AUTH: expected user:password",
        ),
        (
            d,
            {"OTEL_AGENTS_SIDECAR_BEARER_TOKEN": " "},
            "OTEL_AGENTS_SIDECAR_BEARER_TOKEN: (empty): set it to the secret or unset it",
        ),
        (
            [*d, "--max-connections", "0"],
            {},
            "--max-connections: 0: expected an integer from 1 to 100000",
        ),
        (
            [*d, "--header-timeout", "soon"],
            {},
            "--header-timeout: soon: expected a number of seconds above 0, at most 3600",
        ),
        (
            [*d, "--keepalive-timeout", "nan"],
            {},
            "--keepalive-timeout: nan: expected a number of seconds above 0, at most 3600",
        ),
    ]
    return [(args, env, prefix + line) for args, env, line in cases]


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        yield int(taken.getsockname()[1])


def test_cli_errors_are_one_line(
    tmp_path: Path,
    taken_port: int,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for args, env, expected in cli_error_cases(tmp_path, taken_port):
        with monkeypatch.context() as m:
            for name in ("PROMETHEUS_MULTIPROC_DIR", *ENV_SECRETS):
                m.delenv(name, raising=False)
            for name, value in env.items():
                m.setenv(name, value)
            parser = argparse.ArgumentParser()
            cli.add_arguments(parser)
            code = cli.run(parser.parse_args(args))
        out, err = capsys.readouterr()
        assert (code, out, err) == (2, "", expected + "\n"), args
        assert "no-colon-secret" not in err


def test_cli_errors_through_python_m(tmp_path: Path, taken_port: int) -> None:
    """The same through ``python -m otel_agents sidecar``: one line, no traceback."""
    cases = cli_error_cases(tmp_path, taken_port)
    cases = [cases[0], cases[3], cases[5], cases[9]]  # run in parallel: each start costs
    procs = [sidecar(*args, env=env) for args, env, _ in cases]
    try:
        for (_, _, expected), proc in zip(cases, procs, strict=True):
            out, err = proc.communicate(timeout=TIMEOUT_S)
            assert (proc.returncode, out, err) == (2, "", expected + "\n")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(TIMEOUT_S)


def test_cli_serves_until_sigterm(populated: tuple[Path, list[Worker]], tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    proc = sidecar(
        "--multiproc-dir", str(populated[0]), "--port", "0", "--bearer-token-file", str(token)
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        url = line.split()[3]
        assert line == f"otel-agents sidecar: serving {url} with auth for {populated[0]}"
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            assert response.status == 200
            assert n.SESSIONS_STARTED in response.read().decode()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=TIMEOUT_S)
        assert (proc.returncode, out, err) == (0, "", "")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(TIMEOUT_S)


def test_prometheus_bin_reports_a_version() -> None:
    out = subprocess.run(
        [str(promtool()), "--version"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=True,
    )
    assert out.stdout.startswith("promtool, version ")
    assert os.access(promtool().parent / "prometheus", os.X_OK)
