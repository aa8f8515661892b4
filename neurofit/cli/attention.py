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
    parser.add_argument("--tier", default="test", help="trials to average the maps over")
    parser.add_argument("--max-trials", type=int, default=256)
    parser.add_argument("--permutations", type=int, default=1000, help="permutations for the p-values")
    parser.add_argument("--no-untrained", dest="untrained", action="store_false",
                        help="skip the reference maps of the model before training (reported as 'untrained')")
    parser.set_defaults(handler=_attention)


def _attention(args: argparse.Namespace) -> int:
    from pathlib import Path

    from neurofit.analysis.attention import MAP_KINDS, write_interaction_outputs
    from neurofit.analysis.interaction_maps import extract_maps, untrained_run
    from neurofit.errors import DataError
    from neurofit.run import load_run

    run = load_run(args.run)
    data = Path(args.data) if args.data else run.data_path
    names = [args.recording] if args.recording else list(run.specs)
    unknown = [n for n in names if n not in run.specs]
    if unknown:
        raise DataError(f"{args.run}: no recording(s) {unknown} (has {list(run.specs)})")
    # Every recording is mapped (and checked) before anything is written, so bad input leaves no half output.
    maps = {name: extract_maps(run, data, name, args.tier, args.max_trials) for name in names}
    before = untrained_run(run) if args.untrained else None
    starts = {name: None if before is None else extract_maps(before, data, name, args.tier, args.max_trials,
                                                              signal=False) for name in names}
    out = Path(args.run) / "attention"
    for name in names:
        m, start = maps[name], starts[name]
        untrained = {f"untrained_{kind}": None if start is None else getattr(start, kind)
                     for kind in ("attention", "pools", "coupling", "context_attention", "context_coupling")}
        entry = write_interaction_outputs(
            out, name, m.unit_id, m.positions_um, attention=m.attention, attention_per_head=m.attention_per_head,
            pools=m.pools, coupling=m.coupling, truth=m.truth_coupling, truth_pools=m.truth_pools,
            n_permutations=args.permutations, context_attention=m.context_attention,
            context_coupling=m.context_coupling, signal_correlation=m.signal_correlation, planted=m.planted,
            **untrained)
        # The attention map's keys are the entry's top level; the other maps' are under their own key.
        summaries = {label: entry if key is None else entry[key] for key, label, _, _ in MAP_KINDS.values()
                     if (m.attention is not None if key is None else key in entry)}
        brief = {label: _brief(summary) for label, summary in summaries.items()}
        print(f"{name}: {json.dumps(brief, default=float)}")
        for label, summary in summaries.items():
            print(f"{name} {label}: {summary['verdict']}")
    print(f"wrote {out}")
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
