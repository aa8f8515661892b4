"""Held-out metrics, defined as SENSORIUM 2022/2023 score them (docs/data-contract.md, section "Metrics").

All functions take ``(sample, neuron)`` arrays: for images a sample is a trial; for videos it is one frame
of one trial after the burn-in (``flatten_frames`` builds these). ``group`` labels which samples show the
same stimulus (for videos: the same frame of the same video), so repeats can be averaged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Neurons whose fraction of explainable variance is below this are left out of FEVE (SENSORIUM 2022).
FEV_THRESHOLD = 0.15
_EPS = 1e-8


def correlation(pred: np.ndarray, resp: np.ndarray) -> np.ndarray:
    """Pearson r per neuron over samples. pred, resp: (sample, neuron). Returns (neuron,).

    A neuron whose prediction or response is constant gets r = 0, as SENSORIUM's ``corr`` (eps in the
    denominator) gives, rather than NaN."""
    pred = np.asarray(pred, dtype=np.float64)
    resp = np.asarray(resp, dtype=np.float64)
    pz = pred - pred.mean(axis=0)
    rz = resp - resp.mean(axis=0)
    num = (pz * rz).mean(axis=0)
    den = pz.std(axis=0) * rz.std(axis=0)
    return num / (den + _EPS)


def _group_index(group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique groups and, per sample, the index of its group."""
    uniq, inverse = np.unique(np.asarray(group), return_inverse=True)
    return uniq, inverse.ravel()


def group_means(x: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Mean of x (sample, neuron) over samples of each group -> (group, neuron), groups in sorted order."""
    uniq, inv = _group_index(group)
    sums = np.zeros((len(uniq), x.shape[1]))
    np.add.at(sums, inv, np.asarray(x, dtype=np.float64))
    counts = np.bincount(inv, minlength=len(uniq))[:, None]
    return sums / counts


def correlation_to_average(pred: np.ndarray, resp: np.ndarray, group: np.ndarray) -> np.ndarray:
    """r per neuron between the mean prediction and the mean response over repeats of each stimulus.
    Returns (neuron,)."""
    return correlation(group_means(pred, group), group_means(resp, group))


def _repeated(group: np.ndarray) -> np.ndarray:
    """Boolean mask of samples whose group has at least two repeats."""
    _, inv = _group_index(group)
    return np.bincount(inv)[inv] >= 2


def fev_and_feve(pred: np.ndarray, resp: np.ndarray, group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fraction of explainable variance (FEV) and fraction of explainable variance explained (FEVE) per neuron.

    Over samples whose stimulus is repeated: total variance = var(resp) (ddof 1); noise variance = mean over
    stimuli of the within-stimulus variance (ddof 1); FEV = 1 - noise/total;
    FEVE = 1 - (MSE(pred, resp) - noise) / (total - noise). Returns two (neuron,) arrays."""
    keep = _repeated(group)
    if not keep.any():
        n = resp.shape[1]
        return np.full(n, np.nan), np.full(n, np.nan)
    pred = np.asarray(pred, dtype=np.float64)[keep]
    resp = np.asarray(resp, dtype=np.float64)[keep]
    group = np.asarray(group)[keep]
    uniq, inv = _group_index(group)
    counts = np.bincount(inv, minlength=len(uniq))[:, None]
    means = group_means(resp, group)
    within = np.zeros_like(means)
    np.add.at(within, inv, (resp - means[inv]) ** 2)
    noise_var = (within / (counts - 1)).mean(axis=0)
    total_var = resp.var(axis=0, ddof=1)
    fev = 1.0 - noise_var / (total_var + _EPS)
    mse = ((pred - resp) ** 2).mean(axis=0)
    feve = 1.0 - (mse - noise_var) / (total_var - noise_var + _EPS)
    return fev, feve


def oracle_correlation(resp: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Leave-one-out oracle per neuron: r between each repeat and the mean of the other repeats of the same
    stimulus, over all samples whose stimulus has >= 2 repeats. Returns (neuron,)."""
    keep = _repeated(group)
    if not keep.any():
        return np.full(resp.shape[1], np.nan)
    resp = np.asarray(resp, dtype=np.float64)[keep]
    uniq, inv = _group_index(np.asarray(group)[keep])
    sums = np.zeros((len(uniq), resp.shape[1]))
    np.add.at(sums, inv, resp)
    counts = np.bincount(inv, minlength=len(uniq))[:, None]
    loo = (sums[inv] - resp) / (counts[inv] - 1)
    return correlation(loo, resp)


def flatten_frames(x: np.ndarray, skip_frames: int, mask: np.ndarray | None = None) -> np.ndarray:
    """Video arrays (trial, frame, neuron) -> (sample, neuron): frames after the first ``skip_frames`` of
    every trial, concatenated, keeping only frames where ``mask`` (trial, frame) is True."""
    x = np.asarray(x)[:, skip_frames:]
    if mask is None:
        return x.reshape(-1, x.shape[-1])
    return x[np.asarray(mask, dtype=bool)[:, skip_frames:]]


def frame_groups(stimulus_id: np.ndarray, n_frames: int, skip_frames: int,
                 mask: np.ndarray | None = None) -> np.ndarray:
    """Group label per flattened frame sample: the same frame of the same video is one stimulus."""
    sid = np.asarray(stimulus_id).astype(str)
    labels = np.char.add(np.char.add(sid[:, None], "#"), np.arange(n_frames).astype(str)[None, :])
    return flatten_frames(labels[..., None], skip_frames, mask)[:, 0]


@dataclass
class NeuronScores:
    """Per-neuron metrics of one recording; every array is (neuron,). ``ceiling_correlation`` is the
    noise-free truth's single-trial r (simulators only, else None)."""

    single_trial_correlation: np.ndarray
    correlation_to_average: np.ndarray
    fev: np.ndarray
    feve: np.ndarray
    oracle_correlation: np.ndarray
    ceiling_correlation: np.ndarray | None = None

    def summary(self) -> dict[str, float | int | None]:
        """Recording-level numbers as in ``metrics.json``: means over neurons; FEVE over neurons with
        FEV >= 0.15; fraction_of_ceiling = mean model r / mean truth r (a ratio of means, because per-neuron
        ratios explode for unreliable neurons)."""
        explainable = self.fev >= FEV_THRESHOLD
        ceiling = None
        if self.ceiling_correlation is not None:
            ceiling = float(np.mean(self.single_trial_correlation) / np.mean(self.ceiling_correlation))
        return {
            "n_neurons": int(self.single_trial_correlation.size),
            "single_trial_correlation": finite_mean(self.single_trial_correlation),
            "correlation_to_average": finite_mean(self.correlation_to_average),
            "feve": finite_mean(self.feve[explainable]) if explainable.any() else None,
            "oracle_correlation": finite_mean(self.oracle_correlation),
            "fraction_of_ceiling": ceiling,
        }


def finite_mean(x: np.ndarray) -> float | None:
    """Mean of the finite entries of ``x`` (NaN marks a neuron without a value), None when there are none."""
    x = np.asarray(x, dtype=np.float64)
    finite = x[np.isfinite(x)]
    return float(finite.mean()) if len(finite) else None


def quantile_bins(values: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Equal-count bins of ``values`` (N,) (NaN: unknown): the n_bins + 1 quantile edges (all NaN when no
    value is finite) and each entry's bin index (N,) in 0..n_bins-1 (meaningless where the value is NaN)."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    edges = (np.quantile(values[finite], np.linspace(0, 1, n_bins + 1)) if finite.any()
             else np.full(n_bins + 1, np.nan))
    return edges, np.clip(np.searchsorted(edges, values, side="right") - 1, 0, n_bins - 1)


def score(pred: np.ndarray, resp: np.ndarray, group: np.ndarray, truth: np.ndarray | None = None) -> NeuronScores:
    """All metrics for one recording. pred, resp, truth: (sample, neuron); group: (sample,) stimulus labels."""
    fev, feve = fev_and_feve(pred, resp, group)
    return NeuronScores(
        single_trial_correlation=correlation(pred, resp),
        correlation_to_average=correlation_to_average(pred, resp, group),
        fev=fev,
        feve=feve,
        oracle_correlation=oracle_correlation(resp, group),
        ceiling_correlation=None if truth is None else correlation(truth, resp),
    )


METRIC_NAMES = ("single_trial_correlation", "correlation_to_average", "feve", "oracle_correlation",
                "fraction_of_ceiling")


def mean_over_recordings(summaries: dict[str, dict],
                         keys: tuple[str, ...] = METRIC_NAMES) -> dict[str, float | None]:
    """Unweighted mean of each recording-level metric in ``keys`` across recordings (None where no recording
    has it)."""
    out: dict[str, float | None] = {}
    for key in keys:
        values = [s[key] for s in summaries.values() if s.get(key) is not None]
        out[key] = float(np.mean(values)) if values else None
    return out
