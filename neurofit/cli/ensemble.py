"""``neurofit ensemble``: average the predictions of runs fitted to the same data into a new run directory."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``ensemble``."""
    parser = sub.add_parser("ensemble", help="a run that averages the predictions of runs fitted to the same data")
    parser.add_argument("runs", nargs="+", metavar="RUN", help="fitted run directories (same store and neurons)")
    parser.add_argument("--out", required=True, help="run directory of the ensemble to create")
    parser.add_argument("--name", default="ensemble", help="its name in comparisons (default: ensemble)")
    parser.add_argument("--evaluate", action="store_true", help="evaluate it on the test tier right away")
    parser.set_defaults(handler=_ensemble)


def _ensemble(args: argparse.Namespace) -> int:
    from neurofit.cli.fit import print_evaluation
    from neurofit.ensemble import make_ensemble

    out = make_ensemble(args.runs, args.out, args.name)
    print(f"wrote {out} ({len(args.runs)} members)")
    if args.evaluate:
        return print_evaluation(str(out), None, "test", figures=True)
    return 0
