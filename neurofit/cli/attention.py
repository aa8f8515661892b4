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
    parser.set_defaults(handler=_attention)


def _attention(args: argparse.Namespace) -> int:
    from pathlib import Path

    from neurofit.analysis.attention import write_interaction_outputs
    from neurofit.analysis.interaction_maps import extract_maps
    from neurofit.errors import DataError
    from neurofit.run import load_run

    run = load_run(args.run)
    data = Path(args.data) if args.data else run.data_path
    names = [args.recording] if args.recording else list(run.specs)
    unknown = [n for n in names if n not in run.specs]
    if unknown:
        raise DataError(f"{args.run}: no recording(s) {unknown} (has {list(run.specs)})")
    out = Path(args.run) / "attention"
    for name in names:
        maps = extract_maps(run, data, name, args.tier, args.max_trials)
        entry = write_interaction_outputs(
            out, name, maps.unit_id, maps.positions_um, attention=maps.attention,
            attention_per_head=maps.attention_per_head, pools=maps.pools, truth=maps.truth_coupling,
            truth_pools=maps.truth_pools, n_permutations=args.permutations)
        brief = {k: entry.get(k) for k in ("spearman_rho", "p_value", "truth_correlation") if k in entry}
        if "pools_vs_distance" in entry:
            brief["pools"] = {k: entry["pools_vs_distance"].get(k) for k in ("spearman_rho", "p_value",
                                                                             "truth_correlation")}
        print(f"{name}: {json.dumps(brief, default=float)}")
    print(f"wrote {out}")
    return 0
