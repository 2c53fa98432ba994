"""The one piece of process-wide state: what ``init()`` set up, read by every hook.

``current`` is ``None`` before ``init()`` and after ``shutdown()``; hooks that find it ``None``
do nothing (their handlers stay attached to livekit's objects, and cost one attribute read).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._config import Settings
    from ._export.recorder import Recorder


@dataclass
class Runtime:
    settings: Settings
    recorder: Recorder
    #: the tracer provider given to init() or built by it (handed to livekit), if any
    tracer_provider: Any = None
    #: the provider our own spans go to: that one, or the host's global SDK provider
    traced_provider: Any = None
    meter_provider: Any = None
    #: providers init() built, shut down by shutdown()
    owned: list[Any] = field(default_factory=list)
    #: the /metrics server init() started (metrics_port), if any
    server: Any = None


current: Runtime | None = None
