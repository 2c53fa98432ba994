"""The sidecar against hostile clients and a hostile multiprocess directory.

A real ``otel-agents sidecar`` process on 127.0.0.1 serves a directory holding the files of
real agent processes (killed, so the sidecar reaps them), into which each test plants what a
confused or hostile job process could: garbage ``.db`` files, a directory named ``*.db``,
symbolic links, a sparse file claiming 200 MB, lock files named with non-ASCII digits, a file
renamed over the compaction's temporary file. Every scrape must serve every good series with
its exact total, count what it skipped, and say ``degraded`` on ``/healthz`` without a path.
Clients drip headers, send garbage, bodies and oversized heads, under a descriptor limit of
128: a valid scrape is still served, each malformed request costs a count and the whole
batch one log line, which quotes nothing of any request.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from otel_agents import names as n
from otel_agents._multiproc.liveness import LOCK_PREFIX, LOCK_SUFFIX
from otel_agents._sidecar import cli
from otel_agents._sidecar.dbfile import MAX_DB_BYTES, CorruptFile, read_db
from otel_agents._sidecar.dirfiles import CORRUPT_SUFFIX
from otel_agents._sidecar.reap import REAPER_LOCK

from .test_multiproc_reap import (
    TIMEOUT_S,
    Scrape,
    _env,
    scrape,
    start_workers,
    stop_workers,
    without,
)

HOST = "127.0.0.1"
TOKEN = "tok-7f3a9c2e-never-in-a-log"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

# The sidecar, started through a wrapper that first runs a preamble (a descriptor limit, a
# test seam), exactly as ``python -m otel_agents sidecar`` otherwise.
WRAPPER = textwrap.dedent(
    """
    import sys
    HOST = "127.0.0.1"
    exec(sys.argv[1])
    from otel_agents.__main__ import main
    sys.exit(main(["sidecar", "--multiproc-dir", sys.argv[2], "--host", HOST, "--port", "0",
                   *sys.argv[3:]]))
    """
)


def nofile(limit: int) -> str:
    return f"import resource; resource.setrlimit(resource.RLIMIT_NOFILE, ({limit}, {limit}))"


class Sidecar:
    """A real sidecar process; ``stop()`` ends it with SIGTERM and returns its stderr."""

    def __init__(
        self,
        directory: Path,
        stderr: Path,
        *args: str,
        preamble: str = "",
        command: tuple[str, ...] = (),
    ) -> None:
        self.stderr_path = stderr
        self._stderr = stderr.open("w")
        secrets = (cli.ENV_BEARER_TOKEN, cli.ENV_BASIC_AUTH)
        env = {k: v for k, v in _env().items() if k not in secrets}
        self.proc = subprocess.Popen(
            [*command, sys.executable, "-c", WRAPPER, preamble, str(directory), *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], TIMEOUT_S)
        line = self.proc.stdout.readline().strip() if ready else ""
        if not line.startswith("otel-agents sidecar: serving "):
            self.stop()
            raise AssertionError(f"the sidecar did not start: {line!r} {self.stderr()!r}")
        self.url = line.split()[3]
        self.port = int(self.url.rsplit(":", 1)[1].split("/")[0])
        self.healthz = self.url.replace("/metrics", "/healthz")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def read_bytes(self) -> int:
        """Bytes this process has read so far (``rchar``: files and sockets)."""
        for line in Path(f"/proc/{self.proc.pid}/io").read_text().splitlines():
            if line.startswith("rchar:"):
                return int(line.split()[1])
        raise AssertionError("no rchar")

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(TIMEOUT_S)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self._stderr.close()
        return self.stderr()


@contextlib.contextmanager
def sidecar(
    directory: Path, tmp_path: Path, *args: str, preamble: str = "", command: tuple[str, ...] = ()
) -> Iterator[Sidecar]:
    process = Sidecar(
        directory,
        tmp_path / f"stderr-{time.monotonic_ns()}",
        *args,
        preamble=preamble,
        command=command,
    )
    try:
        yield process
    finally:
        process.stop()


def http(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), exc.read()


def samples(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def good(got: Samples) -> Samples:
    """The agent processes' series (the workers' ``t_*`` metrics)."""
    return {k: v for k, v in got.items() if k[0].startswith("t_")}


def own(got: Samples, name: str) -> float:
    return got[(name, ())]


# --- the directory: three dead agent processes' real files -----------------------------------


@dataclass(frozen=True)
class Template:
    directory: Path
    expected: Scrape  # what the good files must render, every time
    pids: tuple[int, ...]

    def copy(self, to: Path) -> Path:
        shutil.copytree(self.directory, to)
        return to


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    directory = tmp_path_factory.mktemp("template") / "prom"
    directory.mkdir()
    workers = start_workers(directory, 3)
    for w in workers:
        w.kill()  # SIGKILL: their live gauges stay until the sidecar reaps them
    stop_workers(workers)
    expected = without(scrape(directory), "t_active")  # a dead process's live gauge goes
    assert expected[("t_requests_total", (("kind", "a"),))] == 1 + 2 + 3
    return Template(directory, expected, tuple(w.pid for w in workers))


@dataclass
class Served:
    """What a sidecar served over a few scrapes of a planted directory."""

    scrapes: list[Samples]
    healthz: list[tuple[int, str]]
    stderr: str
    names: set[str]  # the directory's entries afterwards


def serve(tmp_path: Path, directory: Path, *, scrapes: int = 2, preamble: str = "") -> Served:
    got, health = [], []
    with sidecar(directory, tmp_path, preamble=preamble) as process:
        for _ in range(scrapes):
            status, _, body = http(process.url)
            assert status == 200, body
            got.append(samples(body.decode()))
            status, _, body = http(process.healthz)
            health.append((status, body.decode()))
        stderr = process.stop()
    assert "Traceback" not in stderr
    return Served(got, health, stderr, {p.name for p in directory.iterdir()})


def assert_exact(served: Served, expected: Scrape) -> None:
    for got in served.scrapes:
        assert good(got) == expected


def assert_no_detail(served: Served, directory: Path, *names: str) -> None:
    """``/healthz`` (never behind auth) names no path and no file."""
    for _, text in served.healthz:
        assert str(directory) not in text
        assert "/" not in text
        for name in names:
            assert name not in text


def dead_lock(directory: Path, pid: int) -> None:
    """The lock file of a process that registered, then died: nobody holds it."""
    (directory / f"{LOCK_PREFIX}{pid}{LOCK_SUFFIX}").write_text(f"{pid}\n")


def a_counter_file(template: Template) -> bytes:
    return (template.directory / f"counter_{template.pids[0]}.db").read_bytes()


# --- the directory's hostile content ----------------------------------------------------------


def test_unregistered_garbage_is_skipped_counted_and_reported(
    tmp_path: Path, template: Template
) -> None:
    directory = template.copy(tmp_path / "prom")
    real = a_counter_file(template)
    used = struct.unpack_from("i", real)[0]
    garbage = {
        "counter_4000001.db": b"\xff" * 4096,  # used = -1
        "histogram_4000002.db": struct.pack("i", 4096) + b"\0" * 4,  # declares more than it has
        "counter_4000003.db": real[:8] + b"\x01" * (len(real) - 8),  # entries that do not parse
        "gauge_livesum_4000004.db": real[: used - 10],  # truncated mid-entry
        "weird.db": real,  # sound content, a name the collector cannot read
        "gauge_nomode_4000005.db": real,
    }
    for name, data in garbage.items():
        (directory / name).write_bytes(data)

    served = serve(tmp_path, directory, scrapes=3)

    assert_exact(served, template.expected)
    skipped = [own(got, n.SIDECAR_SKIPPED_FILES) for got in served.scrapes]
    assert skipped == [6, 12, 18]  # each render skips them again and counts them
    assert own(served.scrapes[-1], n.SIDECAR_QUARANTINED_FILES) == 0  # no pid known dead
    assert (
        served.healthz
        == [(200, "degraded: 6 unreadable metric files skipped at the last render\n")] * 3
    )
    assert_no_detail(served, directory, *garbage)
    assert set(garbage) <= served.names  # not theirs to move: no lock file says they died
    # the log names them (it is the operator's), once for the lot
    lines = served.stderr.splitlines()
    assert len(lines) == 1
    assert "skipped 6 unsound metric files" in lines[0]


def test_directories_named_db(tmp_path: Path, template: Template) -> None:
    directory = template.copy(tmp_path / "prom")
    (directory / "counter_4000011.db").mkdir()  # no lock file: skipped
    (directory / "histogram_4000012.db").mkdir()  # a dead process's: moved aside
    (directory / "gauge_livesum_4000012.db").mkdir()  # a live gauge: moved aside, not deleted
    dead_lock(directory, 4000012)

    served = serve(tmp_path, directory)

    assert_exact(served, template.expected)
    assert [own(got, n.SIDECAR_SKIPPED_FILES) for got in served.scrapes] == [1, 2]
    assert own(served.scrapes[0], n.SIDECAR_QUARANTINED_FILES) == 2
    assert own(served.scrapes[0], n.SIDECAR_REAP_ERRORS) == 0
    assert own(served.scrapes[0], n.SIDECAR_REAPED_PROCESSES) == 4  # the 3 workers and 4000012
    assert "counter_4000011.db" in served.names
    assert {"histogram_4000012.db.corrupt", "gauge_livesum_4000012.db.corrupt"} <= served.names
    assert f"{LOCK_PREFIX}4000012{LOCK_SUFFIX}" not in served.names
    assert served.healthz[-1] == (
        200,
        "degraded: 1 unreadable metric file skipped at the last render\n",
    )


def test_a_garbage_compacted_file_is_moved_aside_and_compaction_goes_on(
    tmp_path: Path, template: Template
) -> None:
    directory = template.copy(tmp_path / "prom")
    (directory / "counter_compacted.db").write_bytes(b"\x30\0\0\0\0\0\0\0" + b"\xfe" * 4096)
    # a kind no dead process adds to: nothing merges into it, the render finds it first
    for path in directory.glob("summary_*.db"):
        path.unlink()
    (directory / "summary_compacted.db").write_bytes(b"\x10\0\0\0\0\0\0\0" + b"\x07" * 8)
    expected = without(template.expected, "t_size_bytes_count", "t_size_bytes_sum")

    served = serve(tmp_path, directory, scrapes=3)

    assert_exact(served, expected)
    # the counters' garbage: found while merging into it, moved aside, compaction done
    assert "counter_compacted.db.corrupt" in served.names
    assert read_db(str(directory / "counter_compacted.db"))
    assert sorted(name for name in served.names if name.startswith("counter_")) == [
        "counter_compacted.db",
        "counter_compacted.db.corrupt",
    ]
    # the summaries' garbage: skipped by the first render, moved aside by the next reap
    assert [own(got, n.SIDECAR_SKIPPED_FILES) for got in served.scrapes] == [1, 1, 1]
    assert [own(got, n.SIDECAR_QUARANTINED_FILES) for got in served.scrapes] == [1, 2, 2]
    assert "summary_compacted.db.corrupt" in served.names
    assert "summary_compacted.db" not in served.names
    assert served.healthz[0][1].startswith("degraded: 1 unreadable metric file")
    assert served.healthz[1:] == [(200, "ok\n")] * 2
    assert not [name for name in served.names if name.endswith(".tmp")]


def test_a_dangling_symlink_as_the_reapers_lock_creates_nothing_outside(
    tmp_path: Path, template: Template
) -> None:
    directory = template.copy(tmp_path / "prom")
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside / "made-by-the-sidecar", directory / REAPER_LOCK)
    # the compaction's temporary name of an older version, planted the same way
    os.symlink(outside / "written-by-the-sidecar", directory / ".counter_compacted.tmp")

    served = serve(tmp_path, directory)

    assert_exact(served, template.expected)
    assert list(outside.iterdir()) == []
    assert (directory / (REAPER_LOCK + CORRUPT_SUFFIX)).is_symlink()  # moved aside, kept
    assert (directory / REAPER_LOCK).is_file()
    assert not (directory / REAPER_LOCK).is_symlink()
    assert ".counter_compacted.tmp" not in served.names  # the link removed, not followed
    assert own(served.scrapes[0], n.SIDECAR_REAPED_PROCESSES) == 3  # compaction went on
    assert not [name for name in served.names if name.startswith(LOCK_PREFIX)]
    assert served.healthz == [(200, "ok\n")] * 2


def test_a_symlinked_counter_file_outside_is_never_read(tmp_path: Path, template: Template) -> None:
    directory = template.copy(tmp_path / "prom")
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / "counter_9.db"
    target.write_bytes(a_counter_file(template))  # sound: followed, it would add its counts
    before = target.read_bytes(), target.stat().st_mtime_ns
    os.symlink(target, directory / "counter_4000021.db")  # a dead process's
    dead_lock(directory, 4000021)
    os.symlink(target, directory / "counter_4000022.db")  # nobody's
    # a link to a good file inside, with a dead lock: following it would count it twice
    os.symlink(directory / f"counter_{template.pids[1]}.db", directory / "counter_4000023.db")
    dead_lock(directory, 4000023)

    served = serve(tmp_path, directory)

    assert_exact(served, template.expected)
    assert (target.read_bytes(), target.stat().st_mtime_ns) == before
    assert (directory / "counter_4000021.db.corrupt").is_symlink()
    assert (directory / "counter_4000023.db.corrupt").is_symlink()
    assert (directory / "counter_4000022.db").is_symlink()
    assert [own(got, n.SIDECAR_SKIPPED_FILES) for got in served.scrapes] == [1, 2]
    assert own(served.scrapes[0], n.SIDECAR_QUARANTINED_FILES) == 2


def test_a_file_renamed_over_the_compactions_temporary_file(
    tmp_path: Path, template: Template
) -> None:
    directory = template.copy(tmp_path / "prom")
    # the seam runs in the sidecar between writing the merged file and moving it into place:
    # another process renames garbage over the temporary name, once
    seam = textwrap.dedent(
        """
        import os
        from otel_agents._sidecar import dirfiles
        done = []
        def over(dir_fd, tmp):
            if done:
                return
            done.append(tmp)
            fd = os.open(".planted", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666, dir_fd=dir_fd)
            os.write(fd, b"\\xff" * 4096)
            os.close(fd)
            os.rename(".planted", tmp, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        dirfiles._before_replace = over
        """
    )

    served = serve(tmp_path, directory, preamble=seam)

    assert_exact(served, template.expected)
    assert own(served.scrapes[0], n.SIDECAR_REAPED_PROCESSES) == 3  # nothing blocked
    assert own(served.scrapes[-1], n.SIDECAR_REAP_ERRORS) == 0
    assert own(served.scrapes[-1], n.SIDECAR_SKIPPED_FILES) == 0
    compacted = sorted(name for name in served.names if "compacted" in name)
    assert all(name.endswith("_compacted.db") for name in compacted)
    for name in compacted:
        read_db(str(directory / name))  # every one sound
    assert "was replaced while being written" in served.stderr


def test_a_sparse_file_claiming_a_huge_size_is_not_read(tmp_path: Path, template: Template) -> None:
    directory = template.copy(tmp_path / "prom")
    for name, size in (
        ("counter_4000031.db", 200 << 20),  # declares 200 MB: beyond the cap, not read at all
        ("counter_4000032.db", MAX_DB_BYTES - (1 << 20)),  # under the cap: zeros, read a chunk
    ):
        with (directory / name).open("wb") as f:
            f.truncate(size)
            f.write(struct.pack("i", size))
    # a dead process's, declaring more than it holds
    with (directory / "counter_4000033.db").open("wb") as f:
        f.write(struct.pack("i", 100 << 20) + b"\0" * 4)
    dead_lock(directory, 4000033)

    with sidecar(directory, tmp_path) as process:
        reads = []
        for _ in range(3):
            before = process.read_bytes()
            status, _, body = http(process.url)
            reads.append(process.read_bytes() - before)
            assert status == 200
            got = samples(body.decode())
            assert good(got) == template.expected
        health = http(process.healthz)
        stderr = process.stop()
    assert "Traceback" not in stderr
    # every render reads the good files, a chunk of the sparse one, and the request: far
    # below the 200 MB declared (and the first render's reap reads the dead files too)
    assert max(reads) < 8 << 20, reads
    assert own(got, n.SIDECAR_SKIPPED_FILES) == 2 * 3
    assert own(got, n.SIDECAR_QUARANTINED_FILES) == 1
    assert (directory / "counter_4000033.db.corrupt").exists()
    assert health[::2] == (200, b"degraded: 2 unreadable metric files skipped at the last render\n")


def test_lock_files_named_with_non_ascii_digits(tmp_path: Path, template: Template) -> None:
    directory = template.copy(tmp_path / "prom")
    odd = [
        f"{LOCK_PREFIX}{pid}{LOCK_SUFFIX}"
        for pid in ("١٢٣", "²³", "\uff10\uff11", "0123", "+5", "-7", " 8", "1_000", "९")
    ]
    for name in odd:
        (directory / name).write_text("")

    served = serve(tmp_path, directory)

    assert_exact(served, template.expected)
    assert own(served.scrapes[0], n.SIDECAR_REAPED_PROCESSES) == 3
    assert own(served.scrapes[0], n.SIDECAR_LIVE_PROCESSES) == 0
    assert own(served.scrapes[0], n.SIDECAR_REAP_ERRORS) == 0
    assert set(odd) <= served.names  # not lock files: left alone
    assert served.healthz == [(200, "ok\n")] * 2


# --- clients ------------------------------------------------------------------------------------

REQUEST = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n"


def test_slowloris_clients_under_a_low_descriptor_limit(tmp_path: Path, template: Template) -> None:
    """100 clients dripping their headers, the sidecar limited to 128 descriptors: a valid
    scrape is served, every dripping client is closed (by the header timeout, or displaced at
    the connection cap), and the event loop logs nothing."""
    directory = template.copy(tmp_path / "prom")
    with sidecar(directory, tmp_path, "--header-timeout", "2", preamble=nofile(128)) as process:
        drippers = []
        for _ in range(100):
            s = socket.create_connection((HOST, process.port), timeout=TIMEOUT_S)
            s.sendall(REQUEST)
            drippers.append(s)
        stop = threading.Event()

        def drip() -> None:
            while not stop.is_set():
                for s in drippers:
                    with contextlib.suppress(OSError):
                        s.send(b"X")
                stop.wait(0.2)

        dripping = threading.Thread(target=drip, daemon=True)
        dripping.start()
        try:
            status, _, body = http(process.url)  # while they hold their connections
            assert status == 200
            assert good(samples(body.decode())) == template.expected
            closed = wait_closed(drippers, TIMEOUT_S)
        finally:
            stop.set()
            dripping.join(TIMEOUT_S)
            for s in drippers:
                s.close()
        assert closed == len(drippers)
        got = samples(http(process.url)[2].decode())
        stderr = process.stop()
    dropped = own(got, n.SIDECAR_HEADER_TIMEOUTS) + own(got, n.SIDECAR_REJECTED_CONNECTIONS)
    assert dropped == 100  # each dripping client once, nothing else
    assert own(got, n.SIDECAR_CONNECTIONS) == 1  # this scrape's
    assert own(got, n.SIDECAR_BAD_REQUESTS) == 0
    assert stderr == ""


def test_at_the_cap_a_new_connection_displaces_the_longest_waiting(
    tmp_path: Path, template: Template
) -> None:
    directory = template.copy(tmp_path / "prom")
    args = ("--max-connections", "4", "--header-timeout", "60")
    with sidecar(directory, tmp_path, *args) as process:
        waiting = []
        try:
            for _ in range(4):  # accepted in this order
                s = socket.create_connection((HOST, process.port), timeout=TIMEOUT_S)
                s.sendall(REQUEST)
                waiting.append(s)
            status, _, body = http(process.url)  # the fifth: the first one makes room
            assert status == 200
            got = samples(body.decode())
            assert good(got) == template.expected
            assert own(got, n.SIDECAR_REJECTED_CONNECTIONS) == 1
            assert own(got, n.SIDECAR_CONNECTIONS) == 4
            assert wait_closed(waiting[:1], TIMEOUT_S) == 1
            readable, _, _ = select.select(waiting[1:], [], [], 0)
            assert readable == []  # the others wait on, untouched
        finally:
            for s in waiting:
                s.close()
        assert process.stop() == ""


@pytest.mark.asyncio
async def test_when_every_connection_has_a_request_in_progress_a_new_one_is_refused() -> None:
    import asyncio

    from prometheus_client import CollectorRegistry, Counter

    from otel_agents._sidecar.server import start_metrics_server

    registry = CollectorRegistry()
    Counter("demo_things", "Things.", registry=registry).inc()
    srv = await start_metrics_server(host=HOST, port=0, registry=registry, max_connections=2)
    release = threading.Event()
    joined = asyncio.Event()
    count = 0

    def hold(render: Callable[[], bytes]) -> bytes:
        assert release.wait(TIMEOUT_S)
        return render()

    def on_join() -> None:
        nonlocal count
        count += 1
        if count == 2:
            joined.set()

    srv._render_wrapper = hold
    srv._on_join = on_join
    try:
        scrapes = [asyncio.ensure_future(asyncio.to_thread(http, srv.url)) for _ in range(2)]
        try:
            await asyncio.wait_for(joined.wait(), TIMEOUT_S)  # both in progress
            answer = await asyncio.to_thread(exchange, srv.port, REQUEST + b"\r\n")
        finally:
            release.set()
        assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        assert [status for status, _, _ in await asyncio.gather(*scrapes)] == [200, 200]
        assert srv._gate.rejected == 1
    finally:
        await srv.aclose()


def read_response(s: socket.socket) -> bytes:
    """One ``Content-Length``-framed response."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = s.recv(65536)
        assert chunk
        body += chunk
    return head


def test_keep_alive_and_header_timeouts_between_requests(
    tmp_path: Path, template: Template
) -> None:
    """A kept-alive connection is closed once idle for ``--keepalive-timeout``, quietly; one
    that starts its next request and drips it is closed by the header timeout, and counted."""
    directory = template.copy(tmp_path / "prom")
    args = ("--keepalive-timeout", "1", "--header-timeout", "1")
    with sidecar(directory, tmp_path, *args) as process:
        idle = socket.create_connection((HOST, process.port), timeout=TIMEOUT_S)
        dripping = socket.create_connection((HOST, process.port), timeout=TIMEOUT_S)
        try:
            for s in (idle, dripping):
                s.sendall(REQUEST + b"\r\n")
                assert read_response(s).startswith(b"HTTP/1.1 200 OK")
            dripping.sendall(b"GET /metr")  # the next request, never finished
            assert wait_closed([idle, dripping], TIMEOUT_S) == 2
        finally:
            idle.close()
            dripping.close()
        got = samples(http(process.url)[2].decode())
        assert own(got, n.SIDECAR_HEADER_TIMEOUTS) == 1
        assert own(got, n.SIDECAR_REJECTED_CONNECTIONS) == 0
        assert process.stop() == ""


def wait_closed(sockets: list[socket.socket], timeout: float) -> int:
    """How many of ``sockets`` the server closed within ``timeout``."""
    open_ = {s.fileno(): s for s in sockets}
    for s in sockets:
        s.setblocking(False)
    closed = 0
    deadline = time.monotonic() + timeout
    while open_ and time.monotonic() < deadline:
        readable, _, _ = select.select(list(open_), [], [], 0.5)
        for fd in readable:
            try:
                data = open_[fd].recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                del open_[fd]
                closed += 1
    return closed


# one connection each; every one refused with a count (a 4xx or a close)
MALFORMED: list[bytes] = [
    b"GET /metrics HTTP/1.1\r\nAuthorization: Bearer " + TOKEN.encode() + b"\x01\r\n\r\n",
    b"GET /metrics?" + TOKEN.encode() + b" HTTP/1.1 extra\r\nHost: x\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + TOKEN.encode() + b"\r\n\r\n",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"A" * (20 << 10) + b"\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: " + TOKEN.encode() + b"\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    b"GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n0\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
    + TOKEN.encode()
    + b"\r\n folded\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nAuthorization: Bearer " + TOKEN.encode() + b"\r\n\r\n",  # no Host
    b"GET\x00/metrics HTTP/1.1\r\nHost: x\r\n\r\n",
]


def exchange(port: int, raw: bytes) -> bytes:
    """Send ``raw`` on a connection of its own; whatever comes back until the server closes
    or stops answering."""
    with socket.create_connection((HOST, port), timeout=TIMEOUT_S) as s:
        with contextlib.suppress(OSError):
            s.sendall(raw)
        s.settimeout(2)
        out = b""
        with contextlib.suppress(OSError):
            while chunk := s.recv(65536):
                out += chunk
        return out


def test_malformed_requests_cost_a_count_and_one_log_line_quoting_nothing(
    tmp_path: Path, template: Template
) -> None:
    directory = template.copy(tmp_path / "prom")
    token = tmp_path / "token"
    token.write_text(TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with sidecar(directory, tmp_path, "--bearer-token-file", str(token)) as process:
        for raw in MALFORMED:
            answer = exchange(process.port, raw)
            status = int(answer.split()[1]) if answer.startswith(b"HTTP/1.") else 0
            assert 400 <= status < 500, (raw[:60], answer[:200])
            assert TOKEN.encode() not in answer
            assert b"aiohttp" not in answer
            assert b"Python" not in answer
        got = samples(http(process.url, auth)[2].decode())
        assert own(got, n.SIDECAR_BAD_REQUESTS) == len(MALFORMED)
        assert good(got) == template.expected  # and it serves on

        @settings(
            max_examples=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        )
        @given(
            st.lists(
                st.tuples(st.integers(0, 200), st.binary(min_size=0, max_size=8)),
                min_size=1,
                max_size=4,
            )
        )
        def mutated(edits: list[tuple[int, bytes]]) -> None:
            raw = bytearray(MALFORMED[-2])  # a request carrying the token
            for at, data in edits:
                raw[at : at + len(data)] = data
            answer = exchange(process.port, bytes(raw))
            assert b"Traceback" not in answer

        mutated()
        assert http(process.url, auth)[0] == 200
        stderr = process.stop()
    assert TOKEN not in stderr
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, lines  # one line for them all: at most one a minute
    assert lines[0].startswith("otel-agents sidecar: refused a malformed request from 127.0.0.1")


def test_responses_to_anyone_carry_no_internal_detail(tmp_path: Path, template: Template) -> None:
    directory = template.copy(tmp_path / "prom")
    (directory / "counter_4000041.db").write_bytes(b"\xff" * 64)  # degraded
    token = tmp_path / "token"
    token.write_text(TOKEN)
    with sidecar(directory, tmp_path, "--bearer-token-file", str(token)) as process:
        base = process.url.removesuffix("/metrics")
        assert http(process.url, {"Authorization": f"Bearer {TOKEN}"})[0] == 200
        answers = [
            http(process.url),  # 401
            http(process.healthz),
            http(base + "/"),
            http(base + "/metrics/../etc"),
            http(base + "/healthz?verbose=1"),
        ]
        answers.append(
            http_method(process.port, "DELETE", "/metrics"),
        )
        stderr = process.stop()
    assert [status for status, _, _ in answers] == [401, 200, 404, 404, 200, 405]
    assert answers[1][2] == b"degraded: 1 unreadable metric file skipped at the last render\n"
    for _, headers, body in answers:
        text = body.decode() + " ".join(f"{k}: {v}" for k, v in headers.items())
        for secret in (str(directory), str(tmp_path), "counter_4000041", "aiohttp", "Python"):
            assert secret not in text
        assert headers["Server"] == "otel-agents"
    assert "counter_4000041.db" in stderr  # the operator's log has the name


def http_method(port: int, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    raw = f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode()
    answer = exchange(port, raw)
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def test_healthz_says_unavailable_without_the_path(tmp_path: Path, template: Template) -> None:
    directory = template.copy(tmp_path / "prom")
    with sidecar(directory, tmp_path) as process:
        assert http(process.healthz)[:3:2] == (200, b"ok\n")
        shutil.rmtree(directory)
        expected = b"unavailable: multiprocess directory: no such file or directory\n"
        assert http(process.healthz)[::2] == (503, expected)
        assert http(process.url)[::2] == (503, expected)
        stderr = process.stop()
    # the operator's log has the path, once
    assert stderr.splitlines() == [
        f"otel-agents sidecar: /metrics unavailable: multiprocess directory {directory}: "
        "no such file or directory"
    ]


def test_a_non_loopback_address_without_auth_warns(tmp_path: Path) -> None:
    """Bound to 0.0.0.0 in a network namespace of its own (nothing outside can reach it)."""
    if (
        shutil.which("unshare") is None
        or subprocess.run(
            ["unshare", "-rn", "true"], capture_output=True, timeout=TIMEOUT_S, check=False
        ).returncode
    ):
        pytest.skip("no unprivileged network namespace here: cannot bind 0.0.0.0 offline")
    directory = tmp_path / "prom"
    directory.mkdir()
    token = tmp_path / "token"
    token.write_text(TOKEN)
    wide = "HOST = '0.0.0.0'"  # --host 0.0.0.0
    with sidecar(directory, tmp_path, preamble=wide, command=("unshare", "-rn")) as process:
        open_ = process.stop()
    with sidecar(
        directory,
        tmp_path,
        "--bearer-token-file",
        str(token),
        preamble=wide,
        command=("unshare", "-rn"),
    ) as process:
        with_auth = process.stop()
    with sidecar(directory, tmp_path) as process:  # 127.0.0.1
        loopback = process.stop()
    assert open_.splitlines() == [
        "otel-agents sidecar: warning: serving on 0.0.0.0, reachable beyond this host, without "
        "auth: anyone who can reach the port reads every metric; set --bearer-token-file or "
        "--basic-auth-file, or bind 127.0.0.1"
    ]
    assert with_auth == ""
    assert loopback == ""


# --- in-process properties ----------------------------------------------------------------------


@given(st.text(max_size=30))
def test_lock_file_names_are_parsed_strictly(pid: str) -> None:
    from otel_agents._multiproc import liveness

    name = f"{LOCK_PREFIX}{pid}{LOCK_SUFFIX}"
    got = liveness.lock_file_pid(name)
    if got is None:
        assert not (pid.isascii() and pid.isdigit() and pid[:1] != "0" and len(pid) <= 10)
    else:
        assert got == pid
        assert got.isascii()
        assert str(int(got)) == got


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=512), st.binary(min_size=8, max_size=64)))
def test_reading_any_bytes_returns_entries_or_refuses(data: bytes) -> None:
    with tempfile_dir() as d:
        path = d / "counter_1.db"
        path.write_bytes(data)
        try:
            entries = read_db(str(path))
        except CorruptFile:
            return
        for key, value, timestamp in entries:
            assert isinstance(key, str)
            assert isinstance(value, float)
            assert isinstance(timestamp, float)


@contextlib.contextmanager
def tempfile_dir() -> Iterator[Path]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


def _reaped_copy(template: Template, to: Path) -> Path:
    """The template, reaped once: its compacted files (small), copied fast per example."""
    from otel_agents._sidecar.reap import reap

    directory = template.copy(to)
    reap(str(directory))
    return directory


ORPHAN = "counter_4000051.db"


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_one_unsound_file_never_costs_the_good_series(
    tmp_path: Path, template: Template, data: st.DataObject
) -> None:
    from otel_agents._sidecar import render

    directory = tmp_path / "prom"
    if not directory.exists():
        _reaped_copy(template, directory)
    real = (directory / "counter_compacted.db").read_bytes()
    used = struct.unpack_from("i", real)[0]
    content = data.draw(
        st.one_of(
            st.binary(max_size=256),
            # a real file with bytes overwritten
            st.lists(
                st.tuples(st.integers(0, used - 1), st.binary(min_size=1, max_size=8)),
                min_size=1,
                max_size=4,
            ).map(lambda edits: _edited(real[:used], edits)),
            st.integers(0, used - 1).map(lambda cut: real[:cut]),  # truncated
        ),
        label="content",
    )
    (directory / ORPHAN).write_bytes(content)
    try:
        read_db(str(directory / ORPHAN))
        readable = True
    except CorruptFile:
        readable = False
    before = render.source(str(directory))._self.skipped
    got = samples(render.render(str(directory)).decode())
    skipped = own(got, n.SIDECAR_SKIPPED_FILES) - before
    assert (directory / ORPHAN).exists()  # nobody's: never moved
    assert skipped in (0, 1)
    if not readable:
        assert skipped == 1
    if skipped:
        assert good(got) == template.expected  # the rest, exact
    serving, health = render.source(str(directory)).health()
    assert serving
    assert health == (
        "degraded: 1 unreadable metric file skipped at the last render" if skipped else "ok"
    )


def _edited(data: bytes, edits: list[tuple[int, bytes]]) -> bytes:
    out = bytearray(data)
    for at, chunk in edits:
        out[at : at + len(chunk)] = chunk[: len(out) - at]
    return bytes(out)


names_ = st.one_of(
    st.from_regex(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,8}", fullmatch=True),
    st.sampled_from(["t_requests", "t_requests_total", "t_latency_seconds", "le", "pid"]),
    st.sampled_from(["otel_agents_sidecar_connections", "__name__", "0:", ""]),
    st.text(max_size=12),  # lone surrogates, spaces, newlines...
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    kind=st.sampled_from(["counter", "histogram", "gauge_all", "gauge_max", "summary"]),
    keys=st.lists(
        st.tuples(
            names_,
            names_,
            st.dictionaries(names_, names_, max_size=3),
            names_,
            st.floats(allow_nan=True, allow_infinity=True),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_keys_the_exposition_cannot_carry_are_refused(
    tmp_path: Path,
    template: Template,
    kind: str,
    keys: list[tuple[str, str, dict[str, str], str, float]],
) -> None:
    """Keys of any strings (lone surrogates, empty names, non-numeric bucket bounds, a name
    clashing with a good metric of another type): the render never fails, its text parses,
    and the good series are exact unless the hostile file was sound and named them."""
    import json

    from otel_agents._sidecar import render
    from otel_agents._sidecar.dbfile import encode_db

    directory = tmp_path / "prom"
    if not directory.exists():
        _reaped_copy(template, directory)
    entries = [
        (json.dumps([metric, sample, labels, help_text]), value, 0.0)
        for metric, sample, labels, help_text, value in keys
    ]
    orphan = directory / f"{kind}_4000061.db"
    for stale in directory.glob("*_4000061.db"):
        stale.unlink()
    orphan.write_bytes(encode_db(entries))
    try:
        read_db(str(orphan))
        sound = True
    except CorruptFile:
        sound = False
    text = render.render(str(directory)).decode()
    got = samples(text)  # parses
    if not sound or not any(m.startswith("t_") or s.startswith("t_") for m, s, *_ in keys):
        assert good(got) == template.expected
