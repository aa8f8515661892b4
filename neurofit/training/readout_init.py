"""Data-driven start of readouts before training: positions at RF centres estimated from the training tier and,
on a transferred core, feature weights by ridge regression on the core's features at those positions."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from neurofit.data.datamodule import RecordingArrays
from neurofit.models.readouts.rf_mapping import centres_from_maps, estimate_rf_centres

#: Ridge penalties tried for the feature-weight start, in units of the mean eigenvalue of a neuron's feature
#: covariance; generalised cross-validation picks one per neuron.
RIDGE_GRID = torch.logspace(-4, 1, 11)
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
def core_maps(encoder: torch.nn.Module, recording: str, stimulus: np.ndarray,
              batch_size: int = 256) -> Iterator[torch.Tensor]:
    """The core's feature maps of static images ``stimulus`` (T, H, W) of ``recording``, one (T, H, W) map per
    channel, bilinearly resampled from the core's grid to the screen's pixels. The core runs in eval mode on
    the inputs the encoder gives it (z-scored with the recording's training statistics)."""
    core, was_training = encoder.core, encoder.core.training
    core.eval()
    parts = []
    for start in range(0, len(stimulus), batch_size):
        stim, _, _ = encoder._normalise(recording, torch.as_tensor(stimulus[start:start + batch_size]), None, None)
        parts.append(encoder.core_features(stim))
    core.train(was_training)
    features = torch.cat(parts)  # (T, C, h, w)
    for channel in range(features.shape[1]):
        yield torch.nn.functional.interpolate(features[:, channel:channel + 1], size=stimulus.shape[1:],
                                              mode="bilinear", align_corners=True)[:, 0]


def init_readout_positions(encoder: torch.nn.Module, recordings: dict[str, RecordingArrays],
                           max_samples: int = 5000, lag_frames: int = 4,
                           trained_core: bool = False) -> dict[str, float]:
    """Start every readout configured with ``position_init: rf_map`` at RF centres mapped from its training
    data: by contrast energy (``estimate_rf_centres``), or, with a ``trained_core`` (one transferred from
    another run) and static images, by the core's own feature maps (``core_maps``), which find RFs in far
    fewer trials (on the default simulated data, 1,000 trials left energy-mapped centres 14 px from those of
    4,000). Returns the median mapping strength per initialised recording."""
    done = {}
    for name, arrays in recordings.items():
        readout = encoder.readouts[name]
        if getattr(readout, "position_init", None) != "rf_map":
            continue
        stim, resp = mapping_samples(arrays, max_samples, lag_frames)
        if trained_core and not encoder.specs[name].video:
            rf = centres_from_maps(core_maps(encoder, name, stim), resp)
        else:
            rf = estimate_rf_centres(stim, resp)
        readout.init_positions(torch.from_numpy(rf.centres_px), torch.from_numpy(rf.strength))
        done[name] = float(np.median(rf.strength))
    return done


@torch.no_grad()
def readout_features(encoder: torch.nn.Module, recording: str, stimulus: np.ndarray,
                     batch_size: int = 256) -> torch.Tensor:
    """The core's features (T, N, C) that each of ``recording``'s N readouts reads from static images
    ``stimulus`` (T, H, W) at its mean position (no sampling jitter, no eye-position shift), the whole encoder
    in eval mode (every module's mode is restored afterwards)."""
    modes = {m: m.training for m in encoder.modules()}
    encoder.eval()
    parts = []
    for start in range(0, len(stimulus), batch_size):
        stim, _, _ = encoder._normalise(recording, torch.as_tensor(stimulus[start:start + batch_size]), None, None)
        parts.append(encoder.readouts[recording](encoder.core_features(stim)).features)
    for module, mode in modes.items():
        module.training = mode
    return torch.cat(parts)


def ridge_weights(features: torch.Tensor, target: torch.Tensor,
                  grid: torch.Tensor = RIDGE_GRID) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-neuron ridge regression of ``target`` (T, N) on its own ``features`` (T, N, C), with an unpenalised
    intercept; the penalty of each neuron is the one of ``grid`` (x its mean feature-covariance eigenvalue)
    with the lowest generalised cross-validation error. Returns the weights (N, C), the intercepts (N,) and
    the chosen relative penalties (N,)."""
    x = features.double().transpose(0, 1)  # (N, T, C)
    y = target.double().T  # (N, T)
    x_mean, y_mean = x.mean(1, keepdim=True), y.mean(1, keepdim=True)
    xc, yc = x - x_mean, y - y_mean
    eig, vec = torch.linalg.eigh(xc.transpose(1, 2) @ xc)  # (N, C), (N, C, C)
    eig = eig.clamp_min(0)
    proj = (vec.transpose(1, 2) @ (xc.transpose(1, 2) @ yc[..., None]))[..., 0]  # (N, C)
    lam = grid.double()[:, None, None] * eig.mean(1)[None, :, None]  # (K, N, 1)
    coef = torch.einsum("nij,knj->kni", vec, proj / (eig + lam))  # (K, N, C)
    rss = ((yc[None] - torch.einsum("ntc,knc->knt", xc, coef)) ** 2).sum(-1)  # (K, N)
    dof = (eig / (eig + lam)).sum(-1)  # (K, N)
    best = (rss / (x.shape[1] - dof - 1).clamp_min(1) ** 2).argmin(0)  # (N,)
    weights = coef[best, torch.arange(len(best))]
    intercept = y_mean[:, 0] - (x_mean[:, 0] * weights).sum(-1)
    return weights.float(), intercept.float(), grid[best]


@torch.no_grad()
def init_readout_features(encoder: torch.nn.Module, recordings: dict[str, RecordingArrays],
                          max_samples: int = 5000) -> dict[str, float]:
    """Start the feature weights and bias of every readout configured with ``feature_init: ridge`` (static
    images only) at the ridge regression (``ridge_weights``) of its training responses, in units of the
    training std, on the features it reads at its current positions (``readout_features``; call after
    ``init_readout_positions``), shifted by the output's ``LINEAR_OFFSET``. Meant for a transferred core,
    whose features already describe the stimulus: a frozen core's readouts then start near their optimum
    instead of at random weights. Returns the median relative penalty chosen per initialised recording."""
    done = {}
    for name, arrays in recordings.items():
        readout = encoder.readouts[name]
        if getattr(readout, "feature_init", None) != "ridge" or encoder.specs[name].video:
            continue
        stim, resp = mapping_samples(arrays, max_samples, 0)
        target = torch.from_numpy(resp) / encoder.response_std(name).cpu()
        weights, intercept, penalty = ridge_weights(readout_features(encoder, name, stim).cpu(), target)
        readout.embedding.copy_(weights)
        readout.bias.copy_(intercept - LINEAR_OFFSET[encoder.output_name])
        done[name] = float(penalty.median())
    return done
