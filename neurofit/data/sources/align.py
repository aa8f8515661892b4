"""Align continuously sampled traces (imaging, running) to stimulus presentations, and split trials into tiers.

Pure numpy so that the rules are testable without any file format: a trace is ``(times (T,) in seconds,
values (T, C))``; a presentation is an onset time; a window starts ``offset_s`` after the onset and lasts
``duration_s``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Window:
    """Where to read responses relative to each stimulus onset.

    Attributes:
        offset_s: window start relative to the onset, seconds (positive = after the onset).
        duration_s: window length in seconds; None = the median presentation duration of the source (or
            ``DEFAULT_DURATION_S`` when the source has no stop times).
        frames: False gives one mean per trial (trial, neuron); True keeps the imaging samples of the window,
            (trial, frame, neuron) at the imaging rate.
    """

    offset_s: float = 0.0
    duration_s: float | None = None
    frames: bool = False


#: Window length when neither the user nor the source (stop times) gives one.
DEFAULT_DURATION_S = 0.5


def window_means(times: np.ndarray, values: np.ndarray, onsets: np.ndarray, offset_s: float,
                 duration_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the samples with ``onset + offset <= t < onset + offset + duration``, per onset.

    Args:
        times: (T,) sample times in seconds, increasing; values: (T, C).
        onsets: (trial,) presentation onsets in seconds.
    Returns:
        means (trial, C) float64 (NaN where the window holds no sample) and a (trial,) bool mask of windows
        that hold at least one sample.
    """
    starts = np.searchsorted(times, onsets + offset_s, side="left")
    stops = np.searchsorted(times, onsets + offset_s + duration_s, side="left")
    csum = np.concatenate([np.zeros((1, values.shape[1])), np.cumsum(values, axis=0, dtype=np.float64)])
    counts = stops - starts
    valid = counts > 0
    means = np.full((len(onsets), values.shape[1]), np.nan)
    means[valid] = (csum[stops[valid]] - csum[starts[valid]]) / counts[valid, None]
    return means, valid


def window_frames(times: np.ndarray, values: np.ndarray, onsets: np.ndarray, offset_s: float,
                  n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n_frames`` samples starting at the first sample at or after ``onset + offset``, per onset.

    Returns:
        (trial, n_frames, C) values in the source dtype promoted to hold NaN (NaN past the end of the
        recording) and a (trial, n_frames) bool mask of frames that exist.
    """
    starts = np.searchsorted(times, onsets + offset_s, side="left")
    index = starts[:, None] + np.arange(n_frames)[None, :]
    valid = index < len(times)
    out = np.full(index.shape + (values.shape[1],), np.nan, dtype=np.result_type(values.dtype, np.float32))
    out[valid] = values[index[valid]]
    return out, valid


def resample(times: np.ndarray, values: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Linear interpolation of (T, C) ``values`` sampled at ``times`` onto ``target`` times; outside the
    sampled span the first/last value is held (a behaviour trace a few samples shorter than the imaging should
    not discard trials)."""
    return np.stack([np.interp(target, times, values[:, c]) for c in range(values.shape[1])], axis=1)


def assign_tiers(stimulus_id: np.ndarray, test_fraction: float = 0.1,
                 validation_fraction: float = 0.1) -> np.ndarray:
    """Split trials into ``train``/``validation``/``test`` by stimulus, so repeats never straddle tiers.

    The most repeated stimuli go to ``test`` (repeats are what the oracle and FEVE metrics need), then a
    deterministic pseudo-random share of the remaining stimuli to ``validation``; the rest train. Each of
    test and validation gets at least one stimulus when there are three or more.

    Args:
        stimulus_id: (trial,) stimulus identities.
    Returns:
        (trial,) tier labels.
    """
    ids, inverse, counts = np.unique(stimulus_id, return_inverse=True, return_counts=True)
    n = len(ids)
    n_test = max(1, round(test_fraction * n)) if n >= 3 else 0
    n_val = max(1, round(validation_fraction * n)) if n >= 3 else 0
    # ties in repeat counts are broken by a fixed permutation so the split does not depend on id order
    shuffle = np.random.default_rng(0).permutation(n)
    order = np.lexsort((shuffle, -counts))
    labels = np.full(n, "train", dtype="<U10")
    labels[order[:n_test]] = "test"
    rest = order[n_test:]
    labels[rest[np.argsort(shuffle[rest])][:n_val]] = "validation"
    return labels[inverse.ravel()]
