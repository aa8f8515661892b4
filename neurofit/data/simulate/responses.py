"""The noise-free forward model of the V1 twin: Gabor filtering on the retina, simple/complex drive, divisive
normalisation, lateral coupling, behavioural gain and, for movies, temporal filtering and adaptation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from neurofit.data.simulate.population import Population
from neurofit.data.simulate.translate import shift_frames

_BLOCK = 8192


@dataclass(frozen=True)
class Calibration:
    """Per-neuron scales that put every neuron in comparable units on natural stimuli.

    Attributes:
        linear_sd: (N,) RMS of the (temporally filtered) linear response over calibration stimuli, so the
            drive is in units of its natural-stimulus standard deviation.
        mean_activity: (N,) mean normalised, coupled activity over calibration stimuli at unit gain, so that
            ``response_scale`` is the neuron's mean response.
    """

    linear_sd: np.ndarray
    mean_activity: np.ndarray


def linear_responses(stimulus: np.ndarray, eye_shift_px: np.ndarray, filters: np.ndarray,
                     mean_luminance: float) -> np.ndarray:
    """Gabor-pair responses to the image on the retina.

    The eye shift d moves every RF centre from c to c + d, which is the same as the filters at c seeing the
    image sampled at x + d (pixels outside the screen are mean grey).

    Args:
        stimulus: (B, H, W) grey levels (frames of movies flattened into B).
        eye_shift_px: (B, 2) RF displacement (x, y), pixels.
        filters: (N, 2, H, W) Gabor pairs.
    Returns:
        (B, N, 2) float32 filter outputs.
    """
    n_img, height, width = stimulus.shape
    bank = torch.from_numpy(filters.reshape(-1, height * width)).T
    out = np.empty((n_img, filters.shape[0], 2), dtype=np.float32)
    for start in range(0, n_img, _BLOCK):
        stop = min(start + _BLOCK, n_img)
        contrast = torch.from_numpy(stimulus[start:stop]) - mean_luminance
        retina = shift_frames(contrast, eye_shift_px[start:stop, 0], eye_shift_px[start:stop, 1])
        out[start:stop] = (retina.reshape(stop - start, -1) @ bank).reshape(stop - start, -1, 2).numpy()
    return out


def temporal_filter(linear: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Causal per-neuron convolution over frames; the screen is blank (zero contrast) before a trial.

    Args:
        linear: (trial, frame, N, 2) filter outputs per frame.
        kernel: (N, K) temporal kernels, lag 0 first.
    Returns:
        (trial, frame, N, 2) float32.
    """
    out = np.zeros_like(linear)
    frames = linear.shape[1]
    for lag in range(min(kernel.shape[1], frames)):
        out[:, lag:] += kernel[None, None, :, lag, None].astype(np.float32) * linear[:, :frames - lag]
    return out


def normalised_drive(linear: np.ndarray, pop: Population, linear_sd: np.ndarray, exponent: float) -> np.ndarray:
    """Simple/complex drive divided by the distance-weighted pool of the population's drives.

    Simple cells: d = sqrt(2) relu(z_even); complex cells: d = sqrt((z_even^2 + z_odd^2) / 2), with z in
    units of ``linear_sd`` so that E[d^2] is about 1 for both. Returns u = d^n / (sigma^n + P d^n), shape
    (..., N).
    """
    z = linear / linear_sd[:, None].astype(np.float32)
    simple = np.sqrt(2.0, dtype=np.float32) * np.maximum(z[..., 0], 0)
    energy = np.sqrt(0.5 * (z[..., 0] ** 2 + z[..., 1] ** 2))
    drive = np.where(pop.complex_cell, energy, simple) ** np.float32(exponent)
    pool = drive @ pop.norm_pool.T.astype(np.float32)
    return drive / (pop.norm_sigma.astype(np.float32) ** exponent + pool)


def couple_static(u: np.ndarray, coupling: np.ndarray, steps: int) -> np.ndarray:
    """Lateral recurrence r <- relu(u + C r) for ``steps`` steps from r = u. (trial, N) -> (trial, N)."""
    c_t = coupling.T.astype(np.float32)
    r = u
    for _ in range(steps):
        r = np.maximum(u + r @ c_t, 0)
    return r


def dynamics(u: np.ndarray, pop: Population, adaptation_decay: float) -> np.ndarray:
    """Recurrent dynamics over frames with divisive adaptation.

    a_t = rho a_{t-1} + (1 - rho) r_{t-1};  r_t = relu(u_t / (1 + w a_t) + C r_{t-1}), from rest (r = a = 0)
    at trial start. ``adaptation_decay`` is rho per frame. (trial, frame, N) -> (trial, frame, N).
    """
    c_t = pop.coupling.T.astype(np.float32)
    w = pop.adaptation_strength.astype(np.float32)
    rho = np.float32(adaptation_decay)
    out = np.empty_like(u)
    r = np.zeros_like(u[:, 0])
    a = np.zeros_like(r)
    for t in range(u.shape[1]):
        a = rho * a + (1 - rho) * r
        r = np.maximum(u[:, t] / (1 + w * a) + r @ c_t, 0)
        out[:, t] = r
    return out


def to_rates(activity: np.ndarray, log_gain: np.ndarray, pop: Population, mean_activity: np.ndarray) -> np.ndarray:
    """Expected response: gain x scale x (baseline + stimulus-driven part), same shape as ``activity``."""
    driven = activity / mean_activity.astype(np.float32)
    base = pop.baseline_fraction.astype(np.float32)
    gain = np.exp(log_gain).astype(np.float32) * pop.response_scale.astype(np.float32)
    return (gain * (base + (1 - base) * driven)).astype(np.float32)
