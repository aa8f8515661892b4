"""Data-driven start of readouts before training: positions at RF centres estimated from the training tier and,
on a transferred core, feature weights by ridge regression on the core's features at those positions."""

from __future__ import annotations

import numpy as np
import torch

from neurofit.data.datamodule import RecordingArrays
from neurofit.models.readouts.rf_mapping import (
    centres_from_scores,
    estimate_rf_centres,
    ridge_score_maps,
    scores_near,
)
from neurofit.models.readouts.ridge_gcv import ridge_weights

#: Per output nonlinearity, the offset of its linear part (elu + 1 is x + 1 for x > 0, softplus ~ x for x >> 0):
#: a drive of (predicted response - offset) puts the predicted response out.
LINEAR_OFFSET = {"elu1": 1.0, "softplus": 0.0}


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


@torch.no_grad()
def core_features(encoder: torch.nn.Module, recording: str, stimulus: np.ndarray,
                  batch_size: int = 256) -> torch.Tensor:
    """The core's feature maps (T, C, h, w) of static images ``stimulus`` (T, H, W) of ``recording``, on the
    inputs the encoder gives it (z-scored with the recording's training statistics), the core in eval mode
    (its mode is restored afterwards)."""
    core, was_training = encoder.core, encoder.core.training
    core.eval()
    parts = []
    for start in range(0, len(stimulus), batch_size):
        stim, _, _ = encoder._normalise(recording, torch.as_tensor(stimulus[start:start + batch_size]), None, None)
        parts.append(encoder.core_features(stim))
    core.train(was_training)
    return torch.cat(parts)


@torch.no_grad()
def readout_features(encoder: torch.nn.Module, recording: str, features: torch.Tensor) -> torch.Tensor:
    """The features (T, N, C) that each of ``recording``'s N readouts reads from core feature maps
    ``features`` (T, C, h, w) at its mean position (no sampling jitter, no eye-position shift), the readout
    in eval mode (its mode is restored afterwards)."""
    readout = encoder.readouts[recording]
    modes = {m: m.training for m in readout.modules()}
    readout.eval()
    out = readout(features).features
    for module, mode in modes.items():
        module.training = mode
    return out


@torch.no_grad()
def init_readouts(encoder: torch.nn.Module, recordings: dict[str, RecordingArrays], trained_core: bool = False,
                  max_samples: int = 5000, lag_frames: int = 4,
                  map_radius_px: float = 4.0) -> dict[str, dict[str, float]]:
    """Start every readout from its training data, each recording's mapping samples (``mapping_samples``)
    read once and run through the core once:

    - configured with ``position_init: rf_map``, positions at RF centres mapped by contrast energy
      (``estimate_rf_centres``), or, with a ``trained_core`` (one transferred from another run) and static
      images, where a ridge regression on all the core's channels predicts the neuron best
      (``ridge_score_maps``), which finds RFs in far fewer trials (on the default simulated data, 1,000
      trials left energy-mapped centres 14 px from those of 4,000), then the best pixel within
      ``map_radius_px`` of the retinotopic map fitted to those centres;
    - with a ``trained_core``, configured with ``feature_init: ridge`` (static images only), feature weights
      and bias at the ridge regression (``ridge_weights``) of its training responses, in units of the training
      std, on the features it reads at those positions (``readout_features``), shifted by the output's
      ``LINEAR_OFFSET``: a frozen core's readouts then start near their optimum instead of at random weights.

    Returns, per initialised recording, the median mapping ``strength`` and/or the median relative ridge
    ``penalty``."""
    done = {}
    for name, arrays in recordings.items():
        readout, video = encoder.readouts[name], encoder.specs[name].video
        positions = getattr(readout, "position_init", None) == "rf_map"
        weights = trained_core and not video and getattr(readout, "feature_init", None) == "ridge"
        if not (positions or weights):
            continue
        stim, resp = mapping_samples(arrays, max_samples, lag_frames)
        features = core_features(encoder, name, stim) if trained_core and not video else None
        done[name] = {}
        if positions:
            if features is None:
                rf = estimate_rf_centres(stim, resp)
            else:
                scores = ridge_score_maps(features, resp, stim.shape[1:])
                rf = centres_from_scores(scores)
                if readout.map_positions() is not None:
                    # Second pass: each neuron's best pixel near where the retinotopic map fitted to the first
                    # centres puts it. A peak far from the map is more often noise than real scatter.
                    readout.init_positions(torch.from_numpy(rf.centres_px), torch.from_numpy(rf.strength))
                    rf = centres_from_scores(scores_near(scores, readout.map_positions(), map_radius_px))
            readout.init_positions(torch.from_numpy(rf.centres_px), torch.from_numpy(rf.strength))
            done[name]["strength"] = float(np.median(rf.strength))
        if weights:
            target = torch.from_numpy(resp) / encoder.response_std(name).cpu()
            w, intercept, penalty = ridge_weights(readout_features(encoder, name, features).cpu(), target)
            readout.embedding.copy_(w)
            readout.bias.copy_(intercept - LINEAR_OFFSET[encoder.output_name])
            done[name]["penalty"] = float(penalty.median())
    return done

