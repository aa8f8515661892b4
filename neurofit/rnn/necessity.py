"""Necessity test of inter-region currents: does the data need a block of J (the projection from one region
into another), or does a model without it predict held-out activity as well?

The last ``holdout`` of every trial is held out. For each of ``inits`` random initialisations (model seeds:
a different initial J, and a different white-noise input), a model is fitted to the rest with the run's
configuration (recursive least squares). From each fit (warm start, P reset to its prior) the test trains
``runs`` more runs on the same data: once in full, and once per ordered region pair with that block of J set
to zero and held there (a mask), so the full and the masked model get the same budget. Each refit runs
freely over the held-out part, restarted from the data's state every ``window`` samples (a chaotic
network's single long free run diverges from any model of it, which would make the comparison noise). The
loss of a block is the drop in held-out pVar of its target region (where a missing projection shows first;
over all units it is diluted by the regions it does not enter), full minus masked, paired by
initialisation.

A block is ``required`` when its mean loss exceeds ``threshold`` times the noise of the comparison: the
larger of the spread (standard deviation) of the full models' held-out pVar of that region over the
initialisations and the standard error of the paired losses. Otherwise it is ``not required by the data``:
the other blocks and the inputs carry what it carried, within what another initialisation would change
anyway. Every full fit
also gives the currents of a free run over the whole data, so each block's current (rms over the target's
units and time) and norm come with their spread over the initialisations.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import xarray as xr

from neurofit.errors import ConfigError, DataError
from neurofit.rnn.config import FitConfig
from neurofit.rnn.currents import decompose
from neurofit.rnn.data import RNNData
from neurofit.rnn.fit import fit
from neurofit.rnn.model import DataConstrainedRNN, fit_data, pvar
from neurofit.rnn.rls import make_trainer

REQUIRED, NOT_REQUIRED = "required", "not required by the data"


def check_options(inits: int, runs: int, holdout: float, window: int, threshold: float,
                  holdout_trials: int = 0) -> None:
    """``ConfigError`` naming the option for values the test cannot use."""
    if holdout_trials < 0:
        raise ConfigError(f"--holdout-trials must be 0 (hold out the end of every trial) or a number of trials, "
                          f"got {holdout_trials}")
    if inits < 2:
        raise ConfigError(f"--inits must be at least 2 (the verdict needs a spread), got {inits}")
    if runs < 1:
        raise ConfigError(f"--refit-runs must be at least 1, got {runs}")
    if not 0 < holdout < 1:
        raise ConfigError(f"--holdout must be between 0 and 1, got {holdout:g}")
    if window < 0:
        raise ConfigError(f"--window must be 0 (no restarts) or a number of samples, got {window}")
    if not threshold > 0:
        raise ConfigError(f"--threshold must be positive, got {threshold:g}")


def split_holdout(data: RNNData, holdout: float, tau: float, window: int = 0,
                  trials: int = 0) -> tuple[RNNData, RNNData]:
    """(training part, held-out part): the last ``trials`` trials whole, or (``trials`` 0) the last ``holdout``
    of every trial; the held-out part with reset points every ``window`` samples (0: none besides its own).
    ``DataError`` when no trial is left to train on, or either part is shorter than the model needs (three
    time constants ``tau``)."""
    if trials:
        if trials >= data.n_trials:
            raise DataError(f"{data.source}: --holdout-trials {trials} leaves no trial to train on (the data have "
                            f"{data.n_trials})")
        cut = data.n_trials - trials
        train, test = data.trial_slice(0, cut), data.trial_slice(cut, data.n_trials)
    else:
        cut = int(round((1 - holdout) * data.n_samples))
        train, test = data.time_slice(0, cut), data.time_slice(cut, data.n_samples)
    for part in (train, test):
        part.check_duration(tau)
    if window:
        restarts = set(test.reset_points) | set(range(window, test.n_samples, window))
        test = dataclasses.replace(test, reset_points=tuple(sorted(restarts)))
    return train, test


def held_out_pvar(model: DataConstrainedRNN, test: RNNData, cfg: FitConfig, seed: int) -> float:
    """pVar of a free run over the held-out part (the run's loop, noise of ``seed``)."""
    return held_out_pvars(model, test, cfg, seed)[0]


def held_out_pvars(model: DataConstrainedRNN, test: RNNData, cfg: FitConfig,
                   seed: int) -> tuple[float, np.ndarray]:
    """pVar of a free run over the held-out part (the run's loop, noise of ``seed``) over all units, and
    (region,) over each region's units."""
    fd = fit_data(model, test, cfg.data.space, model.weight.device, model.weight.dtype)
    rates, overall, _ = make_trainer(model, fd, cfg.rls).free_run(seed)
    by_region = [pvar(fd.rates[:, model.region_index == k], rates[:, model.region_index == k])
                 for k in range(len(model.spec["region_names"]))]
    return overall, np.array(by_region)


def refit(base: DataConstrainedRNN, train: RNNData, cfg: FitConfig, seed: int,
          block: tuple[str, str] | None) -> DataConstrainedRNN:
    """A copy of ``base`` trained ``cfg.rls.runs`` runs on ``train`` with noise seed ``seed``, with the J block
    (target, source) held at zero when ``block`` is given."""
    model = copy.deepcopy(base)
    model.cfg = dataclasses.replace(model.cfg, seed=seed)
    if block is not None:
        names = model.spec["region_names"]
        rows = model.region_index == names.index(block[0])
        cols = model.region_index == names.index(block[1])
        model.mask[rows.nonzero(), cols.nonzero().T] = False
        model.constrained = True
        model.project_()
    fd = fit_data(model, train, cfg.data.space, model.weight.device, model.weight.dtype)
    trainer = make_trainer(model, fd, cfg.rls)
    for _ in range(cfg.rls.runs):
        trainer.run()
    return model


def current_sizes(model: DataConstrainedRNN, data: RNNData, cfg: FitConfig, seed: int) -> dict[str, np.ndarray]:
    """Sizes of the currents of a free run over all of ``data`` (noise of ``seed``).

    Returns:
        ``rms`` (target, source): rms over the target's units, trials and time of the total current from each
        source region, in units of the model's h; ``block_norm`` (target, source): Frobenius norm of J's block.
    """
    fd = fit_data(model, data, cfg.data.space, model.weight.device, model.weight.dtype)
    rates = make_trainer(model, fd, cfg.rls).free_run(seed)[0]
    ds = decompose(model, rates, fd.exog)
    names = list(ds["target_region"].values)
    total = ds["unit_current"].sum("sign").sel(source=names)  # (neuron, source region, trial, time)
    rms = np.stack([np.sqrt((total.values[ds["region"].values == t] ** 2).mean(axis=(0, 2, 3))) for t in names])
    return {"rms": rms, "block_norm": ds["block_norm"].values}


def verdict(loss: np.ndarray, full: np.ndarray, threshold: float) -> tuple[str, float]:
    """(verdict, noise) of one block: its paired losses ``loss`` (init,) against ``threshold`` x the noise, the
    larger of the full models' spread ``std(full)`` (held-out pVar of the target region) over
    initialisations and the losses' standard error."""
    noise = max(float(full.std(ddof=1)), float(loss.std(ddof=1)) / math.sqrt(len(loss)))
    return (REQUIRED if loss.mean() > threshold * noise else NOT_REQUIRED), noise


def necessity(data: RNNData, cfg: FitConfig, *, inits: int = 5, runs: int = 5, holdout: float = 0.2,
              window: int = 50, threshold: float = 2.0, device: str = "cpu",
              log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the test for every ordered pair of regions.

    Args:
        data: the activity the run was fitted to (normalised as in the run).
        cfg: the run's configuration (``method: rls``).
        inits: random initialisations (model seeds ``cfg.model.seed`` + 0, 1, ...; at least 2 for a spread);
            runs: training runs of each refit.
        holdout: fraction of every trial held out (its end); window: samples between restarts of the
            held-out free runs from the data (0: one free run).
        threshold: a block is required when its mean loss exceeds this many times the noise (``verdict``).
        device: ``cpu`` or ``cuda``; log: progress printer.
    Returns:
        ``{"holdout", "window", "inits", "refit_runs", "threshold", "seeds", "full_pvar": [per init],
        "full_pvar_spread", "region_pvar": {region: [per init]}, "blocks": {"SOURCE->TARGET": {"pvar": [target
        region's, per init], "loss": [..], "loss_mean",
        "loss_sem", "noise", "verdict", "current_rms": [per init], "current_rms_mean", "current_rms_spread",
        "block_norm": [per init], "block_norm_mean", "block_norm_spread"}}}``; spreads are standard deviations
        over the initialisations, currents in units of the model's h.
    """
    check_options(inits, runs, holdout, window, threshold)
    if cfg.method != "rls":
        raise cfg.fail(("method",), f"the necessity test refits by recursive least squares, not {cfg.method}")
    train, test = split_holdout(data, holdout, cfg.model.tau, window)
    names = list(data.region_names)
    pairs = [(t, s) for t in names for s in names if s != t]
    seeds = [cfg.model.seed + k for k in range(inits)]
    full, masked = np.empty(inits), np.empty((len(pairs), inits))
    full_region = np.empty((inits, len(names)))
    rms, norms = np.empty((inits, len(names), len(names))), np.empty((inits, len(names), len(names)))
    for k, seed in enumerate(seeds):
        seed_cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, seed=seed),
                                       rls=dataclasses.replace(cfg.rls, runs=runs))
        base = fit(train, dataclasses.replace(seed_cfg, rls=cfg.rls), device).model
        model = refit(base, train, seed_cfg, seed, None)
        full[k], full_region[k] = held_out_pvars(model, test, seed_cfg, seed)
        sizes = current_sizes(model, data, seed_cfg, seed)
        rms[k], norms[k] = sizes["rms"], sizes["block_norm"]
        for p, block in enumerate(pairs):
            region = held_out_pvars(refit(base, train, seed_cfg, seed, block), test, seed_cfg, seed)[1]
            masked[p, k] = region[names.index(block[0])]
        if log is not None:
            log(f"initialisation {k + 1}/{inits} (seed {seed}): held-out pVar {full[k]:.4f} in full")
    blocks = {}
    for p, (target, source) in enumerate(pairs):
        a, b = names.index(target), names.index(source)
        loss = full_region[:, a] - masked[p]
        decision, noise = verdict(loss, full_region[:, a], threshold)
        blocks[f"{source}->{target}"] = {
            "pvar": masked[p].tolist(), "loss": loss.tolist(), "loss_mean": float(loss.mean()),
            "loss_sem": float(loss.std(ddof=1) / math.sqrt(inits)), "noise": noise, "verdict": decision,
            "current_rms": rms[:, a, b].tolist(), "current_rms_mean": float(rms[:, a, b].mean()),
            "current_rms_spread": float(rms[:, a, b].std(ddof=1)), "block_norm": norms[:, a, b].tolist(),
            "block_norm_mean": float(norms[:, a, b].mean()),
            "block_norm_spread": float(norms[:, a, b].std(ddof=1))}
        if log is not None:
            log(f"{source}->{target}: held-out pVar loss {loss.mean():+.4f} (noise {noise:.4f}): {decision}")
    return {"holdout": holdout, "window": window, "inits": inits, "refit_runs": runs, "threshold": threshold,
            "seeds": seeds, "full_pvar": full.tolist(), "full_pvar_spread": float(full.std(ddof=1)),
            "region_pvar": {name: full_region[:, a].tolist() for a, name in enumerate(names)}, "blocks": blocks}


def as_dataset(result: dict[str, Any], names: list[str]) -> xr.Dataset:
    """The test's per-block summary as (target_region, source_region) variables for ``currents.zarr``:
    ``verdict`` (``within region`` on the diagonal), ``loss_mean``, ``loss_noise``, ``current_rms_mean``,
    ``current_rms_spread``, ``block_norm_mean`` and ``block_norm_spread`` (NaN on the diagonal)."""
    m = len(names)
    verdicts = np.full((m, m), "within region", dtype=object)
    values = {key: np.full((m, m), np.nan) for key in ("loss_mean", "noise", "current_rms_mean",
                                                      "current_rms_spread", "block_norm_mean",
                                                      "block_norm_spread")}
    for key, block in result["blocks"].items():
        source, _, target = key.partition("->")
        a, b = names.index(target), names.index(source)
        verdicts[a, b] = block["verdict"]
        for name, grid in values.items():
            grid[a, b] = block[name]
    dims = ("target_region", "source_region")
    data = {("loss_noise" if k == "noise" else k): (dims, v) for k, v in values.items()}
    return xr.Dataset({"verdict": (dims, verdicts.astype(str)), **data},
                      coords={"target_region": names, "source_region": names},
                      attrs={"necessity_threshold": result["threshold"], "necessity_inits": result["inits"],
                             "necessity_holdout": result["holdout"]})
