"""The sidecar: one ``/metrics`` for every process writing to ``PROMETHEUS_MULTIPROC_DIR``.

* :mod:`.dbfile`: prometheus_client's metric file format, and how files of each kind merge;
* :mod:`.reap`: compacting the files of dead processes (told apart by their liveness locks,
  :mod:`otel_agents._multiproc.liveness`);
* :mod:`.collect`: reading the directory's files and merging them as prometheus_client does;
* :mod:`.render`: reap, then render the directory plus the sidecar's own metrics;
* :mod:`.server`: the ``/metrics`` and ``/healthz`` server (the demo serves its registry with it);
* :mod:`.connections`: the server's connections, under a cap and timeouts;
* :mod:`.cli`: ``otel-agents sidecar``.

The sidecar imports the agent side (the lock file names), never the reverse: an agent process
imports nothing from here. This package imports nothing itself.
"""
