"""One directory's files, handled as hostile: every name is opened relative to the directory's
descriptor without following a symbolic link, files are replaced atomically and checked, and
whatever cannot be read is moved aside (``<name>.corrupt``), with every problem counted. The
reaper (:mod:`.reap`) works through it."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import stat
import time
from collections.abc import Callable
from typing import Final

from .. import names as n
from .._multiproc import liveness

logger = logging.getLogger(n.LOGGER_NAME)

#: what a file moved aside is renamed to: ``<name>.corrupt``
CORRUPT_SUFFIX: Final = ".corrupt"
#: a registration temp file older than this, and unlocked, was left by a killed process
STALE_TMP_S: Final = 60.0
_REPLACE_ATTEMPTS: Final = 3
LOCK_FLAGS: Final = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CREATE_FLAGS: Final = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

#: test seam: called with (directory fd, temp name) just before a replacing file is moved
#: into place
_before_replace: Callable[[int, str], None] | None = None


class DirectoryFiles:
    """The files of the directory open as ``dir_fd``, and the counts of what was done to them."""

    def __init__(self, dir_fd: int) -> None:
        self.dir = dir_fd
        self.errors = 0
        self.removed = 0
        self.quarantined = 0
        self.db_delta = 0  # .db files made (+) or moved away (-) beyond those removed

    def _still(self, name: str, st: os.stat_result) -> bool:
        """Whether ``name`` is still the file ``st`` describes (not followed if a link)."""
        try:
            return liveness.same_file(os.stat(name, dir_fd=self.dir, follow_symlinks=False), st)
        except OSError:
            return False

    def _exists(self, name: str) -> bool:
        try:
            os.stat(name, dir_fd=self.dir, follow_symlinks=False)
        except OSError:
            return False
        return True

    def _replace(self, target: str, data: bytes) -> bool:
        """Put ``data`` at ``target``: written to a new file created exclusively under a random
        name, moved into place, then checked to be the file written (a file renamed over the
        temporary name in between would have been moved instead: write again)."""
        for _ in range(_REPLACE_ATTEMPTS):
            tmp = f".{target}.{secrets.token_hex(8)}.tmp"
            try:
                fd = os.open(tmp, _CREATE_FLAGS, 0o666, dir_fd=self.dir)
            except OSError as exc:
                logger.warning("otel_agents: cannot write %s: %s", target, exc)
                return False
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                written = os.fstat(fd)
                if _before_replace is not None:
                    _before_replace(self.dir, tmp)
                os.replace(tmp, target, src_dir_fd=self.dir, dst_dir_fd=self.dir)
                if self._still(target, written):
                    return True
                logger.warning("otel_agents: %s was replaced while being written", target)
            except OSError as exc:
                logger.warning("otel_agents: cannot write %s: %s", target, exc)
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=self.dir)
                return False
            finally:
                os.close(fd)
        return False

    def _unlink(self, name: str, *, db: bool = True) -> bool:
        try:
            os.unlink(name, dir_fd=self.dir)
        except FileNotFoundError:
            return True
        except IsADirectoryError:
            return self._quarantine(name, db=db)
        except OSError:
            self.errors += 1
            return False
        self.removed += db
        return True

    def _quarantine(self, name: str, *, db: bool = True) -> bool:
        """Rename ``name`` (whatever it is; a link is not followed) out of every ``*.db``
        glob, kept for a look."""
        try:
            os.replace(name, name + CORRUPT_SUFFIX, src_dir_fd=self.dir, dst_dir_fd=self.dir)
        except FileNotFoundError:
            return True
        except OSError:
            self.errors += 1
            return False
        self.quarantined += 1
        self.db_delta -= db
        return True

    def _clean_temps(self, temps: list[str]) -> None:
        """Remove registration temp files of processes killed mid-registration."""
        now = time.time()
        for name in temps:
            try:
                st = os.stat(name, dir_fd=self.dir, follow_symlinks=False)
                if not stat.S_ISREG(st.st_mode):
                    if stat.S_ISLNK(st.st_mode):
                        os.unlink(name, dir_fd=self.dir)
                    continue
                if now - st.st_mtime < STALE_TMP_S:
                    continue
                fd = os.open(name, LOCK_FLAGS, dir_fd=self.dir)
                try:
                    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    if self._still(name, os.fstat(fd)):
                        os.unlink(name, dir_fd=self.dir)
                finally:
                    os.close(fd)
            except OSError:
                continue
