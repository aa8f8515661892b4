"""Data-driven start of readout positions: RF centres estimated from the training tier before training."""

from __future__ import annotations

import numpy as np
import torch

from neurofit.data.datamodule import RecordingArrays
from neurofit.models.readouts.rf_mapping import estimate_rf_centres


def mapping_samples(arrays: RecordingArrays, max_samples: int, lag_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Stimulus-response pairs from the training tier for RF mapping.

    Static recordings give (T, H, W) images and (T, N) responses from up to ``max_samples`` evenly spaced
    training trials. Videos give frames paired with the neuron's mean response over the next ``lag_frames``
    frames (visual and calcium latency), only where the whole window is recorded (``response_mask``), from
    as many trials as keep the frame count near ``max_samples``.
    """
    trials = arrays.trials("train")
    probe = arrays.read(trials[:1])
    per_trial = 1 if probe["responses"].ndim == 2 else probe["responses"].shape[1]
    n_trials = max(1, min(len(trials), max_samples // per_trial))
    chosen = trials[np.linspace(0, len(trials) - 1, n_trials).round().astype(int)]
    data = arrays.read(np.unique(chosen))
    stim, resp = np.asarray(data["stimulus"], np.float32), np.asarray(data["responses"], np.float32)
    if resp.ndim == 2:
        keep = np.isfinite(resp).all(1)
        return stim[keep], resp[keep]
    frames = resp.shape[1]
    lag = max(1, min(lag_frames, frames - 1))
    valid = np.isfinite(resp).all(2)  # (trial, frame); padded frames may hold NaN
    if data.get("response_mask") is not None:
        valid &= np.asarray(data["response_mask"], bool)
    later = np.stack([resp[:, k:frames - lag + k] for k in range(1, lag + 1)]).mean(0)
    ok = np.stack([valid[:, k:frames - lag + k] for k in range(0, lag + 1)]).all(0)
    return stim[:, :frames - lag][ok], later[ok]


def init_readout_positions(encoder: torch.nn.Module, recordings: dict[str, RecordingArrays],
                           max_samples: int = 5000, lag_frames: int = 4) -> dict[str, float]:
    """Start every readout configured with ``position_init: rf_map`` at RF centres mapped from its training
    data (``estimate_rf_centres``). Returns the median mapping strength per initialised recording."""
    done = {}
    for name, arrays in recordings.items():
        readout = encoder.readouts[name]
        if getattr(readout, "position_init", None) != "rf_map":
            continue
        stim, resp = mapping_samples(arrays, max_samples, lag_frames)
        rf = estimate_rf_centres(stim, resp)
        readout.init_positions(torch.from_numpy(rf.centres_px), torch.from_numpy(rf.strength))
        done[name] = float(np.median(rf.strength))
    return done
