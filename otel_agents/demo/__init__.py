"""``otel-agents demo``: real ``AgentSession``s against a local fake LiveKit Inference gateway.

* :mod:`.faults`: the fault vocabulary (what a request meets), and the gateway's error bodies;
* :mod:`.gateway`: the fake gateway, an aiohttp server playing those faults (it re-exports
  :mod:`.faults`); :mod:`.routes`: what it answers to each request; :mod:`.wire`: the messages
  it sends;
* :mod:`.scenarios`: the demo's sessions; :mod:`.summary`: what it prints at the end;
  :mod:`.progress`: its progress line; :mod:`.tracefile`: spans to an OTLP JSON file;
  :mod:`.cli`: the command, and :mod:`.options`: its options, every value checked up front.
"""
