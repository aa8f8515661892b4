"""Recursive least squares (FORCE) training of the data-constrained RNN, as in CURBD.

Each training run starts every trial from the data's state and runs the model freely; at every data sample
the drive error e = [J B C] x - target (x = [rates; exogenous inputs]) updates the weights and the inverse
correlation matrix P (Sussillo & Abbott 2009). Differences from the per-sample reference loop, none of which
changes the algorithm: trials (and, optionally, segments of trials) run as a batch with one rank-K Woodbury
update per sample; optionally one update per block of samples (the same least-squares solution as updating
after each of them, only the trajectory inside a block runs on the weights of its start); updates are in
place with no host synchronisation (so the same code runs on a GPU);
PINning (Rajan et al. 2016) zeroes the rows/columns of P of units whose outgoing weights are fixed. Masks and
Dale's law are kept by projecting J after every update.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch

from neurofit.errors import ConfigError
from neurofit.rnn.config import RLSConfig
from neurofit.rnn.history import FitHistory
from neurofit.rnn.model import DataConstrainedRNN, FitData, free_run, pvar


def initial_p(model: DataConstrainedRNN, p0: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """P0 * I over the regressors [rates of plastic units; exogenous inputs], zero for fixed units."""
    diag = torch.ones(model.weight_width, device=device, dtype=dtype)
    diag[: model.n_units] = model.plastic.to(device=device, dtype=dtype)
    return torch.diag(p0 * diag)


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

    return FitData(h=cut(fd.h, 2), rates=cut(fd.rates, 2), targets=cut(fd.targets, 2), exog=cut(fd.exog, 1))


class RLSTrainer:
    """Recursive least squares state (P) and one training run at a time.

    Args:
        model: the RNN, on the device and dtype of ``fd``.
        fd: data tensors.
        p0: initial P scale.
        segments: segments per trial (see ``RLSConfig.segments``).
        update_every: samples per update (see ``RLSConfig.update_every``).
    """

    def __init__(self, model: DataConstrainedRNN, fd: FitData, p0: float = 1.0, segments: int = 1,
                 update_every: int = 1) -> None:
        self.model = model
        self.fd = split_segments(fd, segments)
        device, dtype = fd.h.device, fd.h.dtype
        n_batch, n, n_samples = self.fd.h.shape
        self.n_samples, self.block = n_samples, max(1, min(update_every, n_samples))
        self.P = initial_p(model, p0, device, dtype)
        self.noise = model.make_noise(n_batch, n_samples, model.cfg.seed, device, dtype)
        self.errors = torch.empty(n_samples, n_batch, n, device=device, dtype=dtype)
        self.regressors = torch.empty(self.block, n_batch, model.weight_width, device=device, dtype=dtype)
        self.eye = torch.eye(self.block * n_batch, device=device, dtype=dtype)
        # Per-sample views made once: indexing inside the loop costs more than the small ops themselves.
        self._targets = self.fd.targets.permute(2, 0, 1).contiguous().unbind(0)
        self._errors = self.errors.unbind(0)
        self._regressors = self.regressors.unbind(0)
        self._exog = self.fd.exog.unbind(1) if self.fd.exog is not None else None
        self._n = n

    def _record(self, i: int, r: torch.Tensor, drive: torch.Tensor) -> None:
        """Hook of ``simulate`` at every sample: store the regressors and the a-priori error; update the
        weights when a block of ``update_every`` samples is complete."""
        err = torch.sub(drive, self._targets[i], out=self._errors[i])
        if self.block == 1:
            self._update(r if self._exog is None else torch.cat([r, self._exog[i]], dim=1), err)
            return
        slot = self._regressors[i % self.block]
        slot[:, : self._n] = r
        if self._exog is not None:
            slot[:, self._n:] = self._exog[i]
        if (i + 1) % self.block == 0 or i + 1 == self.n_samples:
            m = i % self.block + 1
            self._update(self.regressors[:m].flatten(0, 1), self.errors[i + 1 - m: i + 1].flatten(0, 1))

    def _update(self, x: torch.Tensor, err: torch.Tensor) -> None:
        """RLS update of P and weight, in place, from regressors x (rows, regressors) and their errors
        err (rows, N) computed with the current weights."""
        W, P = self.model.weight.data, self.P
        px = x @ P  # P is symmetric, so the rows are (P x_k)^T
        if x.shape[0] == 1:
            gain = px / (1.0 + px @ x.T)
            P.addmm_(px.T, gain, alpha=-1.0)
        else:
            # Woodbury through the Cholesky factor of S = I + X P X^T: P -= V^T V with V = L^-1 X P stays
            # symmetric in float32, where the plain form drifts and P loses definiteness.
            chol = torch.linalg.cholesky_ex(torch.addmm(self.eye[: len(x), : len(x)], px, x.T)).L
            v = torch.linalg.solve_triangular(chol, px, upper=False)
            gain = torch.linalg.solve_triangular(chol.T, v, upper=True)
            P.addmm_(v.T, v, alpha=-1.0)
        if self.model.lr_scale is None:
            W.addmm_(err.T, gain, alpha=-1.0)
        else:
            W.sub_((err.T @ gain) * self.model.lr_scale)
        if self.model.constrained:
            self.model.project_()

    @torch.no_grad()
    def run(self) -> tuple[float, float]:
        """One training run over all trials/segments; returns its (pVar, chi2) as CURBD reports them."""
        fd = self.fd
        rates = self.model.simulate(fd.h[:, :, 0], fd.exog, fd.h.shape[-1], noise=self.noise,
                                    on_sample=self._record)
        return pvar(fd.rates, rates), float(self.errors.pow(2).mean(dim=(1, 2)).sum())


def fit_rls(model: DataConstrainedRNN, fd: FitData, cfg: RLSConfig,
            log: Callable[[str], None] | None = None) -> tuple[FitHistory, torch.Tensor]:
    """Train ``model`` in place by recursive least squares.

    Args:
        model: the RNN, already on the device and dtype of ``fd``.
        fd: data tensors (``fit_data``).
        cfg: runs, free runs, P0, segments, early stop.
        log: called with a progress line after each run.
    Returns:
        The history (pVar and chi2 of each training run, then of each free run over whole trials: the first
        with the training noise, as CURBD's free runs, later ones with fresh noise) and the rates of the last
        free run (trial, N, time).
    """
    history = FitHistory("rls")
    start = time.perf_counter()
    trainer = RLSTrainer(model, fd, cfg.P0, cfg.segments, cfg.update_every)
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
        rates, free_pvar, free_chi2 = free_run(model, fd, noise_seed=model.cfg.seed + k)
        history.add(len(history.step), free_pvar, free_chi2, time.perf_counter() - start)
    return history, rates
