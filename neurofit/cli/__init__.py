"""The ``neurofit`` command line. Each command group lives in its own module with a ``register(subparsers)``
function; heavy imports happen inside the command handlers so ``--help`` stays fast."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# libgomp's default spin-wait (idle threads busy-poll before sleeping) makes a 2-thread fit 10-50x slower
# whenever another process holds a core (measured 5-35 trials/s against 277 on a quiet 2-core machine); a
# short spin keeps the quiet-machine speed (320) and degrades gracefully under load (90). It must be set
# before torch loads libgomp, which no command does before this module runs.
os.environ.setdefault("GOMP_SPINCOUNT", "1000")

from neurofit.errors import NeurofitError

#: Modules under neurofit.cli that register commands, in the order ``--help`` lists them.
COMMAND_MODULES = ("simulate", "convert", "export", "fit", "attention", "compare", "rnn")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every command registered."""
    parser = argparse.ArgumentParser(
        prog="neurofit", description="Fit predictive models to recorded neural activity.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        importlib.import_module(f"neurofit.cli.{module}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; user errors print one line ``neurofit: error: ...`` and exit with status 2."""
    args = build_parser().parse_args(argv)
    try:
        result = args.handler(args)
    except NeurofitError as err:
        print(f"neurofit: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("neurofit: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)
