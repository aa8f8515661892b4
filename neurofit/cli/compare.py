"""``neurofit compare`` (a report over fitted runs) and ``neurofit sweep`` (fit configs x seeds, then compare)."""

from __future__ import annotations

import argparse


def _add_report_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level after Holm correction")
    parser.add_argument("--clusters", type=int, default=5, help="k of the k-means embedding clusters")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``compare`` and ``sweep``."""
    cmp = sub.add_parser("compare", help="compare fitted runs: tables, paired tests, figure, HTML report")
    cmp.add_argument("runs", nargs="+", metavar="RUN", help="run directories (grouped by config name)")
    cmp.add_argument("--out", required=True, help="report directory (table.md, table.csv, comparison.png, "
                                                  "report.html)")
    cmp.add_argument("--no-evaluate", action="store_true",
                     help="fail on runs without metrics.json instead of evaluating them")
    _add_report_options(cmp)
    cmp.set_defaults(handler=_compare)

    sw = sub.add_parser("sweep", help="fit and evaluate every config x seed on one store, then compare")
    sw.add_argument("--data", required=True, help="zarr store; every run uses its splits")
    sw.add_argument("--configs", nargs="+", required=True, metavar="CONFIG", help="experiment configs")
    sw.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], metavar="SEED")
    sw.add_argument("--out", required=True, help="sweep directory: runs/NAME/seedS and the report")
    sw.add_argument("--max-epochs", type=int, default=None, help="override training.max_epochs")
    sw.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config value in every run (repeatable)")
    sw.add_argument("--nondeterministic", action="store_true",
                    help="do not force training.deterministic (faster on some GPUs; numbers may then vary)")
    _add_report_options(sw)
    sw.set_defaults(handler=_sweep)


def _print_summary(ds, out: str) -> None:
    from neurofit.analysis.report import overall_table

    title, header, rows = overall_table(ds)
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    print(title)
    for row in [header] + rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)))
    print(f"wrote {out}/report.html")


def _compare(args: argparse.Namespace) -> int:
    from neurofit.api import compare

    ds = compare(args.runs, args.out, evaluate_missing=not args.no_evaluate, alpha=args.alpha,
                 clusters=args.clusters)
    _print_summary(ds, args.out)
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from neurofit.api import sweep

    ds = sweep(args.data, args.configs, args.seeds, args.out, max_epochs=args.max_epochs,
               overrides=args.overrides, deterministic=not args.nondeterministic, alpha=args.alpha,
               clusters=args.clusters)
    _print_summary(ds, args.out)
    return 0
