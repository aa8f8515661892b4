"""Metrics "with population context": how well each held-out neuron is predicted from the stimulus and the
other neurons' recorded activity (its own response masked out), beside the stimulus-only prediction.

These are not SENSORIUM metrics and are reported apart from them (``metrics.json``,
``with_population_context``): a prediction that reads the recorded responses of the same trial follows
trial-to-trial fluctuations that no stimulus-only model can, so only the single-trial correlation is scored
(correlation to the repeat average and FEVE assume a prediction that is the same on every repeat).
"""

from __future__ import annotations

import numpy as np

from neurofit.metrics import correlation, finite_mean, quantile_bins

DESCRIPTION = ("each neuron predicted from the stimulus and the other neurons' recorded responses (same trial; "
               "movies: the previous frame), its own response masked out; single-trial correlation only, not "
               "comparable with the stimulus-only SENSORIUM metrics beside it")
#: Reliability groups: equal-count bins of the oracle correlation (per neuron).
RELIABILITY_BINS = 3
KEYS = ("single_trial_correlation", "stimulus_only_single_trial_correlation", "gain")


def context_summary(r_stim: np.ndarray, with_context: np.ndarray, resp: np.ndarray,
                    reliability: np.ndarray) -> dict:
    """One recording's context metrics from the stimulus-only single-trial correlation per neuron (N,), the
    (sample, neuron) predictions with context (recording units), the responses, and a per-neuron reliability
    (N,) (the oracle correlation; NaN where unknown).

    Returns n_neurons, single_trial_correlation (with context), stimulus_only_single_trial_correlation, gain
    (their difference, mean over neurons) and ``gain_by_reliability``: per tercile of reliability the
    range, neuron count and the three means.
    """
    r_ctx = correlation(with_context, resp)
    out = {"n_neurons": int(resp.shape[1]), "single_trial_correlation": finite_mean(r_ctx),
           "stimulus_only_single_trial_correlation": finite_mean(r_stim), "gain": finite_mean(r_ctx - r_stim)}
    known = np.isfinite(reliability)
    groups = []
    if known.any():
        edges, which = quantile_bins(reliability, RELIABILITY_BINS)
        for g in range(RELIABILITY_BINS):
            members = known & (which == g)
            groups.append({"oracle_correlation_range": [float(edges[g]), float(edges[g + 1])],
                           "n_neurons": int(members.sum()), "stimulus_only": finite_mean(r_stim[members]),
                           "with_context": finite_mean(r_ctx[members]),
                           "gain": finite_mean((r_ctx - r_stim)[members])})
    out["gain_by_reliability"] = groups
    return out
