"""The ``otel-agents`` command: ``otel-agents demo`` and ``otel-agents sidecar``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._argparse import OneLineParser

DEMO_HELP = (
    "run real AgentSessions against a local fake LiveKit Inference gateway with scripted "
    "faults; serve /metrics, write OTLP-JSON traces, print what was recorded"
)
SIDECAR_HELP = "serve /metrics for every process writing to PROMETHEUS_MULTIPROC_DIR, and /healthz"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = OneLineParser(
        prog="otel-agents",
        description="Observability for LiveKit Agents: the demo and the metrics sidecar.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen: argparse.ArgumentParser = parser
    # only the chosen command's module is imported: the demo pulls in livekit (seconds), the
    # sidecar must start fast
    if argv[:1] == ["demo"]:
        from .demo import cli as demo

        chosen = commands.add_parser("demo", help=DEMO_HELP, description=demo.__doc__)
        demo.add_arguments(chosen)
    else:
        commands.add_parser("demo", help=DEMO_HELP)
    if argv[:1] == ["sidecar"]:
        from ._sidecar import cli as sidecar

        chosen = commands.add_parser("sidecar", help=SIDECAR_HELP, description=sidecar.__doc__)
        sidecar.add_arguments(chosen)
    else:
        commands.add_parser("sidecar", help=SIDECAR_HELP)
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # named by the command they were given to: "otel-agents demo: ..."
        chosen.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command == "demo":
        return demo.run(args)
    return sidecar.run(args)


if __name__ == "__main__":
    sys.exit(main())
