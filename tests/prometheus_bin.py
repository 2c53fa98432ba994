"""The real Prometheus tools, from Debian's packages.

* ``promtool`` and ``prometheus``, from the ``prometheus`` package;
* ``amtool`` and ``prometheus-alertmanager``, from the ``prometheus-alertmanager`` package
  (the server needs a path patched to run without a root install: see :func:`alertmanager`).

Tests check our output with the real tools instead of re-implementing their rules. Each package
is fetched once with ``apt-get download`` (no root needed) and unpacked with ``dpkg -x`` into
``${OTEL_AGENTS_CACHE:-~/.cache/otel-agents}/<package>-<version>/``; later runs, and runs
without apt, use the cache. Concurrent first runs are safe: each unpacks into its own temp
directory and renames it into place; the loser of the race discards its copy.

A missing tool is a failure with a message naming what is missing, never a skip.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

TIMEOUT_S = 300


@dataclass(frozen=True)
class Deb:
    """A Debian package, and the file whose presence proves a complete unpack of it."""

    name: str
    marker: str  # relative to the unpacked root


PROMETHEUS = Deb("prometheus", "usr/bin/promtool")
ALERTMANAGER = Deb("prometheus-alertmanager", "usr/bin/amtool")
PACKAGE = PROMETHEUS.name  # kept for callers of the first version of this module


def cache_root() -> Path:
    root = os.environ.get("OTEL_AGENTS_CACHE") or os.path.expanduser("~/.cache/otel-agents")
    return Path(root)


def promtool() -> Path:
    """Path to ``promtool``."""
    return _package_dir(PROMETHEUS) / "usr" / "bin" / "promtool"


def prometheus() -> Path:
    """Path to the ``prometheus`` server."""
    return _package_dir(PROMETHEUS) / "usr" / "bin" / "prometheus"


def amtool() -> Path:
    """Path to ``amtool`` (Alertmanager's CLI: ``amtool check-config``)."""
    return _package_dir(ALERTMANAGER) / "usr" / "bin" / "amtool"


def alertmanager() -> Path:
    """Path to the Alertmanager server (Debian names it ``prometheus-alertmanager``), runnable.

    Debian's build reads its default notification templates (and UI) from the compiled-in
    directory ``/usr/share/prometheus/alertmanager``, which only a root install creates: without
    it the server refuses every configuration. Unless that directory exists, this returns a copy
    of the binary (beside it in the cache) whose compiled-in path points instead at a symlink to
    the cache's copy of that directory. The new path must fit in the old one's 34 bytes, hence a
    short private directory under /tmp (``/tmp/oa<uid>``, mode 0700, checked to be ours), padded
    with slashes.
    """
    package = _package_dir(ALERTMANAGER)
    original = package / "usr" / "bin" / "prometheus-alertmanager"
    if (Path(_AM_ASSETS.decode()) / "default.tmpl").is_file():
        return original
    assets = package / _AM_ASSETS.decode().lstrip("/")
    if not (assets / "default.tmpl").is_file():
        raise RuntimeError(f"{assets} holds no default.tmpl")
    link = _private_link(assets)
    patched = original.with_name(f"{original.name}.{link.name}")
    if not patched.is_file():
        _patch(original, patched, _AM_ASSETS, str(link).encode())
    return patched


#: the directory Debian's Alertmanager reads its templates and UI from
_AM_ASSETS = b"/usr/share/prometheus/alertmanager"


def alert_states(
    config: Path,
    data: Path,
    alerts: list[dict[str, str]],
    want: dict[tuple[str, ...], str],
    key: tuple[str, ...],
    timeout: float = 120.0,
) -> None:
    """Start the real Alertmanager on ``config``, add ``alerts`` with the real ``amtool``, and
    wait until every alert's state (``active``, ``suppressed``), by its ``key`` labels, is what
    ``want`` says; fails with the states seen when ``timeout`` (a bound on waiting, not a
    measurement) runs out."""
    import json
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"--alertmanager.url=http://127.0.0.1:{port}/"
    server = subprocess.Popen(
        [
            str(alertmanager()),
            f"--config.file={config}",
            f"--storage.path={data}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )

    def am(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(amtool()), *args, url], capture_output=True, text=True, timeout=60, check=False
        )

    def states() -> dict[tuple[str, ...], str]:
        out = am("alert", "query", "--inhibited", "--active", "-o", "json")
        assert out.returncode == 0, out.stdout + out.stderr
        return {
            tuple(a["labels"][k] for k in key): a["status"]["state"] for a in json.loads(out.stdout)
        }

    try:
        deadline = time.monotonic() + timeout
        while am("config", "show").returncode != 0:
            assert server.poll() is None, server.communicate()[1]
            assert time.monotonic() < deadline, "alertmanager did not start"
            time.sleep(0.1)
        for labels in alerts:
            out = am("alert", "add", *(f"{k}={v}" for k, v in labels.items()))
            assert out.returncode == 0, out.stdout + out.stderr
        while (got := states()) != want:
            assert time.monotonic() < deadline, got
            time.sleep(0.2)
    finally:
        server.terminate()
        server.communicate(timeout=60)


def _private_link(target: Path) -> Path:
    """``/tmp/oa<uid>/<hash of target>`` -> ``target``: a short path only this user controls."""
    private = Path(f"/tmp/oa{os.getuid()}")
    with contextlib.suppress(FileExistsError):
        private.mkdir(mode=0o700)
    info = private.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise RuntimeError(f"{private} must be a directory of uid {os.getuid()} with mode 0700")
    link = private / hashlib.sha256(str(target).encode()).hexdigest()[:8]
    if not (link.is_symlink() and os.readlink(link) == str(target)):
        fresh = private / f".{link.name}.{os.getpid()}"
        fresh.unlink(missing_ok=True)
        fresh.symlink_to(target)
        fresh.replace(link)
    return link


def _patch(original: Path, patched: Path, old: bytes, new: bytes) -> None:
    """Copy ``original`` to ``patched`` with every ``old`` replaced by ``new`` (slash-padded)."""
    if len(new) > len(old):
        raise RuntimeError(f"{new!r} is longer than the {len(old)} bytes of {old!r}")
    data = original.read_bytes()
    if old not in data:
        raise RuntimeError(f"{original} does not contain {old!r}: a different build?")
    fd, tmp = tempfile.mkstemp(dir=patched.parent, prefix=f".{patched.name}-")
    with os.fdopen(fd, "wb") as out:
        out.write(data.replace(old, new.ljust(len(old), b"/")))
    os.chmod(tmp, 0o755)
    os.replace(tmp, patched)  # atomic: concurrent first runs write the same bytes


@functools.cache
def _package_dir(deb: Deb) -> Path:
    root = cache_root()
    version = _candidate_version(deb)
    if version is None:  # no apt here: any version cached earlier will do
        cached = sorted(root.glob(f"{deb.name}-*/{deb.marker}"))
        if not cached:
            raise RuntimeError(
                f"{Path(deb.marker).name} is not cached in {root} and apt-cache/apt-get are not "
                f"available to fetch Debian's {deb.name!r} package (set OTEL_AGENTS_CACHE to a "
                f"directory holding {deb.name}-<version>/{deb.marker})"
            )
        return cached[-1].parents[len(Path(deb.marker).parts) - 1]
    target = root / f"{deb.name}-{version}"
    if not (target / deb.marker).is_file():
        _fetch(deb, version, target)
    return target


def _candidate_version(deb: Deb) -> str | None:
    """The version apt would install (read from the local package lists; no network)."""
    if shutil.which("apt-cache") is None:
        return None
    out = _run(["apt-cache", "policy", deb.name]).stdout
    for line in out.splitlines():
        key, _, value = line.strip().partition(":")
        if key == "Candidate" and value.strip() and value.strip() != "(none)":
            return value.strip()
    raise RuntimeError(
        f"apt-cache knows no candidate for Debian's {deb.name!r} package (run apt-get update?):\n"
        + out
    )


def _fetch(deb: Deb, version: str, target: Path) -> None:
    for tool in ("apt-get", "dpkg"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is not available to fetch Debian's {deb.name!r} package")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{deb.name}-") as tmp:
        download = Path(tmp) / "download"
        download.mkdir()
        # apt warns that it downloads "unsandboxed" as root: harmless
        _run(["apt-get", "download", f"{deb.name}={version}"], cwd=download)
        debs = list(download.glob("*.deb"))
        if len(debs) != 1:
            raise RuntimeError(f"apt-get download {deb.name}={version} produced {debs}")
        unpacked = Path(tmp) / "unpacked"
        _run(["dpkg", "-x", str(debs[0]), str(unpacked)])
        if not (unpacked / deb.marker).is_file():
            raise RuntimeError(f"{debs[0].name} holds no {deb.marker}")
        try:
            unpacked.rename(target)
        except OSError:
            # another process won the race (or left a broken copy: replace that one)
            if not (target / deb.marker).is_file():
                shutil.rmtree(target, ignore_errors=True)
                unpacked.rename(target)


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout}"
        )
    return proc


if __name__ == "__main__":
    print(promtool())
    print(prometheus())
    print(amtool())
    print(alertmanager())
