"""Trial-to-trial variability: a gain shared by all neurons plus private, overdispersed calcium-event noise."""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter


def shared_gain(rng: np.random.Generator, samples: int, cv: float, dt_s: float | None = None,
                tau_s: float = 1.0) -> np.ndarray:
    """Unobserved multiplicative gain with mean 1 and coefficient of variation ``cv``.

    Independent per sample (gamma) when ``dt_s`` is None (static trials); otherwise log-normal with an
    AR(1) log that decays with time constant ``tau_s`` over samples spaced ``dt_s`` seconds (frames).
    Returns (samples,) float64.
    """
    if cv == 0:
        return np.ones(samples)
    if dt_s is None:
        shape = 1.0 / cv**2
        return rng.gamma(shape, 1.0 / shape, samples)
    sd = np.sqrt(np.log1p(cv**2))
    a = np.exp(-dt_s / tau_s)
    e = rng.standard_normal(samples)
    if samples:
        e[0] /= np.sqrt(1 - a**2)
    log_gain = sd * lfilter([np.sqrt(1 - a**2)], [1, -a], e)
    return np.exp(log_gain - 0.5 * sd**2)


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
