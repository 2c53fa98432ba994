"""The real ``promtool`` and ``prometheus`` binaries, from Debian's ``prometheus`` package.

Tests check our output with the real tools instead of re-implementing their rules. The package
is fetched once with ``apt-get download`` (no root needed) and unpacked with ``dpkg -x`` into
``${OTEL_AGENTS_CACHE:-~/.cache/otel-agents}/prometheus-<version>/``; later runs, and runs
without apt, use the cache. Concurrent first runs are safe: each unpacks into its own temp
directory and renames it into place; the loser of the race discards its copy.

A missing tool is a failure with a message naming what is missing, never a skip.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

PACKAGE = "prometheus"
TIMEOUT_S = 300


def cache_root() -> Path:
    root = os.environ.get("OTEL_AGENTS_CACHE") or os.path.expanduser("~/.cache/otel-agents")
    return Path(root)


def promtool() -> Path:
    """Path to ``promtool``."""
    return _package_dir() / "usr" / "bin" / "promtool"


def prometheus() -> Path:
    """Path to the ``prometheus`` server."""
    return _package_dir() / "usr" / "bin" / "prometheus"


@functools.cache
def _package_dir() -> Path:
    root = cache_root()
    version = _candidate_version()
    if version is None:  # no apt here: any version cached earlier will do
        cached = sorted(root.glob(f"{PACKAGE}-*/usr/bin/promtool"))
        if not cached:
            raise RuntimeError(
                f"promtool is not cached in {root} and apt-cache/apt-get are not available to "
                f"fetch Debian's {PACKAGE!r} package (set OTEL_AGENTS_CACHE to a directory "
                f"holding {PACKAGE}-<version>/usr/bin/promtool)"
            )
        return cached[-1].parents[2]
    target = root / f"{PACKAGE}-{version}"
    if not (target / "usr" / "bin" / "promtool").is_file():
        _fetch(version, target)
    return target


def _candidate_version() -> str | None:
    """The version apt would install (read from the local package lists; no network)."""
    if shutil.which("apt-cache") is None:
        return None
    out = _run(["apt-cache", "policy", PACKAGE]).stdout
    for line in out.splitlines():
        key, _, value = line.strip().partition(":")
        if key == "Candidate" and value.strip() and value.strip() != "(none)":
            return value.strip()
    raise RuntimeError(
        f"apt-cache knows no candidate for Debian's {PACKAGE!r} package (run apt-get update?):\n"
        + out
    )


def _fetch(version: str, target: Path) -> None:
    for tool in ("apt-get", "dpkg"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is not available to fetch Debian's {PACKAGE!r} package")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{PACKAGE}-") as tmp:
        download = Path(tmp) / "download"
        download.mkdir()
        # apt warns that it downloads "unsandboxed" as root: harmless
        _run(["apt-get", "download", f"{PACKAGE}={version}"], cwd=download)
        debs = list(download.glob("*.deb"))
        if len(debs) != 1:
            raise RuntimeError(f"apt-get download {PACKAGE}={version} produced {debs}")
        unpacked = Path(tmp) / "unpacked"
        _run(["dpkg", "-x", str(debs[0]), str(unpacked)])
        if not (unpacked / "usr" / "bin" / "promtool").is_file():
            raise RuntimeError(f"{debs[0].name} holds no usr/bin/promtool")
        try:
            unpacked.rename(target)
        except OSError:
            # another process won the race (or left a broken copy: replace that one)
            if not (target / "usr" / "bin" / "promtool").is_file():
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
