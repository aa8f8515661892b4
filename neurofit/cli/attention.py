"""``neurofit attention RUN``: learned attention maps and normalisation pools against cortical distance."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``attention``."""
    parser = sub.add_parser("attention", help="attention maps / normalisation pools vs cortical distance; "
                                              "writes RUN/attention/")
    parser.add_argument("run", help="run directory of a model with interaction layers")
    parser.add_argument("--recording", default=None, help="one recording (default: all)")
    parser.add_argument("--data", default=None, help="store (default: the one the run was fit on)")
    parser.add_argument("--tier", default="test",
                        help="trials whose predictions give the signal-correlation baseline")
    parser.add_argument("--permutations", type=int, default=1000, help="permutations for the p-values")
    parser.add_argument("--no-untrained", dest="untrained", action="store_false",
                        help="skip the reference maps of the model before training (reported as 'untrained')")
    parser.set_defaults(handler=_attention)


def _attention(args: argparse.Namespace) -> int:
    from pathlib import Path

    from neurofit.analysis.attention import MAP_KINDS, map_summaries
    from neurofit.analysis.interaction_maps import map_run

    entries = map_run(args.run, data=args.data, recordings=[args.recording] if args.recording else None,
                      tier=args.tier, n_permutations=args.permutations,
                      untrained=args.untrained)
    for name, entry in entries.items():
        summaries = {MAP_KINDS[kind][1]: summary for kind, summary in map_summaries(entry).items()}
        brief = {label: _brief(summary) for label, summary in summaries.items()}
        print(f"{name}: {json.dumps(brief, default=float)}")
        for label, summary in summaries.items():
            print(f"{name} {label}: {summary['verdict']}")
    print(f"wrote {Path(args.run) / 'attention'}")
    return 0


def _brief(summary: dict) -> dict:
    """The headline numbers of one map's JSON entry for the terminal: distance rho and p, the primary truth
    correlation (rho, p, its reference), and the untrained model's distance rho."""
    brief = {k: summary[k] for k in ("spearman_rho", "p_value") if k in summary}
    if "truth_correlation" in summary:
        brief["truth_correlation"] = {k: summary["truth_correlation"][k] for k in ("rho", "p_value", "reference")}
    if "untrained" in summary:
        brief["untrained_spearman_rho"] = summary["untrained"]["spearman_rho"]
    return brief
