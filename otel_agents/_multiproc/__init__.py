"""What an agent process does in ``PROMETHEUS_MULTIPROC_DIR``, and nothing more.

livekit runs every job in its own process, and each process writes prometheus_client's metric
files (``counter_<pid>.db``, ``gauge_livesum_<pid>.db``...) into the multiprocess directory.

* :mod:`.liveness`: each process holds a lock on ``otel_agents_alive_<pid>.lock`` for its whole
  life, so that the sidecar can tell a dead process from a live one.
* :mod:`.process_files`: this process's files, made before the first metric needs them and made
  again when livekit's worker empties the directory.

Reading, compacting and serving the directory is the sidecar's (``otel_agents._sidecar``): an
agent process never imports it. This package imports nothing itself.
"""
