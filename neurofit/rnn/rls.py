"""Recursive least squares (FORCE) training of the data-constrained RNN, as in CURBD.

At every data sample the error e = output - target (output: the model's rates for ``model.target: rates``,
else its drive [J B C] x) updates the weights and the inverse correlation matrix P of the regressors
x = [rates; exogenous inputs] (Sussillo & Abbott 2009). ``RLSState`` (``rls_update.py``) holds P and applies
the update; two loops drive it:

- ``rls.loop: curbd`` (``neurofit/rnn/curbd.py``): CURBD's ``trainMultiRegionRNN`` step for step.
- ``rls.loop: batched`` (``RLSTrainer`` here): trials (and, optionally, segments of trials) run as a batch with
  one rank-K Woodbury update per sample; optionally one update per block of samples (the same least-squares
  solution as updating after each of them, only the trajectory inside a block runs on the weights of its
  start).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch

from neurofit.errors import ConfigError
from neurofit.rnn.config import RLSConfig
from neurofit.rnn.curbd import CurbdTrainer
from neurofit.rnn.history import FitHistory
from neurofit.rnn.model import DataConstrainedRNN, FitData, free_run, pvar
from neurofit.rnn.rls_update import RLSState

#: A free run of a trained model: noise seed -> (rates (trial, N, time), pVar, chi2).
Evaluator = Callable[[int], tuple[torch.Tensor, float, float]]


def split_segments(fd: FitData, n_segments: int) -> FitData:
    """Cut every trial into ``n_segments`` equal, evenly spaced (slightly overlapping where the length does
    not divide) segments, stacked as trials: (trial * n_segments, N, length)."""
    if n_segments == 1:
        return fd
    n_samples = fd.h.shape[-1]
    length = -(-n_samples // n_segments)
    starts = torch.linspace(0, n_samples - length, n_segments).round().long().tolist()

    def cut(t: torch.Tensor | None, axis: int) -> torch.Tensor | None:
        if t is None:
            return None
        return torch.cat([t.narrow(axis, s, length) for s in starts], dim=0).contiguous()

    return FitData(h=cut(fd.h, 2), rates=cut(fd.rates, 2), start=cut(fd.start, 2), targets=cut(fd.targets, 2),
                   exog=cut(fd.exog, 1), resets=cut(fd.resets, 1))


class RLSTrainer:
    """The batched loop: trials side by side, one training run at a time.

    Args:
        model: the RNN, on the device and dtype of ``fd``.
        fd: data tensors.
        p0: initial P scale.
        segments: segments per trial (see ``RLSConfig.segments``).
        update_every: samples per update (see ``RLSConfig.update_every``).
        p0_inter: prior variance of inter-region weights (``RLSConfig.P0_inter``); None: p0.
    """

    def __init__(self, model: DataConstrainedRNN, fd: FitData, p0: float = 1.0, segments: int = 1,
                 update_every: int = 1, p0_inter: float | None = None) -> None:
        self.model = model
        self.whole, self.fd = fd, split_segments(fd, segments)
        device, dtype = fd.h.device, fd.h.dtype
        n_batch, n, n_samples = self.fd.h.shape
        self.n_samples, self.block = n_samples, max(1, min(update_every, n_samples))
        self.state = RLSState(model, p0, device, dtype, p0_inter)
        self.noise = model.make_noise(n_batch, n_samples, model.cfg.seed, device, dtype)
        self.errors = torch.empty(n_samples, n_batch, n, device=device, dtype=dtype)
        self.regressors = torch.empty(self.block, n_batch, model.weight_width, device=device, dtype=dtype)
        # Per-sample views made once: indexing inside the loop costs more than the small ops themselves.
        self._targets = self.fd.targets.permute(2, 0, 1).contiguous().unbind(0)
        self._errors = self.errors.unbind(0)
        self._regressors = self.regressors.unbind(0)
        self._exog = self.fd.exog.unbind(1) if self.fd.exog is not None else None
        self._n = n

    @property
    def P(self) -> torch.Tensor:
        """The inverse correlation matrix of the learned regressors."""
        return self.state.P

    def _record(self, i: int, r: torch.Tensor, drive: torch.Tensor) -> None:
        """Hook of ``simulate`` at every sample: store the regressors and the a-priori error; update the
        weights when a block of ``update_every`` samples is complete."""
        err = torch.sub(self.model.output(r, drive), self._targets[i], out=self._errors[i])
        if self.block == 1:
            self.state.update(r if self._exog is None else torch.cat([r, self._exog[i]], dim=1), err)
            return
        slot = self._regressors[i % self.block]
        slot[:, : self._n] = r
        if self._exog is not None:
            slot[:, self._n:] = self._exog[i]
        if (i + 1) % self.block == 0 or i + 1 == self.n_samples:
            m = i % self.block + 1
            self.state.update(self.regressors[:m].flatten(0, 1), self.errors[i + 1 - m: i + 1].flatten(0, 1))

    @torch.no_grad()
    def run(self) -> tuple[float, float]:
        """One training run over all trials/segments; returns its (pVar, chi2) as CURBD reports them."""
        fd = self.fd
        rates = self.model.simulate(fd.start, fd.exog, fd.h.shape[-1], noise=self.noise, on_sample=self._record,
                                    resets=fd.resets)
        return pvar(fd.rates, rates), float(self.errors.pow(2).mean(dim=(1, 2)).sum())

    def free_run(self, noise_seed: int) -> tuple[torch.Tensor, float, float]:
        """A run over whole trials without learning (see ``model.free_run``)."""
        return free_run(self.model, self.whole, noise_seed)


def make_trainer(model: DataConstrainedRNN, fd: FitData, cfg: RLSConfig,
                 draw_weights: bool = False) -> CurbdTrainer | RLSTrainer:
    """The configured loop on ``fd``, P fresh (P0 * I, scaled to the network's size by ``rls.P0_units``);
    ``draw_weights``: the curbd loop takes the reference's initial J (otherwise the model's weights are kept,
    e.g. for a warm start)."""
    p0, p0_inter = cfg.p0_for(model.n_units)
    if cfg.loop == "curbd":
        return CurbdTrainer(model, fd, p0, draw_weights, cfg.defer_updates, p0_inter)
    return RLSTrainer(model, fd, p0, cfg.segments, cfg.update_every, p0_inter)


def fit_rls(model: DataConstrainedRNN, fd: FitData, cfg: RLSConfig,
            log: Callable[[str], None] | None = None) -> tuple[FitHistory, torch.Tensor, Evaluator]:
    """Train ``model`` in place by recursive least squares with the configured loop.

    Args:
        model: the RNN, already on the device and dtype of ``fd``.
        fd: data tensors (``fit_data``).
        cfg: loop, runs, free runs, P0, segments, early stop.
        log: called with a progress line after each run.
    Returns:
        The history (pVar and chi2 of each training run, then of each free run over whole trials: the first
        with the training noise, as CURBD's free runs, later ones with fresh noise), the rates of the last
        free run (trial, N, time) and the loop's free run for later evaluations.
    """
    history = FitHistory("rls")
    start = time.perf_counter()
    trainer = make_trainer(model, fd, cfg, draw_weights=cfg.init == "random")
    for run in range(cfg.runs):
        run_pvar, run_chi2 = trainer.run()
        if not math.isfinite(run_chi2):
            raise ConfigError(f"recursive least squares diverged in run {run} (non-finite error); try rls.dtype "
                              "float64, a smaller rls.P0 or fewer rls.segments")
        history.add(run, run_pvar, run_chi2, time.perf_counter() - start)
        if log is not None:
            log(f"run {run}: pVar {run_pvar:.4f} chi2 {run_chi2:.4g}")
        if cfg.stop_at_pvar is not None and run_pvar >= cfg.stop_at_pvar:
            break
    for k in range(cfg.free_runs):
        rates, free_pvar, free_chi2 = trainer.free_run(model.cfg.seed + k)
        history.add(len(history.step), free_pvar, free_chi2, time.perf_counter() - start)
    return history, rates, trainer.free_run
