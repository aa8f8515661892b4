"""Run directories of ``neurofit rnn fit`` and ``neurofit rnn currents``.

``RUN/`` holds ``config.yaml`` (resolved), ``model.pt`` (the fitted model), ``fit.npz`` (data and model rates,
exogenous inputs), ``metrics.json`` and ``fit_curve.png``; ``rnn currents`` adds ``currents.zarr``,
``rasters.png``, ``current_grid.png`` and ``block_norms.png``, and with ``--necessity`` the test's verdicts in
``currents.zarr``, its result in ``metrics.json`` (``necessity``) and ``necessity.png``.
Every file is written to a temporary name and renamed into place, so an interrupted run never leaves a
half-written file.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from neurofit.data.store import write_zarr
from neurofit.errors import DataError
from neurofit.io import atomic_write_text, save_npz, write_json
from neurofit.rnn import plots
from neurofit.rnn.config import FitConfig, load_config
from neurofit.rnn.currents import decompose
from neurofit.rnn.data import load_rnn_data
from neurofit.rnn.fit import fit
from neurofit.rnn.model import exogenous_names, load_model, save_model, to_numpy
from neurofit.rnn.necessity import as_dataset, necessity
from neurofit.rundir import RunDir


def fit_run(data_path: str | os.PathLike, out: str | os.PathLike, cfg: FitConfig, device: str = "cpu",
            log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Load ``data_path``, fit with ``cfg`` and write the run directory ``out``; returns the metrics.

    Metrics: ``pVar`` of a free run over every trial with the training noise (CURBD's final pVar),
    ``pVar_fresh_noise`` with noise never seen in training, ``chi2`` (per run/evaluation), ``pVar_per_run``,
    ``n_units``, ``n_regions``, ``n_trials``, ``n_samples``, ``wall_s`` (fit only), ``method``, ``device``,
    ``variance_share`` {target region: {source: share}} and the data normalisation.
    """
    run = RunDir(out)
    replace_early = run.check_new(resumable=False)  # a finished run is refused before anything is fitted
    out = run.path
    data = load_rnn_data(data_path, cfg.data.normalize, cfg.data.recording)
    outcome = fit(data, cfg, device, log)
    model, fd = outcome.model, outcome.data
    rates, final_pvar, final_chi2 = outcome.evaluate(model.cfg.seed)
    fresh_pvar = outcome.evaluate(model.cfg.seed + 1000)[1]
    share = decompose(model, rates, fd.exog)["variance_share"]
    run.start(replace_early)
    # The config alone, so it loads back as --config; the data and device are recorded in metrics.json.
    atomic_write_text(out / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    save_model(model, out / "model.pt", {"normalization": data.normalization.to_dict(), "source": data.source,
                                         "unit_ids": data.unit_ids.tolist()})
    save_npz(out / "fit.npz", model_rates=to_numpy(rates), data_rates=to_numpy(fd.rates),
                exog=to_numpy(fd.exog) if fd.exog is not None else np.zeros((data.n_trials, data.n_samples, 0)),
                exog_names=np.asarray(exogenous_names(model), dtype=str))
    metrics = {
        "method": cfg.method, "pVar": final_pvar, "pVar_fresh_noise": fresh_pvar, "chi2": outcome.history.chi2,
        "chi2_final": final_chi2, "pVar_per_run": outcome.history.pvar, "n_units": data.n_units,
        "n_regions": len(data.region_names), "regions": list(data.region_names), "n_trials": data.n_trials,
        "n_samples": data.n_samples, "wall_s": outcome.wall_s, "device": device, "data_path": str(data_path),
        "time_to_pvar_0.99_s": outcome.history.time_to(0.99),
        "variance_share": {str(t): {str(s): float(share.sel(target_region=t, source=s))
                                    for s in share["source"].values} for t in share["target_region"].values},
        "normalization": data.normalization.kind, "history": outcome.history.to_dict(),
    }
    write_json(out / "metrics.json", metrics, default=None)
    plots.plot_fit_curve(outcome.history, out / "fit_curve.png")
    return metrics


def currents_run(run: str | os.PathLike, necessity_options: dict[str, Any] | None = None, device: str = "cpu",
                 log: Callable[[str], None] | None = None) -> Path:
    """Decompose the fitted model's currents of run directory ``run`` into ``RUN/currents.zarr`` and draw the
    raster, current-grid and block-norm figures. With ``necessity_options`` (the keyword options of
    ``neurofit.rnn.necessity.necessity``: inits, runs, holdout, holdout_trials, window, alpha, units) the
    necessity test runs first on the data the run was fitted to, with its config; its per-block verdicts and
    spreads join ``currents.zarr``, the full result goes to ``metrics.json`` under ``necessity`` and its grid to
    ``necessity.png``. Nothing is written before everything is computed. Returns the zarr path."""
    run = Path(run)
    for name in ("model.pt", "fit.npz", "config.yaml", "metrics.json"):
        if not (run / name).exists():
            raise DataError(f"{run}: no {name} (is this a finished 'neurofit rnn fit' run directory?)")
    try:
        model, _ = load_model(run / "model.pt")
    except Exception as err:  # a damaged file surfaces as many exception types (EOF, unpickling, zip, keys)
        raise DataError(f"{run / 'model.pt'}: damaged model ({type(err).__name__}: {err})") from None
    try:
        with np.load(run / "fit.npz") as saved:
            rates, data_rates, exog = saved["model_rates"], saved["data_rates"], saved["exog"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"{run / 'fit.npz'}: damaged ({type(err).__name__}: {err})") from None
    try:
        metrics = json.loads((run / "metrics.json").read_text())
        data_path = metrics["data_path"]
    except (ValueError, KeyError, TypeError) as err:
        raise DataError(f"{run / 'metrics.json'}: damaged ({type(err).__name__}: {err})") from None
    exog_t = torch.as_tensor(exog) if exog.shape[-1] else None
    ds = decompose(model, torch.as_tensor(rates), exog_t)
    if necessity_options is not None:
        cfg = load_config(run / "config.yaml")
        data = load_rnn_data(data_path, cfg.data.normalize, cfg.data.recording)
        result = necessity(data, cfg, device=device, log=log, **necessity_options)
        ds = ds.merge(as_dataset(result, list(model.spec["region_names"])), combine_attrs="no_conflicts")
        metrics["necessity"] = result
    path = write_zarr(ds, run / "currents.zarr")
    regions = np.asarray(model.spec["regions"])
    plots.plot_rasters(data_rates, rates, regions, model.spec["region_names"], model.dt, run / "rasters.png")
    plots.plot_current_grid(ds, run / "current_grid.png")
    plots.plot_block_norms(ds, run / "block_norms.png")
    if necessity_options is not None:
        plots.plot_necessity(ds, run / "necessity.png")
        write_json(run / "metrics.json", metrics, default=None)
    return path
