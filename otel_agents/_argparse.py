"""The commands' argument parser: a bad option is one line and exit status 2, like a bad value.

argparse prints its usage and then the error; every ``otel-agents`` command prints one line,
``<prog>: <what is wrong>``, whether the bad value came from an option or the environment.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn


class OneLineParser(argparse.ArgumentParser):
    """:class:`argparse.ArgumentParser` whose errors are one line on stderr, exit status 2
    (its subcommands' parsers are of the same class)."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {' '.join(message.split())}", file=sys.stderr)
        sys.exit(2)
