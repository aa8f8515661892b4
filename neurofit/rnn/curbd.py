"""CURBD's ``trainMultiRegionRNN`` (rajanlab/CURBD, Perich et al. 2020) step for step: ``rls.loop: curbd``.

The reference, on a series of T data samples dt apart, with dt_factor model steps per sample:

- model steps at tRNN = 0, dt/dt_factor, ..., up to the last data time (``np.arange``, as the reference);
- white-noise input: ``x[0] = 1``, ``x[t] = w[t] + (x[t-1] - w[t]) exp(-dt_rnn / tauWN)`` with w of standard
  deviation sqrt(tauWN / dt_rnn), times ``ampInWN``, drawn once and reused by every run;
- a run sets h to the data's first sample (``model.initial_state``: CURBD sets H = data); at model step tt >= 1
  it resets h at reset points, takes r = tanh(h), drive = J r + noise[tt], steps h += dt_rnn / tau (drive - h);
  when the accumulated time reaches dt it takes the error r - data[i] against the next unlearned data sample i
  (so the rate one model step before sample i + 1 is compared with sample i, as the reference does), adds
  mean(err^2) to chi2 and, in a training run, updates P and J by rank-1 recursive least squares with r;
- pVar compares the data with the rates at the model steps nearest each data time.

Multi-trial data are concatenated into one series with the state reset to the data at every trial start and
reset point (the reference's ``resetPoints``, which crash in its Python port). Inputs, when the model has
them, add B u[tt // dt_factor] to the drive and u to the regressors; ``model.target`` chooses the error
(``rates`` is the reference's). With ``draw_weights`` the initial J and the noise come from numpy's legacy
``RandomState(model.seed)`` in the reference's order (the unit permutation, the noise, J), so a run
reproduces ``np.random.seed(seed); trainMultiRegionRNN(...)`` up to rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from neurofit.rnn.model import DataConstrainedRNN, FitData, pvar
from neurofit.rnn.rls_update import DeferredRLS, RLSState


@dataclass
class Schedule:
    """When the reference does what, in model steps.

    Attributes:
        n_steps: model steps (``len(tRNN)``).
        learn: model step -> the data sample its error is taken against.
        record: model step -> the data sample whose model rate it gives (``iModelSample``).
        resets: model step -> the data sample the state is reset to.
    """

    n_steps: int
    learn: dict[int, int]
    record: dict[int, int]
    resets: dict[int, int]


def curbd_schedule(n_samples: int, dt: float, dt_factor: int, reset_samples: list[int]) -> Schedule:
    """The reference's time grid, learning times (accumulated in float64 exactly as it does), model sample
    indices and reset steps (sample s resets at model step s * dt_factor) for a series of ``n_samples``."""
    dt_rnn = dt / float(dt_factor)
    t_data = dt * np.arange(n_samples)
    t_rnn = np.arange(0, t_data[-1] + dt_rnn, dt_rnn)
    learn, t_learn = {}, 0.0
    for tt in range(1, len(t_rnn)):
        t_learn += dt_rnn
        if t_learn >= dt:
            t_learn = 0.0
            if len(learn) < n_samples:
                learn[tt] = len(learn)
    # argmin |tRNN - tData[i]|, the first of ties, through the two grid neighbours of each data time
    right = np.clip(np.searchsorted(t_rnn, t_data), 1, len(t_rnn) - 1)
    nearest = np.where(t_data - t_rnn[right - 1] <= t_rnn[right] - t_data, right - 1, right)
    record = {int(step): i for i, step in enumerate(nearest)}
    return Schedule(len(t_rnn), learn, record, {s * dt_factor: s for s in reset_samples})


def reference_draws(seed: int, n_units: int, n_steps: int, g: float, noise_amp: float, noise_tau: float,
                    dt_rnn: float) -> tuple[np.ndarray, np.ndarray]:
    """The reference's random draws from ``RandomState(seed)``: initial J (N, N) and the filtered white noise
    (n_steps, N), float64."""
    rs = np.random.RandomState(seed)
    rs.permutation(n_units)  # the reference's learnList: every unit learns, only its draw matters here
    white = (math.sqrt(noise_tau / dt_rnn) * rs.randn(n_units, n_steps)).T.copy()
    J = g * rs.randn(n_units, n_units) / math.sqrt(n_units)
    noise = np.ones_like(white)
    decay = np.exp(-(dt_rnn / noise_tau))
    for tt in range(1, n_steps):
        noise[tt] = white[tt] + (noise[tt - 1] - white[tt]) * decay
    return J, noise_amp * noise


def _series(t: torch.Tensor) -> torch.Tensor:
    """(trial, N, time) -> (trial * time, N): trials one after another, one row per sample."""
    return t.permute(0, 2, 1).reshape(-1, t.shape[1]).contiguous()


class CurbdTrainer:
    """The reference loop over the concatenated trials, one run at a time.

    Args:
        model: the RNN, on the device and dtype of ``fd``.
        fd: data tensors.
        p0: initial P scale.
        draw_weights: set the initial J from the reference's random draws (``rls.init: random``).
        defer: rank-1 updates held and applied together (``rls.defer_updates``, ``DeferredRLS``); 1: none.
        p0_inter: prior variance of inter-region weights (``rls.P0_inter``, not with ``defer``); None: p0.
    """

    def __init__(self, model: DataConstrainedRNN, fd: FitData, p0: float, draw_weights: bool,
                 defer: int = 1, p0_inter: float | None = None) -> None:
        self.model, self.fd = model, fd
        n_trials, n, n_samples = fd.h.shape
        device, self.dtype = fd.h.device, fd.h.dtype
        self.start, self.targets = _series(fd.start), _series(fd.targets)
        self.exog = None if fd.exog is None else fd.exog.reshape(-1, fd.exog.shape[-1])
        resets = {k * n_samples for k in range(1, n_trials)}
        if fd.resets is not None:
            trials, samples = torch.nonzero(fd.resets, as_tuple=True)
            resets |= set((trials * n_samples + samples).tolist())
        self.schedule = curbd_schedule(n_trials * n_samples, model.dt, model.cfg.dt_factor, sorted(resets))
        J, noise = self._draws(model.cfg.seed)
        if draw_weights:
            model.set_initial_weights_(torch.as_tensor(J))
        self.noise = torch.as_tensor(noise, device=device, dtype=self.dtype)
        self.state = (RLSState(model, p0, device, self.dtype, p0_inter) if defer == 1
                      else DeferredRLS(model, p0, device, self.dtype, defer))
        #: (learning events, N) the errors of the last run, one row per learning event (chi2 is their sum)
        self.errors = torch.empty(max(1, len(self.schedule.learn)), n, device=device, dtype=self.dtype)

    @property
    def P(self) -> torch.Tensor:
        """The inverse correlation matrix of the learned regressors."""
        return self.state.P

    def _draws(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.model.cfg
        return reference_draws(seed, self.model.n_units, self.schedule.n_steps, cfg.g, cfg.noise_amp,
                               cfg.noise_tau, self.model.dt / cfg.dt_factor)

    @torch.no_grad()
    def simulate(self, learn: bool, noise: torch.Tensor) -> tuple[torch.Tensor, float]:
        """One pass of the reference loop.

        Returns:
            model rates (trial, N, time) at the data samples and chi2.
        """
        model, sched = self.model, self.schedule
        n, factor = model.n_units, model.cfg.dt_factor
        J, B = model.weight.data[:, :n], model.weight.data[:, n:]  # views: updates are seen at once
        start, targets, exog = self.start, self.targets, self.exog
        noise_steps, rows = noise.unbind(0), start.unbind(0)
        errors = self.errors.unbind(0)
        # Rates are kept in data-sample order as the loop reaches them (the reference's RNN[:, iModelSample]).
        rates = [None] * len(start)
        h = rows[0]
        rates[sched.record[0]] = model.phi(h)
        for tt in range(1, sched.n_steps):
            reset = sched.resets.get(tt)
            if reset is not None:
                h = rows[reset]
            r = model.phi(h)
            sample = sched.record.get(tt)
            if sample is not None:
                rates[sample] = r
            drive = torch.addmv(noise_steps[tt], J, r)
            u = None if exog is None else exog[min(tt // factor, len(exog) - 1)]
            if u is not None:
                drive = torch.addmv(drive, B, u)
            x = r if u is None else torch.cat([r, u])
            held = self.state.correction(x)
            if held is not None:
                drive = drive + held
            h = torch.lerp(h, drive, model.alpha)
            i = sched.learn.get(tt)
            if i is not None:
                err = torch.sub(model.output(r, drive), targets[i], out=errors[i])
                if learn:
                    self.state.update(x[None], err[None])
        self.state.flush()
        n_trials, _, n_samples = self.fd.h.shape
        chi2 = float(self.errors[: len(sched.learn)].double().pow(2).mean(dim=1).sum())
        return torch.stack(rates).reshape(n_trials, n_samples, n).transpose(1, 2), chi2

    def run(self) -> tuple[float, float]:
        """One training run; returns its (pVar, chi2) as the reference prints them."""
        rates, chi2 = self.simulate(True, self.noise)
        return pvar(self.fd.rates, rates), chi2

    def free_run(self, noise_seed: int) -> tuple[torch.Tensor, float, float]:
        """A run without learning (the reference's free runs) with the training noise when ``noise_seed`` is
        the model's seed, else with the noise of that seed. Returns rates (trial, N, time), pVar and chi2."""
        noise = self.noise
        if noise_seed != self.model.cfg.seed:
            noise = torch.as_tensor(self._draws(noise_seed)[1], device=self.noise.device, dtype=self.dtype)
        rates, chi2 = self.simulate(False, noise)
        return rates, pvar(self.fd.rates, rates), chi2
