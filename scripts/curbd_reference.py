"""A numpy port of CURBD's ``trainMultiRegionRNN`` (rajanlab/CURBD ``curbd.py``, Perich et al. 2020), the yardstick
of ``scripts/benchmark_curbd.py`` and of the step-for-step test of ``rls.loop: curbd``.

Written from the reference, operation for operation and with its random draws in its order from a legacy
``RandomState`` (the reference draws from numpy's global one: ``np.random.seed(seed)`` then the call gives
the same numbers): the unit permutation, the white noise, J. Kept as the reference computes, so its timing is
the reference's: column vectors, the P and J updates that allocate new matrices, J's columns written through
the permutation. One change: at a reset point the state is set as a column (the Python port assigns a 1-D
row there and crashes; the MATLAB original sets the column), so multi-trial data with ``resetPoints`` run.
Plotting and printing are left out.
"""

from __future__ import annotations

import math

import numpy as np


class ReferenceRNN:
    """The reference's state and one run of its loop at a time.

    Args:
        activity: (N, T) data, concatenated trials for multi-trial data.
        dt_data: seconds per sample; dt_factor: model steps per sample; g, tau_rnn, tau_wn, amp_in_wn, p0: the
            reference's ``g``, ``tauRNN``, ``tauWN``, ``ampInWN``, ``P0``.
        reset_points: model steps where the state is set to the data (``resetPoints``).
        seed: seed of the ``RandomState`` the draws come from.
    """

    def __init__(self, activity: np.ndarray, dt_data: float, *, dt_factor: int = 5, g: float = 1.5,
                 tau_rnn: float = 0.1, tau_wn: float = 0.1, amp_in_wn: float = 0.01, p0: float = 1.0,
                 reset_points: tuple[int, ...] = (0,), seed: int = 0) -> None:
        rs = np.random.RandomState(seed)
        n = activity.shape[0]
        self.n_units, self.dt_data, self.dt_factor, self.tau_rnn = n, dt_data, dt_factor, tau_rnn
        self.targets = rs.permutation(n)[:n]  # iTarget: every unit is a target
        self.dt_rnn = dt_data / float(dt_factor)
        self.t_data = dt_data * np.arange(activity.shape[1])
        self.t_rnn = np.arange(0, self.t_data[-1] + self.dt_rnn, self.dt_rnn)
        white = math.sqrt(tau_wn / self.dt_rnn) * rs.randn(n, len(self.t_rnn))
        noise = np.ones((n, len(self.t_rnn)))
        for tt in range(1, len(self.t_rnn)):
            noise[:, tt] = white[:, tt] + (noise[:, tt - 1] - white[:, tt]) * np.exp(-(self.dt_rnn / tau_wn))
        self.noise = amp_in_wn * noise
        self.J = g * rs.randn(n, n) / math.sqrt(n)
        self.J0 = self.J.copy()
        data = activity.copy() / activity.max()
        self.data = np.maximum(np.minimum(data, 0.999), -0.999)
        self.std_data = np.std(self.data[self.targets, :])
        self.model_sample = np.array([np.abs(self.t_rnn - t).argmin() for t in self.t_data], dtype=np.int32)
        self.rnn = np.zeros((n, len(self.t_rnn)))
        self.P = p0 * np.eye(n)
        self.reset_points = set(reset_points)

    def run(self, train: bool) -> tuple[float, float]:
        """One pass over the data (a training run when ``train``, else a free run); returns (pVar, chi2)."""
        n, data, rnn = self.n_units, self.data, self.rnn
        h = data[:, 0, np.newaxis]  # column vector: the reference starts from the data itself
        rnn[:, 0, np.newaxis] = np.tanh(h)
        t_learn, i_learn, chi2 = 0.0, 0, 0.0
        for tt in range(1, len(self.t_rnn)):
            t_learn += self.dt_rnn
            if tt in self.reset_points:
                h = data[:, math.floor(tt / self.dt_factor), np.newaxis]
            rnn[:, tt, np.newaxis] = np.tanh(h)
            drive = self.J.dot(rnn[:, tt]).reshape((n, 1)) + self.noise[:, tt, np.newaxis]
            h = h + self.dt_rnn * (-h + drive) / self.tau_rnn
            if t_learn < self.dt_data:
                continue
            t_learn = 0.0
            err = rnn[:, tt, np.newaxis] - data[:, i_learn, np.newaxis]  # rate error against the next sample
            i_learn += 1
            chi2 += np.mean(err ** 2)
            if train:
                r = rnn[self.targets, tt].reshape(n, 1)
                k = self.P.dot(r)
                c = 1.0 / (1.0 + r.T.dot(k)[0, 0])
                self.P = self.P - c * k.dot(k.T)
                self.J[:, self.targets] = self.J[:, self.targets] - c * np.outer(err.flatten(), k.flatten())
        model = rnn[self.targets, :][:, self.model_sample]
        distance = np.linalg.norm(data[self.targets, :] - model)
        pvar = 1 - (distance / (math.sqrt(len(self.targets) * len(self.t_data)) * self.std_data)) ** 2
        return float(pvar), float(chi2)

    def model_rates(self) -> np.ndarray:
        """(N, T) the last run's rates at the data samples."""
        return self.rnn[:, self.model_sample]
