"""Does an architecture help every neuron, or only the reliable ones? Per-neuron gain of one architecture over
another against the neuron's reliability (its oracle correlation, a property of the data alone), binned into
equal-count reliability bins with bootstrap bands, with a rank test of the trend."""

from __future__ import annotations

import itertools

import numpy as np
import xarray as xr
from scipy import stats

from neurofit.metrics import quantile_bins

#: Reliability bins (equal numbers of neurons) and bootstrap resamples per bin.
N_BINS = 5
N_BOOT = 1000


def gain_by_reliability(neuron_r: xr.DataArray, oracle: np.ndarray, n_bins: int = N_BINS, n_boot: int = N_BOOT,
                        seed: int = 0) -> xr.Dataset:
    """For every pair of architectures (a listed before b) the gain r_b - r_a per neuron against reliability.

    Args:
        neuron_r: (architecture, neuron) seed-averaged single-trial correlations.
        oracle: (neuron,) oracle (leave-one-out) correlation of each neuron, in the same order.
        n_bins: equal-count bins of reliability; n_boot: bootstrap resamples of the neurons in each bin.
    Returns a Dataset over (pair, reliability_bin): ``reliability_bin_low``/``_high`` (oracle r edges),
    ``reliability_bin_n`` (neurons), ``gain_mean`` and its 95% bootstrap band ``gain_low``/``gain_high``;
    and over ``pair``: ``gain_reliability_rho`` (Spearman rho of gain vs oracle r over neurons) and
    ``gain_reliability_p`` (its two-sided p; a small p with rho > 0 says the gain grows with reliability).
    """
    archs = [str(a) for a in neuron_r["architecture"].values]
    pairs = list(itertools.combinations(archs, 2))
    oracle = np.asarray(oracle, dtype=np.float64)
    finite = np.isfinite(oracle)
    edges, which = quantile_bins(oracle, n_bins)
    rng = np.random.default_rng(seed)
    shape = (len(pairs), n_bins)
    mean, low, high, count = (np.full(shape, np.nan) for _ in range(4))
    rho, p = np.full(len(pairs), np.nan), np.full(len(pairs), np.nan)
    for i, (a, b) in enumerate(pairs):
        gain = neuron_r.sel(architecture=b).values - neuron_r.sel(architecture=a).values
        keep = finite & np.isfinite(gain)
        if keep.sum() >= 3 and np.ptp(gain[keep]) > 0:
            test = stats.spearmanr(oracle[keep], gain[keep])
            rho[i], p[i] = float(test.statistic), float(test.pvalue)
        for k in range(n_bins):
            values = gain[keep & (which == k)]
            count[i, k] = len(values)
            if not len(values):
                continue
            mean[i, k] = values.mean()
            boot = rng.choice(values, size=(n_boot, len(values))).mean(axis=1)
            low[i, k], high[i, k] = np.quantile(boot, [0.025, 0.975])
    dims = ("pair", "reliability_bin")
    return xr.Dataset(
        {"reliability_bin_low": ("reliability_bin", edges[:-1]),
         "reliability_bin_high": ("reliability_bin", edges[1:]), "reliability_bin_n": (dims, count),
         "gain_mean": (dims, mean), "gain_low": (dims, low), "gain_high": (dims, high),
         "gain_reliability_rho": ("pair", rho), "gain_reliability_p": ("pair", p)},
        coords={"pair": [f"{b} vs {a}" for a, b in pairs], "reliability_bin": np.arange(n_bins)})
