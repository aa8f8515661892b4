"""Direct least squares for fully observed data: with every unit recorded, the drive at each sample is a
linear function of the data rates and inputs, so [J B C] solves one ridge regression (the teacher-forced
limit of recursive least squares). A fast start for ``rls``/``bptt`` and a baseline. With constraints
(masks, Dale's law, frozen units) the solution is refined by accelerated projected gradient (FISTA) from the
projected closed form.
"""

from __future__ import annotations

import math
import time

import torch

from neurofit.rnn.config import RidgeConfig
from neurofit.rnn.history import FitHistory
from neurofit.rnn.model import DataConstrainedRNN, FitData, free_run


def normal_equations(model: DataConstrainedRNN, fd: FitData,
                     cfg: RidgeConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Gram matrix G = X^T X + diag(penalties) (regressors x regressors) and C = Y^T X (N x regressors),
    X = [data rates, exogenous inputs] and Y = drive targets, over all trials and samples (with
    ``model.target: rates``, whose error is not linear in the weights, the ``drive`` targets)."""
    n_trials, n, n_samples = fd.rates.shape
    x = fd.rates.transpose(1, 2).reshape(n_trials * n_samples, n)
    if fd.exog is not None:
        x = torch.cat([x, fd.exog.reshape(n_trials * n_samples, -1)], dim=1)
    targets = model.drive_targets(fd.h, fd.rates, "drive") if model.cfg.target == "rates" else fd.targets
    y = targets.transpose(1, 2).reshape(n_trials * n_samples, n)
    penalty = torch.full((x.shape[1],), cfg.alpha_inputs, device=x.device, dtype=x.dtype)
    penalty[:n] = cfg.alpha
    return x.T @ x + torch.diag(penalty), y.T @ x


@torch.no_grad()
def solve_ridge(model: DataConstrainedRNN, fd: FitData, cfg: RidgeConfig) -> None:
    """Set ``model.weight`` to the (constrained) ridge solution in place."""
    gram, cross = normal_equations(model, fd, cfg)
    model.weight.data.copy_(torch.linalg.solve(gram, cross.T).T)
    model.project_()
    if not model.constrained:
        return
    step = 1.0 / float(torch.linalg.eigvalsh(gram).max())
    previous = model.weight.data.clone()
    momentum_point, t = previous.clone(), 1.0
    for _ in range(cfg.iterations):
        model.weight.data.copy_(momentum_point - step * (momentum_point @ gram - cross))
        model.project_()
        t_next = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
        current = model.weight.data
        momentum_point = current + ((t - 1.0) / t_next) * (current - previous)
        previous, t = current.clone(), t_next


def fit_ridge(model: DataConstrainedRNN, fd: FitData, cfg: RidgeConfig) -> tuple[FitHistory, torch.Tensor]:
    """Fit by ridge regression, then evaluate with one free run.

    Returns:
        The history (one entry) and the free run's rates (trial, N, time).
    """
    history = FitHistory("ridge")
    start = time.perf_counter()
    solve_ridge(model, fd, cfg)
    rates, run_pvar, chi2 = free_run(model, fd, noise_seed=model.cfg.seed)
    history.add(0, run_pvar, chi2, time.perf_counter() - start)
    return history, rates
