"""What otel-agents does when livekit's ``AgentServer`` runs (``python agent.py start|dev``).

Two things, both from a wrap of ``AgentServer.run`` (the agent module, and so ``init()``, runs
before it):

* **Files.** ``run()`` creates ``PROMETHEUS_MULTIPROC_DIR`` and deletes every file in it, the
  ones ``init()`` just made included. On the server's ``worker_started`` (emitted after that
  clean-up) this process's metric files and liveness lock are put back
  (:func:`otel_agents._multiproc.process_files.restore`).
* **Preload.** Every job process imports the agent module again, and so otel-agents and what
  ``init()`` needs (tens of milliseconds before the job can join its room). livekit's
  forkserver imports the packages of registered plugins once, and its job processes inherit
  them: registering otel-agents as a livekit ``Plugin`` whose package is
  ``otel_agents._preload`` makes those imports free in every job process.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import Any, Final

from .. import names as n
from .._multiproc import process_files

logger = logging.getLogger(n.LOGGER_NAME)

PRELOAD_MODULE: Final = "otel_agents._preload"


def wrap_run(
    original: Callable[..., Any], on_error: Callable[[n.Where], None]
) -> Callable[..., Any]:
    """``AgentServer.run`` that preloads otel-agents in job processes and restores this
    process's files once the server has emptied the multiprocess directory."""

    @functools.wraps(original)
    async def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            register_preload()
            # emitted after run() has emptied the directory; restore() never raises
            self.once("worker_started", process_files.restore)
        except Exception:
            on_error("instrument")
        return await original(self, *args, **kwargs)

    return run


def register_preload() -> None:
    """Register otel-agents as a livekit plugin (once), so that the forkserver preloads it.

    livekit only accepts plugins from the main thread; elsewhere nothing is preloaded."""
    from livekit.agents import Plugin

    if any(p.package == PRELOAD_MODULE for p in Plugin.registered_plugins):
        return
    if threading.current_thread() is not threading.main_thread():
        return

    from .._setup import _version

    Plugin.register_plugin(Plugin(title="otel-agents", version=_version(), package=PRELOAD_MODULE))
