"""``neurofit rnn fit|currents``: data-constrained multi-region RNNs (CURBD)."""

from __future__ import annotations

import argparse
import json
from typing import Any


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
    fit.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                     help="override a config entry, e.g. --set rls.P0_inter=0.001 (repeatable)")
    fit.add_argument("--threads", type=int,
                     help="CPU threads for torch; 1 is fastest for a few hundred units on a shared machine")
    fit.add_argument("--quiet", action="store_true", help="no progress lines")
    fit.set_defaults(handler=_run_fit)

    select = commands.add_parser("select", help="choose one config entry (a prior's strength, the number of "
                                                "inferred inputs) by held-out pVar")
    select.add_argument("--data", required=True, help="DATA.zarr or DATA.npz, as for 'rnn fit'")
    select.add_argument("--out", required=True, help="JSON file to write")
    select.add_argument("--config", help="YAML config (defaults otherwise)")
    select.add_argument("--key", required=True,
                        help="dotted config entry, e.g. rls.P0_inter or model.inferred_inputs")
    select.add_argument("--values", required=True, nargs="+",
                        help="candidate values (YAML), simplest first: the first near the best is chosen")
    select.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="override a config entry (repeatable)")
    _add_holdout_options(select, "", inits=(3, "random initialisations per value (>= 2)"),
                         window=(50, "held-out free runs restart every WINDOW samples"))
    select.add_argument("--threshold", type=float, default=2.0,
                        help="tolerance below the best mean held-out pVar, in units of its spread")
    select.set_defaults(handler=_run_select)

    currents = commands.add_parser("currents", help="write RUN/currents.zarr and the current figures")
    currents.add_argument("run", help="run directory of 'neurofit rnn fit'")
    currents.add_argument("--necessity", action="store_true",
                          help="also test each inter-region block: refit with it masked to zero (warm start, same "
                               "budget) from several initialisations and compare held-out pVar on the units it "
                               "drives most, paired by initialisation; verdicts and "
                               "spreads go to currents.zarr, metrics.json and necessity.png")
    _add_holdout_options(currents, "necessity: ",
                         inits=(8, "random initialisations (different initial J), at least 2"),
                         window=(10, "held-out free runs restart from the data every WINDOW samples (0: never)"))
    currents.add_argument("--refit-runs", type=int, default=5, help="necessity: training runs of each refit")
    currents.add_argument("--alpha", type=float, default=0.05,
                          help="necessity: a block is required when a one-sided paired t-test of its held-out "
                               "pVar losses over the initialisations rejects at ALPHA (Bonferroni over blocks)")
    currents.add_argument("--units", type=float, default=0.2,
                          help="necessity: fraction of the target's units the loss is measured on (those the fits "
                               "drive most from the source)")
    currents.set_defaults(handler=_run_currents)


def _add_holdout_options(parser: argparse.ArgumentParser, prefix: str, inits: tuple[int, str],
                         window: tuple[int, str]) -> None:
    """The options of the held-out comparisons of ``rnn select`` and ``rnn currents --necessity``:
    initialisations and the restart window ((default, help) each), the held-out part, device, threads and
    progress; ``prefix`` starts every help text."""
    parser.add_argument("--inits", type=int, default=inits[0], help=prefix + inits[1])
    parser.add_argument("--holdout", type=float, default=0.2, help=prefix + "fraction of each trial held out")
    parser.add_argument("--holdout-trials", type=int, default=0,
                        help=prefix + "hold out the last HOLDOUT_TRIALS trials whole instead (0: the end of every "
                                      "trial)")
    parser.add_argument("--window", type=int, default=window[0], help=prefix + window[1])
    parser.add_argument("--device", default="cpu", help=prefix + "cpu or cuda")
    parser.add_argument("--threads", type=int, help="CPU threads for torch")
    parser.add_argument("--quiet", action="store_true", help=prefix + "no progress lines")


def set_options(texts: list[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` texts as ``{"section.key": value}`` (``ConfigError`` for a text without ``=``)."""
    from neurofit.config.files import parse_override

    return {".".join(keys): value for keys, value in map(parse_override, texts)}


def _run_fit(args: argparse.Namespace) -> int:
    from neurofit.cli.fit import set_threads
    from neurofit.rnn.config import load_config
    from neurofit.rnn.run import fit_run

    options = {key: value for key, value in (("method", args.method), ("data.recording", args.recording),
                                              ("model.seed", args.seed)) if value is not None}
    cfg = load_config(args.config, {**set_options(args.overrides), **options})
    set_threads(args.threads)
    metrics = fit_run(args.data, args.out, cfg, args.device, None if args.quiet else print)
    summary = {k: metrics[k] for k in ("method", "pVar", "pVar_fresh_noise", "n_units", "n_regions", "wall_s")}
    print(json.dumps(summary))
    return 0


def _run_select(args: argparse.Namespace) -> int:
    from neurofit.cli.fit import set_threads
    from neurofit.config.files import load_yaml
    from neurofit.io import write_json
    from neurofit.rnn.config import load_config
    from neurofit.rnn.data import load_rnn_data
    from neurofit.rnn.necessity import check_options
    from neurofit.rnn.select import check_threshold, select, with_value

    cfg = load_config(args.config, args.overrides)
    values = [load_yaml(v) for v in args.values]
    for value in values:  # a bad key or value is refused before anything is fitted
        with_value(cfg, args.key, value)
    check_options(args.inits, 1, args.holdout, args.window, args.holdout_trials)
    check_threshold(args.threshold)
    set_threads(args.threads)
    data = load_rnn_data(args.data, cfg.data.normalize, cfg.data.recording)
    result = select(data, cfg, args.key, values, inits=args.inits, holdout=args.holdout,
                    holdout_trials=args.holdout_trials, window=args.window,
                    threshold=args.threshold, device=args.device, log=None if args.quiet else print)
    write_json(args.out, {"data_path": str(args.data), **result})
    print(json.dumps({k: result[k] for k in ("key", "values", "pvar_mean", "pvar_spread", "best", "chosen")}))
    return 0


def _run_currents(args: argparse.Namespace) -> int:
    from neurofit.cli.fit import set_threads
    from neurofit.rnn.necessity import check_options
    from neurofit.rnn.run import currents_run

    options = None
    if args.necessity:  # checked before anything is computed or written
        options = {"inits": args.inits, "runs": args.refit_runs, "holdout": args.holdout,
                   "holdout_trials": args.holdout_trials, "window": args.window, "alpha": args.alpha,
                   "units": args.units}
        check_options(**options)
    set_threads(args.threads)
    print(f"wrote {currents_run(args.run, options, args.device, None if args.quiet else print)}")
    return 0
