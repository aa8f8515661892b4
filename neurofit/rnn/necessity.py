"""Necessity test of inter-region currents: does the data need a block of J (the projection from one region
into another), or does a model without it predict held-out activity as well?

The last ``holdout`` of every trial is held out. A model is fitted to the rest with the run's configuration
(recursive least squares). Then, for each of ``inits`` noise seeds (each a different white-noise input, and so
a different trajectory through training), two refits start from that model (warm start, P reset to P0 * I)
and train ``runs`` more runs on the same data: the full model, and one per ordered region pair with that
block of J set to zero and held there (a mask). Each refit runs freely over the held-out part, restarted from
the data's state every ``window`` samples (a chaotic network's single long free run diverges from any model
of it, which would make the comparison noise); the loss of a block is the paired drop in held-out pVar, full
minus masked, per seed.
A block is ``required`` when the mean loss exceeds twice its standard error over the seeds, else ``not
required by the data``: the other blocks and the inputs carry what it carried.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from neurofit.errors import ConfigError
from neurofit.rnn.config import FitConfig
from neurofit.rnn.data import RNNData
from neurofit.rnn.fit import fit
from neurofit.rnn.model import DataConstrainedRNN, fit_data
from neurofit.rnn.rls import make_trainer

REQUIRED, NOT_REQUIRED = "required", "not required by the data"


def check_options(inits: int, runs: int, holdout: float, window: int) -> None:
    """``ConfigError`` naming the option for values the test cannot use."""
    if inits < 2:
        raise ConfigError(f"--inits must be at least 2 (the verdict needs a spread), got {inits}")
    if runs < 1:
        raise ConfigError(f"--refit-runs must be at least 1, got {runs}")
    if not 0 < holdout < 1:
        raise ConfigError(f"--holdout must be between 0 and 1, got {holdout:g}")
    if window < 0:
        raise ConfigError(f"--window must be 0 (no restarts) or a number of samples, got {window}")


def split_holdout(data: RNNData, holdout: float, tau: float, window: int = 0) -> tuple[RNNData, RNNData]:
    """(training part, held-out part) of every trial, the held-out part with reset points every ``window``
    samples (0: none besides its own); ``DataError`` when either part is shorter than the model needs (three
    time constants ``tau``)."""
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
    fd = fit_data(model, test, cfg.data.space, model.weight.device, model.weight.dtype)
    return make_trainer(model, fd, cfg.rls).free_run(seed)[1]


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


def necessity(data: RNNData, cfg: FitConfig, *, inits: int = 5, runs: int = 5, holdout: float = 0.2,
              window: int = 50, device: str = "cpu", log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the test for every ordered pair of regions.

    Args:
        data: the activity the run was fitted to (normalised as in the run).
        cfg: the run's configuration (``method: rls``).
        inits: noise seeds per condition (at least 2 for a spread); runs: training runs of each refit.
        holdout: fraction of every trial held out (its end); window: samples between restarts of the
            held-out free runs from the data (0: one free run).
        device: ``cpu`` or ``cuda``; log: progress printer.
    Returns:
        ``{"holdout", "window", "inits", "refit_runs", "seeds", "full_pvar": [per seed], "blocks":
        {"SOURCE->TARGET": {"pvar": [..], "loss": [..], "loss_mean", "loss_sem", "verdict"}}}``.
    """
    check_options(inits, runs, holdout, window)
    if cfg.method != "rls":
        raise cfg.fail(("method",), f"the necessity test refits by recursive least squares, not {cfg.method}")
    train, test = split_holdout(data, holdout, cfg.model.tau, window)
    base = fit(train, cfg, device).model
    refit_cfg = dataclasses.replace(cfg, rls=dataclasses.replace(cfg.rls, runs=runs))
    seeds = [cfg.model.seed + 1 + k for k in range(inits)]

    def pvars(block: tuple[str, str] | None) -> np.ndarray:
        fits = [(refit(base, train, refit_cfg, s, block), s) for s in seeds]
        return np.array([held_out_pvar(model, test, refit_cfg, s) for model, s in fits])

    full = pvars(None)
    blocks = {}
    names = list(data.region_names)
    for target in names:
        for source in names:
            if source == target:
                continue
            masked = pvars((target, source))
            loss = full - masked
            sem = float(loss.std(ddof=1) / math.sqrt(len(loss)))
            verdict = REQUIRED if loss.mean() > 2 * sem else NOT_REQUIRED
            blocks[f"{source}->{target}"] = {"pvar": masked.tolist(), "loss": loss.tolist(),
                                             "loss_mean": float(loss.mean()), "loss_sem": sem, "verdict": verdict}
            if log is not None:
                log(f"{source}->{target}: held-out pVar loss {loss.mean():+.4f} +- {sem:.4f} ({verdict})")
    return {"holdout": holdout, "window": window, "inits": inits, "refit_runs": runs, "seeds": seeds,
            "full_pvar": full.tolist(), "blocks": blocks}
