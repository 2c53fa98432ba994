"""Liveness locks (``otel_agents._multiproc.liveness``) and dead-process compaction
(``otel_agents._sidecar.reap``) in PROMETHEUS_MULTIPROC_DIR.

Real child processes write real prometheus_client files; some are killed with SIGKILL. What
the scrape (``MultiProcessCollector``) shows must not change when dead processes' files are
compacted, except that a dead process's ``live*`` gauges disappear.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.mmap_dict import mmap_key
from prometheus_client.multiprocess import MultiProcessCollector

from otel_agents import names as n
from otel_agents._multiproc import liveness
from otel_agents._multiproc.liveness import LOCK_PREFIX, LOCK_SUFFIX
from otel_agents._sidecar.dbfile import write_db
from otel_agents._sidecar.dirfiles import CORRUPT_SUFFIX
from otel_agents._sidecar.reap import REAPER_LOCK, reap

TIMEOUT_S = 60

# One script for every child. ``worker``: register, write metrics, print "ready", wait for a
# line on stdin, then leave through os._exit (as a job process does, without mark_process_dead)
# unless killed first. ``burst``: fork N short-lived children one after the other, each of which
# registers, writes and exits; print their pids.
CHILD = textwrap.dedent(
    """
    import json, os, sys
    directory, spec = sys.argv[1], json.loads(sys.argv[2])
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary
    from otel_agents._multiproc import liveness

    def write(i, per_pid_gauge):
        r = CollectorRegistry()
        c = Counter("t_requests", "Requests.", ["kind"], registry=r)
        c.labels("a").inc(i + 1)
        c.labels("b").inc(2)
        h = Histogram("t_latency_seconds", "Latency.", buckets=(0.25, 0.5, 1.0), registry=r)
        h.observe(0.25 * (i % 5))
        h.observe(0.75)
        Summary("t_size_bytes", "Size.", registry=r).observe(i + 0.5)
        Gauge("t_active", "Active.", registry=r, multiprocess_mode="livesum").inc()
        Gauge("t_peak", "Peak.", registry=r, multiprocess_mode="max").set(i)
        Gauge("t_low", "Low.", registry=r, multiprocess_mode="min").set(100 - i)
        Gauge("t_last", "Last.", registry=r, multiprocess_mode="mostrecent").set(i)
        Gauge("t_pool", "Pool.", registry=r, multiprocess_mode="sum").inc(i)
        if per_pid_gauge:
            Gauge("t_each", "Each.", registry=r, multiprocess_mode="all").set(i)

    if spec["mode"] == "worker":
        liveness.register_process(directory)
        write(spec["i"], True)
        print("ready", os.getpid(), flush=True)
        sys.stdin.readline()
        os._exit(0)
    else:
        pids = []
        for i in range(spec["count"]):
            pid = os.fork()
            if pid == 0:
                liveness.register_process(directory)
                write(spec["first"] + i, False)
                os._exit(0)
            os.waitpid(pid, 0)
            pids.append(pid)
        print(json.dumps(pids), flush=True)
    """
)

Scrape = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(directory: Path) -> Scrape:
    """Every sample MultiProcessCollector renders for ``directory``."""
    registry = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for metric in registry.collect()
        for s in metric.samples
    }


def without(samples: Scrape, *names: str) -> Scrape:
    return {k: v for k, v in samples.items() if k[0] not in names}


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file in ``directory`` with its bytes (but the reaper's own lock file). Lock files
    are not read: closing any fd of a file drops the POSIX locks this process holds on it."""
    return {
        p.name: b"lock" if p.suffix == LOCK_SUFFIX else p.read_bytes()
        for p in sorted(directory.iterdir())
        if p.name != REAPER_LOCK
    }


def db_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("*.db"))


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}


def _readline(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], TIMEOUT_S)
    assert ready, "child did not answer in time"
    return proc.stdout.readline().strip()


class Worker:
    """A long-lived child process that writes its metrics, then waits for a line on stdin.

    ``script`` gets the directory and a JSON spec as arguments and prints ``ready <pid>``.
    """

    def __init__(self, directory: Path, i: int, script: str = CHILD) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", script, str(directory), json.dumps({"mode": "worker", "i": i})],
            env=_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.pid = 0

    def ready(self) -> Worker:
        line = _readline(self.proc)
        assert line.startswith("ready "), line
        self.pid = int(line.split()[1])
        return self

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(TIMEOUT_S)

    def exit(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write("exit\n")
            self.proc.stdin.flush()
        self.proc.wait(TIMEOUT_S)

    def files(self, directory: Path) -> list[str]:
        return sorted(p.name for p in directory.glob(f"*_{self.pid}.db"))


def start_workers(directory: Path, count: int, script: str = CHILD) -> list[Worker]:
    """``count`` workers started together (they import in parallel), once all are ready."""
    started = [Worker(directory, i, script) for i in range(count)]
    try:
        return [w.ready() for w in started]
    except BaseException:
        for w in started:
            w.proc.kill()
            w.proc.wait(TIMEOUT_S)
        raise


def stop_workers(workers: list[Worker]) -> None:
    for w in workers:
        if w.proc.poll() is None:
            w.kill()
        for pipe in (w.proc.stdin, w.proc.stdout):
            if pipe is not None:
                pipe.close()


def burst(directory: Path, count: int, first: int = 0) -> list[int]:
    """Run ``count`` short-lived processes, one after the other; their pids."""
    spec = json.dumps({"mode": "burst", "count": count, "first": first})
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(directory), spec],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=True,
    )
    pids: list[int] = json.loads(out.stdout)
    return pids


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    d = tmp_path / "prom"
    d.mkdir()
    return d


@pytest.fixture
def workers(directory: Path) -> Iterator[list[Worker]]:
    started = start_workers(directory, 3)
    try:
        yield started
    finally:
        stop_workers(started)


def test_a_killed_process_loses_its_live_gauge_and_nothing_else(
    directory: Path, workers: list[Worker]
) -> None:
    a, b, c = workers
    orphan = directory / "counter_3999999.db"  # a pid without a lock file: never touched
    orphan.write_bytes((directory / f"counter_{b.pid}.db").read_bytes())
    before = scrape(directory)
    assert before[("t_active", ())] == 3
    assert before[("t_requests_total", (("kind", "a"),))] == 1 + 2 + 3 + 2  # the orphan: b's 2

    b.kill()  # SIGKILL while its gauge is 1: it never runs mark_process_dead
    assert scrape(directory) == before  # nothing noticed it yet: the stale count is there
    live_files = {
        name: data
        for name, data in snapshot(directory).items()
        if name.endswith((f"_{a.pid}.db", f"_{c.pid}.db"))
    }
    assert len(live_files) == 2 * 9

    report = reap(str(directory))
    assert report.dead_pids == (b.pid,)
    assert report.live_processes == 2
    assert report.errors == 0
    assert report.files_removed == 8  # 7 merged + the livesum gauge; gauge_all stays

    after = scrape(directory)
    assert after[("t_active", ())] == 2  # the dead process's count is gone
    assert without(after, "t_active") == without(before, "t_active")  # totals: exact
    assert b.files(directory) == [f"gauge_all_{b.pid}.db"]  # per pid by design
    assert not (directory / f"{LOCK_PREFIX}{b.pid}{LOCK_SUFFIX}").exists()
    files = snapshot(directory)
    assert {k: v for k, v in files.items() if k in live_files} == live_files  # untouched
    assert files[orphan.name] == orphan.read_bytes()
    assert sorted(n for n in files if "compacted" in n) == [
        "counter_compacted.db",
        "gauge_max_compacted.db",
        "gauge_min_compacted.db",
        "gauge_mostrecent_compacted.db",
        "gauge_sum_compacted.db",
        "histogram_compacted.db",
        "summary_compacted.db",
    ]

    # reaping again is a no-op
    again = reap(str(directory))
    assert (again.dead_pids, again.files_merged, again.files_removed) == ((), 0, 0)
    assert snapshot(directory) == files

    # the survivors exit cleanly later: compacted into the same files, same totals
    a.exit()
    c.exit()
    report = reap(str(directory))
    assert report.dead_pids == tuple(sorted((a.pid, c.pid)))
    final = scrape(directory)
    assert ("t_active", ()) not in final or final[("t_active", ())] == 0
    assert without(final, "t_active") == without(before, "t_active")


def test_many_short_lived_processes_leave_a_bounded_number_of_files(
    directory: Path, workers: list[Worker]
) -> None:
    pids = burst(directory, 100)
    assert len(db_files(directory)) == 3 * 9 + 100 * 8
    before = scrape(directory)
    report = reap(str(directory))
    assert report.dead_pids == tuple(sorted(pids))
    assert report.errors == 0
    pids += burst(directory, 100, first=100)
    before_second = scrape(directory)
    assert reap(str(directory)).dead_pids == tuple(sorted(pids[100:]))

    after = scrape(directory)
    live = 3 * 9  # the workers' own files
    assert len(db_files(directory)) == live + 7  # plus one compacted file per kind
    assert report.db_files == live + 7
    assert without(after, "t_active") == without(before_second, "t_active")
    assert after[("t_active", ())] == 3
    assert before[("t_requests_total", (("kind", "a"),))] == 1 + 2 + 3 + sum(range(1, 101))
    assert after[("t_requests_total", (("kind", "a"),))] == 1 + 2 + 3 + sum(range(1, 201))
    assert after[("t_latency_seconds_count", ())] == 2 * 203
    assert after[("t_peak", ())] == 199
    assert after[("t_low", ())] == 100 - 199
    assert after[("t_last", ())] == 199  # the most recent one set


def test_a_live_process_is_never_reaped_even_when_it_is_the_reaper(
    directory: Path, workers: list[Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    # this test process registers too: its own lock must survive its own reap
    monkeypatch.setattr(liveness, "_registration", None)
    liveness.register_process(str(directory))
    registration = liveness._registration
    assert registration is not None
    assert registration.pid == os.getpid()
    try:
        before = snapshot(directory)
        report = reap(str(directory))
        assert report.dead_pids == ()
        assert report.live_processes == 4
        assert snapshot(directory) == before
        # still held: another process cannot take it
        probe = (
            "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR)\n"
            "try: fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
            "except OSError: print('held')\n"
            "else: print('free')"
        )
        for pid in (os.getpid(), *(w.pid for w in workers)):
            lock = directory / f"{LOCK_PREFIX}{pid}{LOCK_SUFFIX}"
            out = subprocess.run(
                [sys.executable, "-c", probe, str(lock)],
                capture_output=True,
                text=True,
                timeout=TIMEOUT_S,
                check=True,
            )
            assert out.stdout.strip() == "held"
    finally:
        os.close(registration.fd)


def test_hostile_content_does_not_crash_reap(directory: Path) -> None:
    def dead_lock(pid: int) -> None:
        (directory / f"{LOCK_PREFIX}{pid}{LOCK_SUFFIX}").write_text(f"{pid}\n")  # nobody holds it

    garbage = os.urandom(4096)
    (directory / "counter_4000001.db").write_bytes(garbage)  # a dead pid's garbage
    dead_lock(4000001)
    (directory / "histogram_4000002.db").write_bytes(b"")  # killed while creating its file
    dead_lock(4000002)
    dead_lock(4000003)  # a lock file and no metric files at all
    (directory / "counter_4000004.db").write_bytes(garbage)  # garbage, no lock: not ours
    (directory / f"{LOCK_PREFIX}abc{LOCK_SUFFIX}").write_text("x")  # not a pid
    (directory / "counter_.db").write_bytes(garbage)
    (directory / "weird.db").write_bytes(b"")
    bad_key = directory / "gauge_max_4000005.db"  # well-formed file, key that is not ours
    write_db(str(bad_key), [("not json", 1.0, 0.0)])
    dead_lock(4000005)
    untouched = {n: snapshot(directory)[n] for n in ("counter_4000004.db", "counter_.db")}

    report = reap(str(directory))
    assert report.dead_pids == (4000001, 4000002, 4000003, 4000005)
    assert report.files_quarantined == 2
    assert report.errors == 0
    names = set(snapshot(directory))
    assert "counter_4000001.db.corrupt" in names
    assert "counter_4000001.db" not in names
    assert "gauge_max_4000005.db.corrupt" in names
    assert "histogram_4000002.db" not in names
    assert "histogram_compacted.db" not in names  # nothing to compact from an empty file
    assert {n: snapshot(directory)[n] for n in untouched} == untouched
    assert f"{LOCK_PREFIX}abc{LOCK_SUFFIX}" in names
    assert not any(n.startswith(LOCK_PREFIX) and n[len(LOCK_PREFIX)].isdigit() for n in names)
    assert reap(str(directory)).dead_pids == ()


def test_nothing_in_the_directory_is_followed_or_trusted(directory: Path, tmp_path: Path) -> None:
    """Symbolic links, FIFOs and directories where the reaper expects its lock, a liveness lock
    or a dead process's file are moved aside (never followed, never blocked on); the reaper's
    own leftovers are removed; whatever it touches outside the directory stays as it was."""
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim"
    victim.write_bytes(b"untouched")
    os.mkfifo(directory / REAPER_LOCK)  # opening it for writing would block without O_NONBLOCK
    os.symlink(victim, directory / f"{LOCK_PREFIX}4000001{LOCK_SUFFIX}")  # a "lock" outside
    (directory / f"{LOCK_PREFIX}4000002{LOCK_SUFFIX}").mkdir()
    (directory / f"{LOCK_PREFIX}4000003{LOCK_SUFFIX}").write_text("")  # dead, with odd files:
    os.mkfifo(directory / "counter_4000003.db")
    os.symlink(victim, directory / "gauge_all_4000003.db")
    os.symlink(victim, directory / "gauge_livesum_4000003.db")  # deleted: the link, not victim
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(directory / "histogram_4000003.db"))
    sock.close()
    leftover = directory / ".counter_compacted.db.0123abcd.tmp"  # a reaper killed mid-write
    leftover.write_bytes(b"x")
    os.symlink(victim, directory / ".otel_agents_alive_4000004.ab12.tmp")

    report = reap(str(directory))

    assert report.dead_pids == (4000003,)
    assert report.errors == 0
    assert report.files_quarantined == 6  # reaper lock, 2 locks, 3 of 4000003's files
    names = {p.name for p in directory.iterdir()}
    assert {
        REAPER_LOCK + CORRUPT_SUFFIX,
        f"{LOCK_PREFIX}4000001{LOCK_SUFFIX}{CORRUPT_SUFFIX}",
        f"{LOCK_PREFIX}4000002{LOCK_SUFFIX}{CORRUPT_SUFFIX}",
        "counter_4000003.db.corrupt",
        "gauge_all_4000003.db.corrupt",
        "histogram_4000003.db.corrupt",
    } <= names
    assert (directory / REAPER_LOCK).is_file()  # made again, a regular file
    assert "gauge_livesum_4000003.db" not in names
    assert leftover.name not in names
    assert ".otel_agents_alive_4000004.ab12.tmp" not in names
    assert victim.read_bytes() == b"untouched"
    assert [p.name for p in outside.iterdir()] == ["victim"]
    assert reap(str(directory)).errors == 0


def test_a_compacted_file_that_does_not_parse_is_moved_aside_not_merged_into(
    directory: Path,
) -> None:
    (directory / "counter_compacted.db").write_bytes(b"\xff" * 64)
    write_db(str(directory / "counter_4000001.db"), [(_key("counter", "x"), 2.0, 0.0)])
    (directory / f"{LOCK_PREFIX}4000001{LOCK_SUFFIX}").write_text("")
    before = scrape_without(directory, "counter_compacted.db")

    report = reap(str(directory))

    assert report.dead_pids == (4000001,)
    assert report.files_quarantined == 1
    assert (directory / "counter_compacted.db.corrupt").read_bytes() == b"\xff" * 64
    assert scrape(directory) == before
    assert reap(str(directory), suspects=["counter_compacted.db"]).files_quarantined == 0


def scrape_without(directory: Path, name: str) -> Scrape:
    with tempfile.TemporaryDirectory() as tmp:
        for p in directory.glob("*.db"):
            if p.name != name:
                (Path(tmp) / p.name).write_bytes(p.read_bytes())
        return scrape(Path(tmp))


def test_a_missing_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        reap(str(tmp_path / "missing"))


def test_another_reaper_at_work_means_skip(directory: Path) -> None:
    (directory / f"{LOCK_PREFIX}4000001{LOCK_SUFFIX}").write_text("")  # dead
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
            "fcntl.lockf(fd, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.readline()",
            str(directory / REAPER_LOCK),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert _readline(holder) == "held"
        report = reap(str(directory))
        assert report.skipped
        assert report.dead_pids == ()
    finally:
        holder.communicate("exit\n", timeout=TIMEOUT_S)
    assert reap(str(directory)).dead_pids == (4000001,)


def test_init_registers_every_process_including_forked_children(directory: Path) -> None:
    script = textwrap.dedent(
        """
        import multiprocessing, os, sys
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = sys.argv[1]
        import otel_agents
        otel_agents.init()
        otel_agents.init()  # idempotent: warns, registers nothing new

        def child():
            print(os.getpid(), flush=True)

        p = multiprocessing.get_context("fork").Process(target=child)
        p.start()
        p.join()
        pid = os.fork()
        if pid == 0:
            print(os.getpid(), flush=True)
            os._exit(0)
        os.waitpid(pid, 0)
        print("parent", os.getpid(), flush=True)
        sys.stdin.readline()
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-W", "ignore", "-c", script, str(directory)],
        env=_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        children = [int(_readline(proc)), int(_readline(proc))]
        parent = _readline(proc)
        assert parent.startswith("parent ")
        parent_pid = int(parent.split()[1])
        locks = sorted(p.name for p in directory.glob(f"{LOCK_PREFIX}*"))
        assert locks == sorted(f"{LOCK_PREFIX}{p}{LOCK_SUFFIX}" for p in [parent_pid, *children])
        report = reap(str(directory))
        assert report.dead_pids == tuple(sorted(children))  # exited; the parent is alive
        assert report.live_processes == 1
    finally:
        proc.communicate("exit\n", timeout=TIMEOUT_S)
    assert proc.returncode == 0
    assert reap(str(directory)).dead_pids == (parent_pid,)


# --- merge rules, as a property: compaction never changes what the collector renders ---------

MODES = ("counter", "histogram", "summary", "gauge_sum", "gauge_max", "gauge_min")
values = st.integers(min_value=-1000, max_value=1000).map(lambda v: v / 4)  # exact sums


def _key(prefix: str, label: str) -> str:
    """A key of a metric of its own per file kind (one metric has one type and one mode)."""
    metric = f"m_{prefix}"
    if prefix == "histogram" and label == "z":  # a bucket (stored per bucket, not cumulative)
        return mmap_key(metric, metric + "_bucket", ["k", "le"], [label, "1.0"], "Help.")
    suffix = {"counter": "_total", "histogram": "_sum", "summary": "_count"}
    return mmap_key(metric, metric + suffix.get(prefix, ""), ["k"], [label], "Help.")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.lists(
        st.tuples(
            st.sampled_from(MODES),
            st.lists(st.tuples(st.sampled_from("xyz"), values), max_size=3),
            st.booleans(),  # dead?
        ),
        min_size=1,
        max_size=8,
    ),
    recent=st.lists(st.tuples(values, st.booleans()), max_size=5),
)
def test_compaction_keeps_what_the_collector_renders(
    data: list[tuple[str, list[tuple[str, float]], bool]], recent: list[tuple[float, bool]]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        pid = 100
        for prefix, entries, dead in data:
            pid += 1
            write_db(str(d / f"{prefix}_{pid}.db"), [(_key(prefix, k), v, 0.0) for k, v in entries])
            if dead:
                (d / f"{LOCK_PREFIX}{pid}{LOCK_SUFFIX}").write_text("")
        for ts, (v, dead) in enumerate(recent, start=1):  # distinct timestamps
            pid += 1
            write_db(
                str(d / f"gauge_mostrecent_{pid}.db"),
                [(_key("gauge_mostrecent", "x"), v, float(ts))],
            )
            if dead:
                (d / f"{LOCK_PREFIX}{pid}{LOCK_SUFFIX}").write_text("")
        before = scrape(d)
        reap(str(d))
        assert scrape(d) == before
        reap(str(d))  # and again, into existing compacted files
        assert scrape(d) == before


ALL_KINDS = (*MODES, "gauge_mostrecent", "gauge_livesum", "gauge_all", "gauge_livemax")


def families(metrics: object) -> dict[str, tuple[str, str, list[tuple[str, str, float]]]]:
    """Families by name: type, help, and samples in a comparable order."""
    return {
        m.name: (
            m.type,
            m.documentation,
            sorted((s.name, json.dumps(s.labels, sort_keys=True), s.value) for s in m.samples),
        )
        for m in metrics  # type: ignore[attr-defined]
    }


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.lists(
        st.tuples(
            st.sampled_from(ALL_KINDS),
            st.lists(st.tuples(st.sampled_from("xyz"), values), max_size=3),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_the_sidecar_merges_files_as_the_collector_does(
    data: list[tuple[str, list[tuple[str, float]]]],
) -> None:
    """The sidecar reads and merges each file itself (to skip a bad one, not fail them all):
    what it renders is what prometheus_client's MultiProcessCollector renders."""
    from otel_agents._sidecar.render import collect

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for pid, (prefix, entries) in enumerate(data, start=100):
            # distinct timestamps: "mostrecent" does not depend on the order files are read
            write_db(
                str(d / f"{prefix}_{pid}.db"),
                [(_key(prefix, label), v, float(pid)) for label, v in entries],
            )
        files = sorted(str(p) for p in d.glob("*.db"))
        theirs = MultiProcessCollector.merge(files, accumulate=True)  # type: ignore[no-untyped-call]
        fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY)
        try:
            ours, skipped = collect(fd)
        finally:
            os.close(fd)
        assert skipped == []
        assert families(ours) == families(theirs)


def test_a_failed_registration_is_contained_and_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def errors() -> float:
        got = REGISTRY.get_sample_value(n.INTERNAL_ERRORS, {"where": n.WHERE_LIVENESS})
        return 0.0 if got is None else got

    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    monkeypatch.setattr(liveness, "_registration", None)
    before = errors()
    liveness.register_process(str(not_a_directory))  # never raises into the host
    assert errors() == before + 1
    liveness.register_process(str(tmp_path / "not-yet"))  # the worker creates it later
    assert errors() == before + 1
    assert liveness._registration is None
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.delenv("prometheus_multiproc_dir", raising=False)
    liveness.register_process()  # multiprocess mode off: nothing to do
    assert liveness._registration is None
    assert list(tmp_path.iterdir()) == [not_a_directory]
