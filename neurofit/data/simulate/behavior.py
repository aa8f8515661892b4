"""Behaviour over one simulated session: running bouts, arousal-linked pupil size, eye position."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

from neurofit.data.simulate.v1_params import V1Params


@dataclass(frozen=True)
class Behavior:
    """Behaviour sampled every ``dt_s`` seconds over a session of T samples.

    Attributes:
        running_speed: (T,) cm/s, non-negative, in bouts.
        pupil_dilation: (T,) pupil diameter, camera pixels.
        pupil_dilation_derivative: (T,) camera pixels per second.
        pupil_center: (T, 2) eye position (x, y), camera pixels.
        run_level: (T,) in [0, 1): how strongly running modulates gain (saturating in speed).
        dilation_level: (T,) pupil dilation above rest in units of ``pupil_running_px``.
        eye_shift_px: (T, 2) how far the eye position moves every RF on the screen, pixels (x, y).
    """

    running_speed: np.ndarray
    pupil_dilation: np.ndarray
    pupil_dilation_derivative: np.ndarray
    pupil_center: np.ndarray
    run_level: np.ndarray
    dilation_level: np.ndarray
    eye_shift_px: np.ndarray

    def channels(self) -> np.ndarray:
        """(T, 3) float32 in SENSORIUM order: pupil dilation, its derivative, running speed."""
        return np.stack([self.pupil_dilation, self.pupil_dilation_derivative, self.running_speed],
                        axis=1).astype(np.float32)

    def take(self, index: np.ndarray) -> Behavior:
        """The samples at ``index`` (T',), in that order; repeated indices hold a sample over several."""
        return Behavior(**{f.name: getattr(self, f.name)[index] for f in dataclasses.fields(self)})

    def log_gain(self, run_gain: np.ndarray, pupil_gain: np.ndarray) -> np.ndarray:
        """(T, N) multiplicative log-gain of N neurons with the given (N,) sensitivities."""
        return self.run_level[:, None] * run_gain[None, :] + self.dilation_level[:, None] * pupil_gain[None, :]


def session_behavior(rng: np.random.Generator, samples: int, dt_s: float, p: V1Params) -> Behavior:
    """Simulate ``samples`` consecutive behaviour samples spaced ``dt_s`` seconds apart.

    Running alternates between stationary periods and bouts (exponential durations), each bout with its own
    speed, smoothed over ~1 s; arousal follows running over ~3 s plus a slow independent drift, and pupil
    size follows arousal; the eye wanders around its mean (AR(1), ~2 s).
    """
    running = _bouts(rng, samples, dt_s, p)
    bout_speed = p.run_speed_cm_s * np.exp(0.4 * rng.standard_normal(samples))
    # A bout keeps one speed: take the speed drawn at the bout's first sample.
    bout_start = np.maximum.accumulate(np.where(np.diff(running, prepend=0) > 0, np.arange(samples), 0))
    target = running * bout_speed[bout_start]
    speed = _lowpass(target, dt_s, 1.0) * (1 + 0.15 * _ar1(rng, samples, dt_s, 0.5))
    speed = np.maximum(speed, 0.0)
    arousal = _lowpass(running.astype(float), dt_s, 3.0) + 0.15 * _ar1(rng, samples, dt_s, 15.0)
    dilation_level = np.maximum(arousal, -0.5)
    pupil = p.pupil_diameter_px + p.pupil_running_px * dilation_level
    centre_offset = p.pupil_center_sd_px * np.stack([_ar1(rng, samples, dt_s, 2.0) for _ in range(2)], axis=1)
    return Behavior(
        running_speed=speed,
        pupil_dilation=pupil,
        pupil_dilation_derivative=np.gradient(pupil, dt_s) if samples > 1 else np.zeros(samples),
        pupil_center=np.asarray(p.pupil_center_mean_px)[None, :] + centre_offset,
        run_level=np.tanh(speed / p.run_speed_cm_s),
        dilation_level=dilation_level,
        eye_shift_px=p.shift_px_per_camera_px * centre_offset,
    )


def _bouts(rng: np.random.Generator, samples: int, dt_s: float, p: V1Params) -> np.ndarray:
    """(T,) 0/1 running state from alternating exponential rest and run periods."""
    total = samples * dt_s
    state = int(rng.random() < p.run_bout_s / (p.run_bout_s + p.rest_bout_s))
    states = np.empty(0, dtype=np.int64)
    durations = np.empty(0)
    while durations.sum() <= total:
        # An even number of periods per chunk keeps the alternation going across chunks.
        chunk = (state + np.arange(64)) % 2
        states = np.append(states, chunk)
        durations = np.append(durations, rng.exponential(np.where(chunk == 1, p.run_bout_s, p.rest_bout_s)))
    ends = np.cumsum(durations)
    return states[np.searchsorted(ends, np.arange(samples) * dt_s, side="right")].astype(np.int64)


def _lowpass(x: np.ndarray, dt_s: float, tau_s: float) -> np.ndarray:
    """First-order low-pass filter starting at the first value."""
    a = np.exp(-dt_s / tau_s)
    return lfilter([1 - a], [1, -a], x, zi=[a * x[0]])[0] if len(x) else x


def _ar1(rng: np.random.Generator, samples: int, dt_s: float, tau_s: float) -> np.ndarray:
    """Stationary AR(1) noise with unit variance and time constant ``tau_s``."""
    a = np.exp(-dt_s / tau_s)
    e = rng.standard_normal(samples)
    if samples:
        e[0] /= np.sqrt(1 - a**2)
    return lfilter([np.sqrt(1 - a**2)], [1, -a], e)
