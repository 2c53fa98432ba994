"""Capture: the hooks inside livekit that turn its events into records (failed attempts,
sessions, unhandled task errors). Nothing here exports anything: records go to the recorder
(``otel_agents._export``)."""
