"""Trial-to-trial variability: a gain shared by all neurons, private fluctuations of the drive (which the
lateral coupling can pass on) and private, overdispersed calcium-event noise."""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter


def _unit_mean_fluctuation(rng: np.random.Generator, shape: tuple[int, ...], cv: float, dt_s: float | None,
                           tau_s: float, axis: int) -> np.ndarray:
    """Positive fluctuations of the given shape with mean 1 and coefficient of variation ``cv`` > 0: independent
    gamma draws when ``dt_s`` is None, else log-normal with an AR(1) log along ``axis`` (time constant
    ``tau_s`` at spacing ``dt_s`` seconds, stationary from the first sample). float64."""
    if dt_s is None:
        k = 1.0 / cv**2
        return rng.gamma(k, 1.0 / k, shape)
    sd = np.sqrt(np.log1p(cv**2))
    a = np.exp(-dt_s / tau_s)
    e = rng.standard_normal(shape)
    if shape[axis]:
        e[(slice(None),) * axis + (0,)] /= np.sqrt(1 - a**2)
    log_x = sd * lfilter([np.sqrt(1 - a**2)], [1, -a], e, axis=axis)
    return np.exp(log_x - 0.5 * sd**2)


def shared_gain(rng: np.random.Generator, samples: int, cv: float, dt_s: float | None = None,
                tau_s: float = 1.0) -> np.ndarray:
    """Unobserved multiplicative gain with mean 1 and coefficient of variation ``cv``.

    Independent per sample (gamma) when ``dt_s`` is None (static trials); otherwise log-normal with an
    AR(1) log that decays with time constant ``tau_s`` over samples spaced ``dt_s`` seconds (frames).
    Returns (samples,) float64.
    """
    if cv == 0:
        return np.ones(samples)
    return _unit_mean_fluctuation(rng, (samples,), cv, dt_s, tau_s, 0)


def calcium_events(rng: np.random.Generator, mean: np.ndarray, event_amplitude: np.ndarray,
                   event_shape: float) -> np.ndarray:
    """Non-negative responses like deconvolved calcium: a Poisson number of gamma-sized events.

    Args:
        mean: (..., N) expected response (shared gain included).
        event_amplitude: (N,) mean event amplitude, same units as ``mean``.
        event_shape: gamma shape of one event's amplitude (larger is less variable).
    Returns:
        (..., N) float32 with the given mean, variance mean * amplitude * (1 + 1/shape), exact zeros where
        no event happened.
    """
    events = rng.poisson(mean / event_amplitude)
    amplitude = (event_amplitude / event_shape).astype(np.float32)
    return rng.standard_gamma((events * event_shape).astype(np.float32), dtype=np.float32) * amplitude


def private_fluctuations(rng: np.random.Generator, lead: tuple[int, ...], neurons: int, cv: float,
                         dt_s: float | None = None, tau_s: float = 0.1) -> np.ndarray:
    """Unobserved multiplicative fluctuation of each neuron's drive, mean 1, coefficient of variation ``cv``.

    Static trials (``dt_s`` None, lead (trial,)): independent gamma per trial and neuron. Movies (lead
    (trial, frame)): log-normal with an AR(1) log per neuron over the frames of a trial, time constant
    ``tau_s`` at frame spacing ``dt_s`` seconds, stationary from the first frame.
    Returns (*lead, neurons) float32; all ones when ``cv`` is 0 (and nothing is drawn).
    """
    shape = (*lead, neurons)
    if cv == 0:
        return np.ones(shape, dtype=np.float32)
    return _unit_mean_fluctuation(rng, shape, cv, dt_s, tau_s, 1).astype(np.float32)
