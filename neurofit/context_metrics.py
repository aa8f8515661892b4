"""Metrics "with population context": how well each held-out neuron is predicted from the stimulus and the
other neurons' recorded activity (its own response masked out), beside the stimulus-only prediction.

These are not SENSORIUM metrics and are reported apart from them (``metrics.json``,
``with_population_context``): a prediction that reads the recorded responses of the same trial follows
trial-to-trial fluctuations that no stimulus-only model can, so only the single-trial correlation is scored
(correlation to the repeat average and FEVE assume a prediction that is the same on every repeat).
"""

from __future__ import annotations

import numpy as np

from neurofit.metrics import correlation

DESCRIPTION = ("each neuron predicted from the stimulus and the other neurons' recorded responses (same trial; "
               "movies: the previous frame), its own response masked out; single-trial correlation only, not "
               "comparable with the stimulus-only SENSORIUM metrics beside it")
#: Reliability groups: quantiles of the oracle correlation (per neuron) that split the neurons.
RELIABILITY_QUANTILES = (0.0, 1 / 3, 2 / 3, 1.0)


def _mean(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else None


def context_summary(stimulus_only: np.ndarray, with_context: np.ndarray, resp: np.ndarray,
                    reliability: np.ndarray) -> dict:
    """One recording's context metrics from (sample, neuron) predictions (recording units) without and with
    context, the responses, and a per-neuron reliability (N,) (the oracle correlation; NaN where unknown).

    Returns n_neurons, single_trial_correlation (with context), stimulus_only_single_trial_correlation, gain
    (their difference, mean over neurons) and ``gain_by_reliability``: per tercile of reliability the
    range, neuron count and the three means.
    """
    r_stim, r_ctx = correlation(stimulus_only, resp), correlation(with_context, resp)
    out = {"n_neurons": int(resp.shape[1]), "single_trial_correlation": _mean(r_ctx),
           "stimulus_only_single_trial_correlation": _mean(r_stim), "gain": _mean(r_ctx - r_stim)}
    known = np.isfinite(reliability)
    groups = []
    if known.any():
        edges = np.quantile(reliability[known], RELIABILITY_QUANTILES)
        which = np.clip(np.searchsorted(edges, reliability, side="right") - 1, 0, len(edges) - 2)
        for g in range(len(edges) - 1):
            members = known & (which == g)
            groups.append({"oracle_correlation_range": [float(edges[g]), float(edges[g + 1])],
                           "n_neurons": int(members.sum()), "stimulus_only": _mean(r_stim[members]),
                           "with_context": _mean(r_ctx[members]), "gain": _mean((r_ctx - r_stim)[members])})
    out["gain_by_reliability"] = groups
    return out


def mean_context(summaries: dict[str, dict]) -> dict:
    """Mean over recordings of the three correlations of ``context_summary``."""
    keys = ("single_trial_correlation", "stimulus_only_single_trial_correlation", "gain")
    return {k: _mean(np.array([s[k] for s in summaries.values() if s[k] is not None], dtype=float)) for k in keys}
