"""Necessity test of inter-region currents: does the data need a block of J (the projection from one region
into another), or does a model without it predict held-out activity as well?

The last ``holdout`` of every trial is held out, or with ``holdout_trials`` the last trials whole. For each of
``inits`` random initialisations (model seeds: a different initial J, and a different white-noise input), a
model is fitted to the rest with the run's configuration (recursive least squares). From each fit (warm start,
P reset to its prior) the test trains ``runs`` more runs on the same data: once in full, and once per ordered
region pair with that block of J set to zero and held there (a mask), so the full and the masked model get the
same budget. Each refit runs freely over the held-out part, restarted from the data's state every ``window``
samples (a chaotic network's single long free run diverges from any model of it, which would make the
comparison noise).

A projection need not reach every unit of its target (CURBD's links reach 5% of them), and a pVar over the
whole region dilutes it by the units it does not reach. So the loss of a block is measured on the target's
units the fits drive most from the source: the fraction ``units`` of the target's units with the largest rows
of the full fits' block (row norm over block norm, averaged over the initialisations, so one set of units for
all of them). The loss is the drop in held-out pVar of those units, full minus masked, paired by
initialisation: the pair shares the initial J and the noise, so the difference cancels what another
initialisation would change. A block is ``required`` when a one-sided paired t-test of the losses against
zero rejects at level ``alpha`` after a Bonferroni correction for the number of blocks; otherwise it is ``not
required by the data``: the other blocks and the inputs carry what it carried. Every full fit also gives the
currents of a free run over the whole data, so each block's current (rms over the target's units and time)
and norm come with their spread over the initialisations.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import xarray as xr
from scipy import stats

from neurofit.errors import ConfigError, DataError
from neurofit.rnn.config import FitConfig
from neurofit.rnn.currents import decompose
from neurofit.rnn.data import RNNData
from neurofit.rnn.fit import fit
from neurofit.rnn.model import DataConstrainedRNN, fit_data, pvar
from neurofit.rnn.rls import make_trainer

REQUIRED, NOT_REQUIRED = "required", "not required by the data"


def check_options(inits: int, runs: int, holdout: float, window: int, holdout_trials: int = 0,
                  alpha: float = 0.05, units: float = 0.2) -> None:
    """``ConfigError`` naming the option for values the test cannot use."""
    if inits < 2:
        raise ConfigError(f"--inits must be at least 2 (the verdict needs a spread), got {inits}")
    if runs < 1:
        raise ConfigError(f"--refit-runs must be at least 1, got {runs}")
    if not 0 < holdout < 1:
        raise ConfigError(f"--holdout must be between 0 and 1, got {holdout:g}")
    if holdout_trials < 0:
        raise ConfigError(f"--holdout-trials must be 0 (hold out the end of every trial) or a number of trials, "
                          f"got {holdout_trials}")
    if window < 0:
        raise ConfigError(f"--window must be 0 (no restarts) or a number of samples, got {window}")
    if not 0 < alpha < 1:
        raise ConfigError(f"--alpha must be between 0 and 1, got {alpha:g}")
    if not 0 < units <= 1:
        raise ConfigError(f"--units must be a fraction of the target's units in (0, 1], got {units:g}")


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


def held_out_pvar(model: DataConstrainedRNN, test: RNNData, cfg: FitConfig) -> float:
    """pVar over all units of a free run over the held-out part (the run's loop, noise of ``cfg.model.seed``)."""
    return pvar(*held_out_rates(model, test, cfg))


def held_out_rates(model: DataConstrainedRNN, test: RNNData, cfg: FitConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(data, model) rates (trial, N, time) of a free run over the held-out part (the run's loop, noise of
    ``cfg.model.seed``), the data as the model's space sees them."""
    fd = fit_data(model, test, cfg.data.space, model.weight.device, model.weight.dtype)
    return fd.rates, make_trainer(model, fd, cfg.rls).free_run(cfg.model.seed)[0]


def refit(base: DataConstrainedRNN, train: RNNData, cfg: FitConfig,
          block: tuple[str, str] | None) -> DataConstrainedRNN:
    """A copy of ``base`` trained ``cfg.rls.runs`` runs on ``train`` with the noise of ``cfg.model.seed``, with
    the J block (target, source) held at zero when ``block`` is given."""
    model = copy.deepcopy(base)
    model.cfg = dataclasses.replace(model.cfg, seed=cfg.model.seed)
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


def current_sizes(model: DataConstrainedRNN, data: RNNData, cfg: FitConfig) -> dict[str, np.ndarray]:
    """Sizes of the currents of a free run over all of ``data`` (noise of ``cfg.model.seed``).

    Returns:
        ``rms`` (target, source): rms over the target's units, trials and time of the total current from each
        source region, in units of the model's h; ``block_norm`` (target, source): Frobenius norm of J's block.
    """
    fd = fit_data(model, data, cfg.data.space, model.weight.device, model.weight.dtype)
    rates = make_trainer(model, fd, cfg.rls).free_run(cfg.model.seed)[0]
    ds = decompose(model, rates, fd.exog)
    names = list(ds["target_region"].values)
    total = ds["unit_current"].sum("sign").sel(source=names)  # (neuron, source region, trial, time)
    rms = np.stack([np.sqrt((total.values[ds["region"].values == t] ** 2).mean(axis=(0, 2, 3))) for t in names])
    return {"rms": rms, "block_norm": ds["block_norm"].values}


def driven_units(rows: np.ndarray, fraction: float) -> np.ndarray:
    """Indices (into the target's units) of the ``fraction`` of them a block drives most: ``rows`` (init,
    target unit) are the row norms of the block in each full fit, each divided by the block's norm and then
    averaged over the initialisations (at least one unit)."""
    share = (rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), np.finfo(float).tiny)).mean(axis=0)
    return np.sort(np.argsort(share)[::-1][:max(1, int(round(fraction * rows.shape[1])))])


def critical_t(inits: int, alpha: float, n_blocks: int) -> float:
    """The paired t above which a block is required: one-sided, ``inits - 1`` degrees of freedom, level
    ``alpha`` / ``n_blocks`` (Bonferroni)."""
    return float(stats.t.ppf(1 - alpha / n_blocks, inits - 1))


def verdict(loss: np.ndarray, critical: float) -> tuple[str, float, float]:
    """(verdict, noise, t) of one block from its paired losses ``loss`` (init,): the noise is their standard
    error, t = mean / noise, and the block is required when t exceeds ``critical`` (``critical_t``)."""
    noise = float(loss.std(ddof=1)) / math.sqrt(len(loss))
    t = float(loss.mean()) / noise if noise > 0 else (math.inf if loss.mean() > 0 else 0.0)
    return (REQUIRED if t > critical else NOT_REQUIRED), noise, t


def unit_pvar(data: torch.Tensor, rates: torch.Tensor, units: np.ndarray) -> float:
    """pVar of (trial, N, time) ``rates`` against ``data`` over the unit indices ``units``."""
    index = torch.as_tensor(units)
    return pvar(data[:, index], rates[:, index])


def necessity(data: RNNData, cfg: FitConfig, *, inits: int = 8, runs: int = 5, holdout: float = 0.2,
              holdout_trials: int = 0, window: int = 10, alpha: float = 0.05, units: float = 0.2,
              device: str = "cpu", log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the test for every ordered pair of regions.

    Args:
        data: the activity the run was fitted to (normalised as in the run).
        cfg: the run's configuration (``method: rls``).
        inits: random initialisations (model seeds ``cfg.model.seed`` + 0, 1, ...; at least 2 for a spread);
            runs: training runs of each refit.
        holdout: fraction of every trial held out (its end); holdout_trials: hold out this many last trials
            whole instead (0: none); window: samples between restarts of the held-out free runs from the data
            (0: one free run).
        alpha: family-wise level of the paired tests (Bonferroni over the blocks); units: fraction of the
            target's units the loss is measured on (those the fits drive most from the source).
        device: ``cpu`` or ``cuda``; log: progress printer.
    Returns:
        ``{"holdout", "holdout_trials", "window", "inits", "refit_runs", "alpha", "units", "threshold" (the
        critical t), "seeds", "full_pvar": [per init, all units], "full_pvar_spread", "region_pvar": {region:
        [per init]}, "blocks": {"SOURCE->TARGET": {"driven_units": [unit indices], "full_unit_pvar": [per init],
        "pvar": [masked, per init], "loss": [..], "loss_mean", "loss_sem", "noise", "t", "verdict",
        "current_rms": [per init], "current_rms_mean", "current_rms_spread", "block_norm": [per init],
        "block_norm_mean", "block_norm_spread"}}}``; spreads are standard deviations over the initialisations,
        currents in units of the model's h, pVar over the held-out part.
    """
    check_options(inits, runs, holdout, window, holdout_trials, alpha, units)
    if cfg.method != "rls":
        raise cfg.fail(("method",), f"the necessity test refits by recursive least squares, not {cfg.method}")
    train, test = split_holdout(data, holdout, cfg.model.tau, window, holdout_trials)
    names = list(data.region_names)
    pairs = [(t, s) for t in names for s in names if s != t]
    seeds = [cfg.model.seed + k for k in range(inits)]
    index = data.region_index()
    full, held, masked, rows = [], [], {pair: [] for pair in pairs}, {pair: [] for pair in pairs}
    rms, norms = np.empty((inits, len(names), len(names))), np.empty((inits, len(names), len(names)))
    for k, seed in enumerate(seeds):
        seed_cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, seed=seed),
                                       rls=dataclasses.replace(cfg.rls, runs=runs))
        base = fit(train, dataclasses.replace(seed_cfg, rls=cfg.rls), device).model
        model = refit(base, train, seed_cfg, None)
        target, rates = held_out_rates(model, test, seed_cfg)
        full.append(rates)
        J = model.J.detach().cpu().double().numpy()
        sizes = current_sizes(model, data, seed_cfg)
        rms[k], norms[k] = sizes["rms"], sizes["block_norm"]
        for pair in pairs:
            rows[pair].append(np.linalg.norm(J[np.ix_(index == names.index(pair[0]),
                                                      index == names.index(pair[1]))], axis=1))
            masked[pair].append(held_out_rates(refit(base, train, seed_cfg, pair), test, seed_cfg)[1])
        held.append(pvar(target, rates))
        if log is not None:
            log(f"initialisation {k + 1}/{inits} (seed {seed}): held-out pVar {held[-1]:.4f} in full")
    critical = critical_t(inits, alpha, len(pairs))
    blocks = {}
    for pair in pairs:
        a, b = names.index(pair[0]), names.index(pair[1])
        chosen = np.flatnonzero(index == a)[driven_units(np.stack(rows[pair]), units)]
        with_block = np.array([unit_pvar(target, r, chosen) for r in full])
        without = np.array([unit_pvar(target, r, chosen) for r in masked[pair]])
        loss = with_block - without
        decision, noise, t = verdict(loss, critical)
        blocks[f"{pair[1]}->{pair[0]}"] = {
            "driven_units": chosen.tolist(), "full_unit_pvar": with_block.tolist(), "pvar": without.tolist(),
            "loss": loss.tolist(), "loss_mean": float(loss.mean()), "loss_sem": noise, "noise": noise,
            "t": t, "verdict": decision, "current_rms": rms[:, a, b].tolist(),
            "current_rms_mean": float(rms[:, a, b].mean()), "current_rms_spread": float(rms[:, a, b].std(ddof=1)),
            "block_norm": norms[:, a, b].tolist(), "block_norm_mean": float(norms[:, a, b].mean()),
            "block_norm_spread": float(norms[:, a, b].std(ddof=1))}
        if log is not None:
            log(f"{pair[1]}->{pair[0]}: held-out pVar loss {loss.mean():+.4f} on {len(chosen)} driven units "
                f"(noise {noise:.4f}, t {t:+.2f}, required above "
                f"{critical:.2f}): {decision}")
    region_pvar = {name: [unit_pvar(target, r, np.flatnonzero(index == a)) for r in full]
                   for a, name in enumerate(names)}
    return {"holdout": holdout, "holdout_trials": holdout_trials, "window": window, "inits": inits,
            "refit_runs": runs, "alpha": alpha, "units": units, "threshold": critical, "seeds": seeds,
            "full_pvar": held, "full_pvar_spread": float(np.std(held, ddof=1)), "region_pvar": region_pvar,
            "blocks": blocks}


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
                      attrs={"necessity_threshold": result["threshold"], "necessity_alpha": result["alpha"],
                             "necessity_inits": result["inits"],
                             "necessity_holdout": result["holdout"]})
