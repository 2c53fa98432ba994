"""Every metric, label, span, attribute, event and log-field name otel-agents emits: the
public contract.

Dashboards, alert rules and users' own queries depend on these strings: one changes only
together with everything that uses it (``tests/test_names.py`` freezes them). :data:`METRICS`
declares every metric once: its type, labels with their bounds, series budget, buckets, unit
and help text; the Prometheus families, the OpenTelemetry instruments, the dashboards'
catalogue and ``docs/reference.md`` are all derived from it.

One module of names, in three files by kind (metrics, spans and their attributes, log
records): import them from here, ``otel_agents.names``, never from the files.
"""

from ._logs import *  # noqa: F403
from ._metrics import *  # noqa: F403
from ._spans import *  # noqa: F403
