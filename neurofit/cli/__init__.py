"""The ``neurofit`` command line. Each command group lives in its own module with a ``register(subparsers)``
function; heavy imports happen inside the command handlers so ``--help`` stays fast."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback

# libgomp's default spin-wait (idle threads busy-poll before sleeping) makes a 2-thread fit 10-50x slower
# whenever another process holds a core (measured 5-35 trials/s against 277 on a quiet 2-core machine); a
# short spin keeps the quiet-machine speed (320) and degrades gracefully under load (90). It must be set
# before torch loads libgomp, which no command does before this module runs.
os.environ.setdefault("GOMP_SPINCOUNT", "1000")

from neurofit.errors import NeurofitError

#: Modules under neurofit.cli that register commands, in the order ``--help`` lists them.
COMMAND_MODULES = ("simulate", "convert", "export", "fit", "ensemble", "attention", "insilico", "compare", "rnn")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every command registered."""
    parser = argparse.ArgumentParser(
        prog="neurofit", description="Fit predictive models to recorded neural activity.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        importlib.import_module(f"neurofit.cli.{module}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command. Expected failures (bad input, files that cannot be read or written) print one line
    ``neurofit: error: <file or recording>: <problem>`` and exit with status 2; an unexpected exception
    prints its traceback and a request for a bug report, status 1."""
    _configure_runtime()
    args = build_parser().parse_args(argv)
    try:
        result = args.handler(args)
    except NeurofitError as err:
        return _fail(str(err))
    except OSError as err:  # a file that cannot be read or written: name it
        where = err.filename or "neurofit"
        return _fail(f"{where}: {err.strerror or err}")
    except KeyboardInterrupt:
        print("neurofit: interrupted", file=sys.stderr)
        return 130
    except Exception:  # a bug, not bad input
        traceback.print_exc()
        print("neurofit: internal error: this is a bug; please report it with the command line and the "
              "traceback above", file=sys.stderr)
        return 1
    return int(result or 0)


def _fail(message: str) -> int:
    print(f"neurofit: error: {' '.join(message.split())}", file=sys.stderr)
    return 2


def _configure_runtime() -> None:
    """Process-wide settings the library leaves alone (it may run in a notebook): a non-interactive plot
    backend for figure files, and progress messages of neurofit's loggers on stderr."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    logger = logging.getLogger("neurofit")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
