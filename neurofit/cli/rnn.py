"""``neurofit rnn fit|currents``: data-constrained multi-region RNNs (CURBD)."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``rnn fit`` and ``rnn currents``."""
    parser = sub.add_parser("rnn", help="fit data-constrained multi-region RNNs and decompose their currents")
    commands = parser.add_subparsers(dest="rnn_command", required=True, metavar="COMMAND")

    fit = commands.add_parser("fit", help="fit an RNN whose units are the recorded neurons")
    fit.add_argument("--data", required=True, help="DATA.zarr (Recording with a 'region' coordinate) or DATA.npz")
    fit.add_argument("--out", required=True, help="run directory to write")
    fit.add_argument("--method", choices=("rls", "bptt", "ridge"), help="fitting method (overrides the config)")
    fit.add_argument("--config", help="YAML config, e.g. configs/rnn_curbd.yaml (defaults otherwise)")
    fit.add_argument("--device", default="cpu", help="cpu or cuda")
    fit.add_argument("--recording", help="recording inside a store (default: the first)")
    fit.add_argument("--seed", type=int, help="random seed (overrides model.seed)")
    fit.add_argument("--threads", type=int,
                     help="CPU threads for torch; 1 is fastest for a few hundred units on a shared machine")
    fit.add_argument("--quiet", action="store_true", help="no progress lines")
    fit.set_defaults(handler=_run_fit)

    currents = commands.add_parser("currents", help="write RUN/currents.zarr and the current figures")
    currents.add_argument("run", help="run directory of 'neurofit rnn fit'")
    currents.add_argument("--necessity", action="store_true",
                          help="also test each inter-region block: refit with it masked to zero (warm start) and "
                               "compare held-out pVar over several noise seeds; writes RUN/necessity.json")
    currents.add_argument("--inits", type=int, default=5, help="necessity: noise seeds per condition (>= 2)")
    currents.add_argument("--refit-runs", type=int, default=5, help="necessity: training runs of each refit")
    currents.add_argument("--holdout", type=float, default=0.2, help="necessity: fraction of each trial held out")
    currents.add_argument("--window", type=int, default=50,
                          help="necessity: held-out free runs restart from the data every WINDOW samples "
                               "(0: never)")
    currents.add_argument("--device", default="cpu", help="necessity: cpu or cuda")
    currents.add_argument("--quiet", action="store_true", help="necessity: no progress lines")
    currents.set_defaults(handler=_run_currents)


def _run_fit(args: argparse.Namespace) -> int:
    from neurofit.cli.fit import set_threads
    from neurofit.rnn.config import load_config
    from neurofit.rnn.run import fit_run

    overrides = {key: value for key, value in (("method", args.method), ("data.recording", args.recording),
                                                ("model.seed", args.seed)) if value is not None}
    cfg = load_config(args.config, overrides)
    set_threads(args.threads)
    metrics = fit_run(args.data, args.out, cfg, args.device, None if args.quiet else print)
    summary = {k: metrics[k] for k in ("method", "pVar", "pVar_fresh_noise", "n_units", "n_regions", "wall_s")}
    print(json.dumps(summary))
    return 0


def _run_currents(args: argparse.Namespace) -> int:
    from neurofit.rnn.necessity import check_options
    from neurofit.rnn.run import currents_run, necessity_run

    if args.necessity:  # before anything is written
        check_options(args.inits, args.refit_runs, args.holdout, args.window)
    print(f"wrote {currents_run(args.run)}")
    if args.necessity:
        path = necessity_run(args.run, inits=args.inits, runs=args.refit_runs, holdout=args.holdout,
                             window=args.window, device=args.device, log=None if args.quiet else print)
        print(f"wrote {path}")
    return 0
